"""E11 data: dSprites splits as tensors, the held-out region, and each attribute model's latent vector."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ebm_repro.data import DatasetError, load_split
from ebm_repro.datasets_dsprites import SHAPES, VALUES, latent_classes
from ebm_repro.experiments.compose.config import FULL_SIZE, LATENT_DIMS, HeldOutConfig

SYMMETRY = (4, 2, 1)   # rotational symmetry order of square, ellipse, heart: theta and theta + 2 pi / k look alike


def load(path: Path) -> tuple[torch.Tensor, np.ndarray]:
    """A prepared dSprites split: images (N, 1, 64, 64) uint8 in {0, 255} and latent classes (N, 6)."""
    images, labels = load_split(path)
    if images.shape[1:] != (FULL_SIZE, FULL_SIZE, 1):
        raise DatasetError(f"{path}: dSprites images must be (N, 64, 64, 1), got {images.shape}; prepare the "
                           f"dsprites or dsprites_gen dataset")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), latent_classes(labels)


def to_float(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 1, 64, 64) -> float (N, 1, size, size) in [0, 1]: k / 255, average-pooled to size (no dequantising:
    the IGEBM code trains on the binary images as they are)."""
    x = images.float() / 255.0
    return x if size == x.shape[-1] else F.avg_pool2d(x, x.shape[-1] // size)


def held_out_mask(classes: np.ndarray, h: HeldOutConfig) -> np.ndarray:
    """(N,) bool: latent combinations the EBMs never see (large sprites in the left part of the frame)."""
    scale, pos_x = VALUES[2][classes[:, 2]], VALUES[4][classes[:, 4]]
    return (scale >= h.scale_at_least - 1e-9) & (pos_x < h.pos_x_below)


def condition(attribute: str, classes: np.ndarray) -> torch.Tensor:
    """The latent vector (N, d) a model is conditioned on, as IGEBM data.py DSprites builds it (l.432-443, 460)."""
    if attribute == "scale":
        y = VALUES[2][classes[:, 2]][:, None]
    elif attribute == "position":
        y = np.stack([VALUES[4][classes[:, 4]], VALUES[5][classes[:, 5]]], 1)
    elif attribute == "rotation":
        theta = VALUES[3][classes[:, 3]]
        y = np.stack([np.cos(theta), np.sin(theta)], 1)
    elif attribute == "shape":
        y = np.eye(len(SHAPES))[classes[:, 1]]
    else:
        raise ValueError(f"unknown attribute {attribute!r}; choose one of {list(LATENT_DIMS)}")
    assert y.shape[1] == LATENT_DIMS[attribute]
    return torch.from_numpy(np.ascontiguousarray(y)).float()


def chain_init(n: int, size: int, mean: float, std: float, g: torch.Generator | None = None) -> torch.Tensor:
    """Fresh chains (n, 1, size, size) = mean + std * N(0, 1), unclipped (the first Langevin step clamps)."""
    return mean + std * torch.randn((n, 1, size, size), generator=g)


def describe(classes: np.ndarray) -> list[str]:
    """One short label per latent row: scale, position, rotation in degrees, shape."""
    out = []
    for c in classes:
        theta = math.degrees(VALUES[3][c[3]])
        out.append(f"s {VALUES[2][c[2]]:.1f}\n({VALUES[4][c[4]]:.2f}, {VALUES[5][c[5]]:.2f})\n"
                   f"{theta:.0f}° {SHAPES[c[1]]}")
    return out


class LatentPositives:
    """Training images and their latent vectors, drawn with replacement: draw(n) -> x (n, 1, S, S), y (n, d)."""

    def __init__(self, images: torch.Tensor, latents: torch.Tensor, size: int, g: torch.Generator):
        if len(images) != len(latents) or not len(images):
            raise ValueError(f"positives: {len(images)} images for {len(latents)} latent vectors")
        self.images, self.latents, self.size, self.g = images, latents, size, g
        self.shape = (1, size, size)

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.images), (n,), generator=self.g)
        return to_float(self.images[idx], self.size), self.latents[idx]

