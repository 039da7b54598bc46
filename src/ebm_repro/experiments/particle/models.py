"""Fig. 15c networks: an energy E(past, next) -> (B,) and a feed-forward next-position regressor."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ebm_repro.experiments.particle.config import CONTEXT, NetConfig, base_kind


class SelfAttention(nn.Module):
    """Single-head self-attention over time steps with a residual connection (SAGAN-style block)."""

    def __init__(self, width: int):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, T, W) -> (B, T, W)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)  # (B, T, T)
        return h + self.out(a @ v)


class Trunk(nn.Module):
    """FC -> self-attention -> Conv1D -> Conv1D over a (B, T, 2) position sequence -> (B, C*T)."""

    def __init__(self, cfg: NetConfig, box_size: float):
        super().__init__()
        self.rel_scale = cfg.rel_scale
        self.fc = nn.Linear(4 if cfg.rel_scale > 0 else 2, cfg.width)
        self.attn = SelfAttention(cfg.width)
        pad = cfg.kernel_size // 2  # "same" padding keeps T, so the dense layer sees every step
        self.conv1 = nn.Conv1d(cfg.width, cfg.channels, cfg.kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(cfg.channels, cfg.channels, cfg.kernel_size, padding=pad)
        self.slope = cfg.slope
        self.half = box_size / 2  # positions are mapped from [0, box] to [-1, 1] inside the net

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 2) -> (B, T, 2 or 4)
        """Positions in [-1, 1]; optionally also offsets from the last observed position, in rel_scale units."""
        f = x / self.half - 1.0
        if self.rel_scale == 0:
            return f
        # Steps are ~1e-2 of the box: raw coordinates hide them, offsets make them O(1) (walls need the former).
        rel = (x - x[:, CONTEXT - 1 : CONTEXT]) / self.rel_scale  # (B, T, 2)
        return torch.cat([f, rel], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 2) -> (B, C*T)
        h = F.leaky_relu(self.fc(self.features(x)), self.slope)  # (B, T, W)
        h = self.attn(h).transpose(1, 2)  # (B, W, T)
        h = F.leaky_relu(self.conv1(h), self.slope)  # (B, C, T)
        h = F.leaky_relu(self.conv2(h), self.slope)  # (B, C, T)
        return h.flatten(1)


class EnergyNet(nn.Module):
    """E(past (B, 3, 2), next (B, 2)) -> (B,); low energy = plausible next position."""

    def __init__(self, cfg: NetConfig, box_size: float):
        super().__init__()
        self.trunk = Trunk(cfg, box_size)
        self.dense = nn.Linear(cfg.channels * (CONTEXT + 1), 1)

    def forward(self, past: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        seq = torch.cat([past, nxt[:, None]], dim=1)  # (B, 4, 2)
        return self.dense(self.trunk(seq)).squeeze(-1)  # (B,)


class FeedForwardNet(nn.Module):
    """Same trunk on the past only; the last layer outputs the next position (B, 2) directly."""

    def __init__(self, cfg: NetConfig, box_size: float):
        super().__init__()
        self.trunk = Trunk(cfg, box_size)
        self.dense = nn.Linear(cfg.channels * CONTEXT, 2)
        self.half, self.residual, self.rel_scale = box_size / 2, cfg.ff_residual, cfg.rel_scale

    def forward(self, past: torch.Tensor) -> torch.Tensor:  # (B, 3, 2) -> (B, 2)
        out = self.dense(self.trunk(past))  # (B, 2)
        if self.residual:  # same anchor as the EBM samplers, whose chains start at the last position
            return past[:, -1] + self.rel_scale * out
        return (out + 1.0) * self.half  # the [-1, 1] frame of the input, mapped back to box units


def build_model(kind: str, cfg: NetConfig, box_size: float) -> nn.Module:
    """feedforward[_fig15c] -> FeedForwardNet; ebm_ld / ebm_mppi [_fig15c] -> EnergyNet (cfg: that kind's net)."""
    return FeedForwardNet(cfg, box_size) if base_kind(kind) == "feedforward" else EnergyNet(cfg, box_size)
