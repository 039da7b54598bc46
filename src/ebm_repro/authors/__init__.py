"""The authors' released checkpoints as our model.pt: strict variable mapping, provenance, one entry point.

Every variable of their file is either mapped onto a key of our net or dropped for a stated reason (optimizer
state, or a variable their forward never reads, checked to still hold its initial value); every key of our net
is filled. Anything else stops the import naming the variable: nothing is ever loaded partially.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ebm_repro import checkpoint as ck
from ebm_repro.config import RunConfig
from ebm_repro.models import make_model


class AuthorsCheckpointError(ck.CheckpointError):
    """Their checkpoint cannot be mapped exactly onto our net; the message names the variable and the fix."""


class Ledger:
    """Their variables by name; each must be `take`n (mapped) or `drop`ped (with a reason) exactly once."""

    def __init__(self, arrays: dict[str, np.ndarray], where: str):
        self.arrays, self.where = arrays, where
        self.mapped: list[str] = []
        self.dropped: dict[str, list[str]] = {}

    def has(self, name: str) -> bool:
        return name in self.arrays

    def _get(self, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
        if name not in self.arrays:
            raise AuthorsCheckpointError(f"{self.where}: variable {name!r} is missing; the file was not written by "
                                         f"the network this variant describes (check --variant and params.yaml)")
        if name in self.mapped or any(name in v for v in self.dropped.values()):
            raise AuthorsCheckpointError(f"{self.where}: variable {name!r} consumed twice (importer bug)")
        a = self.arrays[name]
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise AuthorsCheckpointError(f"{self.where}: variable {name!r} has shape {tuple(a.shape)}, our net "
                                         f"needs {tuple(shape)}; check model.width / n_classes of the variant")
        return a

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        a = self._get(name, shape)
        self.mapped.append(name)
        return a

    def drop(self, name: str, reason: str, init: float | None = None) -> None:
        """Consume an unused variable; `init`: it must still equal its initial value (else their forward read it)."""
        a = self._get(name, None)
        if init is not None and not np.all(np.asarray(a) == init):
            raise AuthorsCheckpointError(
                f"{self.where}: variable {name!r} ({reason}) moved from its initial value {init:g}, so the "
                f"authors' forward did read it and our net has no place for it; refusing to drop it")
        self.dropped.setdefault(reason, []).append(name)

    def leftover(self) -> list[str]:
        done = set(self.mapped).union(*self.dropped.values()) if self.dropped else set(self.mapped)
        return sorted(set(self.arrays) - done)

    def check_all_consumed(self) -> None:
        left = self.leftover()
        if left:
            shown = ", ".join(left[:8]) + (f" ... (+{len(left) - 8})" if len(left) > 8 else "")
            raise AuthorsCheckpointError(f"{self.where}: {len(left)} variable(s) our net has no place for: {shown}. "
                                         f"The file holds a different network (or code version) than the variant "
                                         f"describes; nothing was written")

    def summary(self) -> dict:
        return {"n_mapped": len(self.mapped), "dropped": {k: sorted(v) for k, v in self.dropped.items()}}


def strict_state(cfg: RunConfig, state: dict[str, np.ndarray | torch.Tensor], where: str) -> dict:
    """Load `state` into a fresh net of the variant (every key filled, shapes checked) and return its state dict."""
    net = make_model(cfg.hp.model)
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)).contiguous() for k, v in state.items()}
    try:
        ck.load_state_strict(net, tensors, where)
    except ck.CheckpointError as e:
        raise AuthorsCheckpointError(str(e)) from e
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def iteration_from_name(path: Path) -> int | None:
    """Their training iteration from a file name model_<N>[.pth] (both codes name checkpoints so)."""
    m = re.fullmatch(r"model_(\d+)(\.pth)?", path.name)
    return int(m.group(1)) if m else None


def write_imported(out: Path, cfg: RunConfig, model: dict, ema: dict | None, info: dict) -> dict:
    """Our model.pt (train.py _write_final layout) with an `imported` record; plain data + tensors only."""
    final = {"format": ck.FORMAT, "kind": "model", "model_args": ck.model_args(cfg.hp.model),
             "config": cfg.to_dict(),
             "training_hash": None,  # not trained by this project: no training config produced these weights
             "step": info["iteration"] if info["iteration"] is not None else 0,
             "model": model, "ema": ema, "snapshots": [], "diverged": None, "imported": info}
    ck.save(Path(out), final)
    return final


def import_checkpoint(source: str, cfg: RunConfig, path: Path, out: Path, trust_pickle: bool = False) -> dict:
    """Convert their checkpoint at `path` for variant `cfg` into our model.pt at `out`; returns the record."""
    if source not in SOURCES:
        raise AuthorsCheckpointError(f"unknown --source {source!r}; choose one of {sorted(SOURCES)}")
    model, ema, info = SOURCES[source](cfg, Path(path), trust_pickle)
    if cfg.hp.test_sampling.use_ema and ema is None:
        raise AuthorsCheckpointError(f"variant {cfg.variant!r} samples from EMA weights (test_sampling.use_ema) "
                                     f"but {path} holds none")
    info = {"source": source, "path": str(path), "variant": cfg.variant, **info}
    write_imported(out, cfg, model, ema, info)
    return info


def _igebm_tf(cfg: RunConfig, path: Path, trust_pickle: bool) -> tuple[dict, None, dict]:
    from ebm_repro.authors.igebm_tf import convert
    return convert(cfg, path)


def _icd_pth(cfg: RunConfig, path: Path, trust_pickle: bool) -> tuple[dict, dict | None, dict]:
    from ebm_repro.authors.icd_pth import convert
    return convert(cfg, path, trust_pickle)


# Explicit table (no registration by import side effects): --source -> converter.
SOURCES: dict[str, Callable[[RunConfig, Path, bool], tuple[dict, dict | None, dict]]] = {
    "igebm_tf": _igebm_tf,   # openai/ebm_code_release TF1 checkpoints (model_<iter>.index / .data-*)
    "icd_pth": _icd_pth,     # yilundu/improved_contrastive_divergence torch checkpoints (model_<iter>.pth)
}
