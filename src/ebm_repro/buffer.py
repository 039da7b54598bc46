"""Replay buffer of past negatives, stored as uint8 (IGEBM §3.1; ICD uses the same machinery)."""
from __future__ import annotations

import torch

from ebm_repro.config import BufferConfig


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 (round to nearest)."""
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def compress(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Buffer storage: code = floor(255 clip(x)) (both papers' compress_x_mod); round = round(255 x)."""
    if mode == "code":
        return (x.detach().clamp(0, 1) * 255).floor().to(torch.uint8)
    return to_uint8(x)


def decompress(k: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Buffer read: code = k/256 + U(0, 1/256) (decompress_x_mod: a 255/256 darkening per round trip); round = k/255."""
    if mode == "code":
        return (k.float() + torch.rand(k.shape, generator=generator)) / 256.0
    return from_uint8(k)


class ReplayBuffer:
    """Fixed-size store of past chain ends; FIFO ring or reservoir replacement."""

    def __init__(self, cfg: BufferConfig, shape: tuple[int, ...], generator: torch.Generator | None = None):
        self.cfg, self.shape = cfg, tuple(shape)
        self.data = torch.zeros((cfg.size, *shape), dtype=torch.uint8)  # (N, C, H, W)
        self.count = 0      # items currently stored
        self.n_seen = 0     # items ever pushed (reservoir sampling needs it)
        self.next = 0       # FIFO write position
        self.g = generator or torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return self.count

    def push(self, x: torch.Tensor) -> None:
        """Add a batch of samples (B, *shape) in [0, 1]."""
        x = compress(x.cpu(), self.cfg.quantize)
        for item in x:  # per item: reservoir decisions are per sample
            self.n_seen += 1
            if self.count < self.cfg.size:
                self.data[self.count] = item
                self.count += 1
                self.next = self.count % self.cfg.size
            elif self.cfg.reservoir:
                j = int(torch.randint(0, self.n_seen, (1,), generator=self.g))
                if j < self.cfg.size:
                    self.data[j] = item
            else:
                self.data[self.next] = item
                self.next = (self.next + 1) % self.cfg.size

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n chain starts: buffer samples with a reinit_frac share (and any shortfall) from U(0, 1).

        Returns (x (n, *shape) float in [0, 1], fresh (n,) bool mask of re-initialised chains).
        """
        fresh = torch.rand(n, generator=self.g) < self.cfg.reinit_frac
        if self.count < n:  # the buffer is still filling: start from noise
            fresh[:] = True
        x = torch.rand((n, *self.shape), generator=self.g)
        if self.count >= n:
            idx = torch.randint(0, self.count, (n,), generator=self.g)
            stored = decompress(self.data[idx], self.cfg.quantize, self.g)
            x = torch.where(fresh.view(-1, *[1] * len(self.shape)), x, stored)
        return x, fresh

    def recent(self, n: int) -> torch.Tensor:
        """n random stored samples (ICD's bank B for the nearest-neighbour entropy), float."""
        idx = torch.randint(0, max(self.count, 1), (min(n, self.count),), generator=self.g)
        return decompress(self.data[idx], self.cfg.quantize, self.g)

    def state_dict(self) -> dict:
        return {"data": self.data[: self.count].clone(), "count": self.count, "n_seen": self.n_seen,
                "next": self.next, "g": self.g.get_state()}

    def load_state_dict(self, s: dict) -> None:
        if tuple(s["data"].shape[1:]) != self.shape or s["count"] > self.cfg.size:
            raise ValueError(f"buffer state of shape {tuple(s['data'].shape)} does not fit a buffer "
                             f"of size {self.cfg.size} x {self.shape}")
        self.data.zero_()
        self.data[: s["count"]] = s["data"]
        self.count, self.n_seen, self.next = s["count"], s["n_seen"], s["next"]
        self.g.set_state(s["g"])
