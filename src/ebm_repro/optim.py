"""Optimisers: Adam with IGEBM's per-element gradient clip, plus an EMA of the weights."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ebm_repro.config import OptimConfig


def clip_bound(v: torch.Tensor, beta2: float, t: int, form: str) -> torch.Tensor | None:
    """Per-element bound 3 sqrt(v / (1 - beta2^k)) + 0.1 on the gradient of step t (1-based); None = no clip.

    "clip all training gradients that are more than 3 standard deviations from the 2nd order Adam parameters"
    (IGEBM App. 9.6). v holds the second moment of steps 1..t-1. form "tf" (custom_adam.py `_apply_dense`):
    k = t, i.e. beta2_power before this step's update, from step 1 on (v = 0 there, so the bound is 0.1);
    form "lagged": k = t - 1, the bias correction of the steps so far, no clip at step 1.
    """
    if form == "tf":
        return 3 * (v / (1 - beta2 ** t)).sqrt() + 0.1
    return None if t == 1 else 3 * (v / (1 - beta2 ** (t - 1))).sqrt() + 0.1


class ClippedAdam(torch.optim.Optimizer):
    """Adam whose gradient elements are first clipped to +-(3 sqrt(v_hat) + 0.1) (IGEBM App. 9.6 / code)."""

    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float = 1e-8,
                 std_clip: bool = True, std_clip_form: str = "tf"):
        if std_clip_form not in ("tf", "lagged"):
            raise ValueError(f"optim.std_clip_form: unknown {std_clip_form!r}; choose 'tf' or 'lagged'")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, std_clip=std_clip, std_clip_form=std_clip_form))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                g = p.grad
                t = st["step"] + 1
                bound = clip_bound(st["v"], b2, t, group["std_clip_form"]) if group["std_clip"] else None
                if bound is not None:
                    g = torch.maximum(torch.minimum(g, bound), -bound)
                st["step"] = t
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = st["m"] / (1 - b1 ** t)
                v_hat = st["v"] / (1 - b2 ** t)
                p.add_(-group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))


def make_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    """Adam (betas from cfg), with the IGEBM element clip when cfg.adam_std_clip."""
    return ClippedAdam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), std_clip=cfg.adam_std_clip,
                       std_clip_form=cfg.std_clip_form)


class EMA:
    """Exponential moving average of a model's parameters and buffers, for evaluation."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_sd, sd = self.model.state_dict(), model.state_dict()
        for k, v in sd.items():
            if v.dtype.is_floating_point:
                ema_sd[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                ema_sd[k].copy_(v)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd, strict=True)


def grad_norm(params) -> float:
    """Global L2 norm of the gradients (for logging and E14)."""
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return math.sqrt(sum(float(n) ** 2 for n in norms)) if norms else 0.0
