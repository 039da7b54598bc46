"""EBM training objectives: L_CD, IGEBM's L_ML (Eq. 8), the L2 regulariser, ICD's L_opt and L_ent."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


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
