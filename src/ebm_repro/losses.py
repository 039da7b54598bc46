"""EBM training objectives: L_CD, IGEBM's L_ML (Eq. 8), the L2 regulariser, ICD's L_opt and L_ent."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ebm_repro.config import LossConfig


def cd_loss(e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
    """Contrastive divergence (ICD Eq. 4; IGEBM code): mean E(x+) - mean E(x-)."""
    return e_pos.mean() - e_neg.mean()


def ml_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IGEBM Eq. 8: mean E(x+) - sum_i w_i E(x-_i), w = stop_grad(softmax(-E(x-))) (importance weights)."""
    w = torch.exp(-(e_neg - e_neg.min()).detach())  # shift for stability; cancels in the ratio
    w = w / (w.sum() + eps)
    return e_pos.mean() - (w * e_neg).sum()


def l2_reg(e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
    """IGEBM §3.4 regulariser on energy magnitudes: mean(E(x+)^2 + E(x-)^2)."""
    return (e_pos ** 2).mean() + (e_neg ** 2).mean()


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Evaluate a model with stop-gradient on its parameters (E_{stop_grad(theta)} in ICD Eq. 6)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


def kl_opt_loss(e_kl: torch.Tensor) -> torch.Tensor:
    """ICD Eq. 6: mean energy, under frozen parameters, of samples that carry the sampler's graph."""
    return e_kl.mean()


def entropy_loss(x: torch.Tensor, bank: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ICD Eq. 7: mean over x of -log(L2 distance to its nearest neighbour in the bank B)."""
    d = torch.cdist(x.flatten(1), bank.flatten(1).to(x))  # (B, |bank|)
    return -torch.log(d.min(dim=1).values + eps).mean()


# Main objective by loss.kind: a table, so a test can put a broken objective into the real training step.
OBJECTIVES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"cd": cd_loss, "ml": ml_loss}


@dataclass
class LossTerms:
    """The parts of one training step's loss (E14 compares the gradients of `main` and `kl`)."""
    main: torch.Tensor      # L_CD or L_ML
    reg: torch.Tensor       # alpha * L2 regulariser
    kl: torch.Tensor        # ICD L_KL = coefficient-weighted L_opt + L_ent (0 when off)
    parts: dict = field(default_factory=dict)  # the active L_KL terms (0-dim, detached), for the training log

    @property
    def total(self) -> torch.Tensor:
        return self.main + self.reg + self.kl


def training_loss(lc: LossConfig, model: nn.Module, energy: Callable[[torch.Tensor], torch.Tensor],
                  e_pos: torch.Tensor, e_neg: torch.Tensor, x_kl: torch.Tensor | None,
                  bank: Callable[[], torch.Tensor] | None) -> LossTerms:
    """IGEBM / ICD objective from the energies of positives and negatives (B,) or (B, n_scales).

    energy(x) gives the energies the loss sees (for L_opt on x_kl, under frozen `model` parameters);
    bank() gives the past samples of L_ent, or bank is None while the replay buffer is too small for it.
    """
    main = OBJECTIVES[lc.kind](e_pos, e_neg)
    reg = lc.l2_coeff * l2_reg(e_pos, e_neg)
    kl, parts = torch.zeros((), device=e_pos.device), {}
    if lc.kl_opt_coeff > 0:
        with frozen(model):
            opt = kl_opt_loss(energy(x_kl))
        parts["loss_kl_opt"] = opt.detach()  # read at log steps only (runtime.host_sync)
        kl = kl + lc.kl_opt_coeff * opt
    if lc.kl_ent_coeff > 0 and bank is not None:
        ent = entropy_loss(x_kl, bank())
        parts["loss_ent"] = ent.detach()
        kl = kl + lc.kl_ent_coeff * ent
    return LossTerms(main, reg, kl, parts)
