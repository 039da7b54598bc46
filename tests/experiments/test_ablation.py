"""E3 ablation table (ICD Tab. 2): paper numbers, verdicts, switches, CLI, config."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ebm_repro import config as C
from ebm_repro import runs as R
from ebm_repro.params import load_params, validate_params
from ebm_repro.cli import main
from ebm_repro.experiments import ablation as AB
from tests.experiments.run_helpers import BOUND, LATE, ROOT, ablation_runs, scored


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_ablation_table_puts_paper_numbers_and_verdicts_beside_the_run(tmp_path, params):
    runs, paper = ablation_runs(tmp_path, params, gaps_by_variant={"icd_abl_aug": [0.1, 0.1, 0.9, 1.2]})
    md = AB.ablation_table(runs, paper, BOUND, LATE)
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
    keys = R.preset_switches(params, "icd")
    assert {"model.norm", "sampler.step_size", "optim.ema_decay", "loss.kl_ent_coeff"} <= set(keys)
    runs, paper = ablation_runs(tmp_path, params)
    md = AB.ablation_table(runs, paper, BOUND, LATE, keys)
    line = next(l for l in md.splitlines() if "Paper-vs-code switches" in l)
    assert "`model.norm` = instance" in line and "`sampler.step_size` = 100.0" in line
    assert "`loss.kl_ent_coeff` = 0.0/0.3" in line  # rows differ: each value once, in row order


def test_ablation_table_refuses_a_variant_beside_the_wrong_paper_row(tmp_path, params):
    runs, paper = ablation_runs(tmp_path, params)
    with pytest.raises(ValueError, match="icd_abl_cd.*data_aug=False.*paper row has data_aug=True"):
        AB.ablation_table(runs, paper[1:] + paper[:1], BOUND, LATE)


def test_ablation_table_shows_a_diverged_row_as_such(tmp_path, params):
    div = {"step": 7, "reason": "|mean E(x+)| = 12 > train.max_abs_energy = 10.0 at step 7", "last_good_step": 5}
    runs, paper = ablation_runs(tmp_path, params, metrics_by_variant={
        "icd_abl_cd": {**scored(), "diverged": div, "IS_mean": None}})
    runs[0].summary["diverged"] = div
    md = AB.ablation_table(runs, paper, BOUND, LATE)
    row = next(l for l in md.splitlines() if "`icd_abl_cd`" in l)
    header = next(l for l in md.splitlines() if l.startswith("| L_opt"))
    assert row.count("diverged at step 7") == 2 and "aborted at step 7" in row
    assert row.replace("\\|", "").count("|") == header.count("|")  # the reason's "|" do not split cells


# ----------------------------------------------------------------------------- CLI
def test_cli_writes_table_and_provenance_and_checks_the_order(tmp_path, params, monkeypatch):
    runs, _ = ablation_runs(tmp_path, params)
    dirs = [str(tmp_path / r.variant) for r in runs]
    metrics = [str(tmp_path / f"{r.variant}.json") for r in runs]
    out = tmp_path / "ablation.md"
    monkeypatch.chdir(ROOT)
    main(["table-ablation", "--setting", "smoke", "--train-dirs", *dirs, "--metrics", *metrics, "--out", str(out)])
    prov = json.loads(Path(str(out) + ".provenance.json").read_text())
    assert "169.74" in out.read_text() and prov["stability_rule"] == params["stability_rule"]
    assert prov["variants"] == [r["variant"] for r in params["ablation"]["rows"]]
    with pytest.raises(SystemExit, match="do not match"):
        main(["table-ablation", "--setting", "smoke", "--train-dirs", *dirs[::-1], "--metrics", *metrics[::-1],
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
    (lambda p: p["ablation"]["rows"][0].update(variant="icd_nope"), r"ablation.rows\[0\].variant"),
    (lambda p: p["kl_grad"].update(variant="nope"), "kl_grad.variant"),
    (lambda p: p["stability"]["curves"][0].update(variant="nope"), r"stability.curves\[0\].variant"),
    (lambda p: p["truncation"]["rows"][1].update(variant="nope"), r"truncation.rows\[1\].variant"),
    (lambda p: p["variants"]["icd"].update(dataset="svhn"), "variants.icd.dataset"),
    (lambda p: p["settings"]["smoke"]["stand_ins"].update(mnist="cifar"), "settings.smoke.stand_ins.mnist"),
])
def test_bad_ablation_and_dataset_params_are_refused(params, mutate, key):
    p = copy.deepcopy(params)
    mutate(p)
    with pytest.raises(C.ConfigError, match=key):
        validate_params(p)
