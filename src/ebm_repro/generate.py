"""Test-time sampling protocols (IGEBM and ICD test_inception.py): chains refined by Langevin, chunk by chunk.

Images come in chunks of ts.n_chains; each chunk runs ts.n_iters iterations of ts.steps_per_iter Langevin steps.
- fresh_chains: all chains of a chunk refined every iteration, new U(0, 1) noise per chunk.
- chunk_buffer (IGEBM code): a new buffer per chunk; while it holds < n_chains, each iteration starts draw_size new
  chains from noise and appends them (so 2 x 512 = 1024 rows); then each iteration draws draw_size rows (with
  replacement), resets / relabels some, refines them and writes them back. The chunk's images are rows [0, n_chains).
- persistent_buffer (ICD code): the same, but ONE buffer lives across all chunks; drawn chains are augmented
  (crop, flip, jitter, grayscale, blur), and the last iterations refine fixed slices of the buffer instead.
The last ts.final_iters_fixed iterations (`nomix`) make no resets, label redraws or augmentation.

`generate` seeds every chunk from (seed, chunk index), so under torchrun (one contiguous block of chunks per rank,
gathered on rank 0 in chunk order) the fresh_chains and chunk_buffer protocols give exactly the one-process
samples; persistent_buffer keeps one buffer per rank across that rank's chunks (another sample set, same law).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ebm_repro import checkpoint as ck
from ebm_repro import distributed as D
from ebm_repro.augment import Blur, make_augment
from ebm_repro.config import RunConfig, SamplerConfig, TestSamplingConfig
from ebm_repro.runtime import HotPath, pick_device, prepare_model, set_matmul_precision
from ebm_repro.sampling import make_langevin

MODES = ("single", "ensemble")
PROTOCOLS = ("fresh_chains", "chunk_buffer", "persistent_buffer")

# refine(x0 (K, C, H, W), y0 (K,) or None, it) -> x (K, C, H, W): one iteration's Langevin steps; `it` is the
# iteration index within the chunk (the historical ensemble picks its snapshot from it).
Refine = Callable[[torch.Tensor, torch.Tensor | None, int], torch.Tensor]


def load_models(cfg: RunConfig, model_path: Path, mode: str, device: torch.device) -> list[nn.Module]:
    """The nets a mode samples from: final (or EMA) weights, or the last n_snapshots snapshots."""
    return ck.load_nets(cfg, model_path, mode, device)[0]


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
        hit, src = last >= 0, last.clamp(min=0)
        # a select over all rows rather than indexing the hit rows: no wait for the device to count them
        self.x = torch.where(hit.view(-1, *[1] * (x.dim() - 1)), x[src], self.x)
        self.y = torch.where(hit, y[src], self.y)


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
        # the reference transform runs on the CPU; the batched one (runtime.augment) where the chains are
        x = augment(x) if getattr(augment, "on_device", False) else augment(x.cpu()).to(x.device)
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


def chunk_seed(seed: int, chunk: int) -> int:
    """The torch seed of chunk `chunk` (independent streams per chunk, whichever process samples it)."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def sample_chunks(ts: TestSamplingConfig, refine: Refine, n_chunks: int, shape: tuple[int, ...], n_classes: int,
                  augment: Callable[[torch.Tensor], torch.Tensor] | None, device="cpu",
                  progress: Callable[[int], None] | None = None, chunks: Sequence[int] | None = None,
                  seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ts.protocol for n_chunks chunks; return samples (n_chunks * n_chains, *shape) float and labels.

    `chunks`: the chunk indices to run (default all n_chunks); `seed`: reseed torch with chunk_seed(seed, c) before
    each chunk c (default: one stream, as seeded by the caller).
    """
    if ts.protocol not in PROTOCOLS:
        raise ValueError(f"test_sampling.protocol: unknown {ts.protocol!r}; choose one of {PROTOCOLS}")
    out_x, out_y, store = [], [], ChainStore()
    for c in range(n_chunks) if chunks is None else chunks:
        if seed is not None:
            torch.manual_seed(chunk_seed(seed, c))
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
    if not out_x:  # a rank with no chunk (more processes than chunks)
        return torch.zeros((0, *shape)), torch.zeros((0,), dtype=torch.long)
    return torch.cat(out_x), torch.cat(out_y)


def generate(cfg: RunConfig, model_path: Path, mode: str, n_samples: int, device: str = "auto",
             seed: int = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (images uint8 (N, H, W, C), labels int64 (N,), -1 for unconditional).

    Under torchrun each rank samples a contiguous block of chunks; rank 0 returns them all in chunk order, the
    other ranks None.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    d = D.from_env(pick_device(device))
    try:
        return _generate(cfg, model_path, mode, n_samples, device, seed, progress, d)
    finally:
        D.close(d)


def _generate(cfg: RunConfig, model_path: Path, mode: str, n_samples: int, device: str, seed: int,
              progress: bool, d: D.Dist) -> tuple[np.ndarray, np.ndarray] | None:
    dev, rt = D.device_of(d, pick_device(device)), cfg.runtime
    set_matmul_precision(rt, dev)
    ts, m = cfg.hp.test_sampling, cfg.hp.model
    hot = [HotPath(prepare_model(net, rt), rt, dev) for net in load_models(cfg, model_path, mode, dev)]
    langevin = make_langevin(SamplerConfig(n_steps=ts.steps_per_iter, step_size=ts.step_size,
                                           noise_std=ts.noise_std, grad_clip=ts.grad_clip, clamp=True))

    def refine(x: torch.Tensor, y: torch.Tensor | None, it: int) -> torch.Tensor:
        net = hot[it % len(hot)]  # IGEBM code: model_index = curr_index % len(X_finals), round-robin per chunk
        with net.chain_scope():
            return langevin(lambda z: net.energy(z, y), x).x

    augment = None
    if ts.augment_every_iter and cfg.hp.augment.enabled:
        augment = make_augment(cfg.hp.augment, m.image_size,
                               Blur(ts.blur_p, ts.blur_kernel, ts.blur_sigma_min, ts.blur_sigma_max),
                               batched=rt.augment == "batched")
    n_chunks = math.ceil(n_samples / ts.n_chains)
    per = math.ceil(n_chunks / d.world)
    mine = range(d.rank * per, min(n_chunks, (d.rank + 1) * per))   # this rank's chunks (all of them: 1 process)
    report = ((lambda c: print(f"[{cfg.variant}/{mode}] chunk {c + 1}/{n_chunks}", flush=True))
              if progress and d.main else None)
    x, y = sample_chunks(ts, refine, n_chunks, (m.channels, m.image_size, m.image_size), m.n_classes, augment,
                         dev, report, chunks=mine, seed=seed)
    parts = D.gather_objects(d, (quantize_output(x, ts.quantize), y.long()))  # uint8 (n, C, H, W), (n,)
    if parts is None:
        return None
    images = torch.cat([p[0] for p in parts]).permute(0, 2, 3, 1)[:n_samples].numpy()
    return images, torch.cat([p[1] for p in parts])[:n_samples].numpy()
