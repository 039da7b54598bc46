"""E4 figure (ICD Fig. 8): buffer IS and energy gap over training."""
from __future__ import annotations


import pytest

from ebm_repro import runs as R
from ebm_repro.params import load_params
from ebm_repro.experiments import stability as ST
from tests.experiments.run_helpers import BOUND, LATE, ROOT, write_run


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_stability_figure_needs_is_over_training(tmp_path, params):
    curves = params["stability"]["curves"]
    runs = [R.load_run(write_run(tmp_path, params, c["variant"], [0.1, 0.2, 0.3, 0.2], eval_is={10: 2.0, 20: 2.5}))
            for c in curves]
    ST.stability_figure(runs, [c["label"] for c in curves], BOUND, LATE, tmp_path / "stab.png")
    assert (tmp_path / "stab.png").stat().st_size > 1000 and (tmp_path / "stab.pdf").exists()
    bare = R.load_run(write_run(tmp_path / "b", params, curves[0]["variant"], [0.1]))
    with pytest.raises(ValueError, match="eval_every"):
        ST.stability_figure([bare], ["x"], BOUND, LATE, tmp_path / "s2.png")


