"""Test-time sampling protocols (IGEBM and ICD test_inception.py): chains refined by Langevin, chunk by chunk.

Images come in chunks of ts.n_chains; each chunk runs ts.n_iters iterations of ts.steps_per_iter Langevin steps.
- fresh_chains: all chains of a chunk refined every iteration, new U(0, 1) noise per chunk.
- chunk_buffer (IGEBM code): a new buffer per chunk; while it holds < n_chains, each iteration starts draw_size new
  chains from noise and appends them (so 2 x 512 = 1024 rows); then each iteration draws draw_size rows (with
  replacement), resets / relabels some, refines them and writes them back. The chunk's images are rows [0, n_chains).
- persistent_buffer (ICD code): the same, but ONE buffer lives across all chunks; drawn chains are augmented
  (crop, flip, jitter, grayscale, blur), and the last iterations refine fixed slices of the buffer instead.
The last ts.final_iters_fixed iterations (`nomix`) make no resets, label redraws or augmentation.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ebm_repro import checkpoint as ck
from ebm_repro.augment import Blur, make_augment
from ebm_repro.config import RunConfig, SamplerConfig, TestSamplingConfig
from ebm_repro.models import make_model
from ebm_repro.sampling import make_langevin
from ebm_repro.train import pick_device

MODES = ("single", "ensemble")
PROTOCOLS = ("fresh_chains", "chunk_buffer", "persistent_buffer")

# refine(x0 (K, C, H, W), y0 (K,) or None, it) -> x (K, C, H, W): one iteration's Langevin steps; `it` is the
# iteration index within the chunk (the historical ensemble picks its snapshot from it).
Refine = Callable[[torch.Tensor, torch.Tensor | None, int], torch.Tensor]


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


def quantize_output(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Samples in [0, 1] -> uint8: code = rescale_im, floor(clip(256 x, 0, 255)); round = round(255 x)."""
    if mode == "code":
        return (x.detach() * 256).clamp(0, 255).floor().to(torch.uint8)
    return (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)


class ChainStore:
    """A test-time buffer: chains (N, C, H, W) as floats with labels (N,) (test_inception.py InceptionReplayBuffer)."""

    def __init__(self):
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.x is None else len(self.x)

    def append(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # the code's add() extends its storage while it is not yet full, so 2 x 512 draws give 1024 rows
        self.x = x if self.x is None else torch.cat([self.x, x])
        self.y = y if self.y is None else torch.cat([self.y, y])

    def write(self, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """set_elms: rows idx <- x; a row drawn twice keeps its LAST copy, as the code's Python loop does."""
        pos = torch.arange(len(idx), device=idx.device)
        last = torch.full((len(self),), -1, dtype=torch.long, device=idx.device)
        last.scatter_reduce_(0, idx, pos, reduce="amax")      # (N,): position of the last write to each row
        rows = (last >= 0).nonzero().squeeze(1)
        self.x[rows], self.y[rows] = x[last[rows]], y[last[rows]]


def _noise(n: int, shape: tuple[int, ...], n_classes: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """n chains from U(0, 1) with uniform labels (-1 for an unconditional model)."""
    x = torch.rand((n, *shape), device=device)
    y = (torch.randint(0, n_classes, (n,), device=device) if n_classes
         else torch.full((n,), -1, dtype=torch.long, device=device))
    return x, y


def _perturb(ts: TestSamplingConfig, x: torch.Tensor, y: torch.Tensor, n_classes: int,
             augment: Callable[[torch.Tensor], torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Before a mixing iteration: reset reinit_frac of the chains to noise, redraw labels, augment (in that order)."""
    k, shape = len(x), x.shape[1:]
    if ts.reinit_frac > 0:
        reset = torch.rand(k, device=x.device) < ts.reinit_frac          # IGEBM code: uniform > 0.99
        x = torch.where(reset.view(-1, *[1] * len(shape)), torch.rand_like(x), x)
    if n_classes and ts.label_redraw_frac > 0:
        redraw = torch.rand(k, device=x.device) < ts.label_redraw_frac   # IGEBM code: uniform > 0.9
        y = torch.where(redraw, torch.randint_like(y, n_classes), y)
    if augment is not None:
        if ts.quantize == "code":
            # the code's transform reads each chain through PIL: np.array(im * 255, dtype=uint8), i.e. floor
            x = (x * 255).clamp(0, 255).floor() / 255
        x = augment(x.cpu()).to(x.device)
    return x, y


def _fresh_chunk(ts, refine: Refine, shape, n_classes, augment, device):
    """fresh_chains: n_chains chains from noise, all refined every iteration."""
    x, y = _noise(ts.n_chains, shape, n_classes, device)
    for it in range(ts.n_iters):
        if it < ts.n_iters - ts.final_iters_fixed:
            x, y = _perturb(ts, x, y, n_classes, augment)
        x = refine(x, y if n_classes else None, it)
    return x, y


def _buffer_chunk(ts, refine: Refine, store: ChainStore, shape, n_classes, augment, device) -> None:
    """One chunk of the chunk_buffer / persistent_buffer protocols on `store` (filled first if needed)."""
    for it in range(ts.n_iters):
        mixing = it < ts.n_iters - ts.final_iters_fixed
        if len(store) < ts.n_chains:                        # still filling: new chains from noise
            x0, y0 = _noise(ts.draw_size, shape, n_classes, device)
            store.append(refine(x0, y0 if n_classes else None, it), y0)
            continue
        if not mixing and ts.final_sweep_parts:             # ICD nomix: fixed slices, i % parts, no transform
            part = ts.n_chains // ts.final_sweep_parts
            idx = torch.arange(part * (it % ts.final_sweep_parts), part * (it % ts.final_sweep_parts + 1),
                               device=device)
        elif ts.draw_with_replacement:                      # random.randint per draw
            idx = torch.randint(0, len(store), (ts.draw_size,), device=device)
        else:
            idx = torch.randperm(len(store), device=device)[: ts.draw_size]
        x0, y0 = store.x[idx], store.y[idx]
        if mixing:
            x0, y0 = _perturb(ts, x0, y0, n_classes, augment)
        store.write(idx, refine(x0, y0 if n_classes else None, it), y0)


def sample_chunks(ts: TestSamplingConfig, refine: Refine, n_chunks: int, shape: tuple[int, ...], n_classes: int,
                  augment: Callable[[torch.Tensor], torch.Tensor] | None, device="cpu",
                  progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ts.protocol for n_chunks chunks; return samples (n_chunks * n_chains, *shape) float and labels."""
    if ts.protocol not in PROTOCOLS:
        raise ValueError(f"test_sampling.protocol: unknown {ts.protocol!r}; choose one of {PROTOCOLS}")
    out_x, out_y, store = [], [], ChainStore()
    for c in range(n_chunks):
        if ts.protocol == "fresh_chains":
            x, y = _fresh_chunk(ts, refine, shape, n_classes, augment, device)
        else:
            if ts.protocol == "chunk_buffer":
                store = ChainStore()                        # IGEBM: data_buffer = InceptionReplayBuffer(1000) per chunk
            _buffer_chunk(ts, refine, store, shape, n_classes, augment, device)
            x, y = store.x[: ts.n_chains], store.y[: ts.n_chains]
        out_x.append(x.detach().cpu().clone())
        out_y.append(y.detach().cpu().clone())
        if progress:
            progress(c)
    return torch.cat(out_x), torch.cat(out_y)


def generate(cfg: RunConfig, model_path: Path, mode: str, n_samples: int, device: str = "auto",
             seed: int = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N, H, W, C), labels int64 (N,), -1 for unconditional)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    dev = pick_device(device)
    ts, m = cfg.hp.test_sampling, cfg.hp.model
    nets = load_models(cfg, model_path, mode, dev)
    langevin = make_langevin(SamplerConfig(n_steps=ts.steps_per_iter, step_size=ts.step_size,
                                           noise_std=ts.noise_std, grad_clip=ts.grad_clip, clamp=True))

    def refine(x: torch.Tensor, y: torch.Tensor | None, it: int) -> torch.Tensor:
        net = nets[it % len(nets)]  # IGEBM code: model_index = curr_index % len(X_finals), round-robin per chunk
        return langevin(lambda z: net(z, y), x).x

    augment = None
    if ts.augment_every_iter and cfg.hp.augment.enabled:
        augment = make_augment(cfg.hp.augment, m.image_size,
                               Blur(ts.blur_p, ts.blur_kernel, ts.blur_sigma_min, ts.blur_sigma_max))
    torch.manual_seed(seed)
    n_chunks = math.ceil(n_samples / ts.n_chains)
    report = (lambda c: print(f"[{cfg.variant}/{mode}] chunk {c + 1}/{n_chunks}", flush=True)) if progress else None
    x, y = sample_chunks(ts, refine, n_chunks, (m.channels, m.image_size, m.image_size), m.n_classes, augment,
                         dev, report)
    images = quantize_output(x, ts.quantize).permute(0, 2, 3, 1)[:n_samples].numpy()
    return images, y[:n_samples].long().numpy()
