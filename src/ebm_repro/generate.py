"""Test-time sampling: a buffer of chains refined by Langevin, single model or historical ensemble."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ebm_repro import checkpoint as ck
from ebm_repro.augment import make_augment
from ebm_repro.buffer import to_uint8
from ebm_repro.config import RunConfig, SamplerConfig
from ebm_repro.models import make_model
from ebm_repro.sampling import make_langevin
from ebm_repro.train import pick_device

MODES = ("single", "ensemble", "conditional")


def load_models(cfg: RunConfig, model_path: Path, mode: str, device: torch.device) -> list[nn.Module]:
    """The nets a mode samples from: final (or EMA) weights, or the last n_snapshots snapshots."""
    c = ck.load(model_path)
    ck.check_model_args(c, cfg.hp.model, model_path)
    if mode == "ensemble":
        states = c["snapshots"]
        if len(states) < 2:
            raise ck.CheckpointError(f"{model_path} holds {len(states)} snapshots; the historical ensemble "
                                     f"needs train.n_snapshots >= 2")
    elif cfg.hp.test_sampling.use_ema:
        states = [c["ema"]]
    else:
        states = [c["model"]]
    nets = []
    for i, s in enumerate(states):
        net = make_model(cfg.hp.model)
        ck.load_state_strict(net, s, f"{model_path} ({'snapshot %d' % i if mode == 'ensemble' else mode})")
        nets.append(net.to(device).eval())
    return nets


def generate(cfg: RunConfig, model_path: Path, mode: str, n_samples: int, device: str = "auto",
             seed: int = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N, H, W, C), labels int64 (N,), -1 for unconditional)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    dev = pick_device(device)
    ts, m = cfg.hp.test_sampling, cfg.hp.model
    conditional = m.n_classes > 0
    if mode == "conditional" and not conditional:
        raise ValueError(f"mode 'conditional' needs a conditional model; variant {cfg.variant!r} has none")
    nets = load_models(cfg, model_path, mode, dev)
    sample = make_langevin(SamplerConfig(n_steps=ts.steps_per_iter, step_size=ts.step_size,
                                         noise_std=ts.noise_std, grad_clip=ts.grad_clip, clamp=True))
    augment = make_augment(cfg.hp.augment, m.image_size)
    torch.manual_seed(seed)
    shape = (m.channels, m.image_size, m.image_size)
    out_x, out_y = [], []
    n_rounds = math.ceil(n_samples / ts.n_chains)
    for r in range(n_rounds):
        x = torch.rand((ts.n_chains, *shape), device=dev)                        # (K, C, H, W)
        y = torch.randint(0, m.n_classes, (ts.n_chains,), device=dev) if conditional else None
        for it in range(ts.n_iters):
            net = nets[it % len(nets)]  # IGEBM code: one snapshot per iteration, round-robin
            if it < ts.n_iters - ts.final_iters_fixed:
                reset = torch.rand(ts.n_chains, device=dev) < ts.reinit_frac
                x = torch.where(reset.view(-1, 1, 1, 1), torch.rand_like(x), x)
                if conditional and ts.label_redraw_frac > 0:  # IGEBM code: flip labels early
                    redraw = torch.rand(ts.n_chains, device=dev) < ts.label_redraw_frac
                    y = torch.where(redraw, torch.randint_like(y, m.n_classes), y)
                if ts.augment_every_iter and cfg.hp.augment.enabled:  # ICD: augmentation transition
                    x = augment(x.cpu()).to(dev)
            x = sample(lambda z: net(z, y), x).x
        out_x.append(to_uint8(x).permute(0, 2, 3, 1).cpu())
        out_y.append(y.cpu() if conditional else torch.full((ts.n_chains,), -1))
        if progress:
            print(f"[{cfg.variant}/{mode}] round {r + 1}/{n_rounds}", flush=True)
    images = torch.cat(out_x)[:n_samples].numpy()
    labels = torch.cat(out_y)[:n_samples].long().numpy()
    return images, labels
