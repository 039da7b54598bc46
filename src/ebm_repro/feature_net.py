"""Smoke-setting feature network: a small CNN trained on "shapes", used by torch-fidelity in place of Inception-v3.

The paper setting uses Inception-v3 (pt_inception-2015-12-05). Its weights cannot be fetched offline, so the
smoke DAG trains this classifier and reports IS/FID in its feature space; those numbers are not comparable
with the papers' and the tables say so.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, FeatureExtractorBase, register_feature_extractor
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ebm_repro.checkpoint import CheckpointError, file_digest, load_data, save
from ebm_repro.data import load_split

SMOKE_EXTRACTOR_NAME = "ebm-repro-smoke-classifier"


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages, global average pool ("pool" features, like Inception's pool3), linear head."""

    def __init__(self, n_classes: int = 10, width: int = 16, image_size: int = 32):
        super().__init__()
        w = width
        self.image_size = image_size

        def stage(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        # BatchNorm: without it 3 epochs reached only 40-60% test accuracy on shapes (measured).
        # The 4th stage widens the receptive field to whole shapes (up to 24 px).
        self.body = nn.Sequential(
            *stage(3, w), nn.MaxPool2d(2),           # (B, w, 16, 16)
            *stage(w, 2 * w), nn.MaxPool2d(2),       # (B, 2w, 8, 8)
            *stage(2 * w, 2 * w), nn.MaxPool2d(2),   # (B, 2w, 4, 4)
            *stage(2 * w, 4 * w),                    # (B, 4w, 4, 4)
        )
        self.head = nn.Linear(4 * w, n_classes)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x float (B, 3, H, W) in [0, 1] -> pool (B, 4w), logits (B, n_classes)."""
        pool = self.body(x).mean(dim=(2, 3))
        return pool, self.head(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def _to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    return images_u8.permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def _logits(model: SmallCNN, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> eval-mode logits (N, n_classes)."""
    model.eval()
    return torch.cat([model(_to_float(images[i:i + batch])) for i in range(0, len(images), batch)])


@torch.no_grad()
def _calibrate(model: SmallCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling: pick T minimising the NLL of logits / T, fold 1/T into the head; return T."""
    # A 3-epoch net is under-confident (mean max-probability 0.80 at 94% test accuracy, measured), which caps
    # the IS of real data far below the class count (5.1 on the shapes test split; 8.5 after scaling).
    # Scaling the logits changes no prediction and no "pool" feature, only how sharp p(y|x) is, so IS is
    # measured with a calibrated p(y|x).
    logits = _logits(model, images)
    temps = torch.logspace(-1.5, 1.0, 251)  # T from 0.03 to 10
    nll = torch.stack([F.cross_entropy(logits / t, labels) for t in temps])
    t = float(temps[int(nll.argmin())])
    model.head.weight /= t
    model.head.bias /= t
    return t


def train_feature_classifier(train_npz: Path, test_npz: Path, out_path: Path, epochs: int = 3,
                             seed: int = 0) -> dict:
    """Train SmallCNN with Adam, save {state_dict, arch, test_acc} atomically; return test_acc and sha256."""
    xtr, ytr = (torch.from_numpy(a) for a in load_split(train_npz))  # (N, 32, 32, 3) uint8, (N,) int64
    xte, yte = (torch.from_numpy(a) for a in load_split(test_npz))
    torch.manual_seed(seed)
    arch = {"n_classes": int(max(ytr.max(), yte.max())) + 1, "width": 16, "image_size": int(xtr.shape[1])}
    model = SmallCNN(**arch)
    batch = 32
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    # One-cycle schedule: ending at a tiny lr makes the final weights (and the BN running stats) settle;
    # with a constant lr the test accuracy after 3 epochs jumped between 50% and 85% (measured).
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * -(-len(ytr) // batch))
    gen = torch.Generator().manual_seed(seed)  # own stream: the batch order depends on seed only
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(ytr), generator=gen).split(batch):
            loss = F.cross_entropy(model(_to_float(xtr[idx])), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    temperature = _calibrate(model, xtr, ytr)  # on train data: the test split only measures
    test_logits = _logits(model, xte)  # (N_test, n_classes)
    test_acc = int((test_logits.argmax(1) == yte).sum()) / len(yte)
    # IS of real test images in this feature space: the ceiling a smoke table can quote beside sample IS.
    real_is = isc_features_to_metric(test_logits, splits=10, shuffle=False)
    obj = {"state_dict": model.state_dict(), "arch": arch, "test_acc": test_acc,
           "real_test_IS": {"mean": real_is[KEY_METRIC_ISC_MEAN], "std": real_is[KEY_METRIC_ISC_STD],
                            "n_splits": 10},
           "train": {"epochs": epochs, "seed": seed, "n_train": len(ytr), "n_test": len(yte), "batch": batch,
                     "temperature": temperature,
                     "test_mean_confidence": float(test_logits.softmax(1).max(1).values.mean())}}
    out_path = Path(out_path)
    save(out_path, obj)
    return {"test_acc": test_acc, "sha256": file_digest(out_path)}


def load_feature_info(path: Path) -> dict:
    """The dict train_feature_classifier wrote (weights, arch, test_acc, ...), read as data only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"smoke feature classifier not found at {path}; create it there with the "
                              f"prepare-feature-net step")
    fix = "delete it and rerun the prepare-feature-net step"
    obj = load_data(path, "feature-network", f"ebm-repro's feature-network files always load as data, so this "
                                              f"one was not written by it: {fix}.", fix=fix)
    if not isinstance(obj, dict) or not {"state_dict", "arch"} <= set(obj):
        raise CheckpointError(f"{path} is not a feature-network file of train_feature_classifier; {fix}")
    return obj


def load_feature_classifier(path: Path) -> tuple[SmallCNN, dict]:
    """Rebuild the classifier from a file written by train_feature_classifier (strict key match)."""
    obj = load_feature_info(path)
    model = SmallCNN(**obj["arch"])
    model.load_state_dict(obj["state_dict"], strict=True)
    return model.eval().requires_grad_(False), obj


class SmokeClassifierExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor: "logits" for IS, "pool" for FID/KID; input uint8 (B, 3, H, W)."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:  # unlike Inception there is nothing to download
            raise ValueError(f"{name} needs feature_extractor_weights_path (a file from train_feature_classifier)")
        self.net, _ = load_feature_classifier(Path(feature_extractor_weights_path))

    @staticmethod
    def get_provided_features_list():
        return "pool", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "pool", "kid": "pool", "prc": "pool"}[metric]

    @staticmethod
    def can_be_compiled():
        return False  # seconds of compilation would dwarf the tiny forward pass

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 (B, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        x = x.float() / 255.0  # (B, 3, H, W) in [0, 1], as in training
        size = self.net.image_size
        if x.shape[-2:] != (size, size):  # like Inception's resize to 299, map any size to the training size
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        pool, logits = self.net.features(x)
        feats = {"pool": pool, "logits": logits}
        return tuple(feats[k] for k in self.features_list)


def register_smoke_classifier() -> str:
    """Register SmokeClassifierExtractor with torch-fidelity (idempotent); return its registry name."""
    known = FEATURE_EXTRACTORS_REGISTRY.get(SMOKE_EXTRACTOR_NAME)
    if known is None:
        register_feature_extractor(SMOKE_EXTRACTOR_NAME, SmokeClassifierExtractor)
    elif known is not SmokeClassifierExtractor:
        raise RuntimeError(f"torch-fidelity already has a different feature extractor named {SMOKE_EXTRACTOR_NAME}")
    return SMOKE_EXTRACTOR_NAME
