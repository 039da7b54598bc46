"""Fig. 15c networks, losses and a few training iterations of each model."""
import numpy as np
import pytest
import torch

from ebm_repro.experiments.particle.config import ALL_KINDS, MODELS
from ebm_repro.experiments.particle.models import EnergyNet, FeedForwardNet, build_model
from ebm_repro.experiments.particle.sampling import make_sampler
from ebm_repro.experiments.particle.train import ebm_losses, sample_windows, train

from .conftest import replace


def test_shapes_and_every_input_step_matters(smoke_cfg):
    past = torch.rand(5, 3, 2, requires_grad=True)
    nxt = torch.rand(5, 2, requires_grad=True)
    e = EnergyNet(smoke_cfg.net, 1.0)(past, nxt)
    assert e.shape == (5,)
    gp, gn = torch.autograd.grad(e.sum(), (past, nxt))
    assert (gp.abs().sum((0, 2)) > 0).all() and gn.abs().sum() > 0
    y = FeedForwardNet(smoke_cfg.net, 1.0)(past)
    assert y.shape == (5, 2)
    assert isinstance(build_model("ebm_mppi", smoke_cfg.net, 1.0), EnergyNet)


def test_fig15c_variant_sees_positions_only(smoke_cfg):
    net = smoke_cfg.net_for("ebm_ld_fig15c")
    assert net.rel_scale == 0 and not net.ff_residual and smoke_cfg.net_for("ebm_ld") == smoke_cfg.net
    e = build_model("ebm_ld_fig15c", net, 1.0)
    assert isinstance(e, EnergyNet) and e.trunk.fc.in_features == 2  # (x, y) per step, nothing else
    ff = build_model("feedforward_fig15c", smoke_cfg.net_for("feedforward_fig15c"), 1.0)
    past = torch.rand(4, 3, 2)
    # Plain output: the dense layer's value in [-1, 1] coordinates mapped back to the box, no residual.
    torch.testing.assert_close(ff(past), (ff.dense(ff.trunk(past)) + 1) * 0.5)
    with pytest.raises(ValueError, match="unknown particle model kind"):
        build_model("ebm_hmc", net, 1.0)


def test_sample_windows_are_consecutive_positions():
    traj = np.arange(2 * 10 * 2, dtype=np.float32).reshape(2, 10, 2)
    past, nxt = sample_windows(traj, 16, np.random.default_rng(0))
    assert past.shape == (16, 3, 2) and nxt.shape == (16, 2)
    # In this trajectory consecutive positions differ by exactly 2 in each coordinate.
    torch.testing.assert_close(nxt - past[:, -1], torch.full((16, 2), 2.0))


@pytest.mark.parametrize("kind", ["ebm_ld", "ebm_mppi"])
def test_kl_loss_reaches_parameters_only_through_the_sampler(smoke_cfg, kind):
    torch.manual_seed(0)
    model = EnergyNet(smoke_cfg.net, 1.0)
    past, pos = torch.rand(8, 3, 2), torch.rand(8, 2)
    sampler = make_sampler(kind, smoke_cfg.langevin, smoke_cfg.mppi)
    out = ebm_losses(model, sampler, past, pos, smoke_cfg, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in out.values())
    grads = torch.autograd.grad(out["kl"], list(model.parameters()), allow_unused=True)
    assert sum(g.abs().sum() for g in grads if g is not None) > 0  # Eq. 9: backprop through sampling
    # The same energy with the chain detached has no parameter gradient: the frozen copy is really frozen.
    from torch.func import functional_call
    frozen = {k: v.detach() for k, v in model.named_parameters()}
    assert not functional_call(model, frozen, (past, pos)).requires_grad


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_train_runs_and_logs(smoke_cfg, kind):
    cfg = replace(smoke_cfg, train={"max_iters": 4, "eval_every": 2, "patience": 5, "batch_size": 16,
                                    "val_traj": 2, "val_windows": 8})
    traj = np.random.default_rng(0).uniform(0.1, 0.9, (6, 20, 2)).astype(np.float32)
    model, hist, summary = train(kind, cfg, traj, seed=0, log=lambda s: None)
    assert [h["iter"] for h in hist] == [2, 4] and summary["iters"] == 4 and summary["stopped"] == "max_iters"
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_mse"]) for h in hist)
    assert summary["best_val_mse"] == min(h["val_mse"] for h in hist)
    model2, _, _ = train(kind, cfg, traj, seed=0, log=lambda s: None)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        torch.testing.assert_close(a, b)  # same seed, same model
