"""ICD authors' torch checkpoints (yilundu/improved_contrastive_divergence @7d3d4ee) -> our icd_resnet / icd_celeba.

Their file (train.py:556-563): {'FLAGS', 'best_inception', 'optimizer_state_dict', 'model_state_dict_<i>',
'ema_model_state_dict_<i>'} with state dicts of ResNetModel (CIFAR-10) or CelebAModel (CelebA-HQ), models.py.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from ebm_repro import checkpoint as ck
from ebm_repro.authors import AuthorsCheckpointError, Ledger, iteration_from_name, strict_state
from ebm_repro.config import ModelConfig, RunConfig

# FLAGS.dataset -> the authors' model class (train.py:692-707) -> our arch
DATASET_ARCH = {"cifar10": "icd_resnet", "stl": "icd_resnet", "celeba": "icd_celeba", "object": "icd_celeba",
                "lsun": "icd_celeba"}
BLOCK_PARTS = {"conv1": "conv1", "conv2": "conv2", "bn1": "norm1", "bn2": "norm2", "latent_map": "film1.map",
               "latent_map_2": "film2.map", "conv_downsample": "down"}  # CondResBlock (models.py:52-113)
ATTN_PARTS = {"query_conv": "query", "key_conv": "key", "value_conv": "value"}  # Self_Attn (models.py:16-26)
# torch.nn.utils.spectral_norm (old hook API) -> torch.nn.utils.parametrizations.spectral_norm; eval uses u, v as is
SN_PARAMS = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
             "weight_v": "parametrizations.weight.0._v"}
UNUSED_DOWNSAMPLE = "Downsample filter buffers `downsample` / `avg_pool` (models.py:241,285,428,474): " \
                    "never called, forward pools with F.avg_pool2d"
UNUSED_LATENT = "latent_map(_2) of an unconditional model: forward sets latent=None (models.py:394-395,590-591)"
UNUSED_ATTN = "self_attn of a model trained without --self_attn (models.py:311,505)"
UNUSED_HEIR = "heir_weight: never read by CelebAModel.forward (models.py:429)"
OPTIMIZER = "optimizer_state_dict (Adam state)"


# ----------------------------------------------------------------------------- untrusted pickles
class _EasyDictAsPlainDict:
    """Stands in for easydict.EasyDict (their FLAGS, train.py:754-757) inside a weights_only load: an OrderedDict."""

    def __new__(cls, *args):
        return collections.OrderedDict()


# Plain-data containers of their FLAGS that a weights_only load may build (no code of the file runs).
FLAG_TYPES = [(_EasyDictAsPlainDict, "easydict.EasyDict"), argparse.Namespace]


def _load_pickle(path: Path, trust_pickle: bool) -> dict:
    """Their .pth as data only (FLAGS' EasyDict read back as a plain dict); a full unpickle only if trusted."""
    if not path.is_file():
        raise AuthorsCheckpointError(f"{path} not found")
    try:
        return ck.load_third_party(path, trust_pickle, allow_globals=FLAG_TYPES)
    except ck.CheckpointError as e:
        raise AuthorsCheckpointError(str(e)) from e
    except ModuleNotFoundError as e:  # trusted full unpickle of a class whose package is not installed
        raise AuthorsCheckpointError(f"{path} pickles objects of module {e.name!r}: pip install {e.name}") from e


# ----------------------------------------------------------------------------- flags
def _flags(ckpt: dict, where: str) -> dict:
    flags = ckpt.get("FLAGS")
    if flags is None:
        raise AuthorsCheckpointError(f"{where}: no 'FLAGS' entry; the architecture switches (cond, self_attn, "
                                     f"square_energy, sigmoid) cannot be read from the weights alone")
    return dict(vars(flags)) if isinstance(flags, argparse.Namespace) else dict(flags)


def check_flags(flags: dict, m: ModelConfig, where: str) -> None:
    """Their FLAGS must describe the network the variant builds (each switch changes the forward)."""
    want = {"filter_dim": m.width, "multiscale": m.multiscale, "self_attn": m.attention,
            "spec_norm": m.spectral_norm, "cond": m.n_classes > 0, "norm": m.norm != "none",
            "alias": False, "square_energy": False, "sigmoid": False}
    missing = sorted(k for k in [*want, "dataset"] if k not in flags)
    if missing:
        raise AuthorsCheckpointError(f"{where}: FLAGS lacks {missing}; not a checkpoint of the ICD code at 7d3d4ee")
    arch = DATASET_ARCH.get(flags["dataset"])
    if arch != m.arch:
        raise AuthorsCheckpointError(f"{where}: FLAGS.dataset={flags['dataset']!r} builds "
                                     f"{arch or 'a model we do not have'}, the variant has arch {m.arch!r}")
    diff = {k: (flags[k], v) for k, v in want.items() if flags[k] != v}
    if diff:
        txt = ", ".join(f"{k}: theirs {a!r} vs ours {b!r}" for k, (a, b) in diff.items())
        raise AuthorsCheckpointError(f"{where}: their FLAGS describe another network ({txt}); alias / "
                                     f"square_energy / sigmoid have no counterpart in our nets")
    if m.norm == "group" or m.activation != "swish" or m.spectral_norm_head:
        raise AuthorsCheckpointError(f"{where}: the code's nets use instance/group norm by width (model.norm: "
                                     f"instance), swish and a plain energy_map; the variant has norm={m.norm!r}, "
                                     f"activation={m.activation!r}, spectral_norm_head={m.spectral_norm_head}")


# ----------------------------------------------------------------------------- key tables
def module_table(arch: str) -> dict[str, str]:
    """Their top-level module names -> ours (scale 0 = full, 1 = half, 2 = quarter resolution)."""
    t: dict[str, str] = {}
    for s, p in enumerate(("", "mid_", "small_")):
        t[f"{p}conv1"], t[f"{p}energy_map"] = f"scales.{s}.stem", f"scales.{s}.head"
    if arch == "icd_resnet":   # ResNetModel: res_<stage><a|b>, 4 / 3 / 2 stages (models.py:245-300)
        for s, (p, n) in enumerate((("", 4), ("mid_", 3), ("small_", 2))):
            for i in range(n):
                for j, ab in enumerate("ab"):
                    t[f"{p}res_{i + 1}{ab}"] = f"scales.{s}.stages.{i}.{j}"
    else:                      # CelebAModel: 8 / 6 / 4 blocks in a row (models.py:432-490)
        names = [f"res_{i}{ab}" for i in range(1, 5) for ab in "ab"]
        for s, (p, n) in enumerate((("", 8), ("mid_", 6), ("small_", 4))):
            for k in range(n):
                t[f"{p}{names[k]}"] = f"scales.{s}.blocks.{k}"
    t["self_attn"] = "scales.0.attention"
    return t


def _our_key(their: str, table: dict[str, str]) -> str | None:
    """Our state-dict key for one of theirs, or None when it has no place in our net."""
    head, _, rest = their.partition(".")
    if head not in table or not rest:
        return None
    ours = table[head]
    if head == "self_attn":
        part, _, param = rest.partition(".")
        return f"{ours}.{ATTN_PARTS[part]}.{param}" if part in ATTN_PARTS else (f"{ours}.gamma"
                                                                                if rest == "gamma" else None)
    if ours.endswith((".stem", ".head")):
        return f"{ours}.{rest}" if rest in ("weight", "bias") else None
    part, _, param = rest.partition(".")
    if part not in BLOCK_PARTS or "." in param:
        return None
    return f"{ours}.{BLOCK_PARTS[part]}.{SN_PARAMS.get(param, param)}"


def convert_state(their: dict, cfg: RunConfig, flags: dict, where: str) -> tuple[dict, dict]:
    """One of their state dicts -> our state dict (strict both ways) and the ledger summary."""
    m = cfg.hp.model
    led = Ledger({k: v.detach().cpu().numpy() for k, v in their.items()}, where)
    table, state = module_table(m.arch), {}
    for key in list(led.arrays):
        head, _, rest = key.partition(".")
        if key in ("downsample.filt", "avg_pool.filt"):
            led.drop(key, UNUSED_DOWNSAMPLE)
        elif key == "heir_weight" and m.arch == "icd_celeba":
            led.drop(key, UNUSED_HEIR)
        elif rest.startswith(("latent_map.", "latent_map_2.")) and not flags["cond"]:
            led.drop(key, UNUSED_LATENT)
        elif head == "self_attn" and not flags["self_attn"]:
            led.drop(key, UNUSED_ATTN)
        else:
            ours = _our_key(key, table)
            if ours is not None:
                state[ours] = led.take(key)
    led.check_all_consumed()  # e.g. `res_1a.avg_pool.filt` (--alias pooling) has no place in our blocks
    return strict_state(cfg, state, where), led.summary()


def convert(cfg: RunConfig, path: Path, trust_pickle: bool = False) -> tuple[dict, dict | None, dict]:
    """Their checkpoint file -> (model state, EMA state or None, record); every top-level entry accounted for."""
    m = cfg.hp.model
    if m.arch not in ("icd_resnet", "icd_celeba"):
        raise AuthorsCheckpointError(f"variant {cfg.variant!r} has arch {m.arch!r}; ICD checkpoints hold "
                                     f"icd_resnet (ResNetModel) or icd_celeba (CelebAModel)")
    ckpt = _load_pickle(Path(path), trust_pickle)
    where = f"ICD checkpoint {path}"
    if not isinstance(ckpt, dict) or "model_state_dict_0" not in ckpt:
        raise AuthorsCheckpointError(f"{where}: no 'model_state_dict_0'; not a checkpoint of the ICD code")
    known = {"FLAGS", "best_inception", "optimizer_state_dict", "model_state_dict_0", "ema_model_state_dict_0"}
    extra = sorted(set(ckpt) - known)
    if extra:  # e.g. model_state_dict_1: --ensembles > 1, which our sampler does not combine
        raise AuthorsCheckpointError(f"{where}: entries we have no place for: {extra}")
    flags = _flags(ckpt, where)
    check_flags(flags, m, where)
    model, summary = convert_state(ckpt["model_state_dict_0"], cfg, flags, f"{where} [model_state_dict_0]")
    ema = None
    if "ema_model_state_dict_0" in ckpt:
        ema, _ = convert_state(ckpt["ema_model_state_dict_0"], cfg, flags, f"{where} [ema_model_state_dict_0]")
    best = ckpt.get("best_inception")
    try:
        best = None if best is None else float(np.asarray(best))
    except (TypeError, ValueError) as e:
        raise AuthorsCheckpointError(f"{where}: best_inception is a {type(best).__name__}, not a number") from e
    info = {"iteration": iteration_from_name(Path(path)), "files": {Path(path).name: ck.file_digest(Path(path))},
            "flags": {k: v for k, v in flags.items() if isinstance(v, (bool, int, float, str)) or v is None},
            "best_inception": best,
            "dropped_entries": {"optimizer_state_dict": OPTIMIZER} if "optimizer_state_dict" in ckpt else {},
            **summary}
    return model, ema, info
