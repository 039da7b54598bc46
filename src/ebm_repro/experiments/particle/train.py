"""Training of the feed-forward regressor (MSE) and the EBMs (L_ML + L_KL + L_Reg, IGEBM §3.4)."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ebm_repro.experiments.particle.config import CONTEXT, ParticleConfig
from ebm_repro.experiments.particle.models import build_model
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


def train(kind: str, cfg: ParticleConfig, traj: np.ndarray, seed: int, log=print) -> tuple[nn.Module, list[dict]]:
    """Train one model on trajectories (N, T, 2); returns the model and a history of logged stats."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(kind, cfg.net, cfg.physics.box_size)
    tc = cfg.train
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2))
    sampler = None if kind == "feedforward" else make_sampler(kind, cfg.langevin, cfg.mppi)
    history, t0 = [], time.perf_counter()
    n_iters = getattr(tc.n_iters, kind)
    for it in range(1, n_iters + 1):
        past, nxt = sample_windows(traj, tc.batch_size, rng)
        if sampler is None:
            stats = {"loss": F.mse_loss(model(past), nxt)}
        else:
            stats = ebm_losses(model, sampler, past, nxt, cfg, gen)
        if not torch.isfinite(stats["loss"]):  # stop before a NaN step corrupts the weights
            raise FloatingPointError(f"{kind} seed {seed}: loss is {stats['loss'].item()} at iteration {it}")
        opt.zero_grad(set_to_none=True)
        stats["loss"].backward()
        opt.step()
        if it % tc.log_every == 0 or it == n_iters:
            row = {"iter": it, "seconds": round(time.perf_counter() - t0, 2),
                   **{k: v.item() for k, v in stats.items()}}
            history.append(row)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return model, history
