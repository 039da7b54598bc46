"""Training of the feed-forward regressor (MSE) and the EBMs (L_ML + L_KL + L_Reg, IGEBM §3.4)."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ebm_repro.experiments.particle.config import CONTEXT, ParticleConfig, base_kind
from ebm_repro.experiments.particle.models import build_model
from ebm_repro.experiments.particle.plateau import Plateau
from ebm_repro.experiments.particle.sampling import conditional_energy, make_sampler


def sample_windows(traj: np.ndarray, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (past (B, 3, 2), next (B, 2)) windows from trajectories (N, T, 2)."""
    n, t = traj.shape[:2]
    i = rng.integers(0, n, batch)
    s = rng.integers(0, t - CONTEXT, batch)
    idx = s[:, None] + np.arange(CONTEXT + 1)  # (B, 4)
    win = torch.from_numpy(traj[i[:, None], idx])  # (B, 4, 2)
    return win[:, :CONTEXT], win[:, CONTEXT]


def ebm_losses(model: nn.Module, sampler, past: torch.Tensor, pos: torch.Tensor, cfg: ParticleConfig,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """L_ML (Eq. 8), L_KL (Eq. 9, backprop through sampling) and L_Reg (Eq. 10) for one batch."""
    # Chains start at the last observed position: no replay buffer (§9.6) and the paper states no init.
    neg = sampler(conditional_energy(model, past), past[:, -1], differentiable=True, generator=generator)  # (B, 2)
    e_pos = model(past, pos)  # (B,)
    e_neg = model(past, neg.detach())  # (B,)
    if cfg.train.ml_weighting == "softmax":  # Eq. 8: stop-gradient softmax(-E) weights over the batch
        w = torch.softmax(-e_neg.detach(), dim=0)
        l_ml = e_pos.mean() - (w * e_neg).sum()
    else:
        l_ml = e_pos.mean() - e_neg.mean()
    # Eq. 9: energy of the samples under frozen parameters; the gradient reaches theta only via the chain.
    frozen = {k: v.detach() for k, v in model.named_parameters()}
    l_kl = functional_call(model, frozen, (past, neg)).mean()
    l_reg = (e_pos**2 + e_neg**2).mean()
    loss = l_ml + cfg.train.kl_coeff * l_kl + cfg.train.l2_coeff * l_reg
    return {"loss": loss, "ml": l_ml, "kl": l_kl, "reg": l_reg,
            "e_pos": e_pos.mean(), "e_neg": e_neg.mean(), "sample_mse": F.mse_loss(neg.detach(), pos)}


def validation_windows(traj: np.ndarray, cfg: ParticleConfig) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
    """Split trajectories (N, T, 2) -> (fit trajectories, fixed validation windows from the last val_traj)."""
    tc = cfg.train
    if tc.val_traj >= len(traj):
        raise ValueError(f"train.val_traj ({tc.val_traj}) leaves no training trajectories out of {len(traj)}")
    fit, val = traj[:-tc.val_traj], traj[-tc.val_traj:]
    return fit, sample_windows(val, tc.val_windows, np.random.default_rng(tc.val_seed))


def one_step_mse(kind: str, model: nn.Module, past: torch.Tensor, nxt: torch.Tensor, cfg: ParticleConfig) -> float:
    """Held-out one-step MSE (mean over windows, x and y) of the test-time predictor; sampler noise is seeded
    with train.val_seed, so every evaluation of a run draws the same noise and differences come from the weights."""
    with torch.no_grad():  # Langevin re-enables grad locally for dE/dx
        if base_kind(kind) == "feedforward":
            pred = model(past)
        else:
            gen = torch.Generator().manual_seed(cfg.train.val_seed)
            pred = make_sampler(kind, cfg.langevin, cfg.mppi)(conditional_energy(model, past), past[:, -1],
                                                                generator=gen)
    return ((pred.detach() - nxt) ** 2).mean().item()


def train(kind: str, cfg: ParticleConfig, traj: np.ndarray, seed: int, log=print) -> tuple[nn.Module, list[dict], dict]:
    """Train one model on trajectories (N, T, 2) until the held-out one-step MSE plateaus (train.* rule).

    Returns the model holding its best-validation weights, the history (one row per validation) and a summary
    (iterations run, best iteration, why it stopped).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(kind, cfg.net_for(kind), cfg.physics.box_size)
    tc = cfg.train
    fit, (val_past, val_next) = validation_windows(traj, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2))
    sampler = None if base_kind(kind) == "feedforward" else make_sampler(kind, cfg.langevin, cfg.mppi)
    rule = Plateau(tc.patience, tc.min_rel_improvement)
    history, best_state, t0, stopped, it = [], None, time.perf_counter(), "max_iters", 0
    while it < tc.max_iters:
        it += 1
        past, nxt = sample_windows(fit, tc.batch_size, rng)
        if sampler is None:
            stats = {"loss": F.mse_loss(model(past), nxt)}
        else:
            stats = ebm_losses(model, sampler, past, nxt, cfg, gen)
        if not torch.isfinite(stats["loss"]):  # stop before a NaN step corrupts the weights
            if best_state is None:
                raise FloatingPointError(f"{kind} seed {seed}: loss is {stats['loss'].item()} at iteration {it}, "
                                         f"before any validation")
            log(f"non-finite loss at iteration {it}: stopping, keeping the weights of iteration {rule.best_iter}")
            stopped = "nonfinite_loss"
            break
        opt.zero_grad(set_to_none=True)
        stats["loss"].backward()
        opt.step()
        if it % tc.eval_every == 0 or it == tc.max_iters:
            val = one_step_mse(kind, model, val_past, val_next, cfg)
            new_best, stop = rule.update(it, val)
            if new_best:
                best_state = copy.deepcopy(model.state_dict())
            row = {"iter": it, "seconds": round(time.perf_counter() - t0, 2),
                   **{k: v.item() for k, v in stats.items()}, "val_mse": val, "best": new_best}
            history.append(row)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if stop:
                stopped = "plateau"
                break
    if best_state is None:
        raise FloatingPointError(f"{kind} seed {seed}: no finite validation error in {it} iterations")
    model.load_state_dict(best_state)
    summary = {"iters": it, "best_iter": rule.best_iter, "best_val_mse": rule.best, "stopped": stopped}
    log(" ".join(f"{k}={v}" for k, v in summary.items()))
    return model, history, summary
