"""Trained runs: the stability verdict (ICD §3.1 / Fig. 8) from train logs."""
from __future__ import annotations

import math

import pytest

from ebm_repro import runs as R
from ebm_repro.params import load_params
from tests.experiments.run_helpers import BOUND, LATE, ROOT, write_run


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("gaps, stable, word", [
    ([0.9, 0.8, 0.1, -0.2], True, "stable"),        # an early transient is outside the late window
    ([0.1, 0.1, 0.2, -0.6], False, "unstable"),     # one late spike past the bound
    ([0.1, 0.1, 0.5, -0.5], True, "stable"),        # the bound itself is still bounded
    ([0.1, 0.1, 0.2, math.nan], False, "non-finite"),
])
def test_stability_verdict_uses_the_late_window_and_the_bound(tmp_path, params, gaps, stable, word):
    run = R.load_run(write_run(tmp_path, params, "icd_abl_cd", gaps))
    v = R.stability_verdict(run, BOUND, LATE)
    assert v.stable is stable and word in v.text


def test_aborted_run_is_unstable_whatever_its_gaps(tmp_path, params):
    div = {"step": 12, "reason": "|mean E(x+)| = 11 > train.max_abs_energy = 10.0 at step 12", "last_good_step": 10}
    run = R.load_run(write_run(tmp_path, params, "icd_abl_cd", [0.0, 0.0], diverged=div))
    v = R.stability_verdict(run, BOUND, LATE)
    assert not v.stable and "aborted at step 12" in v.text


def test_run_without_logged_gap_cannot_be_judged(tmp_path, params):
    d = write_run(tmp_path, params, "icd_abl_cd", [0.1])
    (d / "train_log.csv").write_text("gap,step\n")
    with pytest.raises(ValueError, match="no logged gap"):
        R.stability_verdict(R.load_run(d), BOUND, LATE)




def test_load_scores_returns_the_arrays_and_refuses_other_rows_or_setting(tmp_path):
    import json

    import numpy as np
    import pytest

    from ebm_repro.runs import load_scores

    path = tmp_path / "scores.npz"
    np.savez(path, a=np.arange(3))
    path.with_suffix(".json").write_text(json.dumps({"rows": [{"variant": "v"}], "setting": "smoke"}))
    arrays, meta = load_scores(path, [{"variant": "v"}], "smoke", "ood", "score-ood")
    assert arrays["a"].tolist() == [0, 1, 2] and meta["setting"] == "smoke"
    with pytest.raises(SystemExit, match=r"other ood\.rows or setting; rerun score-ood"):
        load_scores(path, [{"variant": "w"}], "smoke", "ood", "score-ood")
    with pytest.raises(SystemExit, match="rerun score-likelihood"):
        load_scores(path, [{"variant": "v"}], "paper", "likelihood", "score-likelihood")
