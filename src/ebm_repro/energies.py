"""Energies of image sets under a trained model (likelihood E5, OOD E6): eval mode, batched, no gradients."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ebm_repro.config import RunConfig


def load_energy_net(cfg: RunConfig, model_path: Path, device: torch.device) -> nn.Module:
    """The net a variant is evaluated with: its final weights, or the EMA copy where test_sampling.use_ema (ICD)."""
    from ebm_repro.checkpoint import load_nets

    return load_nets(cfg, model_path, "single", device)[0][0]  # eval mode (dropout off), strict load


def as_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 in [0, 1] as k / 255 (the raw image, no dequantisation noise)."""
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.astype(np.float32) / 255.0


@torch.no_grad()
def image_energies(net: nn.Module, images: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 500,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """E(x) per image (N,) float64 for float images (N, H, W, C) in [0, 1].

    Conditional net (model.n_classes = K > 0): E(x, y) under `labels` when given, else min over the K classes,
    min_y E(x, y) (IGEBM ebm_sandbox.py energyevalmix: energies reshaped (-1, 10) and .min(axis=1)).
    """
    if images.ndim != 4 or images.dtype != np.float32:
        raise TypeError(f"expected float32 images (N, H, W, C), got {images.dtype} {images.shape}")
    k = net.cfg.n_classes
    if labels is not None and (not k or len(labels) != len(images)):
        raise ValueError(f"labels given for {len(images)} images of a net with n_classes={k}")
    was_training = net.training
    net.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).to(device).permute(0, 3, 1, 2)     # (B, C, H, W)
        if not k:
            e = net(x, None)                                                              # (B,)
        elif labels is not None:
            e = net(x, torch.as_tensor(labels[i:i + batch_size], dtype=torch.long, device=device))
        else:
            b = len(x)
            ys = torch.arange(k, device=device).repeat(b)                                 # (B K,) 0..K-1 per image
            e = net(x.repeat_interleave(k, 0), ys).view(b, k).min(dim=1).values           # (B,)
        out.append(e.double().cpu().numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)
