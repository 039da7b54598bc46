"""E3/E4/E14/E15 outputs from hand-made run folders: stability rule, paper numbers beside, figures, CLI, config."""
from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from ebm_repro import ablation as A
from ebm_repro import config as C
from ebm_repro.report import paper_lookup

ROOT = Path(__file__).resolve().parents[1]
BOUND, LATE = 0.5, 0.5


@pytest.fixture(scope="module")
def params():
    return C.load_params(ROOT / "params.yaml")


def write_run(root: Path, params: dict, variant: str, gaps: list[float], every: int = 5, diverged=None,
              eval_is: dict | None = None, extra_cols: dict | None = None, sec_per_iter: float = 0.5,
              metrics: dict | None = None, setting: str = "smoke") -> Path:
    """A results/train/<variant> folder as the trainer writes it, with the given logged gaps (one per log step)."""
    d = root / variant
    d.mkdir(parents=True)
    cfg = C.resolve(params, variant, setting=setting).to_dict()
    cfg["hp"]["train"]["n_iters"] = every * len(gaps)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rows = []
    for i, g in enumerate(gaps):
        step = every * (i + 1)
        r = {"step": step, "gap": g, "e_pos": g / 2, "e_neg": -g / 2, "loss": 0.1, "sec_per_iter": sec_per_iter}
        r.update({k: v[i] for k, v in (extra_cols or {}).items()})
        if eval_is and step in eval_is:
            r["eval_IS"] = eval_is[step]
        rows.append(r)
    keys = sorted({k for r in rows for k in r})
    with open(d / "train_log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    summary = {"variant": variant, "step": rows[-1]["step"] if not diverged else diverged["step"],
               "diverged": diverged, "sec_per_iter": sec_per_iter, "training_hash": "h", "device": "cpu"}
    (d / "train_summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        (root / f"{variant}.json").write_text(json.dumps(metrics))
    return d


def scored(is_mean=2.5, fid=120.0, net="smoke_classifier") -> dict:
    return {"IS_mean": is_mean, "IS_std": 0.1, "FID": fid, "diverged": None, "feature_net": net,
            "weights_sha256": "ab" * 32, "n_samples": 200, "n_splits": 10, "n_reference": 5000,
            "fid_reference": "train"}


# ----------------------------------------------------------------------------- stability rule
@pytest.mark.parametrize("gaps, stable, word", [
    ([0.9, 0.8, 0.1, -0.2], True, "stable"),        # an early transient is outside the late window
    ([0.1, 0.1, 0.2, -0.6], False, "unstable"),     # one late spike past the bound
    ([0.1, 0.1, 0.5, -0.5], True, "stable"),        # the bound itself is still bounded
    ([0.1, 0.1, 0.2, math.nan], False, "non-finite"),
])
def test_stability_verdict_uses_the_late_window_and_the_bound(tmp_path, params, gaps, stable, word):
    run = A.load_run(write_run(tmp_path, params, "icd_abl_cd", gaps))
    v = A.stability_verdict(run, BOUND, LATE)
    assert v.stable is stable and word in v.text


def test_aborted_run_is_unstable_whatever_its_gaps(tmp_path, params):
    div = {"step": 12, "reason": "|mean E(x+)| = 11 > train.max_abs_energy = 10.0 at step 12", "last_good_step": 10}
    run = A.load_run(write_run(tmp_path, params, "icd_abl_cd", [0.0, 0.0], diverged=div))
    v = A.stability_verdict(run, BOUND, LATE)
    assert not v.stable and "aborted at step 12" in v.text


def test_run_without_logged_gap_cannot_be_judged(tmp_path, params):
    d = write_run(tmp_path, params, "icd_abl_cd", [0.1])
    (d / "train_log.csv").write_text("gap,step\n")
    with pytest.raises(ValueError, match="no logged gap"):
        A.stability_verdict(A.load_run(d), BOUND, LATE)


# ----------------------------------------------------------------------------- E3 table
def ablation_runs(tmp_path, params, gaps_by_variant=None, metrics_by_variant=None):
    rows = params["ablation"]["ablation_rows"]
    runs = []
    for i, r in enumerate(rows):
        gaps = (gaps_by_variant or {}).get(r["variant"], [0.1, 0.05, 0.02, 0.01])
        m = (metrics_by_variant or {}).get(r["variant"], scored(2.0 + i, 150.0 - 10 * i))
        d = write_run(tmp_path, params, r["variant"], gaps, metrics=m)
        runs.append(A.load_run(d, tmp_path / f"{r['variant']}.json"))
    table = paper_lookup("improved_cd_2021/ablation_table_2")
    return runs, [table[r["paper_row"]] for r in rows]


def test_ablation_table_puts_paper_numbers_and_verdicts_beside_the_run(tmp_path, params):
    runs, paper = ablation_runs(tmp_path, params, gaps_by_variant={"icd_abl_aug": [0.1, 0.1, 0.9, 1.2]})
    md = A.ablation_table(runs, paper, BOUND, LATE)
    lines = {l.split("|")[-2].strip(): [c.strip() for c in l.strip("|").split("|")]
             for l in md.splitlines() if "`icd" in l and l.startswith("|")}
    first = lines["`icd_abl_cd`"]
    assert first[:4] == ["No", "No", "No", "No"]
    assert first[4] == "2.00 ± 0.10" and first[5] == "150.00"          # this run
    assert first[7:10] == ["3.57", "169.74", "No"]                      # ICD Tab. 2 row 1
    assert first[6].startswith("Yes — stable")
    assert lines["`icd_abl_aug`"][6].startswith("No — unstable: max abs gap 1.2 > 0.5")
    assert lines["`icd`"][:4] == ["Yes"] * 4 and lines["`icd`"][7:10] == ["7.85", "25.08", "Yes"]
    assert "Stability rule" in md and "0.5" in md and "last 50%" in md
    assert "NOT Inception scores" in md and "preset `code`" in md and "Setting `smoke`" in md
    assert "different numbers of iterations" not in md  # every row has the same n_iters here
    # each row names its preset, FID reference and test-time protocol (ICD code: the persistent buffer)
    assert first[10] == "`code`" and "`train`" in first[11] and first[12].startswith("persistent_buffer")


def test_tables_name_the_paper_vs_code_switches(tmp_path, params):
    keys = A.preset_switches(params, "icd")
    assert {"model.norm", "sampler.step_size", "optim.ema_decay", "loss.kl_ent_coeff"} <= set(keys)
    runs, paper = ablation_runs(tmp_path, params)
    md = A.ablation_table(runs, paper, BOUND, LATE, keys)
    line = next(l for l in md.splitlines() if "Paper-vs-code switches" in l)
    assert "`model.norm` = instance" in line and "`sampler.step_size` = 100.0" in line
    assert "`loss.kl_ent_coeff` = 0.0/0.3" in line  # rows differ: each value once, in row order


def test_ablation_table_refuses_a_variant_beside_the_wrong_paper_row(tmp_path, params):
    runs, paper = ablation_runs(tmp_path, params)
    with pytest.raises(ValueError, match="icd_abl_cd.*data_aug=False.*paper row has data_aug=True"):
        A.ablation_table(runs, paper[1:] + paper[:1], BOUND, LATE)


def test_ablation_table_shows_a_diverged_row_as_such(tmp_path, params):
    div = {"step": 7, "reason": "|mean E(x+)| = 12 > train.max_abs_energy = 10.0 at step 7", "last_good_step": 5}
    runs, paper = ablation_runs(tmp_path, params, metrics_by_variant={
        "icd_abl_cd": {**scored(), "diverged": div, "IS_mean": None}})
    runs[0].summary["diverged"] = div
    md = A.ablation_table(runs, paper, BOUND, LATE)
    row = next(l for l in md.splitlines() if "`icd_abl_cd`" in l)
    header = next(l for l in md.splitlines() if l.startswith("| L_opt"))
    assert row.count("diverged at step 7") == 2 and "aborted at step 7" in row
    assert row.replace("\\|", "").count("|") == header.count("|")  # the reason's "|" do not split cells


# ----------------------------------------------------------------------------- E15 table
PAPER_D1 = {"last_step_only": {"FID": 90.54}, "all_steps": {"FID": 94.85, "relative_time": "over 3x slower"}}


def truncation_runs(tmp_path, params):
    rows = params["ablation"]["truncation_rows"]
    runs = [A.load_run(write_run(tmp_path, params, r["variant"], [0.1, 0.1], sec_per_iter=2.0,
                                 metrics=scored(fid=80.0 + i)), tmp_path / f"{r['variant']}.json")
            for i, r in enumerate(rows)]
    timing = {"icd_trunc_last": {"wall_median": 0.5, "cpu_median": 0.45, "n_steps": 4, "device": "cpu"},
              "icd_trunc_all": {"wall_median": 1.6, "cpu_median": 1.5, "n_steps": 4, "device": "cpu"}}
    return runs, rows, timing


def test_truncation_table_ratio_and_paper_numbers(tmp_path, params):
    runs, rows, timing = truncation_runs(tmp_path, params)
    md = A.truncation_table(runs, rows, PAPER_D1, timing)
    last = next(l for l in md.splitlines() if "`icd_trunc_last`" in l)
    all_ = next(l for l in md.splitlines() if "`icd_trunc_all`" in l)
    assert "80.00" in last and "90.54" in last and "1.00×" in last and "0.500" in last
    assert "81.00" in all_ and "94.85" in all_ and "3.20×" in all_ and "over 3x slower" in all_
    assert "2.000" in all_  # the training job's own s/iteration, beside the benchmark
    assert "shapes_gray28" in md and "interleaved" in md  # the smoke stand-in and the timing method are named


def test_truncation_table_refuses_swapped_rows(tmp_path, params):
    runs, rows, timing = truncation_runs(tmp_path, params)
    swapped = [dict(rows[0], paper="all_steps"), dict(rows[1], paper="last_step_only")]
    with pytest.raises(ValueError, match="kl_all_steps"):
        A.truncation_table(runs, swapped, PAPER_D1, timing)


def test_truncation_cli_refuses_timing_of_another_config(tmp_path, params, monkeypatch):
    runs, rows, timing = truncation_runs(tmp_path, params)
    for r in runs:
        timing[r.variant]["training_hash"] = "h"  # write_run's summaries carry training_hash "h"
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    args = ["table-truncation", "--setting", "smoke", "--train-dirs", *[str(tmp_path / r.variant) for r in runs],
            "--metrics", *[str(tmp_path / f"{r.variant}.json") for r in runs],
            "--timing", str(tmp_path / "timing.json")]
    monkeypatch.chdir(ROOT)
    A.main(args + ["--out", str(tmp_path / "t.md")])
    assert "3.20×" in (tmp_path / "t.md").read_text()
    timing["icd_trunc_all"]["training_hash"] = "other"
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    with pytest.raises(SystemExit, match="rerun time-truncation"):
        A.main(args + ["--out", str(tmp_path / "t2.md")])


def test_time_training_steps_times_every_variant_under_the_same_load(tmp_path, params):
    from ebm_repro.data import prepare_dataset
    p = copy.deepcopy(params)
    p["settings"]["smoke"]["overrides"] = {
        "model": {"width": 4}, "sampler": {"n_steps": 2}, "buffer": {"size": 16},
        "loss": {"kl_opt_chains": 2, "ent_min_buffer": 8, "ent_n_neighbours": 4},
        "train": {"batch_size": 4, "n_iters": 4, "snapshot_every": 1}}
    for r in p["ablation"]["truncation_rows"]:
        p["variants"][r["variant"]]["setting_overrides"] = {}
    prepare_dataset("shapes_gray28", tmp_path, n_train=20, n_test=10)
    cfgs = [C.resolve(p, r["variant"], setting="smoke", validated=True) for r in p["ablation"]["truncation_rows"]]
    t = A.time_training_steps(cfgs, [tmp_path, tmp_path], n_steps=2, device="cpu")
    assert list(t) == ["icd_trunc_last", "icd_trunc_all"]
    assert all(v["n_steps"] == 2 and v["wall_median"] > 0 and v["cpu_median"] > 0 for v in t.values())


# ----------------------------------------------------------------------------- figures
def test_kl_grad_figure_writes_png_pdf_and_median_ratio(tmp_path, params):
    d = write_run(tmp_path, params, "icd", [0.1] * 4,
                  extra_cols={"grad_cd": [1.0, 2.0, 2.0, 4.0], "grad_kl": [0.5, 1.0, 3.0, 2.0]})
    s = A.kl_grad_figure(A.load_run(d), tmp_path / "kl_grad.png")
    assert s["median_ratio_kl_over_cd"] == 0.5 and s["n_points"] == 4
    assert (tmp_path / "kl_grad.png").stat().st_size > 1000 and (tmp_path / "kl_grad.pdf").exists()


def test_kl_grad_figure_needs_l_kl(tmp_path, params):
    d = write_run(tmp_path, params, "icd_abl_cd", [0.1], extra_cols={"grad_cd": [1.0], "grad_kl": [0.0]})
    with pytest.raises(ValueError, match="L_KL is off"):
        A.kl_grad_figure(A.load_run(d), tmp_path / "x.png")


def test_stability_figure_needs_is_over_training(tmp_path, params):
    curves = params["ablation"]["stability_curves"]
    runs = [A.load_run(write_run(tmp_path, params, c["variant"], [0.1, 0.2, 0.3, 0.2], eval_is={10: 2.0, 20: 2.5}))
            for c in curves]
    A.stability_figure(runs, [c["label"] for c in curves], BOUND, LATE, tmp_path / "stab.png")
    assert (tmp_path / "stab.png").stat().st_size > 1000 and (tmp_path / "stab.pdf").exists()
    bare = A.load_run(write_run(tmp_path / "b", params, curves[0]["variant"], [0.1]))
    with pytest.raises(ValueError, match="eval_every"):
        A.stability_figure([bare], ["x"], BOUND, LATE, tmp_path / "s2.png")


# ----------------------------------------------------------------------------- CLI
def test_cli_writes_table_and_provenance_and_checks_the_order(tmp_path, params, monkeypatch):
    runs, _ = ablation_runs(tmp_path, params)
    dirs = [str(tmp_path / r.variant) for r in runs]
    metrics = [str(tmp_path / f"{r.variant}.json") for r in runs]
    out = tmp_path / "ablation.md"
    monkeypatch.chdir(ROOT)
    A.main(["table-ablation", "--setting", "smoke", "--train-dirs", *dirs, "--metrics", *metrics, "--out", str(out)])
    prov = json.loads(Path(str(out) + ".provenance.json").read_text())
    assert "169.74" in out.read_text() and prov["stability_rule"] == params["ablation"]["stability"]
    assert prov["variants"] == [r["variant"] for r in params["ablation"]["ablation_rows"]]
    with pytest.raises(SystemExit, match="do not match"):
        A.main(["table-ablation", "--setting", "smoke", "--train-dirs", *dirs[::-1], "--metrics", *metrics[::-1],
                "--out", str(out)])


# ----------------------------------------------------------------------------- config
def test_variant_dataset_stand_ins_and_setting_overrides(params):
    paper, smoke = C.resolve(params, "icd_trunc_all", "paper"), C.resolve(params, "icd_trunc_all", "smoke")
    assert (paper.dataset, smoke.dataset) == ("mnist", "shapes_gray28")
    assert paper.hp.loss.kl_all_steps and (paper.hp.model.channels, paper.hp.model.image_size) == (1, 28)
    assert C.resolve(params, "icd", "smoke").dataset == "shapes"
    # setting_overrides.smoke shrinks only in smoke, after settings.smoke.overrides
    assert C.resolve(params, "icd_abl_cd", "smoke").hp.train.n_iters == 20
    assert C.resolve(params, "icd_abl_cd", "paper").hp.train.n_iters == paper.hp.train.n_iters


@pytest.mark.parametrize("mutate, key", [
    (lambda p: p["variants"]["icd_trunc_last"]["overrides"]["model"].update(channels=3), "do not fit dataset 'mnist'"),
    (lambda p: p["ablation"]["ablation_rows"][0].update(variant="icd_nope"), r"ablation.ablation_rows\[0\].variant"),
    (lambda p: p["ablation"].update(kl_grad_variant="nope"), "ablation.kl_grad_variant"),
    (lambda p: p["variants"]["icd"].update(dataset="svhn"), "variants.icd.dataset"),
    (lambda p: p["settings"]["smoke"]["stand_ins"].update(mnist="cifar"), "settings.smoke.stand_ins.mnist"),
])
def test_bad_ablation_and_dataset_params_are_refused(params, mutate, key):
    p = copy.deepcopy(params)
    mutate(p)
    with pytest.raises(C.ConfigError, match=key):
        C.validate_params(p)
