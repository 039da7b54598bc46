"""Diagnosis numbers on hand-made rollouts and a hand-made energy whose answers are known."""
import numpy as np
import torch
from torch import nn

from ebm_repro.experiments.particle.config import CONTEXT
from ebm_repro.experiments.particle.diagnose import energy_probe, one_step_errors, probe_windows, rollout_stats
from ebm_repro.experiments.particle.evaluate import rollout_targets

from .conftest import replace


class ConstantVelocityEnergy(nn.Module):
    """E(past, y) = 100 |y - (2 x_last - x_prev)|^2: lowest where the ball keeps its velocity (through walls too)."""

    def forward(self, past, y):
        return 100 * ((y - (2 * past[:, -1] - past[:, -2])) ** 2).sum(-1)


def lines(n_steps=30):
    """(3, n_steps, 2): balls moving right at 0.01 per step from x = 0.1, at three heights."""
    t = np.arange(n_steps, dtype=np.float64)
    return np.stack([np.stack([0.1 + 0.01 * t, np.full_like(t, y)], -1) for y in (0.2, 0.5, 0.8)])


def test_rollout_stats_exact_double_speed_and_box_exit(smoke_cfg):
    cfg = replace(smoke_cfg, eval={"horizon": 10, "n_starts": 1})
    test = lines()
    true = rollout_targets(test, cfg)  # (3, 1, 10, 2)
    st = rollout_stats(true[None], test, cfg)  # perfect rollouts
    assert st["ever_left_box"] == 0 and st["h1"]["median_step_ratio"] == 1.0 and st["h10"]["outside_box"] == 0
    last = test[:, CONTEXT - 1][:, None, None]  # (3, 1, 1, 2)
    fast = last + 2 * (true - last)  # every step twice as long
    assert np.isclose(rollout_stats(fast[None], test, cfg)["h10"]["median_step_ratio"], 2.0)
    out = true.copy()
    out[0, 0, 4:, 0] = 1.5  # trajectory 0 leaves the box at horizon step 5
    st = rollout_stats(out[None], test, cfg)
    assert st["ever_left_box"] == 1 / 3 and st["median_first_exit"] == 5 and st["h10"]["outside_box"] == 1 / 3
    assert st["exit_within_3_of_first_bounce"] == 0.0  # these straight lines never bounce


def test_bounce_windows_reverse_a_velocity_component(physics):
    from ebm_repro.experiments.particle.simulate import simulate

    test = simulate(physics, 20, 200, np.random.default_rng(3)).astype(np.float32)
    past, nxt = probe_windows(test, 64, seed=0, bounce=True)
    prev_step, step = past[:, -1] - past[:, -2], nxt - past[:, -1]
    assert ((prev_step * step) < 0).any(-1).all()
    past, nxt = probe_windows(test, 64, seed=0, bounce=False)
    assert not ((past[:, -1] - past[:, -2]) * (nxt - past[:, -1]) < 0).any()


def test_energy_probe_of_a_constant_velocity_energy(smoke_cfg):
    model = ConstantVelocityEnergy()
    test = lines(10).astype(np.float32)
    past, nxt = torch.from_numpy(test[:, :3]), torch.from_numpy(test[:, 3])
    p = energy_probe(model, past, nxt, box=1.0)
    assert abs(p["line_argmin_s_median"] - 1.0) < 0.03  # LINE_S spacing 0.025
    assert p["local_argmin_dist"] < 1e-6 and p["line_dE"]["0"] > 0 and p["line_dE"]["2"] > 0
    assert p["outside_below_true_frac"] == 0 and p["outside_min_dE"] > 0
    # At a wall this energy prefers flying on: the bounce probe says so for every window.
    bp = torch.tensor([[[0.91, 0.5], [0.93, 0.5], [0.95, 0.5]]]).repeat(4, 1, 1)
    bn = torch.tensor([[0.93, 0.5]]).repeat(4, 1)  # reflected at x = 0.95
    o = one_step_errors("ebm_ld", model, (past, nxt), (bp, bn), smoke_cfg)
    assert o["bounce_straight_below_true_frac"] == 1.0
    np.testing.assert_allclose(o["mse_bounce_straight_line"], (0.97 - 0.93) ** 2 / 2, rtol=1e-5)
