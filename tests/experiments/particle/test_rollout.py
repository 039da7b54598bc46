"""Rollout loop: predictions are fed back; MSE array shapes and start times."""
import numpy as np
import torch

from ebm_repro.experiments.particle.config import CONTEXT
from ebm_repro.experiments.particle.evaluate import BASELINES, rollout, rollout_mse, start_times
from ebm_repro.experiments.particle.models import build_model

from .conftest import replace


def test_rollout_feeds_predictions_back():
    past = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]])  # (1, 3, 2)
    step = lambda p: p[:, -1] + (p[:, -1] - p[:, -2])  # noqa: E731  constant velocity
    pred = rollout(step, past, 4)
    assert pred.shape == (1, 4, 2)
    torch.testing.assert_close(pred[0, :, 0], torch.tensor([3.0, 4.0, 5.0, 6.0]))
    # A predictor that looks at the oldest input would see its own earlier outputs after 3 steps.
    oldest = lambda p: p[:, 0] + 10  # noqa: E731
    pred = rollout(oldest, past, 5)
    torch.testing.assert_close(pred[0, :, 0], torch.tensor([10.0, 11.0, 12.0, 20.0, 21.0]))


def test_start_times_leave_a_full_horizon():
    s = start_times(500, 100, 4)
    assert s[0] == 0 and s[-1] == 500 - CONTEXT - 100 and len(s) == 4


def test_rollout_mse_shapes_for_every_model(smoke_cfg):
    cfg = replace(smoke_cfg, eval={"horizon": 7, "n_starts": 3, "batch_size": 4})
    t = np.arange(30, dtype=np.float32)
    test = np.stack([np.stack([0.1 + 0.01 * t, 0.5 + 0.0 * t], -1)] * 5)  # (5, 30, 2) straight lines
    for kind in ("feedforward", "ebm_ld", "ebm_mppi"):
        torch.manual_seed(0)
        mse = rollout_mse(kind, build_model(kind, cfg.net, 1.0), test, cfg)
        assert mse.shape == (5, 3, 7) and np.isfinite(mse).all()
        if kind != "feedforward":
            # Untrained energy: chains start at the last (fed-back) position and drift, so errors compound.
            assert mse[:, :, -1].mean() > mse[:, :, 0].mean()


def test_constant_velocity_reference_is_exact_on_straight_lines(smoke_cfg):
    cfg = replace(smoke_cfg, eval={"horizon": 10, "n_starts": 2, "batch_size": 4})
    t = np.arange(40, dtype=np.float64)
    test = np.stack([np.stack([0.1 + 0.02 * t, 0.8 - 0.01 * t], -1)] * 3)  # (3, 40, 2)
    np.testing.assert_allclose(rollout_mse("constant_velocity", None, test, cfg), 0.0, atol=1e-20)
    still = rollout_mse("constant_position", None, test, cfg)  # error grows as (h * step)^2
    np.testing.assert_allclose(still[0, 0], ((np.arange(1, 11) * 0.02) ** 2 + (np.arange(1, 11) * 0.01) ** 2) / 2)
    assert set(BASELINES) == {"constant_position", "constant_velocity"}


def test_rollout_mse_matches_the_direct_loop(smoke_cfg):
    """Parity with the pre-refactor evaluate: batched rollouts scored in torch, one generator for all batches."""
    from ebm_repro.experiments.particle.evaluate import make_predictor, rollout_predictions

    cfg = replace(smoke_cfg, eval={"horizon": 6, "n_starts": 2, "batch_size": 3})
    test = np.random.default_rng(0).uniform(0.1, 0.9, (5, 30, 2)).astype(np.float32)
    torch.manual_seed(0)
    model = build_model("ebm_ld", cfg.net, 1.0)
    new = rollout_mse("ebm_ld", model, test, cfg)
    predict = make_predictor("ebm_ld", model, cfg, torch.Generator().manual_seed(cfg.eval.seed))
    old = np.empty((5, 2, 6))
    for j, s in enumerate(start_times(30, 6, 2)):
        for b in range(0, 5, 3):
            seg = torch.from_numpy(test[b:b + 3, s:s + CONTEXT + 6])
            old[b:b + len(seg), j] = ((rollout(predict, seg[:, :CONTEXT], 6) - seg[:, CONTEXT:]) ** 2).mean(-1).numpy()
    np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-12)
    assert rollout_predictions("ebm_ld", model, test, cfg).shape == (5, 2, 6, 2)
