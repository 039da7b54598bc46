"""Samplers of the next position under an energy: Langevin dynamics (IGEBM Eq. 4) and MPPI (Eq. 5)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ebm_repro.experiments.particle.config import LangevinConfig, MPPIConfig, base_kind

EnergyFn = Callable[[torch.Tensor], torch.Tensor]  # (B, 2) -> (B,) or (B, S, 2) -> (B, S)


def conditional_energy(model: nn.Module, past: torch.Tensor) -> EnergyFn:
    """Energy of candidate next positions (B, 2) or (B, S, 2) given past (B, 3, 2)."""
    def fn(y: torch.Tensor) -> torch.Tensor:
        if y.dim() == 2:
            return model(past, y)
        b, s = y.shape[:2]
        rep = past[:, None].expand(b, s, *past.shape[1:]).reshape(b * s, *past.shape[1:])  # (B*S, 3, 2)
        return model(rep, y.reshape(b * s, -1)).view(b, s)
    return fn


def langevin(energy: EnergyFn, x0: torch.Tensor, cfg: LangevinConfig, differentiable: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Run cfg.n_steps Langevin steps from x0 (B, 2); differentiable=True keeps the graph (for L_KL)."""
    x = x0.detach().requires_grad_(True)
    for _ in range(cfg.n_steps):
        with torch.enable_grad():
            (g,) = torch.autograd.grad(energy(x).sum(), x, create_graph=differentiable)  # (B, 2)
        if cfg.grad_clip > 0:
            g = g.clamp(-cfg.grad_clip, cfg.grad_clip)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * cfg.noise_std
        x = x - cfg.step_size * g + noise
        if not differentiable:
            x = x.detach().requires_grad_(True)
    return x if differentiable else x.detach()


def mppi(energy: EnergyFn, x0: torch.Tensor, cfg: MPPIConfig, differentiable: bool = False,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Run cfg.n_steps MPPI updates from x0 (B, D); each moves to the softmax(-E)-weighted mean of samples."""
    x = x0.detach()
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        for _ in range(cfg.n_steps):
            eps = torch.randn((*x.shape[:1], cfg.n_samples, *x.shape[1:]), generator=generator, dtype=x.dtype)
            cand = x[:, None] + cfg.noise_std * eps  # (B, S, D)
            w = torch.softmax(-energy(cand), dim=1)  # (B, S)
            x = (w[..., None] * cand).sum(1)  # (B, D)
    return x


def make_sampler(kind: str, lcfg: LangevinConfig, mcfg: MPPIConfig):
    """'ebm_ld' or 'ebm_mppi' (or their variants) -> sampler(energy, x0, differentiable=False, generator=None)."""
    kind = base_kind(kind)
    if kind == "ebm_ld":
        return lambda energy, x0, differentiable=False, generator=None: langevin(
            energy, x0, lcfg, differentiable, generator)
    if kind == "ebm_mppi":
        return lambda energy, x0, differentiable=False, generator=None: mppi(
            energy, x0, mcfg, differentiable, generator)
    raise ValueError(f"no sampler for model kind {kind!r}")
