"""E14 figure (ICD Fig. 13): gradient norms of L_KL vs L_CD."""
from __future__ import annotations


import pytest

from ebm_repro import runs as R
from ebm_repro.params import load_params
from ebm_repro.experiments import kl_grad as KG
from tests.experiments.run_helpers import ROOT, write_run


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


# ----------------------------------------------------------------------------- figures
def test_kl_grad_figure_writes_png_pdf_and_median_ratio(tmp_path, params):
    d = write_run(tmp_path, params, "icd", [0.1] * 4,
                  extra_cols={"grad_cd": [1.0, 2.0, 2.0, 4.0], "grad_kl": [0.5, 1.0, 3.0, 2.0]})
    s = KG.kl_grad_figure(R.load_run(d), tmp_path / "kl_grad.png")
    assert s["median_ratio_kl_over_cd"] == 0.5 and s["n_points"] == 4
    assert (tmp_path / "kl_grad.png").stat().st_size > 1000 and (tmp_path / "kl_grad.pdf").exists()


def test_kl_grad_figure_needs_l_kl(tmp_path, params):
    d = write_run(tmp_path, params, "icd_abl_cd", [0.1], extra_cols={"grad_cd": [1.0], "grad_kl": [0.0]})
    with pytest.raises(ValueError, match="L_KL is off"):
        KG.kl_grad_figure(R.load_run(d), tmp_path / "x.png")


