"""Atomic file writes and strict checkpoints: model arguments and config as plain data, every RNG state."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ebm_repro.config import ModelConfig

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint does not match what is asked of it; the message names keys and the fix."""


def atomic_write(path: Path, write, verify: Callable[[Path], None] | None = None) -> None:
    """Write via a temp file in the same folder, fsync, then rename: a crash leaves the old file intact.

    `verify(tmp_path)` may raise to refuse the written bytes (e.g. a checksum); nothing reaches `path` then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def file_digest(path: Path, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(path: Path, obj: dict) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict:
    s = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def load(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found; run the train rule first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or not a torch file
        raise CheckpointError(f"checkpoint {path} is unreadable ({e}); delete it and retrain") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ebm-repro checkpoint (format {FORMAT})")
    return ckpt


def load_state_strict(module: nn.Module, state: dict, what: str) -> None:
    """load_state_dict that names every missing, unexpected or mis-shaped key (no silent partial load)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        def fmt(keys):
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8})" if len(keys) > 8 else "")
        parts = [f"missing keys: {fmt(missing)}" if missing else "",
                 f"unexpected keys: {fmt(unexpected)}" if unexpected else "",
                 f"shape mismatch: {fmt(shapes)}" if shapes else ""]
        raise CheckpointError(f"{what} does not match the model architecture ("
                              + "; ".join(p for p in parts if p)
                              + "). It was trained with another architecture or config: point to the "
                                "right checkpoint or fix params.yaml.")
    module.load_state_dict(state, strict=True)


def check_model_args(ckpt: dict, expected: ModelConfig, path: Path) -> None:
    """Refuse a checkpoint whose stored model arguments differ from the config's."""
    got, want = ckpt["model_args"], dataclasses.asdict(expected)
    diff = {k: (got.get(k), want[k]) for k in want if got.get(k) != want[k]}
    if diff:
        txt = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path} was trained with other model arguments ({txt}); "
                              f"use the matching params.yaml or retrain")


def model_args(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
