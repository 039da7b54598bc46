"""The DAG: Snakemake lists every stage, DVC describes the same outputs, bad params stop it, smoke runs end to end."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
import dvc_from_snakemake as d2s  # noqa: E402


def run(cmd: list[str], cwd: Path = ROOT, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def copy_repo(dst: Path) -> Path:
    """A working copy holding what the workflow reads (code comes from the installed package)."""
    for name in ("Snakefile", "params.yaml", "dvc.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, dst / name)
    for name in ("workflow", "src", ".dvc"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("tmp", "cache", "__pycache__"))
    (dst / "profiles").symlink_to("workflow/profiles")  # where Snakemake finds the default profile
    return dst


MANUAL_DOWNLOAD_ROWS = {"igebm_imagenet32", "icd_imagenet32", "icd_celebahq128", "icd_lsun_bedroom128"}


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1].split("total")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_paper_dag_lists_download_train_sample_metrics_and_table_jobs():
    # --forceall: list every job whatever this checkout has already computed
    p = run([str(BIN / "snakemake"), "results/tables/inception.md", "-n", "--forceall", "--cores", "all"])
    counts = job_counts(p.stdout)
    assert counts["prepare_dataset"] == 1 and counts["prepare_feature_net"] == 1
    assert counts["train_model"] == 3  # igebm_uncond, igebm_cond, icd
    assert counts["sample_model"] == counts["compute_metrics"] == counts["plot_samples"] == 5  # + cond ensemble
    assert counts["make_inception_table"] == 1


def test_paper_dag_lists_the_four_compose_trainings_the_joint_sampling_and_the_evaluation():
    p = run([str(BIN / "snakemake"), "results/tables/compose.md", "-n", "--forceall", "--cores", "all"])
    assert job_counts(p.stdout) == {"prepare_dataset": 1, "train_compose_model": 4, "train_compose_regressor": 1,
                                    "sample_compose": 1, "evaluate_compose": 1}   # E11: dSprites, IGEBM §6
    assert "data/dsprites/train.npz" in p.stdout   # the archive, not the smoke stand-in


def test_smoke_dag_has_the_same_rules_as_the_paper_dag():
    paper = job_counts(run([str(BIN / "snakemake"), "-n", "--forceall", "--cores", "all"]).stdout)
    smoke = job_counts(run([str(BIN / "snakemake"), "-n", "--forceall", "--cores", "all",
                            "--config", "setting=smoke"]).stdout)
    assert set(paper) == set(smoke)  # same rules; sizes (e.g. particle training seeds) may differ
    assert {k: v for k, v in paper.items() if "particle" not in k} == \
        {k: v for k, v in smoke.items() if "particle" not in k}


def test_dvc_yaml_is_generated_from_the_current_snakemake_dag():
    run([sys.executable, str(ROOT / "workflow" / "scripts" / "dvc_from_snakemake.py"), "--check"])


@pytest.mark.parametrize("setting", ["paper", "smoke"])
def test_snakemake_and_dvc_describe_the_same_outputs(setting):
    snake = {o for j in d2s.snakemake_jobs(setting) for o in j["output"]}
    path = d2s.TARGETS[setting]
    stages = yaml.safe_load(path.read_text())["stages"]
    dvc_outs = set()
    for st in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for o in st.get(kind, []):
                dvc_outs.add(o if isinstance(o, str) else next(iter(o)))
    assert dvc_outs == snake
    # DVC itself parses the file and sees the same stages
    listed = run([str(BIN / "dvc"), "stage", "list", "--name-only", str(path.relative_to(ROOT))]).stdout.split()
    assert {s.split(":")[-1] for s in listed} == set(stages)


def test_dvc_repro_dry_lists_the_stages(tmp_path):
    repo = copy_repo(tmp_path)
    run(["git", "init", "-q"], cwd=repo)
    # --force: on a fresh clone plain --dry stops at the first stage whose input does not exist yet,
    # because DVC hashes dependencies for its run cache even in a dry run (treeverse/dvc#9021)
    p = run([str(BIN / "dvc"), "repro", "--dry", "--force"], cwd=repo)
    for stage in ("prepare_dataset-cifar10", "prepare_dataset-mnist", "train_model-icd",
                  "sample_model-igebm_uncond-ensemble",
                  "compute_metrics-igebm_cond-single", "compute_metrics-igebm_cond-ensemble",
                  "make_inception_table"):
        assert f"'{stage}'" in p.stdout, p.stdout[-2000:]


def test_bad_params_stop_snakemake_before_any_job_naming_the_key(tmp_path):
    repo = copy_repo(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["recipes"]["igebm"]["sampler"]["n_steps"] = 0
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    p = run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=repo, check=False)
    assert p.returncode != 0
    assert "recipes.igebm.sampler.n_steps" in p.stdout + p.stderr
    assert not (repo / "results").exists() and not (repo / "smoke").exists()


@pytest.mark.slow
def test_smoke_workflow_end_to_end(tmp_path):
    """The whole smoke DAG on CPU: table rows hold numbers computed by this run; a rerun has nothing to do."""
    repo = copy_repo(tmp_path)
    # the spine's target only: the other experiments run in `./repro smoke` and have their own tests
    # targets before --config: --config takes every following word as a key=value pair
    run([str(BIN / "snakemake"), "smoke/results/tables/inception.md", "--cores", "2", "--config", "setting=smoke"],
        cwd=repo, timeout=1500)
    table = (repo / "smoke/results/tables/inception.md").read_text()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for row in params["inception"]["rows"]:
        line = next(l for l in table.splitlines() if l.startswith(f"| {row['row']} "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        if row["variant"] in MANUAL_DOWNLOAD_ROWS:  # E17/E18: no download in the copy -> the row says what to fetch
            assert cells[1].startswith("not run: dataset missing (put "), cells[1]
            continue
        is_mean, is_std = map(float, cells[1].split("±"))
        assert 1.0 <= is_mean <= 10.0 and is_std >= 0  # IS of 10 classes lies in [1, 10]
        assert float(cells[2]) >= 0  # FID
        m = json.loads((repo / f"smoke/results/metrics/{row['variant']}/{row['mode']}.json").read_text())
        assert cells[1] == f"{m['IS_mean']:.2f} ± {m['IS_std']:.2f}"  # the table shows this run's metrics
        assert m["n_samples"] == params["settings"]["smoke"]["metrics"]["n_samples"]
        png = repo / f"smoke/results/figures/samples_{row['variant']}_{row['mode']}.png"
        assert png.stat().st_size > 1000 and png.with_suffix(".pdf").exists()
    assert "NOT Inception scores" in table and "quoted" in table.lower()
    prov = json.loads((repo / "smoke/results/tables/inception.md.provenance.json").read_text())
    assert prov["setting"] == "smoke" and len(prov["inputs"]) >= 5
    assert not (repo / "results").exists()  # smoke never writes into the paper results
    p = run([str(BIN / "snakemake"), "smoke/results/tables/inception.md", "-n", "--cores", "2",
             "--config", "setting=smoke"], cwd=repo)
    assert "Nothing to be done" in p.stdout + p.stderr


def test_paper_dag_lists_the_likelihood_and_ood_jobs():
    p = run([str(BIN / "snakemake"), "results/tables/likelihood.md", "results/tables/ood.md", "-n", "--forceall",
             "--cores", "all"])
    counts = job_counts(p.stdout)
    assert counts["prepare_ood_set"] == 3  # SVHN test, DTD, CIFAR-100 test (smoke: their generated stand-ins)
    assert counts["score_ood"] == counts["report_ood"] == counts["score_likelihood"] == counts["report_likelihood"] == 1
    assert counts["train_model"] == 3 and counts["sample_model"] == 3  # igebm_uncond, igebm_cond, icd
    for path in ("data/svhn/test.npz", "data/dtd/test.npz", "data/cifar100/test.npz"):
        assert path in p.stdout
def test_paper_dag_lists_the_restoration_cross_class_and_finetune_jobs():
    # E7-E9: one judge classifier shared by E7 and E8, four Tab. 1 trainings; only the conditional EBM is trained
    p = run([str(BIN / "snakemake"), "results/tables/restoration.md", "results/figures/cross_class.png",
             "results/tables/finetune.md", "-n", "--forceall", "--cores", "all"])
    counts = job_counts(p.stdout)
    assert counts["train_classifier"] == counts["restore_images"] == counts["make_restoration_report"] == 1
    assert counts["map_cross_class"] == counts["make_finetune_table"] == 1
    assert counts["train_finetune_classifier"] == 4 and counts["train_model"] == 1
