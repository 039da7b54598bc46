"""Langevin dynamics on an energy function: the sampler is the algorithm of an EBM."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from ebm_repro.config import SamplerConfig

EnergyFn = Callable[[torch.Tensor], torch.Tensor]  # (B, ...) -> (B,)


@dataclass
class LangevinResult:
    x: torch.Tensor                 # (B, ...) final samples, detached
    x_kl: torch.Tensor | None       # (K, ...) first K chains' final step, differentiable w.r.t. theta


def energy_grad(energy: EnergyFn, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """dE/dx summed over the batch (chains are independent, so this is per-chain)."""
    if not x.requires_grad:
        x = x.requires_grad_(True)
    return torch.autograd.grad(energy(x).sum(), x, create_graph=create_graph)[0]


def langevin_step(energy: EnergyFn, x: torch.Tensor, step_size: float, noise_std: float,
                  grad_clip: float, clamp: bool, create_graph: bool = False,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
    """One IGEBM-form step: x + N(0, sigma), then x - lambda * clip(dE/dx, +-V), then clamp to [0, 1]."""
    if noise is None:
        noise = _randn(x) * noise_std
    x = x + noise
    if not create_graph:
        x = x.detach()
    x = x.requires_grad_(True) if not x.requires_grad else x
    g = energy_grad(energy, x, create_graph=create_graph)
    if grad_clip > 0:  # IGEBM: per-element clip keeps steps bounded while the energy is still rough
        g = g.clamp(-grad_clip, grad_clip)
    x = x - step_size * g
    return x.clamp(0.0, 1.0) if clamp else x


def _randn(x: torch.Tensor) -> torch.Tensor:
    """N(0, 1) of x's shape, drawn in NCHW order whatever x's memory layout (randn_like follows the layout)."""
    return torch.randn(x.shape, dtype=x.dtype, device=x.device)


def make_langevin(cfg: SamplerConfig) -> Callable[..., LangevinResult]:
    """Return sample(energy, x0, n_steps=None, kl_chains=0, kl_all_steps=False, ...) -> LangevinResult.

    energy_graph / graph_scope (runtime fast path): the energy of the steps that keep a graph (L_opt) and the
    context they run in; default `energy` and none. `energy` itself then serves the steps without a graph.
    shard = (rank, world) (DDP shared-chain mode): x0 is rows [rank * B, (rank + 1) * B) of a batch of world * B
    chains; each step draws the whole batch's noise and keeps those rows, so the chains are the one-process ones.
    """

    def sample(energy: EnergyFn, x0: torch.Tensor, n_steps: int | None = None, kl_chains: int = 0,
               kl_all_steps: bool = False, energy_graph: EnergyFn | None = None,
               graph_scope: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               shard: tuple[int, int] | None = None) -> LangevinResult:
        n = cfg.n_steps if n_steps is None else n_steps
        step = dict(step_size=cfg.step_size, noise_std=cfg.noise_std, grad_clip=cfg.grad_clip, clamp=cfg.clamp)
        e_graph = energy if energy_graph is None else energy_graph

        def draw(x: torch.Tensor) -> torch.Tensor:
            if shard is None:
                return _randn(x) * cfg.noise_std
            r, w = shard
            b = len(x)
            return (torch.randn((w * b, *x.shape[1:]), dtype=x.dtype, device=x.device)[r * b:(r + 1) * b]
                    * cfg.noise_std)                                            # (B, ...) of the (w B, ...) draw

        x = x0.detach()
        x_kl = x[:kl_chains] if kl_all_steps and kl_chains else None
        for t in range(n):
            last = t == n - 1
            if kl_chains and last and not kl_all_steps:
                # ICD Eq. 6 with truncation: recompute only the last step with a graph, on the first K chains.
                noise = draw(x)
                with graph_scope():
                    x_kl = langevin_step(e_graph, x[:kl_chains].detach(), create_graph=True,
                                         noise=noise[:kl_chains], **step)
                x = langevin_step(energy, x, noise=noise, **step).detach()
                continue
            if x_kl is not None:  # E15: backprop through every step of the first K chains
                noise = draw(x)
                with graph_scope():
                    x_kl = langevin_step(e_graph, x_kl, create_graph=True, noise=noise[:kl_chains], **step)
                x = langevin_step(energy, x, noise=noise, **step).detach()
                continue
            x = langevin_step(energy, x, noise=None if shard is None else draw(x), **step).detach()
        return LangevinResult(x=x.detach(), x_kl=x_kl)

    return sample
