"""E11 training: one conditional dSprites EBM per attribute, each on its own (IGEBM §6: "trained independently").

The step is the image trainer's own (train.Learner: replay buffer with a 5% share of fresh chains, Langevin,
L_CD + L2, Adam with the IGEBM clip); what differs from the image runs: the positives are the binary dSprites
images with a float latent vector instead of a class label, and fresh chains start at 0.5 + 0.5 N(0, 1). Held-out
latent combinations (config `held_out`) are removed from the training images. A resumable checkpoint is written
every `train.ckpt_every` iterations (paper-scale runs take hours).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ebm_repro import checkpoint as ck
from ebm_repro.experiments.compose.config import ComposeConfig
from ebm_repro.experiments.compose.data import LatentPositives, chain_init, condition, held_out_mask, load
from ebm_repro.models import make_model
from ebm_repro.train import Learner, TrainingDiverged

KIND = "compose_model"


def learner(cfg: ComposeConfig, attribute: str, data_dir: Path, device: torch.device) -> tuple[Learner, dict]:
    """The seeded Learner of one attribute model on the training split minus the held-out region."""
    seed = cfg.train.seed
    torch.manual_seed(seed)
    images, classes = load(Path(data_dir) / "train.npz")
    keep = ~held_out_mask(classes, cfg.held_out)
    positives = LatentPositives(images[torch.from_numpy(np.flatnonzero(keep))], condition(attribute, classes[keep]),
                                cfg.image_size, torch.Generator().manual_seed(seed))
    model = make_model(cfg.model_config(attribute)).to(device).train()
    ci = cfg.chain_init

    def fresh(n: int, g: torch.Generator) -> torch.Tensor:
        return chain_init(n, cfg.image_size, ci.mean, ci.std, g)

    lrn = Learner(model, positives, cfg, cfg.train.batch_size, seed, device=device, fresh_init=fresh)
    return lrn, {"n_train": int(keep.sum()), "n_held_out_removed": int((~keep).sum())}


def _state(lrn: Learner, step: int, log: list, train_hash: str) -> dict:
    return {"format": ck.FORMAT, "kind": "compose_train_state", "training_hash": train_hash, "step": step,
            "model": lrn.model.state_dict(), "optimizer": lrn.opt.state_dict(), "buffer": lrn.buffer.state_dict(),
            "data_g": lrn.positives.g.get_state(), "rng": ck.rng_state(), "log": log}


def _resume(lrn: Learner, path: Path, train_hash: str) -> tuple[int, list]:
    s = ck.load(path)
    if s.get("training_hash") != train_hash:
        raise ck.CheckpointError(f"{path} was written under another compose training config (hash "
                                 f"{s.get('training_hash')} vs {train_hash} now); delete it to start over")
    ck.load_state_strict(lrn.model, s["model"], f"checkpoint {path}")
    lrn.opt.load_state_dict(s["optimizer"])
    lrn.buffer.load_state_dict(s["buffer"])
    lrn.positives.g.set_state(s["data_g"])
    ck.set_rng_state(s["rng"])
    return s["step"], s["log"]


def train_attribute(cfg: ComposeConfig, attribute: str, data_dir: Path, out: Path, ckpt: Path | None = None,
                    device: torch.device = torch.device("cpu"), log: Callable[[str], None] = print) -> dict:
    """Train one attribute model to its n_iters (resuming from `ckpt` when present); write the model file `out`."""
    train_hash = cfg.train_hash(attribute)
    lrn, counts = learner(cfg, attribute, data_dir, device)
    step, rows = 0, []
    if ckpt is not None and Path(ckpt).is_file():
        step, rows = _resume(lrn, Path(ckpt), train_hash)
        log(f"[{attribute}] resumed from step {step}")
    n_iters, t0, s0 = getattr(cfg.train.n_iters, attribute), time.perf_counter(), step
    while step < n_iters:
        row = lrn.train_step()
        step += 1
        if not all(math.isfinite(row[k]) for k in ("e_pos", "e_neg", "loss")):
            raise TrainingDiverged(f"[{attribute}] non-finite energy or loss at step {step}: {row}")
        if step % cfg.train.log_every == 0 or step == n_iters:
            row.update(step=step, sec_per_iter=(time.perf_counter() - t0) / (step - s0))
            rows.append(row)
            log(f"[{attribute}] step {step}/{n_iters} E+ {row['e_pos']:+.4f} E- {row['e_neg']:+.4f} "
                f"loss {row['loss']:+.4f} {row['sec_per_iter']:.3f}s/it")
        if ckpt is not None and (step % cfg.train.ckpt_every == 0 or step == n_iters):
            ck.save(Path(ckpt), _state(lrn, step, rows, train_hash))
    summary = {"attribute": attribute, "step": step, "training_hash": train_hash, **counts,
               "seconds": time.perf_counter() - t0, "e_pos": rows[-1]["e_pos"] if rows else None,
               "e_neg": rows[-1]["e_neg"] if rows else None}
    ck.save(Path(out), {"format": ck.FORMAT, "kind": KIND, "attribute": attribute,
                        "model_args": ck.model_args(cfg.model_config(attribute)), "training_hash": train_hash,
                        "step": step, "model": lrn.model.state_dict(), "log": rows, "summary": summary})
    return summary


def load_attribute_model(path: Path, cfg: ComposeConfig, attribute: str, device: torch.device) -> torch.nn.Module:
    """A trained attribute model in eval mode; refused when params.yaml now trains it differently."""
    s = ck.load(Path(path))
    if s.get("kind") != KIND or s.get("attribute") != attribute:
        raise ck.CheckpointError(f"{path} is not the {attribute!r} model of E11 (kind {s.get('kind')!r}, "
                                 f"attribute {s.get('attribute')!r})")
    if s["training_hash"] != cfg.train_hash(attribute):
        raise ck.CheckpointError(f"{path} was trained under another compose config (hash {s['training_hash']} vs "
                                 f"{cfg.train_hash(attribute)}); rerun its compose-train job")
    ck.check_model_args(s, cfg.model_config(attribute), Path(path))
    model = make_model(cfg.model_config(attribute))
    ck.load_state_strict(model, s["model"], f"model file {path}")
    return model.to(device).eval().requires_grad_(False)
