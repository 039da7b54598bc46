"""E12 (ICD Fig. 7): low temperature = noise-free gradient descent for N steps; proxies, command and claims."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ebm_repro import cli
from ebm_repro import config as C
from ebm_repro.claims import NOT_REPRODUCED, REPRODUCED, SMOKE
from ebm_repro.config import ConfigError, SamplerConfig
from ebm_repro.experiments import low_temperature as LT
from ebm_repro.params import load_params
from tests.experiments.run_helpers import ROOT
from tests.experiments.tiny_runs import tiny_world


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def quadratic(a: float, m: torch.Tensor):
    """E(x) = a / 2 |x - m|^2 per chain: gradient a (x - m), minimum at m."""
    return lambda x: 0.5 * a * (x - m).pow(2).flatten(1).sum(1)


# ----------------------------------------------------------------------------- descent
def test_descent_on_a_quadratic_follows_the_closed_form_and_reaches_the_minimum():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 5, 5, generator=g)
    m = 0.2 + 0.6 * torch.rand(1, 3, 5, 5, generator=g)     # inside [0, 1]: the clamp never acts
    a, lam = 1.0, 0.1
    cfg = SamplerConfig(n_steps=5, step_size=lam, noise_std=0.0, grad_clip=0.0, clamp=True)
    x, steps, energies = LT.descend(quadratic(a, m), x0, cfg, log_every=2)
    # x_t - m = (1 - lam a)^t (x_0 - m); E_t = a / 2 (1 - lam a)^(2t) |x_0 - m|^2
    assert torch.allclose(x, m + 0.9 ** 5 * (x0 - m), atol=1e-6)
    assert steps == [0, 2, 4, 5]
    e0 = 0.5 * a * (x0 - m).pow(2).flatten(1).sum(1).mean().item()
    assert energies == pytest.approx([e0 * 0.81 ** t for t in steps], rel=1e-5)
    x, _, _ = LT.descend(quadratic(a, m), x0, dataclasses.replace(cfg, n_steps=1000), log_every=100)
    assert torch.allclose(x, m.expand_as(x), atol=1e-6)    # 0.9^1000 ~ 1e-46: at the minimum


def test_descent_with_the_gradient_clip_moves_at_most_step_times_clip():
    # start 0.505 above m, a = 1, step 0.1, clip 0.1: the gradient 0.505 is clipped, so 40 steps of 0.01 bring the
    # gap to 0.105; step 41 is still clipped (-> 0.095), after that (1 - 0.1)^n
    m = torch.full((1, 1, 2, 2), 0.3)
    x0 = m + 0.505
    cfg = SamplerConfig(n_steps=60, step_size=0.1, noise_std=0.0, grad_clip=0.1, clamp=True)
    x, _, _ = LT.descend(quadratic(1.0, m), x0, cfg, log_every=60)
    assert torch.allclose(x - m, torch.full_like(x, 0.095 * 0.9 ** 19), atol=1e-6)


def test_descent_is_noise_free_and_uses_the_test_time_step(params):
    ts = C.resolve(params, "igebm_uncond", setting="paper").hp.test_sampling
    cfg = LT.descent_config(ts, 7)
    assert (cfg.n_steps, cfg.step_size, cfg.grad_clip, cfg.noise_std, cfg.clamp) == (7, ts.step_size, ts.grad_clip,
                                                                                      0.0, True)
    m = torch.full((1, 3, 4, 4), 0.5)
    x0 = torch.rand(2, 3, 4, 4)
    runs = []
    for seed in (1, 2):  # different random streams, identical paths: no noise is drawn into x
        torch.manual_seed(seed)
        runs.append(LT.descend(quadratic(0.01, m), x0, cfg, 3)[0])
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="noise-free"):
        LT.descend(quadratic(1.0, m), x0, dataclasses.replace(cfg, noise_std=0.005), 3)


def test_clipped_share_counts_values_at_0_and_255():
    img = np.array([[0, 1, 254, 255], [255, 128, 0, 7]], np.uint8)
    assert LT.clipped_share(img) == 4 / 8


def test_config_checks_sizes_and_one_dataset(params):
    p = json.loads(json.dumps(params))
    p["low_temperature"]["smoke"]["n_show"] = p["low_temperature"]["smoke"]["n_samples"] + 1
    with pytest.raises(ConfigError, match="n_show"):
        LT.check(p)
    p = json.loads(json.dumps(params))
    p["low_temperature"]["paper"]["baseline"] = "icd_trunc_last"   # MNIST
    with pytest.raises(ConfigError, match="different datasets"):
        LT.check(p)


# ----------------------------------------------------------------------------- command and claims
def test_command_descends_from_the_samples_and_scores_both_variants(tmp_path):
    w = tiny_world(tmp_path)
    out, summary = tmp_path / "lt.png", tmp_path / "lt.json"
    cli.main(["plot-low-temperature", "--params", str(w["params"]), "--models", str(w["models"]["icd"]),
              str(w["models"]["igebm_uncond"]), "--samples", str(w["samples"]["icd"]),
              str(w["samples"]["igebm_uncond"]),
              "--data", str(w["data"]), "--feature-net", str(w["feature_net"]), "--out", str(out),
              "--summary", str(summary)])
    s = json.loads(summary.read_text())
    for v in ("icd", "igebm_uncond"):
        r = s["variants"][v]
        ts = C.resolve(w["p"], v).hp.test_sampling
        assert (r["step_size"], r["grad_clip"]) == (ts.step_size, ts.grad_clip)
        assert r["steps"] == [0, 2, 3] and len(r["energies"]) == 3
        assert 1.0 <= r["metrics"]["IS_mean"] <= 2.0 and r["metrics"]["n_samples"] == 4  # 2 splits of 2
        assert r["metrics"]["n_reference"] == 50
    # the start images are the samples: uniform noise puts 2/256 of its values at 0 or 255
    assert s["variants"]["icd"]["start_clipped"] == pytest.approx(2 / 256, abs=0.01)
    assert out.stat().st_size > 10_000 and out.with_suffix(".pdf").exists()


def _summary(root, setting, is_ours, is_base, clip_ours, clip_base, real=0.05):
    d = root / "results" / "low_temperature"
    d.mkdir(parents=True)
    v = lambda i, c: {"metrics": {"IS_mean": i}, "clipped": c}  # noqa: E731
    (d / "summary.json").write_text(json.dumps({"setting": setting, "real_train_clipped": real, "variants": {
        "icd": v(is_ours, clip_ours), "igebm_uncond": v(is_base, clip_base)}}))


def test_claims_compare_is_and_clipped_share(tmp_path, params):
    p = {**params, "setting": "paper"}
    assert all(c.verdict.startswith("not run:") for c in LT.claims(p, f"{tmp_path}/"))
    _summary(tmp_path, "paper", 6.0, 4.0, 0.30, 0.10)     # ICD: higher IS but further from the real share
    got = {c.key: c.verdict for c in LT.claims(p, f"{tmp_path}/")}
    assert got == {"qualitative/low_temperature/is": REPRODUCED, "qualitative/low_temperature/hues": NOT_REPRODUCED}
    smoke = tmp_path / "s"
    _summary(smoke, "smoke", 6.0, 4.0, 0.06, 0.10)
    assert {c.verdict for c in LT.claims({**params, "setting": "smoke"}, f"{smoke}/")} == {SMOKE}
