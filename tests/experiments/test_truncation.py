"""E15 truncation table (ICD App. D.1) and its interleaved timing."""
from __future__ import annotations

import copy
import json

import pytest

from ebm_repro import config as C
from ebm_repro import runs as R
from ebm_repro.params import load_params
from ebm_repro.cli import main
from ebm_repro.experiments import truncation as TR
from tests.experiments.run_helpers import ROOT, scored, write_run


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


PAPER_D1 = {"last_step_only": {"FID": 90.54}, "all_steps": {"FID": 94.85, "relative_time": "over 3x slower"}}


def truncation_runs(tmp_path, params):
    rows = params["truncation"]["rows"]
    runs = [R.load_run(write_run(tmp_path, params, r["variant"], [0.1, 0.1], sec_per_iter=2.0,
                                 metrics=scored(fid=80.0 + i)), tmp_path / f"{r['variant']}.json")
            for i, r in enumerate(rows)]
    timing = {"icd_trunc_last": {"wall_median": 0.5, "cpu_median": 0.45, "n_steps": 4, "device": "cpu"},
              "icd_trunc_all": {"wall_median": 1.6, "cpu_median": 1.5, "n_steps": 4, "device": "cpu"}}
    return runs, rows, timing


def test_truncation_table_ratio_and_paper_numbers(tmp_path, params):
    runs, rows, timing = truncation_runs(tmp_path, params)
    md = TR.truncation_table(runs, rows, PAPER_D1, timing)
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
        TR.truncation_table(runs, swapped, PAPER_D1, timing)


def test_truncation_cli_refuses_timing_of_another_config(tmp_path, params, monkeypatch):
    runs, rows, timing = truncation_runs(tmp_path, params)
    for r in runs:
        timing[r.variant]["training_hash"] = "h"  # write_run's summaries carry training_hash "h"
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    args = ["table-truncation", "--setting", "smoke", "--train-dirs", *[str(tmp_path / r.variant) for r in runs],
            "--metrics", *[str(tmp_path / f"{r.variant}.json") for r in runs],
            "--timing", str(tmp_path / "timing.json")]
    monkeypatch.chdir(ROOT)
    main(args + ["--out", str(tmp_path / "t.md")])
    assert "3.20×" in (tmp_path / "t.md").read_text()
    timing["icd_trunc_all"]["training_hash"] = "other"
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    with pytest.raises(SystemExit, match="rerun time-truncation"):
        main(args + ["--out", str(tmp_path / "t2.md")])


def test_time_training_steps_times_every_variant_under_the_same_load(tmp_path, params):
    from ebm_repro.data import prepare_dataset
    p = copy.deepcopy(params)
    p["settings"]["smoke"]["overrides"] = {
        "model": {"width": 4}, "sampler": {"n_steps": 2}, "buffer": {"size": 16},
        "loss": {"kl_opt_chains": 2, "ent_min_buffer": 8, "ent_n_neighbours": 4},
        "train": {"batch_size": 4, "n_iters": 4, "snapshot_every": 1}}
    for r in p["truncation"]["rows"]:
        p["variants"][r["variant"]]["setting_overrides"] = {}
    prepare_dataset("shapes_gray28", tmp_path, n_train=20, n_test=10)
    cfgs = [C.resolve(p, r["variant"], setting="smoke", validated=True) for r in p["truncation"]["rows"]]
    t = TR.time_training_steps(cfgs, [tmp_path, tmp_path], n_steps=2, device="cpu")
    assert list(t) == ["icd_trunc_last", "icd_trunc_all"]
    assert all(v["n_steps"] == 2 and v["wall_median"] > 0 and v["cpu_median"] > 0 for v in t.values())


