"""Helpers of the E7-E9 tests: a params.yaml with tiny sizes, a small generated dataset, an untrained checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ebm_repro import checkpoint as ck
from ebm_repro import config as C
from ebm_repro.data import prepare_dataset
from ebm_repro.models import make_model
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[2]
TINY_TRAIN = {"epochs": 1, "batch_size": 8, "optimizer": "adam", "lr": 1.0e-3, "momentum": 0.0, "weight_decay": 0.0,
              "schedule": "constant", "n_train": 16, "n_test": 10, "seed": 0}


def tiny_params(tmp_path: Path, setting: str = "smoke") -> Path:
    """params.yaml with width-4 nets and a few images and Langevin steps per experiment."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["setting"] = setting
    p["settings"]["smoke"]["overrides"]["model"] = {"width": 4}
    p["restoration"]["smoke"].update(n_images=6, batch_size=4, grid_rows=3, sampler={"n_steps": 1},
                                     calls={"identity": 1, "salt_and_pepper": 1, "inpainting": 2},
                                     classifier={"arch": "small_cnn", "augment": False, "train": TINY_TRAIN})
    p["cross_class"]["smoke"].update(n_images=3, rows=2, calls=2, sampler={"n_steps": 1})
    p["finetune"]["smoke"]["train"] = TINY_TRAIN
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def tiny_data(tmp_path: Path) -> Path:
    """The generated shapes set, 80 train / 200 test images (>= 3 test images of every class)."""
    out = tmp_path / "shapes"
    prepare_dataset("shapes", out, seed=0, n_train=80, n_test=200)
    return out


def tiny_checkpoint(params_path: Path, variant: str, out: Path) -> tuple[C.RunConfig, Path]:
    """An untrained model.pt of a variant, in the trainer's format (weights unlike any seed-0 fresh net)."""
    cfg = C.resolve(load_params(params_path), variant, setting="smoke")
    torch.manual_seed(12345)
    net = make_model(cfg.hp.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    ck.save(out, {"format": ck.FORMAT, "kind": "model", "model_args": ck.model_args(cfg.hp.model),
                  "config": cfg.to_dict(), "step": 7, "model": net.state_dict(), "ema": None,
                  "snapshots": [], "diverged": None})
    return cfg, out
