"""Composing energy functions (IGEBM §6; ICD §3.3 / Du et al. 2020) and sampling their joint with Langevin dynamics.

Operators on energy functions E(x) -> (B,) (ICD code celeba_combine.py, methods.md "Composition (ICD code)"):
    conjunction  E = sum_i E_i               p(x) ~ prod_i p_i(x)               (l.187-190)
    negation     E = -w E_i  (w = 0.001)     added to a conjunction: "not c_i"  (l.274-279)
    disjunction  E = -logsumexp_i(-k E_i)/k  (k = 100): a soft min, p(x) ~ sum_i p_i(x)^k  (l.366-375)
Joint Langevin (`joint_langevin`), two procedures:
    per_model  IGEBM ebm_combine.py l.505-532: within each step, for each model in turn: dE_i/dx at x, then
               x <- clamp(x + N(0, s^2) - step * dE_i/dx) -- the next model sees the moved x
    sum        ICD celeba_combine.py l.212-228 with l.465: one step on the summed energy with the step size
               divided by the number of models: x <- x + N(0, s^2), x <- clamp(x - step / K * d(sum E_i)/dx)
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ebm_repro.sampling import EnergyFn, energy_grad, langevin_step

MODES = ("per_model", "sum")
NEGATION_WEIGHT = 0.001     # ICD celeba_combine.py l.277
DISJUNCTION_SHARPNESS = 100.0  # ICD celeba_combine.py l.366 (`scale`)


def conjunction(*energies: EnergyFn) -> EnergyFn:
    """Sum of energies: the product of the models' distributions (IGEBM §6, Hinton's product of experts)."""
    if not energies:
        raise ValueError("conjunction needs at least one energy function")

    def energy(x: torch.Tensor) -> torch.Tensor:
        return sum(e(x) for e in energies)                                    # (B,)
    return energy


def negation(energy: EnergyFn, weight: float = NEGATION_WEIGHT) -> EnergyFn:
    """-weight * E: added to a conjunction it pushes samples away from E's low-energy region (ICD code)."""
    if weight <= 0:
        raise ValueError(f"negation weight must be > 0, got {weight}")

    def negated(x: torch.Tensor) -> torch.Tensor:
        return -weight * energy(x)                                            # (B,)
    return negated


def disjunction(*energies: EnergyFn, sharpness: float = DISJUNCTION_SHARPNESS) -> EnergyFn:
    """-logsumexp_i(-k E_i) / k: a smooth minimum of the energies, low wherever any model's energy is low."""
    if not energies:
        raise ValueError("disjunction needs at least one energy function")
    if sharpness <= 0:
        raise ValueError(f"disjunction sharpness must be > 0, got {sharpness}")

    def energy(x: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([e(x) for e in energies], dim=1)                # (B, K)
        return -torch.logsumexp(-sharpness * stacked, dim=1) / sharpness      # (B,)
    return energy


def joint_langevin(energies: Sequence[EnergyFn], x0: torch.Tensor, n_steps: int, step_size: float,
                   noise_std: float, mode: str = "per_model", clamp: bool = True,
                   callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Langevin chains x0 (B, ...) on the conjunction of `energies`; returns the detached final x (B, ...).

    mode "per_model" (IGEBM) or "sum" (ICD); see the module docstring. `callback(step, x)` after each step.
    """
    if mode not in MODES:
        raise ValueError(f"joint sampling mode: unknown {mode!r}; choose one of {MODES}")
    if not energies:
        raise ValueError("joint_langevin needs at least one energy function")
    x = x0.detach()
    total = conjunction(*energies)
    for t in range(n_steps):
        if mode == "sum":
            x = langevin_step(total, x, step_size / len(energies), noise_std, grad_clip=0.0, clamp=clamp).detach()
        else:
            for e in energies:
                g = energy_grad(e, x.detach().requires_grad_(True))          # dE_i/dx before this model's noise
                x = x.detach() + noise_std * torch.randn_like(x) - step_size * g
                x = x.clamp(0.0, 1.0) if clamp else x
        if callback is not None:
            callback(t, x)
    return x.detach()
