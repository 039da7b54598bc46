"""Benchmark: E10 particle models -- seconds per training iteration and per rollout step, one torch thread.

    python benchmarks/bench_particle.py                    # paper-size nets and batch (params.yaml `particle.paper`)
    python benchmarks/bench_particle.py --setting smoke
    PYTHONPATH=<old checkout>/src python benchmarks/bench_particle.py   # the same numbers for older code
Times one training iteration exactly as train.train runs it (windows -> loss -> backward -> Adam step; the
validation every train.eval_every iterations is not included) and one rollout step as evaluate.rollout runs it. Reports CPU seconds of this process (robust to other jobs on a
shared machine) and wall seconds, each the minimum over --repeats blocks. No numbers are asserted.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ebm_repro.config import load_params
from ebm_repro.experiments.particle.config import particle_config
from ebm_repro.experiments.particle.evaluate import make_predictor, rollout
from ebm_repro.experiments.particle.models import build_model
from ebm_repro.experiments.particle.sampling import make_sampler
from ebm_repro.experiments.particle.simulate import simulate
from ebm_repro.experiments.particle.train import ebm_losses, sample_windows

KINDS = {"feedforward": None, "ebm_ld": "ebm_ld", "ebm_mppi": "ebm_mppi"}  # model kind -> sampler kind


def timed(fn, n: int, repeats: int) -> tuple[float, float]:
    """Minimum over `repeats` blocks of n calls -> (CPU s per call, wall s per call)."""
    fn()  # warm-up (allocator, oneDNN primitive cache)
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        cpu.append((time.process_time() - c0) / n)
        wall.append((time.perf_counter() - w0) / n)
    return min(cpu), min(wall)


def conv_time_share(fn, n: int) -> float:
    """Share of profiled CPU time spent inside convolution kernels (forward and backward) over n calls."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            fn()
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)
    conv = sum(e.self_cpu_time_total for e in ev if "convolution" in e.key)
    return round(conv / total, 3)


def bench(kind: str, cfg, traj: np.ndarray, iters: int, repeats: int, eval_batch: int, profile: bool) -> dict:
    torch.manual_seed(0)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    model = build_model(kind, cfg.net, cfg.physics.box_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))
    sampler = make_sampler(KINDS[kind], cfg.langevin, cfg.mppi) if KINDS[kind] else None

    def train_iter():
        past, nxt = sample_windows(traj, cfg.train.batch_size, rng)
        loss = F.mse_loss(model(past), nxt) if sampler is None else ebm_losses(model, sampler, past, nxt, cfg, gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_cpu, train_wall = timed(train_iter, iters, repeats)
    conv_share = conv_time_share(train_iter, max(1, iters // 2)) if profile else None
    predict = make_predictor(kind, model, cfg, gen)
    past = torch.from_numpy(traj[np.arange(eval_batch) % len(traj), :3])  # (B, 3, 2)
    step_cpu, step_wall = timed(lambda: rollout(predict, past, 1), max(1, iters // 2), repeats)
    return {"kind": kind, "threads": torch.get_num_threads(), "batch": cfg.train.batch_size,
            "train_s_per_iter_cpu": round(train_cpu, 4), "train_s_per_iter_wall": round(train_wall, 4),
            "train_conv_kernel_share": conv_share,
            "eval_batch": eval_batch, "rollout_s_per_step_cpu": round(step_cpu, 4),
            "rollout_s_per_step_wall": round(step_wall, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=["paper", "smoke"], default="paper")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--iters", type=int, default=10, help="calls per timed block (feed-forward: x20)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also the share of CPU time in convolution kernels")
    ap.add_argument("--params", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    ap.add_argument("--eval-batch", type=int, default=500, help="rollout batch (evaluate: eval.batch_size)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = particle_config(load_params(args.params), args.setting)
    traj = simulate(cfg.physics, 64, 200, np.random.default_rng(0)).astype(np.float32)  # (64, 200, 2)
    rows = []
    for kind in args.kinds:
        n = args.iters * (20 if kind == "feedforward" else 1)
        rows.append(bench(kind, cfg, traj, n, args.repeats, args.eval_batch, args.profile))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| model | train s/iter (CPU) | train s/iter (wall) | rollout s/step (CPU) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['train_s_per_iter_cpu']:.4f} | {r['train_s_per_iter_wall']:.4f} | "
              f"{r['rollout_s_per_step_cpu']:.4f} |")


if __name__ == "__main__":
    main()
