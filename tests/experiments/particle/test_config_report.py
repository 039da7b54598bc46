"""params.yaml `particle:` block: schema and cross-key checks; report statistics and outputs."""
import copy

import numpy as np
import pytest

from ebm_repro.config import ConfigError
from ebm_repro.experiments.particle.config import particle_config
from ebm_repro.experiments.particle.report import claims, summarise, write_figure, write_summary, write_table
from ebm_repro.params import validate_params

from .conftest import replace


def test_both_settings_resolve(params):
    paper, smoke = particle_config(params, "paper"), particle_config(params, "smoke")
    assert paper.data.n_train == 4500 and paper.data.n_test == 500 and paper.data.n_steps == 500
    assert paper.langevin.n_steps == 20 and paper.langevin.noise_std == 0.005
    assert paper.mppi.n_steps == 30 and paper.mppi.n_samples == 5 and paper.train.batch_size == 256
    assert paper.train.beta1 == 0.0 and paper.train.n_seeds >= 3
    assert smoke.data.n_train < paper.data.n_train and smoke.physics == paper.physics


@pytest.mark.parametrize("path, value", [(("paper", "langevin", "noise_std"), -1.0),
                                         (("paper", "net", "oops"), 1),
                                         (("smoke", "train", "ml_weighting"), "max")])
def test_schema_rejects_bad_values(params, path, value):
    bad = copy.deepcopy(params)
    d = bad["particle"]
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value
    with pytest.raises(ConfigError, match="particle"):
        validate_params(bad)


def test_cross_key_checks(params):
    bad = copy.deepcopy(params)
    bad["particle"]["smoke"]["eval"]["horizon"] = 1000
    with pytest.raises(ConfigError, match="eval.horizon"):
        particle_config(bad, "smoke")
    with pytest.raises(ConfigError, match="setting"):
        particle_config(params, "huge")


def test_train_hash_tracks_only_what_a_model_depends_on(smoke_cfg):
    more_ld = replace(smoke_cfg, langevin={"n_steps": 7})
    assert more_ld.train_hash("feedforward") == smoke_cfg.train_hash("feedforward")
    assert more_ld.train_hash("ebm_mppi") == smoke_cfg.train_hash("ebm_mppi")
    assert more_ld.train_hash("ebm_ld") != smoke_cfg.train_hash("ebm_ld")
    wider = replace(smoke_cfg, net={"channels": 8})
    assert all(wider.train_hash(k) != smoke_cfg.train_hash(k) for k in ("feedforward", "ebm_ld", "ebm_mppi"))


def _runs():
    rng = np.random.default_rng(0)
    h = np.arange(1, 101)
    base = {"feedforward": 1e-5 * h**2, "ebm_ld": 3e-5 * h**1.5, "ebm_mppi": 3e-5 * h**1.2}
    return {k: summarise(k, v * rng.uniform(0.5, 1.5, (3, 20, 2, 100))) for k, v in base.items()}


def test_summarise_standard_errors():
    mse = np.zeros((3, 4, 2, 5))
    mse[:, :, :, :] = np.array([1.0, 2.0, 3.0])[:, None, None, None]  # seeds differ, trajectories equal
    c = summarise("ebm_ld", mse)
    np.testing.assert_allclose(c.mean, 2.0)
    np.testing.assert_allclose(c.se_seed, 1.0 / np.sqrt(3))
    np.testing.assert_allclose(c.se_traj, 0.0)


def test_claims_and_outputs(tmp_path, smoke_cfg):
    runs = _runs()
    ok = claims(runs)
    assert ok["ebm_ld_higher_1step_than_ff"] and ok["ebm_mppi_lower_last_step_than_ff"]
    assert ok["ebm_mppi_lower_last_step_than_ld"]
    cfg = replace(smoke_cfg, eval={"horizon": 100})
    refs = {"constant_position": np.linspace(1e-4, 1e-1, 100)}
    write_table(runs, refs, cfg, "smoke", tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert all(f"h={h}" in text for h in (1, 5, 10, 20, 50, 100)) and "MPPI 100-step error lower than LD: yes" in text
    assert "| *reference: ball stands still* | 1.00e-04 |" in text
    write_figure(runs, refs, cfg, "smoke", tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 1000 and (tmp_path / "f.pdf").stat().st_size > 1000
    write_summary(runs, refs, tmp_path / "s.json")
    assert '"h100"' in (tmp_path / "s.json").read_text()
