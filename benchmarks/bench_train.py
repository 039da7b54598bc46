"""Benchmark: training iterations/s and Langevin steps/s per variant and preset on this device.

    python benchmarks/bench_train.py                       # paper-size nets, GPU if present
    python benchmarks/bench_train.py --setting smoke       # laptop-size nets
    python benchmarks/bench_train.py --batch 32 --iters 2  # quick CPU look at paper-size nets
Prints one JSON line per (variant, preset) and a Markdown table at the end. No numbers are asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ebm_repro import config as C
from ebm_repro.models import count_params
from ebm_repro.sampling import make_langevin
from ebm_repro.train import Trainer
from ebm_repro.params import load_params


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench(cfg: C.RunConfig, data_dir: Path, iters: int, warmup: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t = Trainer(cfg, data_dir, Path(out), device)
        for _ in range(warmup):
            t.train_step()
        sync(t.dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            t.train_step()
        sync(t.dev)
        it_s = iters / (time.perf_counter() - t0)
        # Langevin alone: the sampler's steps on a batch of chains (no loss, no optimiser)
        sample = make_langevin(cfg.hp.sampler)
        x0 = torch.rand(cfg.hp.train.batch_size, 3, 32, 32, device=t.dev)
        y = (torch.randint(0, cfg.hp.model.n_classes, (len(x0),), device=t.dev)
             if cfg.hp.model.n_classes else None)
        sample(lambda x: t.model(x, y), x0, n_steps=2)
        sync(t.dev)
        t0 = time.perf_counter()
        sample(lambda x: t.model(x, y), x0)
        sync(t.dev)
        steps_s = cfg.hp.sampler.n_steps / (time.perf_counter() - t0)
        mem = torch.cuda.max_memory_allocated() / 2**30 if t.dev.type == "cuda" else None
        return {"variant": cfg.variant, "preset": cfg.preset, "setting": cfg.setting, "device": str(t.dev),
                "device_name": torch.cuda.get_device_name() if t.dev.type == "cuda" else "cpu",
                "threads": torch.get_num_threads(), "batch": cfg.hp.train.batch_size,
                "langevin_steps_per_iter": cfg.hp.sampler.n_steps, "params_M": count_params(t.model) / 1e6,
                "train_it_per_s": round(it_s, 4), "langevin_steps_per_s": round(steps_s, 2),
                "peak_mem_GiB": None if mem is None else round(mem, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default="paper", choices=("paper", "smoke"))
    ap.add_argument("--presets", nargs="+", default=["code", "paper_text"])
    ap.add_argument("--variants", nargs="+")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, help="override train.batch_size (e.g. small for a CPU look)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = load_params()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        np.savez(Path(d) / "train.npz", images=rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8),
                 labels=rng.integers(0, 10, 512))
        for variant in a.variants or sorted(params["variants"]):
            for preset in a.presets:
                cfg = C.resolve(params, variant, setting=a.setting, preset=preset)
                if a.batch:
                    hp = cfg.hp
                    hp = dataclasses.replace(hp, train=dataclasses.replace(hp.train, batch_size=a.batch),
                                             loss=dataclasses.replace(hp.loss, kl_opt_chains=min(
                                                 hp.loss.kl_opt_chains, a.batch)))
                    cfg = dataclasses.replace(cfg, hp=hp)
                r = bench(cfg, Path(d), a.iters, a.warmup, a.device)
                print(json.dumps(r), flush=True)
                rows.append(r)
    print("\n| variant | preset | device | batch | LD steps/it | params (M) | train it/s | Langevin steps/s | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['preset']} | {r['device_name']} | {r['batch']} | {r['langevin_steps_per_iter']} "
              f"| {r['params_M']:.2f} | {r['train_it_per_s']:.3f} | {r['langevin_steps_per_s']:.1f} "
              f"| {r['peak_mem_GiB']} |")


if __name__ == "__main__":
    main()
