"""Atomic file writes and strict checkpoints: model arguments and config as plain data, every RNG state.

Every file ebm-repro writes with `save` holds plain data only (dicts, lists, tuples, numbers, strings, tensors)
and is read with torch.load(weights_only=True): loading a file from someone else cannot run code. The one full
unpickle is in `load_third_party`, behind the user's explicit --trust-pickle.

    python -m ebm_repro.checkpoint convert PATH...   # our format 1 -> 2, once; keeps PATH.format1.bak
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pickle
import random
import re
import shutil
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ebm_repro.config import ModelConfig

# 1: RNG states as numpy/python objects (needed a full unpickle); 2: everything plain data (weights_only=True).
FORMAT = 2
CONVERT = "python -m ebm_repro.checkpoint convert"


class CheckpointError(RuntimeError):
    """A checkpoint does not match what is asked of it; the message names keys and the fix."""


class UnsafeCheckpointError(CheckpointError):
    """A file that torch.load(weights_only=True) refuses: loading it would mean unpickling arbitrary objects."""

    def __init__(self, message: str, global_name: str | None = None):
        super().__init__(message)
        self.global_name = global_name  # e.g. "numpy._core.multiarray._reconstruct"; None if torch names none


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


_SCALARS = (str, bytes, int, float, bool, complex, type(None), torch.Size, torch.dtype, torch.device)


def check_plain(obj: Any, where: str = "") -> None:
    """Raise CheckpointError naming the first value torch.load(weights_only=True) could not read back."""
    t = type(obj)
    if t in (dict, OrderedDict):
        for k, v in obj.items():
            check_plain(k, f"{where} key {k!r}")
            check_plain(v, f"{where}[{k!r}]")
    elif t in (list, tuple):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif t not in _SCALARS and t not in (torch.Tensor, nn.Parameter):  # exact types: np.float64 is a float
        raise CheckpointError(f"cannot save {where.strip() or 'the object'}: a {t.__module__}.{t.__qualname__} is not "
                              f"plain data and would need a full unpickle to load; store it as numbers, strings, "
                              f"lists, dicts or tensors")


def save(path: Path, obj: dict) -> None:
    """Atomically torch.save a dict of plain data (checked first, so every file we write loads as data)."""
    check_plain(obj)
    atomic_write(path, lambda f: torch.save(obj, f))


def _plain_numpy_rng(state: tuple) -> dict:
    """np.random.get_state()'s tuple as plain data; the MT19937 key (624,) uint32 as an int64 tensor."""
    name, key, pos, has_gauss, gauss = state
    return {"bit_generator": str(name), "key": torch.from_numpy(np.asarray(key).astype(np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)}


def _plain_python_rng(state: tuple) -> dict:
    """random.getstate()'s (version, 625 ints, gauss_next) as plain data."""
    version, internal, gauss_next = state
    return {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next}


def rng_state() -> dict:
    """torch, numpy (legacy global) and python RNG states as plain data (rebuilt by set_rng_state)."""
    s = {"torch": torch.get_rng_state(), "numpy": _plain_numpy_rng(np.random.get_state(legacy=True)),
         "python": _plain_python_rng(random.getstate())}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["bit_generator"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _refused(path: Path, err: pickle.UnpicklingError, what: str,
             hint: str | Callable[[str | None], str]) -> UnsafeCheckpointError:
    """The error for a file torch.load(weights_only=True) refused: name the global, say why, add the hint.

    `hint`: what to do, or a function of the refused global's name (None if torch named none) saying it.
    """
    msg = str(err)
    m = re.search(r"GLOBAL (\S+) was not an allowed global", msg)
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", msg, re.S)
    name = m.group(1) if m else None
    why = (f"it references the Python object `{name}`" if name else
           f"torch's data-only reader stops at: {detail.group(1).strip() if detail else msg.splitlines()[0]}")
    return UnsafeCheckpointError(
        f"{path} cannot be loaded as data only ({why}); unpickling it could run code, so it was not opened. "
        f"ebm-repro reads {what} files with torch.load(weights_only=True) only. "
        + (hint(name) if callable(hint) else hint), name)


def load_data(path: Path, what: str = "checkpoint", unsafe_hint: str | Callable[[str | None], str] = "",
              fix: str = "delete it and recreate it") -> Any:
    """torch.load(path, weights_only=True), with CheckpointErrors that say what is wrong and what to do."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights-only reader raises exactly this for what it refuses
        raise _refused(path, e, what, unsafe_hint or "If you do not know where this file came from, delete it.") \
            from None
    except Exception as e:  # truncated or not a torch file
        raise CheckpointError(f"{what} {path} is unreadable ({e}); {fix}") from e


# What a format-1 file holds beyond plain data: numpy's RNG state, i.e. one uint32 array. Reading exactly these
# globals builds arrays and dtypes and calls nothing else (torch documents this allowlist for numpy arrays).
_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]
FORMAT1_GLOBALS = [(_reconstruct, "numpy._core.multiarray._reconstruct"),  # numpy 2 writers
                   (_reconstruct, "numpy.core.multiarray._reconstruct"),   # numpy 1 writers
                   np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _ours_hint(path: Path) -> Callable[[str | None], str]:
    """What to do with one of our files that does not load as data, by the global it references."""
    def hint(name: str | None) -> str:
        if name is None:
            return "It is damaged or not a torch file: delete it and retrain."
        if name.split(".")[0] == "numpy":
            return (f"ebm-repro checkpoints of format 1 hold numpy RNG states like this. If it is yours, convert "
                    f"it once: `{CONVERT} {path}` (it reads only numpy arrays besides plain data, runs no code, "
                    f"and keeps the original as {path.name}.format1.bak); otherwise delete it and retrain.")
        return (f"No ebm-repro file references `{name}`: this one was not written by ebm-repro or was altered. "
                f"Delete it and do not load it elsewhere.")
    return hint


def load(path: Path) -> dict:
    """An ebm-repro checkpoint / snapshot / model file of the current FORMAT, read as data only."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found; run the train rule first")
    ckpt = load_data(path, "checkpoint", _ours_hint(path), fix="delete it and retrain")
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise CheckpointError(f"{path} is not an ebm-repro checkpoint (format {FORMAT})")
    if ckpt["format"] == 1:  # a format-1 file without numpy objects (model.pt, snapshots): loaded as data
        raise CheckpointError(f"{path} is an ebm-repro checkpoint of format 1; this version reads format "
                              f"{FORMAT}. Convert it once with `{CONVERT} {path}` (it holds plain data only), "
                              f"or delete it and retrain.")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format']!r}; this version of ebm-repro reads "
                              f"format {FORMAT} (a newer ebm-repro wrote it?)")
    return ckpt


def load_third_party(path: Path, trust_pickle: bool = False, allow_globals: Iterable = ()) -> Any:
    """Someone else's checkpoint (e.g. the authors' release): data only; a full unpickle only if trust_pickle.

    `allow_globals`: classes known to be inert containers, passed to torch.serialization.safe_globals
    (each a class or a (class, "module.Name") pair), e.g. argparse.Namespace. With trust_pickle=True (the
    user's explicit --trust-pickle) a file that does not load as data is fully unpickled: the one place in
    ebm-repro that runs code from a file, announced on stderr.
    """
    hint = ("Loading it needs a full unpickle, which runs any code the file contains. Only if you trust its "
            "source (e.g. the authors' official release, checksum verified), rerun with --trust-pickle.")
    try:
        with torch.serialization.safe_globals(list(allow_globals)):
            return load_data(path, "third-party checkpoint", hint)
    except UnsafeCheckpointError:
        if not trust_pickle:
            raise
    print(f"WARNING: fully unpickling {path} (--trust-pickle): this executes any code the file contains. "
          f"Only do this for files whose source you trust.", file=sys.stderr, flush=True)
    return torch.load(path, map_location="cpu", weights_only=False)


def _plain(obj: Any) -> Any:
    """numpy arrays -> tensors, numpy scalars -> python numbers, recursively (format-1 -> 2 conversion)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if type(obj) in (dict, OrderedDict):
        out = type(obj)((k, _plain(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a state_dict's module versions (load_state_dict reads them)
            out._metadata = obj._metadata
        return out
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def upgrade(ckpt: dict) -> dict:
    """A format-1 checkpoint dict as format 2: the RNG states as plain data, any other numpy value converted."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise CheckpointError("not an ebm-repro checkpoint of format 1")
    out = dict(ckpt, format=FORMAT)
    r = dict(out.get("rng") or {})
    if isinstance(r.get("numpy"), tuple):  # format 1 stored np.random.get_state() as it is
        r["numpy"] = _plain_numpy_rng(r["numpy"])
    if isinstance(r.get("python"), tuple):  # and random.getstate()
        r["python"] = _plain_python_rng(r["python"])
    if r:
        out["rng"] = r
    out = _plain(out)
    check_plain(out)  # anything else that is not data: refuse rather than write a file we cannot read
    return out


def convert(path: Path) -> str:
    """Rewrite an ebm-repro format-1 file in format 2, keeping the original as PATH.format1.bak; say what was done.

    Read as data, plus numpy arrays (FORMAT1_GLOBALS) for a train state's RNG: nothing in the file is executed.
    """
    path = Path(path)
    not_ours = "is not an ebm-repro checkpoint of format 1; nothing written"
    try:
        old = load_data(path, "checkpoint", lambda name: f"It {not_ours}.")
    except UnsafeCheckpointError as e:
        if e.global_name is None or e.global_name.split(".")[0] != "numpy":
            raise
        with torch.serialization.safe_globals(FORMAT1_GLOBALS):
            old = load_data(path, "checkpoint", lambda name: f"Besides numpy arrays it references `{name}`: it "
                                                             f"{not_ours}. Delete it.")
    if isinstance(old, dict) and old.get("format") == FORMAT:
        return f"{path}: already format {FORMAT}, left as it is"
    if not isinstance(old, dict) or old.get("format") != 1:
        raise CheckpointError(f"{path} {not_ours}")
    new = upgrade(old)
    backup = path.with_name(path.name + ".format1.bak")
    if backup.exists():
        raise CheckpointError(f"{backup} already exists; move it away first (nothing written)")
    shutil.copy2(path, backup)

    def verify(tmp: Path) -> None:  # the new file must load as data and be format 2 before it replaces the old
        if load_data(tmp, "converted checkpoint").get("format") != FORMAT:
            raise CheckpointError(f"converted {path} does not read back as format {FORMAT}")

    atomic_write(path, lambda f: torch.save(new, f), verify=verify)
    return f"{path}: converted format 1 -> {FORMAT}; the original is kept at {backup} (delete it once satisfied)"


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


def load_nets(cfg, path: Path, mode: str, device: torch.device | str) -> tuple[list[nn.Module], dict]:
    """The nets a variant is evaluated with (eval mode, strict keys) and the checkpoint they came from.

    mode 'single': the final weights, or the EMA copy where test_sampling.use_ema (ICD); 'ensemble': the
    historical snapshots (IGEBM test_inception.py), at least two.
    """
    from ebm_repro.models import make_model  # here, not at the top: the models need nothing of this module

    path = Path(path)
    c = load(path)
    check_model_args(c, cfg.hp.model, path)
    if mode == "ensemble":
        states = c["snapshots"]
        if len(states) < 2:
            raise CheckpointError(f"{path} holds {len(states)} snapshots; the historical ensemble "
                                  f"needs train.n_snapshots >= 2")
    else:
        state = c["ema"] if cfg.hp.test_sampling.use_ema else c["model"]
        if state is None:
            raise CheckpointError(f"{path}: variant {cfg.variant!r} diverged before any usable checkpoint "
                                  f"({(c.get('diverged') or {}).get('reason')}); retrain it first")
        states = [state]
    nets = []
    for i, s in enumerate(states):
        net = make_model(cfg.hp.model)
        load_state_strict(net, s, f"{path} ({'snapshot %d' % i if mode == 'ensemble' else mode})")
        nets.append(net.to(device).eval())
    return nets, c

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ebm_repro.checkpoint", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    cp = sub.add_parser("convert", help="rewrite ebm-repro format-1 checkpoints in format 2 (data only)")
    cp.add_argument("paths", nargs="+", type=Path)
    a = ap.parse_args(argv)
    try:
        for path in a.paths:
            print(convert(path))
    except CheckpointError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
