"""E11's measuring instrument: a latent regressor/classifier trained on real dSprites (ICD Tab. 3's protocol).

ICD App. B.3 scores compositions by how well a classifier trained on the real data recovers the conditioned
attributes from generated images; here a small CNN reads scale, position, rotation and shape off an image.
Rotation is only defined up to the sprite's symmetry (a square turned by 90° is the same image), so the net predicts
(cos k theta, sin k theta) for k = 1, 2, 4, and the error of an image is read at the k of its (predicted) shape.
It trains on the whole training split, the held-out region included: it must be accurate exactly there.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ebm_repro import checkpoint as ck
from ebm_repro.datasets_dsprites import VALUES
from ebm_repro.experiments.compose.config import ComposeConfig, RegressorConfig
from ebm_repro.experiments.compose.data import SYMMETRY, load, to_float

KIND = "compose_regressor"
ORDERS = (1, 2, 4)            # the rotation harmonics predicted (heart, ellipse, square)
N_OUT = 1 + 2 + 2 * len(ORDERS) + 3   # scale, position, (cos, sin) per order, shape logits


class LatentRegressor(nn.Module):
    """x (B, 1, S, S) in [0, 1] -> (B, 12): scale, posX, posY, cos/sin of theta, 2 theta, 4 theta, shape logits."""

    def __init__(self, width: int, size: int):
        super().__init__()
        w, layers, c = width, [], 1
        for c_out in (w, w, 2 * w, 2 * w):                        # four stride-2 convs: S -> S / 16
            layers += [nn.Conv2d(c, c_out, 4, stride=2, padding=1), nn.ReLU()]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * (size // 16) ** 2, 4 * w), nn.ReLU(),
                                  nn.Linear(4 * w, N_OUT))
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))                            # (B, 12)


def targets(classes: np.ndarray) -> dict[str, torch.Tensor]:
    """Regression targets of latent classes (N, 6): scale mapped to [0, 1], position, rotation harmonics, shape."""
    theta = torch.from_numpy(VALUES[3][classes[:, 3]]).float()
    return {"scale": torch.from_numpy((VALUES[2][classes[:, 2]] - 0.5) / 0.5).float(),
            "pos": torch.from_numpy(np.stack([VALUES[4][classes[:, 4]], VALUES[5][classes[:, 5]]], 1)).float(),
            "rot": torch.stack([f(k * theta) for k in ORDERS for f in (torch.cos, torch.sin)], 1),   # (N, 6)
            "shape": torch.from_numpy(classes[:, 1]).long()}


def loss_fn(out: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """MSE on scale and position, MSE on the rotation harmonic of the true shape's symmetry, CE on shape."""
    rot = out[:, 3:3 + 2 * len(ORDERS)].view(-1, len(ORDERS), 2)                    # (B, 3, 2)
    col = torch.tensor([ORDERS.index(o) for o in SYMMETRY], device=out.device)[t["shape"]]   # (B,)
    rot_t = t["rot"].view(-1, len(ORDERS), 2)
    pick = torch.arange(len(out), device=out.device)
    return (F.mse_loss(out[:, 0], t["scale"]) + F.mse_loss(out[:, 1:3], t["pos"])
            + F.mse_loss(rot[pick, col], rot_t[pick, col]) + F.cross_entropy(out[:, -3:], t["shape"]))


@torch.no_grad()
def predict(model: LatentRegressor, x: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Predicted latents of images x (N, 1, S, S): scale value, position, shape class, theta mod 2 pi / k."""
    dev = next(model.parameters()).device
    out = torch.cat([model(x[i:i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])
    shape = out[:, -3:].argmax(1)                                                    # (N,)
    k = torch.tensor(SYMMETRY)[shape]                                                # (N,)
    rot = out[:, 3:3 + 2 * len(ORDERS)].view(-1, len(ORDERS), 2)
    col = torch.tensor([ORDERS.index(o) for o in SYMMETRY])[shape]
    pair = rot[torch.arange(len(out)), col]                                          # (N, 2): cos, sin of k theta
    k_theta = torch.atan2(pair[:, 1], pair[:, 0])
    return {"scale": 0.5 + 0.5 * out[:, 0], "pos": out[:, 1:3], "shape": shape, "k": k, "k_theta": k_theta}


def errors(pred: dict[str, torch.Tensor], classes: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image errors against target latents (N, 6): |scale|, position distance, rotation (degrees), shape hit.

    Rotation: the angle between k * theta_pred and k * theta_target, divided by k, with k the symmetry order of the
    shape the image shows (predicted): at most 45° for a square, 90° for an ellipse, 180° for a heart.
    """
    t = targets(classes)
    scale = (pred["scale"] - (0.5 + 0.5 * t["scale"])).abs()
    pos = (pred["pos"] - t["pos"]).norm(dim=1)
    theta = torch.from_numpy(VALUES[3][classes[:, 3]]).float()
    k = pred["k"].float()
    d = torch.remainder(pred["k_theta"] - k * theta + math.pi, 2 * math.pi) - math.pi   # in [-pi, pi)
    rot = torch.rad2deg(d.abs() / k)
    shape = (pred["shape"] == t["shape"]).float()
    return {k_: v.numpy() for k_, v in (("scale", scale), ("position", pos), ("rotation", rot), ("shape", shape))}


def train_regressor(cfg: ComposeConfig, data_dir: Path, device: torch.device,
                    log: Callable[[str], None] = print) -> tuple[LatentRegressor, dict]:
    """Train on the training split (all of it); report its errors on the test split (mean, and in-region)."""
    rc: RegressorConfig = cfg.regressor
    torch.manual_seed(rc.seed)
    images, classes = load(Path(data_dir) / "train.npz")
    t_all = targets(classes)
    model = LatentRegressor(rc.width, cfg.image_size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=rc.lr)
    g, t0 = torch.Generator().manual_seed(rc.seed), time.perf_counter()
    for it in range(1, rc.n_iters + 1):
        idx = torch.randint(0, len(images), (rc.batch_size,), generator=g)
        x = to_float(images[idx], cfg.image_size).to(device)
        loss = loss_fn(model(x), {k: v[idx].to(device) for k, v in t_all.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % max(rc.n_iters // 10, 1) == 0 or it == rc.n_iters:
            log(f"[regressor] step {it}/{rc.n_iters} loss {float(loss.detach()):.4f}")
    model.eval()
    test_images, test_classes = load(Path(data_dir) / "test.npz")
    err = errors(predict(model, to_float(test_images, cfg.image_size)), test_classes)
    info = {"n_train": len(images), "n_test": len(test_images), "seconds": time.perf_counter() - t0,
            "test_errors": {k: float(v.mean()) for k, v in err.items()}}
    return model, info


def save_regressor(path: Path, model: LatentRegressor, cfg: ComposeConfig, info: dict) -> None:
    ck.save(Path(path), {"format": ck.FORMAT, "kind": KIND, "width": cfg.regressor.width, "size": cfg.image_size,
                         "hash": cfg.section_hash("dataset", "image_size", "regressor"), "model": model.state_dict(),
                         "info": info})


def load_regressor(path: Path, cfg: ComposeConfig) -> tuple[LatentRegressor, dict]:
    s = ck.load(Path(path))
    if s.get("kind") != KIND:
        raise ck.CheckpointError(f"{path} is not an E11 latent regressor (kind {s.get('kind')!r})")
    if s["hash"] != cfg.section_hash("dataset", "image_size", "regressor"):
        raise ck.CheckpointError(f"{path} was trained under another compose regressor config; rerun its job")
    model = LatentRegressor(s["width"], s["size"])
    ck.load_state_strict(model, s["model"], f"regressor {path}")
    return model.eval(), s["info"]
