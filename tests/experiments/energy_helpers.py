"""Helpers of the E5 / E6 tests: a params.yaml with tiny nets, model files, data folders and sample files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from ebm_repro import checkpoint as ck
from ebm_repro import config as C
from ebm_repro.data import prepare_dataset
from ebm_repro.models import make_model
from ebm_repro.params import load_params
from tests.experiments.run_helpers import ROOT

VARIANTS = ("igebm_uncond", "igebm_cond", "icd")


def tiny_params(tmp_path: Path, n: int = 6) -> tuple[dict, Path]:
    """params.yaml with 4-channel nets and n images per set in the smoke setting, written to tmp_path."""
    p = load_params(ROOT / "params.yaml")
    p["settings"]["smoke"]["overrides"]["model"] = {"width": 4}
    p["ood"]["n_images"]["smoke"] = n
    p["ood"]["batch_size"]["smoke"] = 4          # several batches per set
    for part in ("n_train", "n_test", "n_samples"):
        p["likelihood"][part]["smoke"] = n
    p["likelihood"]["batch_size"]["smoke"] = 4
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return load_params(path), path


def write_model(root: Path, params: dict, variant: str, seed: int = 0) -> Path:
    """results/train/<variant>/model.pt with random weights (EMA = the same weights), as the trainer writes it."""
    cfg = C.resolve(params, variant, setting="smoke")
    torch.manual_seed(seed)
    net = make_model(cfg.hp.model)
    path = root / variant / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    ck.save(path, {"format": ck.FORMAT, "kind": "model", "model_args": ck.model_args(cfg.hp.model),
                   "config": cfg.to_dict(), "step": 3, "model": net.state_dict(), "ema": net.state_dict(),
                   "snapshots": [], "diverged": None})
    return path


def write_samples(path: Path, n: int, n_classes: int, seed: int = 0) -> Path:
    """results/samples/<variant>/single.npz as cmd_sample writes it (labels -1 for an unconditional model)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, n_classes, n) if n_classes else np.full(n, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels.astype(np.int64), info=json.dumps({"train_step": 3}))
    return path


def shapes_data(root: Path) -> Path:
    prepare_dataset("shapes", root / "shapes", n_train=20, n_test=10)
    return root / "shapes"
