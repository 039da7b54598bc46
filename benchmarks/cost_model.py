"""Cost model: FLOPs of the paper-setting DAG from counted FLOPs, and GPU-hours at a stated MFU.

    python benchmarks/cost_model.py            # writes results/tables/cost.md (+ .json, provenance sidecar)

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode (convolutions, matmuls and their backward
passes; elementwise ops, norms and the optimiser are not counted, so MFU here means "of the counted FLOPs"):
- one training iteration of each trained variant: the real Trainer.train_step at small batch B and Langevin
  length s, fitted exactly by F(B, s) = a + bB + cs + dBs (every part of a step is per-chain or per-step:
  chains, L_opt chains (K = B here), the L_ent bank, spectral-norm power iterations) from 4 points and checked
  on a 5th, then evaluated at the paper's B and s; the replay buffer is pre-filled past ent_min_buffer so L_ent
  is counted as in the steady state;
- one Langevin image-step at test time (eval mode), times the protocol's image-steps per kept sample, counted by
  running generate.sample_chunks with a refine() that only counts;
- one Inception-v3 forward (torchvision's architecture at 299x299) per scored or reference image.
The DAG's jobs (train_model, sample_model, compute_metrics) come from Snakemake's paper-setting DAG.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from ebm_repro import config as C  # noqa: E402
from ebm_repro import generate as G  # noqa: E402
from ebm_repro.models import make_model  # noqa: E402
from ebm_repro.params import load_params  # noqa: E402
from ebm_repro.report import write_provenance  # noqa: E402
from ebm_repro.train import Trainer  # noqa: E402

# dense peak FLOP/s (vendor data sheets, SXM parts): bf16 and TF32 tensor cores, fp32 without tensor cores
PEAKS = {"A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
         "H100": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}}
MFU = 0.30              # the target MFU for the Langevin loop, assumed for the whole job
MFU_HIGH = 0.50         # a well-tuned large-batch conv net (the totals give both)
# the papers' stated training compute for their CIFAR-10 models
PAPER_COST = {"igebm": "1 GPU for 2 days per model (IGEBM App. 9.6: \"We train our model on 1 GPU for 2 days\")",
              "icd": "1 day on one 32 GB V100 per model (ICD App. C.2: \"on a single 32GB Volta GPU for CIFAR-10 for 1 day\")"}
PAPER_GPU_DAYS = {"igebm": 2.0, "icd": 1.0}
FIT_POINTS = [(2, 2), (4, 2), (2, 3), (4, 3)]   # (batch, Langevin steps) of the exact fit
CHECK_POINT = (6, 4)


class _NoModuleTracking:
    """Stands in for FlopCounterMode's module tracker: its backward hooks break autograd.grad on a leaf input
    (every Langevin step); without it all FLOPs go to the 'Global' total, which is all we read."""
    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def count(fn) -> int:
    """FLOPs of fn() as FlopCounterMode counts them."""
    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _NoModuleTracking()
    with fc:
        fn()
    return fc.get_total_flops()


def small_run(cfg: C.RunConfig, batch: int, steps: int) -> C.RunConfig:
    """cfg at `batch` chains and `steps` Langevin steps, L_opt chains scaled with the batch (K / B kept)."""
    hp = cfg.hp
    k = hp.loss.kl_opt_chains * batch / hp.train.batch_size
    if k != int(k):
        raise ValueError(f"{cfg.variant}: kl_opt_chains / batch_size = {hp.loss.kl_opt_chains}/{hp.train.batch_size} "
                         f"does not scale to batch {batch}")
    hp = dataclasses.replace(hp, train=dataclasses.replace(hp.train, batch_size=batch),
                             sampler=dataclasses.replace(hp.sampler, n_steps=steps),
                             loss=dataclasses.replace(hp.loss, kl_opt_chains=max(int(k), 1)))
    return dataclasses.replace(cfg, hp=hp, runtime=C.RuntimeConfig())


def iteration_flops(cfg: C.RunConfig, data_dir: Path, batch: int, steps: int) -> int:
    """Counted FLOPs of one steady-state training iteration at (batch, steps)."""
    c = small_run(cfg, batch, steps)
    with tempfile.TemporaryDirectory() as out:
        torch.manual_seed(0)
        t = Trainer(c, data_dir, Path(out), device="cpu")
        fill = c.hp.loss.ent_min_buffer + 1   # past the L_ent threshold, as after the first iterations
        for i in range(0, fill, 256):
            t.buffer.push(torch.rand(min(256, fill - i), *t.buffer.shape))
        return count(t.train_step)


def fit_iteration(cfg: C.RunConfig, data_dir: Path) -> dict:
    """F(B, s) = a + bB + cs + dBs from FIT_POINTS, checked at CHECK_POINT, evaluated at the paper's (B, s)."""
    rows = [(b, s, iteration_flops(cfg, data_dir, b, s)) for b, s in FIT_POINTS]
    A = np.array([[1, b, s, b * s] for b, s, _ in rows], dtype=np.float64)
    coef = np.linalg.solve(A, np.array([f for *_, f in rows], dtype=np.float64))
    (bc, sc), f_check = CHECK_POINT, iteration_flops(cfg, data_dir, *CHECK_POINT)
    pred = coef @ np.array([1, bc, sc, bc * sc])
    B, s = cfg.hp.train.batch_size, cfg.hp.sampler.n_steps
    total = float(coef @ np.array([1, B, s, B * s]))
    # the Langevin loop: every step's forward + input-gradient on all chains (the c s + d B s part)
    langevin = float(coef[2] * s + coef[3] * B * s)
    return {"flops_per_iter": total, "langevin_share": langevin / total, "fit_check_rel_err": abs(pred - f_check) / f_check,
            "coef": coef.tolist(), "batch": B, "steps": s}


def test_step_flops(cfg: C.RunConfig) -> float:
    """Counted FLOPs of one test-time Langevin image-step (eval mode: forward + input gradient), per image."""
    net = make_model(cfg.hp.model).eval()
    m = cfg.hp.model

    def step(n):
        x = torch.rand(n, m.channels, m.image_size, m.image_size, requires_grad=True)
        y = torch.arange(n) % m.n_classes if m.n_classes else None
        return count(lambda: torch.autograd.grad(net(x, y).sum(), x))
    f2, f4 = step(2), step(4)
    per = (f4 - f2) / 2
    if abs(f2 - 2 * per) > 1e-6 * f2:
        raise RuntimeError(f"{cfg.variant}: test-time step FLOPs are not linear in the batch ({f2}, {f4})")
    return per


def image_steps_per_sample(ts: C.TestSamplingConfig, n_samples: int) -> float:
    """Langevin image-steps the protocol spends per kept sample (sample_chunks run with a counting refine)."""
    done = [0]

    def refine(x, y, it):
        done[0] += len(x) * ts.steps_per_iter
        return x
    n_chunks = math.ceil(n_samples / ts.n_chains)
    torch.manual_seed(0)
    G.sample_chunks(ts, refine, n_chunks, (1, 1, 1), 0, None)   # image shape does not change the counts
    return done[0] / (n_chunks * ts.n_chains)


def inception_flops() -> float:
    """One Inception-v3 forward at 299x299 (torchvision's architecture; the FID network has the same layers)."""
    from torchvision.models import inception_v3
    net = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    with torch.no_grad():
        return count(lambda: net(torch.rand(1, 3, 299, 299)))


def dag_jobs() -> list[dict]:
    from dvc_from_snakemake import snakemake_jobs
    return snakemake_jobs("paper")


def reference_size(sc: C.ScoreConfig) -> int:
    return {"train": 50000, "train_10k": 10000, "train_test": 60000}[sc.fid_reference]


def gpu_hours(flops: float, gpu: str, precision: str = "bf16", mfu: float = MFU) -> float:
    """Hours of one GPU running `flops` at `mfu` of its dense peak for `precision`."""
    return flops / (PEAKS[gpu][precision] * mfu) / 3600


def table_variants(params: dict) -> dict[str, str]:
    """The variants of the CIFAR-10 tables, by experiment id (E1-E2 inception, E3 ablation, E4 stability)."""
    out = {}
    for r in params["inception"]["rows"]:
        out.setdefault(r["variant"], "E1-E3 inception")
    for r in params["ablation"]["rows"]:
        out.setdefault(r["variant"], "E3 ablation")
    for c in params["stability"]["curves"]:
        out.setdefault(c["variant"], "E4 stability")
    return out


def build(params: dict) -> dict:
    jobs = dag_jobs()
    tables = table_variants(params)
    n_samples = params["settings"]["paper"]["metrics"]["n_samples"]
    f_inc = inception_flops()
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        np.savez(Path(d) / "train.npz", images=rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8),
                 labels=rng.integers(0, 10, 512))
        train, cache = {}, {}
        for j in jobs:
            if j["rule"] != "train_model":
                continue
            v = j["wildcards"]["variant"]
            cfg = C.resolve(params, v, setting="paper")
            if cfg.dataset != "cifar10":
                continue   # E15's MNIST runs are not CIFAR-10 tables
            key = cfg.training_hash()
            t0 = time.time()
            if key not in cache:
                cache[key] = fit_iteration(cfg, Path(d))
            it = cache[key]
            tc = cfg.hp.train
            n_eval = tc.n_iters // tc.eval_every if tc.eval_every else 0
            eval_flops = n_eval * (tc.eval_n_samples + reference_size(cfg.hp.metrics)) * f_inc
            train[v] = {**it, "n_iters": tc.n_iters, "eval_flops": eval_flops,
                        "flops": it["flops_per_iter"] * tc.n_iters + eval_flops, "table": tables.get(v, "other"),
                        "recipe": cfg.recipe}
            print(f"train {v}: {it['flops_per_iter'] / 1e12:.2f} TFLOP/iter, fit check {it['fit_check_rel_err']:.1e}"
                  f" ({time.time() - t0:.0f} s)", flush=True)
    sample = {}
    for j in jobs:
        if j["rule"] != "sample_model":
            continue
        v, mode = j["wildcards"]["variant"], j["wildcards"]["mode"]
        cfg = C.resolve(params, v, setting="paper")
        if cfg.dataset != "cifar10":
            continue
        ts = cfg.hp.test_sampling
        per_step, steps = test_step_flops(cfg), image_steps_per_sample(ts, n_samples)
        metrics = (n_samples + reference_size(cfg.hp.metrics)) * f_inc
        sample[f"{v}/{mode}"] = {"variant": v, "mode": mode, "flops_per_image_step": per_step,
                                 "image_steps_per_sample": steps, "flops_per_sample": per_step * steps,
                                 "n_samples": n_samples, "flops": per_step * steps * n_samples,
                                 "metrics_flops": metrics, "table": tables.get(v, "other")}
        print(f"sample {v}/{mode}: {per_step * steps / 1e9:.1f} GFLOP/sample", flush=True)
    return {"train": train, "sample": sample, "inception_flops": f_inc, "n_samples": n_samples,
            "mfu": [MFU, MFU_HIGH], "peaks": PEAKS, "torch": torch.__version__}


def render(r: dict) -> str:
    tr, sa = r["train"], r["sample"]
    e = lambda x: f"{x:.3g}"  # noqa: E731
    in_tables = lambda d: [k for k in d if d[k]["table"] != "other"]  # noqa: E731
    t_train = sum(tr[v]["flops"] for v in in_tables(tr))
    t_sample = sum(sa[k]["flops"] + sa[k]["metrics_flops"] for k in in_tables(sa))
    total = t_train + t_sample
    h100, a100 = gpu_hours(total, "H100"), gpu_hours(total, "A100")
    hp = {p: gpu_hours(total, "H100", p) for p in ("bf16", "tf32", "fp32")}
    hi = {(g, p): gpu_hours(total, g, p, MFU_HIGH) for g in PEAKS for p in ("bf16", "tf32", "fp32")}
    L = ["# Cost model: the CIFAR-10 tables (E1-E4) in FLOPs and GPU-hours", "",
         f"**The CIFAR-10 tables cost about {h100:.0f} H100-hours** ({a100:.0f} A100-hours) by this model: "
         f"{total:.3g} counted FLOPs at {MFU:.0%} MFU of the dense bf16 peak "
         f"(H100 SXM {PEAKS['H100']['bf16'] / 1e12:.0f} TFLOP/s, A100 SXM {PEAKS['A100']['bf16'] / 1e12:.0f} TFLOP/s, "
         f"NVIDIA data sheets); {hi[('H100', 'bf16')]:.0f} H100-hours at {MFU_HIGH:.0%} MFU. Not measured on any GPU (none was available); benchmarks/throughput.py measures MFU when one is.", "",
         "Precision matters more than anything else here: bf16 Langevin steps do **not** stay within the "
         "tolerance of fp32 (results/tables/precision.md), so runtime.precision stays fp32 and the hours at equal "
         "maths are those of TF32 tensor cores, if TF32 passes the same tolerance on a GPU (not measurable on a "
         "CPU), else of plain fp32:", "",
         f"| all counted FLOPs on the dense peak of (H100 / A100) | H100-hours at {MFU:.0%} MFU | A100-hours at "
         f"{MFU:.0%} | H100-hours at {MFU_HIGH:.0%} | A100-hours at {MFU_HIGH:.0%} |", "|---|---|---|---|---|",
         *[f"| {p} ({PEAKS['H100'][p] / 1e12:.0f} / {PEAKS['A100'][p] / 1e12:.1f} TFLOP/s) | "
           f"{hp[p]:.0f} | {gpu_hours(total, 'A100', p):.0f} | {hi[('H100', p)]:.0f} | {hi[('A100', p)]:.0f} |"
           for p in ("bf16", "tf32", "fp32")], "",
         f"Per-job hours below: bf16 peak at {MFU:.0%} MFU.", "",
         "Counted with `torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls and their backward "
         "passes; elementwise ops, norms and the optimiser not counted) by `benchmarks/cost_model.py`; job counts "
         f"from Snakemake's paper-setting DAG; torch {r['torch']}.", "",
         "## Training (train_model jobs)", "",
         "| variant | table | batch | LD steps | TFLOP / iteration | Langevin share | fit check | iterations | "
         "eval FLOPs | total FLOPs | H100-h | A100-h | paper's stated cost |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v, x in sorted(tr.items(), key=lambda kv: (kv[1]["table"], kv[0])):
        L.append(f"| {v} | {x['table']} | {x['batch']} | {x['steps']} | {x['flops_per_iter'] / 1e12:.2f} | "
                 f"{x['langevin_share']:.0%} | {x['fit_check_rel_err']:.0e} | {x['n_iters']} | {e(x['eval_flops'])} | "
                 f"{e(x['flops'])} | {gpu_hours(x['flops'], 'H100'):.2f} | {gpu_hours(x['flops'], 'A100'):.2f} | "
                 f"{PAPER_COST[x['recipe']]} |")
    L += ["", "## Test-time sampling and scoring (sample_model and compute_metrics jobs)", "",
          "| samples | table | GFLOP / image-step | image-steps / sample | GFLOP / sample | samples | sampling FLOPs | "
          "scoring FLOPs | H100-h | A100-h |", "|---|---|---|---|---|---|---|---|---|---|"]
    for k, x in sorted(sa.items()):
        f = x["flops"] + x["metrics_flops"]
        L.append(f"| {k} | {x['table']} | {x['flops_per_image_step'] / 1e9:.2f} | {x['image_steps_per_sample']:.1f} | "
                 f"{x['flops_per_sample'] / 1e9:.0f} | {x['n_samples']} | {e(x['flops'])} | {e(x['metrics_flops'])} | "
                 f"{gpu_hours(f, 'H100'):.2f} | {gpu_hours(f, 'A100'):.2f} |")
    n_igebm = sum(1 for v in in_tables(tr) if tr[v]["recipe"] == "igebm")
    n_icd = sum(1 for v in in_tables(tr) if tr[v]["recipe"] == "icd")
    L += ["", "## Totals (E1-E4)", "",
          "| part | FLOPs | H100-hours | A100-hours |", "|---|---|---|---|",
          f"| training ({len(in_tables(tr))} models) | {e(t_train)} | {gpu_hours(t_train, 'H100'):.1f} | "
          f"{gpu_hours(t_train, 'A100'):.1f} |",
          f"| test-time sampling + scoring ({len(in_tables(sa))} sample sets of {r['n_samples']}) | {e(t_sample)} | "
          f"{gpu_hours(t_sample, 'H100'):.1f} | {gpu_hours(t_sample, 'A100'):.1f} |",
          f"| **all** | **{e(total)}** | **{h100:.1f}** | **{a100:.1f}** |", "",
          f"The papers' own statements for the same models: {n_igebm} IGEBM models x "
          f"{PAPER_GPU_DAYS['igebm']:.0f} GPU-days + {n_icd} ICD models x {PAPER_GPU_DAYS['icd']:.0f} V100-day = "
          f"{n_igebm * PAPER_GPU_DAYS['igebm'] + n_icd * PAPER_GPU_DAYS['icd']:.0f} GPU-days of 2018-2020 GPUs "
          f"(training only). Iteration counts are our choice (params.yaml train.n_iters; the papers state wall "
          f"time, not iterations).", "",
          f"Inception-v3 forward: {r['inception_flops'] / 1e9:.2f} GFLOP per image (scoring counts the "
          f"{r['n_samples']} samples plus the FID reference set per job, an upper bound where statistics are cached). "
          "Not counted: the 1-in-log_every iterations that also compute the L_CD / L_KL gradient norms, data "
          "augmentation, replay-buffer traffic."]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "results" / "tables" / "cost.md"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-json", help="re-render a previous run's .json (no counting)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = load_params()
    r = json.loads(Path(a.from_json).read_text()) if a.from_json else build(params)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(r))
    Path(out.with_suffix(".json")).write_text(json.dumps(r, indent=1) + "\n")
    write_provenance(out, [ROOT / "params.yaml"], {"script": "benchmarks/cost_model.py", "mfu": [MFU, MFU_HIGH],
                                                   "peaks": PEAKS})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
