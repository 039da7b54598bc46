"""Authors' checkpoints in the workflow: params validation, the DAG with and without their files, the table rows,
and an imported checkpoint sampled by the unchanged `sample` command."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ebm_repro import config as C
from ebm_repro.cli import main
from ebm_repro.experiments.inception import AUTHORS_ROW, authors_footer, inception_table, with_authors_rows
from ebm_repro.params import load_params, validate_params
from tests.test_authors_icd import Flags, authors_state, write_checkpoint
from tests.test_workflow import BIN, copy_repo, job_counts, run

ROOT = Path(__file__).resolve().parents[2]
AUTHORS_JOBS = ("import_authors_checkpoint", "sample_authors_model", "compute_authors_metrics",
                "plot_authors_samples")


@pytest.fixture(scope="module")
def params():
    return load_params()


# ----------------------------------------------------------------------------- params
@pytest.mark.parametrize("mutate, match", [
    (lambda e: e.update(variant="nope"), r"inception.authors_checkpoints\[0\].variant: unknown variant"),
    (lambda e: e.update(beside="IGEBM conditional"), r"inception.authors_checkpoints\[0\].beside"),
    (lambda e: e.update(mode="ensemble"), r"inception.authors_checkpoints.0.mode"),
    (lambda e: e.update(source="icd_pth"), r"inception.authors_checkpoints\[0\].source: 'icd_pth' checkpoints fill"),
    (lambda e: e.update(path="data/authors/../../etc/x"), r"inception.authors_checkpoints.0.path"),
    (lambda e: e.update(path="/abs/model"), r"inception.authors_checkpoints.0.path"),
    (lambda e: e.update(mode="ensemble"), r"inception.authors_checkpoints.0.mode"),
    (lambda e: e.pop("description"), "description"),
])
def test_bad_entries_are_refused_naming_the_key(params, mutate, match):
    p = copy.deepcopy(params)
    mutate(p["inception"]["authors_checkpoints"][0])
    with pytest.raises(C.ConfigError, match=match):
        validate_params(p)


def test_one_entry_per_variant(params):
    p = copy.deepcopy(params)
    p["inception"]["authors_checkpoints"].append(dict(p["inception"]["authors_checkpoints"][0]))
    with pytest.raises(C.ConfigError, match="a second entry for 'igebm_uncond'"):
        validate_params(p)


# ----------------------------------------------------------------------------- DAG
def dry_run(repo: Path, *extra: str) -> str:
    return run([str(BIN / "snakemake"), "results/tables/inception.md", "-n", "--forceall", "--cores", "all", "-p",
                *extra], cwd=repo).stdout


def table_job(stdout: str) -> str:
    return stdout.split("rule make_inception_table:")[1].split("\n\n")[0]


def test_the_dag_imports_a_present_authors_file_and_the_table_depends_on_it(tmp_path):
    repo = copy_repo(tmp_path)
    prefix = repo / "data/authors/igebm/cifar10_large_model_uncond/model_121200"
    prefix.parent.mkdir(parents=True)
    for suffix in (".index", ".data-00000-of-00001"):  # the DAG only needs the files to exist
        Path(f"{prefix}{suffix}").write_bytes(b"written by the test")
    (repo / "data/authors/icd/cifar10_model").mkdir(parents=True)
    (repo / "data/authors/icd/cifar10_model/model_best.pth").write_bytes(b"written by the test")
    out = dry_run(repo)
    counts = job_counts(out)
    assert all(counts[j] == 2 for j in AUTHORS_JOBS)        # igebm_uncond (TF) and icd (.pth); igebm_cond absent
    assert "--source igebm_tf --variant igebm_uncond" in out and "--source icd_pth --variant icd" in out
    assert "--path data/authors/igebm/cifar10_large_model_uncond/model_121200 " in out
    table = table_job(out)
    for key in ("authors_igebm_uncond/single", "authors_icd/single"):
        assert f"results/metrics/{key}.json" in table.split("output:")[0]  # an input of the table job
    assert "--authors-metrics results/metrics/authors_igebm_uncond/single.json " \
           "results/metrics/authors_icd/single.json" in table
    # the authors' rows are sampled with the variant's own sampling command, only the model file differs
    assert re.search(r"sample --setting paper --threads \d+ --variant igebm_uncond --mode single "
                     r"--model results/train/authors_igebm_uncond/model.pt "
                     r"--out results/samples/authors_igebm_uncond/single.npz", out)
    # preset paper_text builds the Fig. 15b net, which the authors' file does not fill: no import
    text = job_counts(dry_run(repo, "--config", "preset=paper_text"))
    assert text["import_authors_checkpoint"] == 1           # only icd's file remains importable


def test_without_authors_files_the_dag_has_no_authors_job(tmp_path):
    repo = copy_repo(tmp_path)
    out = dry_run(repo)
    counts = job_counts(out)
    assert not set(AUTHORS_JOBS) & set(counts)
    assert "--authors-metrics" not in table_job(out)


# ----------------------------------------------------------------------------- table
def metrics_json(variant: str, mode: str, is_mean: float, imported: dict | None = None, step=100000) -> dict:
    """A metrics file as `ebm_repro.cli metrics` writes it."""
    ts = load_params(ROOT / "params.yaml")["recipes"]["igebm"]["test_sampling"]  # the IGEBM code's protocol
    return dict(variant=variant, mode=mode, setting="paper", preset="code", train_step=step, diverged=None,
                test_sampling=ts, feature_net="inception", n_splits=10, fid_reference="train", config_hash="abc",
                imported=imported, IS_mean=is_mean, IS_std=0.1, FID=40.0, KID_mean=0.01, KID_std=0.001,
                n_samples=50000, n_reference=50000, weights_sha256="f" * 64)


IMPORTED = {"source": "igebm_tf", "path": "data/authors/igebm/cifar10_large_model_uncond/model_121200",
            "files": {"model_121200.index": "a" * 64, "model_121200.data-00000-of-00001": "b" * 64},
            "iteration": 121200}


def test_the_authors_row_stands_beside_ours_and_the_footer_names_missing_files(params):
    rows = params["inception"]["rows"]
    ours = [metrics_json(r["variant"], r["mode"], 5.0 + i) for i, r in enumerate(rows)]
    theirs = [metrics_json("igebm_uncond", "single", 6.02, IMPORTED, step=0)]
    entries = params["inception"]["authors_checkpoints"]
    m, r = with_authors_rows(ours, rows, theirs, entries)
    names = [x["row"] for x in rows]
    assert [x["row"] for x in r] == [names[0], f"{names[0]} — {AUTHORS_ROW}", *names[1:]]
    assert r[1]["paper"] == rows[0]["paper"] and m[1]["train_step"] == "121200 (theirs)"
    md = inception_table(m, r) + authors_footer(theirs, entries, "", {})
    line = next(x for x in md.splitlines() if x.startswith(f"| {rows[0]['row']} — {AUTHORS_ROW}"))
    assert "6.02 ± 0.10" in line and "6.43" in line  # this run's IS of their weights, beside the paper's 6.43
    assert "`data/authors/igebm/cifar10_large_model_uncond/model_121200` (igebm_tf, their iteration 121200" in md
    assert "- IGEBM conditional (single): no row; place the IGEBM authors' conditional" in md
    assert "`data/authors/igebm/cifar10_cond/model_74700` (`.index` + `.data-*`)" in md
    assert "`data/authors/icd/cifar10_model/model_best.pth` and rerun Snakemake" in md
    assert md.count(AUTHORS_ROW) == 2  # one row + the footer's explanation; no invented rows
    unfit = authors_footer([], entries, "", {"igebm_uncond": "preset paper_text builds arch x"})
    assert "- IGEBM unconditional (single): no row; preset paper_text builds arch x." in unfit


def test_metrics_of_an_unlisted_checkpoint_are_refused(params):
    rows = params["inception"]["rows"]
    ours = [metrics_json(r["variant"], r["mode"], 5.0) for r in rows]
    with pytest.raises(ValueError, match="match no params.yaml authors_checkpoints entry"):
        with_authors_rows(ours, rows, [metrics_json("igebm_uncond", "ensemble", 6.0, IMPORTED)],
                          params["inception"]["authors_checkpoints"])
    with pytest.raises(ValueError, match="not computed from an imported checkpoint"):
        with_authors_rows(ours, rows, [metrics_json("igebm_uncond", "single", 6.0)], params["inception"]["authors_checkpoints"])


def test_table_command_writes_the_rows_and_the_provenance(tmp_path, params):
    rows = params["inception"]["rows"]
    files = []
    for i, r in enumerate(rows):
        files.append(tmp_path / f"m{i}.json")
        files[-1].write_text(json.dumps(metrics_json(r["variant"], r["mode"], 5.0)))
    theirs = tmp_path / "authors.json"
    theirs.write_text(json.dumps(metrics_json("igebm_uncond", "single", 6.5, IMPORTED)))
    (tmp_path / "checksums.json").write_text("{}")
    point = {"what": "x", "IS_mean": 1.0, "IS_std": 0.0, "FID": 1.0}
    (tmp_path / "baselines.json").write_text(json.dumps({"real_test": point, "uniform_noise": point,
                                                         "fid_reference": "train"}))
    out = tmp_path / "inception.md"
    main(["table-inception", "--params", str(ROOT / "params.yaml"), "--metrics", *map(str, files),
          "--authors-metrics", str(theirs), "--data-checksums", str(tmp_path / "checksums.json"),
          "--baselines", str(tmp_path / "baselines.json"), "--out", str(out)])
    md = out.read_text()
    assert f"| {rows[0]['row']} — {AUTHORS_ROW} " in md and "6.50 ± 0.10" in md
    prov = json.loads(Path(f"{out}.provenance.json").read_text())
    assert prov["authors_checkpoints"]["igebm_uncond/single"]["iteration"] == 121200
    assert str(theirs) in prov["inputs"]


# ----------------------------------------------------------------------------- import -> sample, unchanged
def test_an_imported_icd_checkpoint_is_sampled_by_the_sample_command(tmp_path, monkeypatch):
    """CLI import of an ICD-code file (smoke width) then the unchanged `sample` command on the result."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["settings"]["smoke"]["metrics"]["n_samples"] = 6
    p["settings"]["smoke"]["overrides"]["test_sampling"].update(n_chains=6, draw_size=3, n_iters=3, steps_per_iter=2,
                                                                final_iters_fixed=1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    width = C.resolve(p, "icd", setting="smoke").hp.model.width
    fl = Flags(filter_dim=width)
    path = write_checkpoint(tmp_path / "model_2500.pth", monkeypatch, fl, authors_state("resnet", fl, 10),
                            authors_state("resnet", fl, 10, seed=1))
    model = tmp_path / "authors_icd" / "model.pt"
    common = ["--params", str(params), "--setting", "smoke", "--variant", "icd"]
    main(["import-checkpoint", *common, "--source", "icd_pth", "--path", str(path), "--out", str(model)])
    main(["sample", *common, "--mode", "single", "--model", str(model), "--out", str(tmp_path / "s.npz"),
          "--device", "cpu"])
    z = np.load(tmp_path / "s.npz")
    info = json.loads(str(z["info"]))
    assert z["images"].shape == (6, 32, 32, 3) and info["train_step"] == 2500
    assert info["imported"]["source"] == "icd_pth" and info["imported"]["iteration"] == 2500
    assert set(info["imported"]) == {"source", "path", "files", "iteration"}
    assert torch.load(model, weights_only=True)["imported"]["flags"]["filter_dim"] == width
