"""2-D toys: every training recipe learns the density, and a broken objective does not (so the check can fail)."""
import copy
import dataclasses
import json
import math

import pytest
import torch
import yaml

from ebm_repro.cli import main
from ebm_repro.experiments.toy2d import run as T
from ebm_repro.config import PARAMS_PATH, ConfigError
from ebm_repro import losses as L
from ebm_repro.losses import cd_loss
from ebm_repro.sampling import make_langevin
from ebm_repro.train import Learner
from ebm_repro.params import load_params, validate_params

# Thresholds on kl_samples = KL(true || histogram of 2000 test-time samples) in nats on 16x16 cells, measured at
# the size below (600 iterations of train.Learner.train_step, the image Trainer's step) for training seeds 0-5
# (the test runs seed 0; seeds 0-2 gave the same numbers as the toy loop that preceded Learner, bit for bit):
#   gauss8  learned: igebm_cd 0.15-0.39 (seed 0: 0.24), igebm_ml 0.16-0.32 (0.24), icd_cd 0.12-0.24 (0.16),
#                    icd_kl 0.26-0.31 (0.28).
#           references: true samples 0.05, modes sqrt(2) too wide 0.18, the 8 modes smeared into one ring 0.68-0.72,
#           uniform 1.89; broken (CD sign flipped, igebm_cd): 4.6.
#   rings   learned: igebm_cd 0.12-0.18 (0.18), igebm_ml 0.13-0.22 (0.20), icd_cd 0.12-0.16 (0.12),
#                    icd_kl 0.21-0.27 (0.24).
#           references: true 0.06, both rings twice too wide 0.26-0.28, one annulus over both rings 0.33-0.37,
#           uniform 0.91; broken (CD sign flipped, icd_kl): 3.1-3.6.
# KL_SHAPE_BOUND: passing gauss8 needs the separate modes (0.40 < ring 0.68), passing rings two resolved rings
# (0.31 < annulus 0.33), at most about twice too wide. KL_SAMPLES_MAX tightens that per recipe to 1.25 x its worst
# seed (rounded to 0.01) where this is lower. Wiring bugs measured against it (seeds 0-5):
#   buffer never re-initialising (reinit_frac 0 in buffer.sample): rings igebm_cd 0.19-0.28 (seed 0: 0.28 > 0.22,
#     so the test fails); the other recipes stay inside their spread. test_buffer.py's re-init tests see it always.
#   Adam's std clip off, 10x too wide, or v_hat in place of sqrt(v_hat) (igebm recipes, seeds 0-2): all within the
#     learned spread (the clip rarely binds at toy scale: seeds 1-2 unchanged by removing it). test_optim.py's hand
#     computation is the check for it.
KL_SHAPE_BOUND = {"gauss8": 0.40, "rings": 0.31}
KL_SAMPLES_MAX = {("gauss8", "igebm_cd"): 0.40, ("gauss8", "igebm_ml"): 0.40, ("gauss8", "icd_cd"): 0.30,
                  ("gauss8", "icd_kl"): 0.39,
                  ("rings", "igebm_cd"): 0.22, ("rings", "igebm_ml"): 0.27, ("rings", "icd_cd"): 0.20,
                  ("rings", "icd_kl"): 0.31}


@pytest.fixture(scope="module")
def cfg():
    """params.yaml's toy2d recipes (smoke setting) at 600 iterations, pinned: the thresholds were measured so."""
    c = T.toy2d_config(load_params(), "smoke")
    return dataclasses.replace(c, train=dataclasses.replace(c.train, n_iters=600, seed=0),
                               eval=dataclasses.replace(c.eval, bins=16, n_samples=2000, sample_steps=100))


# ----------------------------------------------------------------------------- the pieces
@pytest.mark.parametrize("name", T.DENSITIES)
def test_density_samples_match_the_density_the_distances_use(cfg, name):
    g = torch.Generator().manual_seed(0)
    x = T.sample_density(name, 20000, cfg.density, g)
    cells = T.cell_log_probs(name, cfg.density, 16)
    # 20000 samples on 256 cells: smoothing and sampling noise give 0.005-0.006 nats (seeds 0-2); equal ring
    # weights (instead of proportional to the radius) give 0.07, Gaussians 20% too wide 0.05.
    assert T.sample_kl(x, cells, 16) < 0.015
    assert x.min() > 0 and x.max() < 1  # the targets lie inside the clamped square


def test_grid_kl_is_zero_for_equal_densities_and_ignores_normalisation():
    log_p = torch.randn(100)
    assert T.grid_kl(log_p, log_p + 3.0) == pytest.approx(0.0, abs=1e-6)
    assert T.grid_kl(log_p, torch.zeros(100)) > 0


def test_mmd_separates_a_shifted_sample():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(500, 2, generator=g), torch.rand(500, 2, generator=g)
    assert abs(T.mmd2(x, y)) < 0.01 < T.mmd2(x, y + 0.2)


def test_temperature_is_the_one_the_sampler_targets(cfg):
    # E = T |x - mu|^2 / (2 s^2) under the toy sampler must give std s, so exp(-E/T) is the sampled density.
    s_cfg = cfg.recipes.icd_cd.sampler
    temp, s = T.temperature(s_cfg), 0.1
    energy = lambda x: temp * ((x - 0.5) ** 2).sum(1) / (2 * s * s)  # noqa: E731
    x = make_langevin(dataclasses.replace(s_cfg, n_steps=400))(energy, torch.rand(4000, 2)).x
    # discretisation: x' - mu = (1 - a)(x - mu + noise), a = noise^2 / (2 s^2) = 0.02 -> std 1% below s;
    # standard error of the std with 8000 coordinates ~0.8%. A wrong T (e.g. noise^2 / step) is off by 30%.
    assert abs(x.std().item() / s - 1) < 0.05


def test_toy_energy_runs_the_projects_mlp2d(cfg):
    model = T.ToyEnergy(cfg.model, cfg.recipes.igebm_cd)
    assert model.net.cfg.arch == "mlp2d" and model(torch.rand(5, 2)).shape == (5,)


def test_toy_steps_are_the_trainers_on_plain_points(cfg):
    # The image-only switches are off for points: the positives reach the energy exactly as the density drew
    # them (no dequantisation noise) and the chains start from the buffer's draw (no augmentation).
    learner = T.toy_learner("gauss8", cfg.recipes.icd_kl, cfg)
    assert isinstance(learner, Learner)
    g = torch.Generator().set_state(learner.positives.g.get_state())
    points = T.sample_density("gauss8", cfg.train.batch_size, cfg.density, g)               # (B, 2)
    seen, starts = [], {}
    learner.model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    draw, sample = learner.buffer.sample, learner.sample
    learner.buffer.sample = lambda n: starts.setdefault("drawn", draw(n))
    learner.sample = lambda energy, x0, **kw: (starts.setdefault("x0", x0), sample(energy, x0, **kw))[1]
    learner.train_step()
    assert any(x.shape == points.shape and torch.equal(x, points) for x in seen)
    assert torch.equal(starts["x0"], starts["drawn"][0])


# ----------------------------------------------------------------------------- learning
def _train_eval(cfg, density, recipe):
    run = T.train_toy(density, getattr(cfg.recipes, recipe), cfg)
    return T.evaluate(run, density, cfg)


@pytest.mark.parametrize("density", T.DENSITIES)
@pytest.mark.parametrize("recipe", T.RECIPES)
def test_each_recipe_learns_each_density(cfg, density, recipe):
    m = _train_eval(cfg, density, recipe)
    assert m["kl_samples"] < KL_SAMPLES_MAX[density, recipe], (density, recipe, m["kl_samples"])


@pytest.mark.parametrize("density, recipe", [("gauss8", "igebm_cd"), ("rings", "icd_kl")])
def test_flipped_cd_sign_does_not_learn(cfg, monkeypatch, density, recipe):
    # The same loop with L = -(mean E(x+) - mean E(x-)): data is pushed up the energy and the chains leave it.
    # For icd_kl the L_opt / L_ent terms stay as they are: alone they do not fit the data either.
    monkeypatch.setitem(L.OBJECTIVES, "cd", lambda e_pos, e_neg: -cd_loss(e_pos, e_neg))
    m = _train_eval(cfg, density, recipe)
    assert m["kl_samples"] > KL_SHAPE_BOUND[density], (density, recipe, m["kl_samples"])


# ----------------------------------------------------------------------------- config and CLI
def test_toy2d_block_is_checked_naming_the_key():
    params = load_params()
    bad = copy.deepcopy(params)
    bad["toy2d"]["smoke"]["train"]["n_iters"] = 0
    with pytest.raises(ConfigError, match="toy2d.smoke.train.n_iters"):
        validate_params(bad)
    bad = copy.deepcopy(params)
    bad["toy2d"]["paper"]["recipes"]["icd_kl"]["loss"]["kl_opt_chains"] = 10 ** 6
    with pytest.raises(ConfigError, match="recipes.icd_kl.loss.kl_opt_chains"):
        T.toy2d_config(bad, "paper")
    bad = copy.deepcopy(params)
    bad["toy2d"]["smoke"]["density"] = {"ring_outer": 0.45}
    with pytest.raises(ConfigError, match="toy2d density"):
        T.toy2d_config(bad, "smoke")


def test_cli_writes_figure_and_metrics(tmp_path):
    params = yaml.safe_load(PARAMS_PATH.read_text())
    params["toy2d"]["smoke"] = {"train": {"n_iters": 3, "log_every": 2},
                                "eval": {"grid": 16, "bins": 8, "n_samples": 64, "sample_steps": 2},
                                "recipes": {r: {"optim": {"ema_decay": 0.1}} for r in ("icd_cd", "icd_kl")}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    png, js = tmp_path / "fig" / "toy2d.png", tmp_path / "toy2d" / "metrics.json"
    main(["toy2d", "--setting", "smoke", "--params", str(tmp_path / "params.yaml"), "--threads", "1",
            "--out-png", str(png), "--out-json", str(js)])
    assert png.stat().st_size > 0 and png.with_suffix(".pdf").stat().st_size > 0
    out = json.loads(js.read_text())
    for dens in T.DENSITIES:
        assert set(out["metrics"][dens]) == {"reference", *T.RECIPES}
        m = out["metrics"][dens]["icd_kl"]
        assert all(math.isfinite(m[k]) for k in ("kl_samples", "mmd2", "kl_energy"))
        assert [p["step"] for p in m["curve"]] == [2, 3]
    prov = json.loads((png.parent / "toy2d.png.provenance.json").read_text())
    assert prov["experiment"] == "toy2d" and str(tmp_path / "params.yaml") in prov["inputs"]
