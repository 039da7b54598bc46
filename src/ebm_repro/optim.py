"""Optimisers: Adam with IGEBM's per-element gradient clip, plus an EMA of the weights."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ebm_repro.config import OptimConfig


class ClippedAdam(torch.optim.Optimizer):
    """Adam whose gradient elements are first clipped to +-(3 sqrt(v_hat) + 0.1) (IGEBM App. 9.6 / code)."""

    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float = 1e-8,
                 std_clip: bool = True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, std_clip=std_clip))

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
                if group["std_clip"] and st["step"] > 0:
                    # "clip all training gradients that are more than 3 standard deviations from the
                    # 2nd order Adam parameters": bound uses v_hat of the steps so far
                    bound = 3 * (st["v"] / (1 - b2 ** st["step"])).sqrt() + 0.1
                    g = torch.maximum(torch.minimum(g, bound), -bound)
                st["step"] += 1
                t = st["step"]
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = st["m"] / (1 - b1 ** t)
                v_hat = st["v"] / (1 - b2 ** t)
                p.add_(-group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))


def make_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    """Adam (betas from cfg), with the IGEBM element clip when cfg.adam_std_clip."""
    return ClippedAdam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), std_clip=cfg.adam_std_clip)


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
