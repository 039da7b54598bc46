"""The plateau stopping rule: hand-counted stops on scripted validation curves; best weights are kept."""
import math

import numpy as np
import pytest
import torch

from ebm_repro.experiments.particle import train as train_mod
from ebm_repro.experiments.particle.plateau import Plateau

from .conftest import replace


def run(errors, patience, min_rel):
    """Feed errors at iterations 1, 2, ... -> (iteration of the stop or None, the rule)."""
    rule = Plateau(patience, min_rel)
    for i, e in enumerate(errors, 1):
        if rule.update(i, e)[1]:
            return i, rule
    return None, rule


def test_stop_after_patience_evaluations_without_relative_improvement():
    # Hand count, min_rel 0.05 (an improvement must beat 0.95 x the last improving error), patience 3:
    # 10 improves; 9 < 9.5 improves; 8.9, 8.85 > 8.55: wait 1, 2; 7 improves; 7.1, 7.05, 6.99 > 6.65: wait 1, 2, 3.
    stop, rule = run([10, 9, 8.9, 8.85, 7, 7.1, 7.05, 6.99, 1.0], patience=3, min_rel=0.05)
    assert stop == 8
    assert rule.ref == 7 and rule.wait == 3
    # The best weights are those of the lowest error at any margin: 6.99 at evaluation 8, not 7 at evaluation 5.
    assert rule.best == 6.99 and rule.best_iter == 8


def test_steady_improvement_never_stops_and_zero_margin_counts_any_decrease():
    assert run([1.0 * 0.9**i for i in range(50)], patience=1, min_rel=0.05)[0] is None
    stop, _ = run([3, 2, 2, 1.999], patience=2, min_rel=0.0)  # 2 == 2 is no improvement, 1.999 is
    assert stop is None
    assert run([3, 2, 2, 2], patience=2, min_rel=0.0)[0] == 4


def test_non_finite_errors_never_improve_nor_become_best():
    stop, rule = run([1.0, math.nan, math.inf], patience=2, min_rel=0.01)
    assert stop == 3 and rule.best == 1.0 and rule.best_iter == 1
    first = Plateau(2, 0.1)
    assert first.update(5, math.nan) == (False, False) and first.best_iter == 0


def scripted(monkeypatch, errors):
    """Make train's validation return the given errors in turn."""
    it = iter(errors)
    monkeypatch.setattr(train_mod, "one_step_mse", lambda *a, **k: next(it))


def test_train_stops_on_the_rule_and_returns_the_best_weights(monkeypatch, smoke_cfg):
    cfg = replace(smoke_cfg, train={"batch_size": 8, "max_iters": 40, "eval_every": 2, "patience": 2,
                                    "min_rel_improvement": 0.1, "val_traj": 2, "val_windows": 4})
    traj = np.random.default_rng(0).uniform(0.1, 0.9, (6, 20, 2)).astype(np.float32)
    # Validations at iterations 2, 4, 6, 8: 5 (improves), 3 (improves, best), 4, 4 (wait 1, 2) -> stop at 8.
    scripted(monkeypatch, [5.0, 3.0, 4.0, 4.0])
    model, hist, summary = train_mod.train("feedforward", cfg, traj, seed=0, log=lambda s: None)
    assert summary == {"iters": 8, "best_iter": 4, "best_val_mse": 3.0, "stopped": "plateau"}
    assert [h["iter"] for h in hist] == [2, 4, 6, 8] and [h["best"] for h in hist] == [True, True, False, False]
    # The same seed stopped at iteration 4 (cap) holds the weights the plateau run must have returned.
    scripted(monkeypatch, [5.0, 3.0])
    at4, _, s4 = train_mod.train("feedforward", replace(cfg, train={"max_iters": 4}), traj, seed=0, log=lambda s: None)
    assert s4["stopped"] == "max_iters" and s4["iters"] == 4
    for a, b in zip(model.state_dict().values(), at4.state_dict().values()):
        torch.testing.assert_close(a, b)
    # ... and not those of iteration 8, where it stopped (a run whose error falls to the end keeps those).
    scripted(monkeypatch, [5.0, 4.0, 3.0, 2.0])
    last, _, s8 = train_mod.train("feedforward", replace(cfg, train={"max_iters": 8}), traj, seed=0, log=lambda s: None)
    assert s8["best_iter"] == 8
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), last.state_dict().values()))


def test_validation_split_holds_out_the_last_trajectories(smoke_cfg):
    cfg = replace(smoke_cfg, train={"val_traj": 2, "val_windows": 50})
    traj = np.zeros((5, 12, 2), np.float32)
    traj[:, :, 0] = np.arange(5)[:, None]  # x = trajectory index, y = time index
    traj[:, :, 1] = np.arange(12)[None, :]
    fit, (past, nxt) = train_mod.validation_windows(traj, cfg)
    np.testing.assert_array_equal(fit, traj[:3])
    assert past.shape == (50, 3, 2) and nxt.shape == (50, 2)
    assert set(past[..., 0].unique().tolist()) == {3.0, 4.0}  # both held-out trajectories, nothing else
    torch.testing.assert_close(nxt[:, 1], past[:, -1, 1] + 1)
    again = train_mod.validation_windows(traj, cfg)[1]  # fixed windows (val_seed), not redrawn per call
    torch.testing.assert_close(again[0], past)
    torch.testing.assert_close(again[1], nxt)
    with pytest.raises(ValueError, match="val_traj"):
        train_mod.validation_windows(traj[:2], cfg)


@pytest.mark.parametrize("kind", ["feedforward", "ebm_ld", "ebm_mppi"])
def test_one_step_mse_is_deterministic_per_weights(smoke_cfg, kind):
    from ebm_repro.experiments.particle.models import build_model

    torch.manual_seed(0)
    model = build_model(kind, smoke_cfg.net, 1.0)
    past, nxt = torch.rand(16, 3, 2), torch.rand(16, 2)
    a = train_mod.one_step_mse(kind, model, past, nxt, smoke_cfg)
    assert a == train_mod.one_step_mse(kind, model, past, nxt, smoke_cfg) and np.isfinite(a)
    assert all(p.requires_grad for p in model.parameters())  # validation leaves the model trainable
