"""Throughput of the Langevin hot path, training and test-time sampling, reference path vs each runtime switch.

    python benchmarks/throughput.py                          # all preset nets, CPU defaults (batch 64 / 16)
    python benchmarks/throughput.py --nets icd --rounds 7    # the ICD net only
    python benchmarks/throughput.py --device cuda --batch 128 --igebm-batch 128 --compile   # on a GPU
Writes results/tables/throughput.md (+ .json and a provenance sidecar). Not a test: nothing is asserted.

Timings are interleaved (round r runs every job once, the order rotated by one each round); a rate is the median
over rounds, and "vs reference" the median of the per-round ratios (robust to load that changes between rounds).
Each job records wall time and process CPU time (all threads); on a shared CPU the CPU time is the steadier one.
Jobs per image net (preset nets: IGEBM uncond/cond, ICD multiscale, dSprites where the package has it):
- Langevin image-steps/s: `--steps` sampler steps of a batch in training mode (theta live, dropout and spectral
  norm as in training), under each runtime switch (runtime.HotPath): reference (eager fp32 NCHW), channels_last,
  bf16, bf16 + channels_last, compile (+ channels_last, only with --compile: inductor builds C++ kernels for
  many minutes on a CPU);
- the ICD authors' own PyTorch model (yilundu/improved_contrastive_divergence models.py ResNetModel, copied into
  a temporary folder from --authors-repo; never vendored), loaded with the same weights as ours through
  authors/icd_pth.py's key mapping, so both compute the same energies (checked);
- test-time samples/s: eval-mode image-steps/s divided by the protocol's image-steps per kept sample (counted as
  benchmarks/cost_model.py counts them);
- training iterations/s: Trainer.train_step at --train-batch and --train-steps Langevin steps (CPU-sized),
  reference runtime vs params.yaml's paper runtime, and for ICD with runtime.augment batched too;
- data augmentation images/s: the reference per-image torchvision transform vs the batched one.
Peak memory: CUDA max_memory_allocated, or on a CPU the rise of the process's resident set during the job
(Linux VmHWM after a reset through /proc/self/clear_refs).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cost_model import count, image_steps_per_sample, test_step_flops  # noqa: E402

from ebm_repro import config as C  # noqa: E402
from ebm_repro.augment import Blur, make_augment  # noqa: E402
from ebm_repro.models import make_model  # noqa: E402
from ebm_repro.params import load_params  # noqa: E402
from ebm_repro.report import write_provenance  # noqa: E402
from ebm_repro.runtime import HotPath, prepare_model, set_matmul_precision  # noqa: E402
from ebm_repro.sampling import make_langevin  # noqa: E402
from ebm_repro.train import Trainer  # noqa: E402

AUTHORS_REPO = Path("/work/.mirror/yilundu+improved_contrastive_divergence/repo")
AUTHORS_FILES = ("models.py", "utils.py", "downsample.py")
REF = C.RuntimeConfig()
PATHS = {"reference": REF, "channels_last": dataclasses.replace(REF, channels_last=True),
         "bf16": dataclasses.replace(REF, precision="bf16"),
         "bf16+channels_last": dataclasses.replace(REF, precision="bf16", channels_last=True),
         "compile+channels_last": dataclasses.replace(REF, compile=True, channels_last=True)}
BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}   # dense, SXM data sheets


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


class Timer:
    """Wall time (device synchronised) and process CPU time of a block."""

    def __init__(self, dev: torch.device):
        self.dev = dev

    def __enter__(self):
        sync(self.dev)
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *a):
        sync(self.dev)
        self.wall, self.cpu = time.perf_counter() - self.w0, time.process_time() - self.c0


def malloc_mmap_threshold(nbytes: int) -> None:
    """glibc: serve blocks >= nbytes by mmap (and give them back to the OS on free); no-op elsewhere.

    With glibc's default (a threshold that grows as blocks are freed) freed tensors stay resident, so the resident
    set of a job that runs after another one does not rise: its peak would read 0. PeakMemory lowers the threshold
    to 64 KiB while it measures (the rise is then the job's own tensors) and sets it to 32 MiB, glibc's ceiling of
    the dynamic threshold, for the timed rounds (no mmap/munmap of every activation there).
    """
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, nbytes)        # M_MMAP_THRESHOLD
        libc.malloc_trim(0)


class PeakMemory:
    """Peak memory of a block: CUDA max_memory_allocated, or the rise of the CPU process's resident set."""

    def __init__(self, dev: torch.device):
        self.dev, self.bytes = dev, None

    @staticmethod
    def _status(key: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def __enter__(self):
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            malloc_mmap_threshold(64 * 2**10)
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")   # reset VmHWM to the current resident set
            self.base = self._status("VmRSS")
        return self

    def __exit__(self, *a):
        peak = torch.cuda.max_memory_allocated() if self.dev.type == "cuda" else self._status("VmHWM")
        self.bytes = peak - self.base
        if self.dev.type != "cuda":
            malloc_mmap_threshold(32 * 2**20)


# ----------------------------------------------------------------------------- the authors' ICD model
def authors_icd_model(repo: Path, tmp: Path, ours: torch.nn.Module, cfg: C.RunConfig) -> torch.nn.Module:
    """Their ResNetModel (CIFAR-10 flags of their README) from a temporary copy, with our net's weights."""
    for f in AUTHORS_FILES:   # a git clone (its HEAD) or a folder holding the three files
        if (repo / f).is_file():
            shutil.copy(repo / f, tmp / f)
        else:
            text = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{f}"], check=True, capture_output=True,
                                  text=True).stdout
            (tmp / f).write_text(text)
    # import-time only dependencies of their files that ResNetModel never uses (cv2 in utils.py for image
    # transforms, IPython.embed in downsample.py, easydict in models.py)
    stubs = {"cv2": types.ModuleType("cv2"), "IPython": types.ModuleType("IPython"),
             "easydict": types.ModuleType("easydict")}
    stubs["IPython"].embed = lambda *a, **k: None
    stubs["easydict"].EasyDict = dict
    for name, mod in stubs.items():
        sys.modules.setdefault(name, mod)
    sys.path.insert(0, str(tmp))
    try:
        import models as their_models
    finally:
        sys.path.remove(str(tmp))
    m = cfg.hp.model
    flags = dict(filter_dim=m.width, im_size=m.image_size, spec_norm=m.spectral_norm, norm=m.norm != "none",
                 multiscale=m.multiscale, self_attn=m.attention, alias=False, square_energy=False,
                 sigmoid=False, cond=bool(m.n_classes))
    theirs = their_models.ResNetModel(types.SimpleNamespace(**flags))
    from ebm_repro.authors.icd_pth import convert_state
    state, _ = convert_state(theirs.state_dict(), cfg, flags, "authors' ResNetModel")
    ours.load_state_dict(state, strict=True)        # our net now holds their (random) weights
    return theirs


# ----------------------------------------------------------------------------- jobs
class LangevinJob:
    """`steps` Langevin steps of a fixed batch of chains under one runtime path (or the authors' model)."""

    def __init__(self, net, rt: C.RuntimeConfig, cfg, batch: int, steps: int, dev, train: bool,
                 authors: bool = False, y: torch.Tensor | None = None):
        """cfg: a RunConfig, or anything with .model and .sampler (the dSprites nets); y: labels (default: classes)."""
        hp = getattr(cfg, "hp", cfg)
        m, self.dev = hp.model, dev
        self.net = net.train(train)
        self.hot = None if authors else HotPath(prepare_model(self.net, rt), rt, dev)
        self.sample = make_langevin(dataclasses.replace(hp.sampler, n_steps=steps))
        self.x = torch.rand(batch, m.channels, m.image_size, m.image_size, device=dev)
        self.y = y if y is not None else (torch.arange(batch, device=dev) % m.n_classes if m.n_classes else None)
        self.image_steps = batch * steps
        self.authors = authors

    def energy(self, z):
        if self.authors:   # their forward returns (B, 3) scale energies; Langevin follows their sum
            return self.net(z, None).sum(dim=1)
        return self.hot.energy(z, self.y)

    def __call__(self) -> tuple[float, float]:
        with Timer(self.dev) as t:
            with contextlib.nullcontext() if self.authors else self.hot.chain_scope():
                self.sample(self.energy, self.x)
        return t.wall, t.cpu


class TrainJob:
    """One Trainer.train_step at a CPU-sized batch and chain length, under one runtime."""

    def __init__(self, cfg: C.RunConfig, rt: C.RuntimeConfig, data_dir: Path, batch: int, steps: int, dev):
        hp = cfg.hp
        hp = dataclasses.replace(hp, train=dataclasses.replace(hp.train, batch_size=batch),
                                 sampler=dataclasses.replace(hp.sampler, n_steps=steps),
                                 loss=dataclasses.replace(hp.loss, kl_opt_chains=min(hp.loss.kl_opt_chains, batch)))
        self.tmp = tempfile.TemporaryDirectory()
        self.t = Trainer(dataclasses.replace(cfg, hp=hp, runtime=rt), data_dir, Path(self.tmp.name), str(dev))
        self.dev, self.host = dev, rt.host_sync == "step"

    def __call__(self) -> tuple[float, float]:
        with Timer(self.dev) as t:
            self.t.train_step(host=self.host)
        return t.wall, t.cpu


class AugmentJob:
    def __init__(self, cfg: C.RunConfig, batched: bool, n: int, dev):
        ts = cfg.hp.test_sampling
        self.f = make_augment(cfg.hp.augment, cfg.hp.model.image_size,
                              Blur(ts.blur_p, ts.blur_kernel, ts.blur_sigma_min, ts.blur_sigma_max), batched=batched)
        self.x = torch.rand(n, 3, cfg.hp.model.image_size, cfg.hp.model.image_size,
                            device=dev if batched else "cpu")
        self.dev = dev

    def __call__(self) -> tuple[float, float]:
        with Timer(self.dev) as t:
            self.f(self.x)
        return t.wall, t.cpu


# ----------------------------------------------------------------------------- the benchmark
def image_nets(params: dict, wanted: list[str] | None) -> dict[str, str]:
    """Preset image nets of the variants table: label -> variant (dSprites and particle nets: their own blocks)."""
    nets = {"IGEBM uncond": "igebm_uncond", "IGEBM cond": "igebm_cond", "ICD multiscale": "icd"}
    return {k: v for k, v in nets.items() if not wanted or v in wanted or k in wanted}


def run_rounds(jobs: dict[str, callable], rounds: int, warmup: int = 1) -> dict[str, dict[str, list[float]]]:
    """{job: {"wall": [...], "cpu": [...]}}, one entry per round; round r starts at job r (rotated order)."""
    for j in jobs.values():
        for _ in range(warmup):
            j()
    names = list(jobs)
    times = {k: {"wall": [], "cpu": []} for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            wall, cpu = jobs[k]()
            times[k]["wall"].append(wall)
            times[k]["cpu"].append(cpu)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v['wall'][-1]:.2f}s" for k, v in times.items()),
              flush=True)
    return times


def med(ts) -> float:
    return statistics.median(ts["wall"] if isinstance(ts, dict) else ts)


def ratio(ref: dict, other: dict, kind: str = "wall") -> tuple[float, float, float]:
    """Median and range over rounds of ref / other (same round): > 1 = other is faster."""
    r = [a / b for a, b in zip(ref[kind], other[kind])]
    return statistics.median(r), min(r), max(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="Langevin / test-time chains (ICD, dSprites)")
    ap.add_argument("--igebm-batch", type=int, default=16, help="chains for the IGEBM nets (3x the ICD FLOPs)")
    ap.add_argument("--steps", type=int, default=1, help="Langevin steps per timed job")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--train-rounds", type=int, default=3)
    ap.add_argument("--nets", nargs="+", help="variants or labels (default: all preset nets)")
    ap.add_argument("--paths", nargs="+", default=["reference", "channels_last", "bf16", "bf16+channels_last"])
    ap.add_argument("--compile", action="store_true", help="also time compile+channels_last (long CPU builds)")
    ap.add_argument("--compile-nets", nargs="+", default=[], help="time compile+channels_last for these only")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--authors-repo", default=str(AUTHORS_REPO), help="git clone of the ICD authors' code")
    ap.add_argument("--out", default=str(ROOT / "results" / "tables" / "throughput.md"))
    ap.add_argument("--update", action="store_true",
                    help="re-measure --nets only: replace their rows in the existing .json, keep the others")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    params = load_params()
    load0 = os.getloadavg()
    res: dict = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu",
                 "cpu": _cpu_name(), "torch": torch.__version__, "threads": a.threads, "args": vars(a),
                 "date": datetime.datetime.now().isoformat(timespec="minutes"), "nets": {}}
    tmp = Path(tempfile.mkdtemp())
    try:
        rng = np.random.default_rng(0)
        np.savez(tmp / "train.npz", images=rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8),
                 labels=rng.integers(0, 10, 512))
        for label, variant in image_nets(params, a.nets).items():
            cfg = C.resolve(params, variant, setting="paper")
            set_matmul_precision(REF, dev)
            batch = a.igebm_batch if cfg.recipe == "igebm" else a.batch
            print(f"[{label}] {variant}: batch {batch}, {a.steps} steps per job", flush=True)
            torch.manual_seed(0)
            base = make_model(cfg.hp.model).to(dev)
            jobs, extra = {}, {}
            if variant == "icd" and Path(a.authors_repo).exists():
                authors_dir = tmp / "authors"
                authors_dir.mkdir()
                theirs = authors_icd_model(Path(a.authors_repo), authors_dir, base, cfg).to(dev)
                with torch.no_grad():
                    x = torch.rand(8, 3, 32, 32, device=dev)
                    e_ours, e_theirs = base(x), theirs(x, None).sum(1)
                extra["authors_energy_rel_diff"] = float((e_ours - e_theirs).abs().max() / e_ours.abs().max())
                jobs["authors (ResNetModel)"] = LangevinJob(theirs, REF, cfg, batch, a.steps, dev, True, authors=True)
            compiled = a.compile or variant in a.compile_nets or label in a.compile_nets
            for p in a.paths + (["compile+channels_last"] if compiled else []):
                jobs[p] = LangevinJob(copy.deepcopy(base), PATHS[p], cfg, batch, a.steps, dev, train=True)
            mem = {}
            for k, j in jobs.items():   # peak memory of one job each, before the timed rounds
                with PeakMemory(dev) as pm:
                    j()
                mem[k] = pm.bytes
            times = run_rounds(jobs, a.rounds)
            flops_step = count_step_flops(base, cfg, dev)
            net = {"variant": variant, "batch": batch, "steps": a.steps, "image_steps": jobs["reference"].image_steps,
                   "langevin_s": times, "peak_bytes": mem, "flops_per_image_step": flops_step, **extra}
            # test-time: eval-mode rate of the reference and the paper runtime's layout
            ts = cfg.hp.test_sampling
            net["image_steps_per_sample"] = image_steps_per_sample(ts, params["settings"]["paper"]["metrics"]["n_samples"])
            fast = dataclasses.replace(REF, channels_last=C.resolve(params, variant, "paper").runtime.channels_last)
            ev = {"reference": LangevinJob(copy.deepcopy(base).eval(), REF, cfg, batch, a.steps, dev, False),
                  "paper runtime": LangevinJob(copy.deepcopy(base).eval(), fast, cfg, batch, a.steps, dev, False)}
            net["test_time_s"] = run_rounds(ev, max(a.rounds // 2, 2))
            net["test_flops_per_image_step"] = test_step_flops(cfg)
            if ts.augment_every_iter and cfg.hp.augment.enabled:
                aj = {"torchvision": AugmentJob(cfg, False, ts.draw_size, dev),
                      "batched": AugmentJob(cfg, True, ts.draw_size, dev)}
                net["augment_s"] = run_rounds(aj, 3)
                net["augment_images"] = ts.draw_size
                # images augmented per kept sample: every drawn chain of every mixing iteration
                net["augmented_per_sample"] = augmented_per_sample(ts, params["settings"]["paper"]["metrics"]["n_samples"])
            if not a.no_train:
                rt_paper = C.resolve(params, variant, "paper").runtime
                tj = {"reference": TrainJob(cfg, REF, tmp, a.train_batch, a.train_steps, dev),
                      "paper runtime": TrainJob(cfg, rt_paper, tmp, a.train_batch, a.train_steps, dev)}
                if cfg.hp.augment.enabled:
                    tj["paper runtime + batched augment"] = TrainJob(
                        cfg, dataclasses.replace(rt_paper, augment="batched"), tmp, a.train_batch, a.train_steps, dev)
                net["train_s"] = run_rounds(tj, a.train_rounds)
                net["train_batch"], net["train_steps"] = a.train_batch, a.train_steps
            res["nets"][label] = net
        if not a.nets or "dsprites" in a.nets:
            res["nets"]["dSprites (E11)"] = dsprites_rates(params, dev, a)
        if not a.nets or "particle" in a.nets:
            res["nets"]["particle (E10)"] = particle_rates(params, dev, a)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["loadavg_before"], res["loadavg_after"] = load0, os.getloadavg()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.update and out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        for k, v in res["nets"].items():   # parts not re-measured (e.g. training with --no-train) stay as they were
            old["nets"][k] = {**old["nets"].get(k, {}), **v}
        parts = {k: sorted(p for p in v if p.endswith("_s")) for k, v in res["nets"].items()}
        old.setdefault("reruns", []).append({"date": res["date"], "nets": parts, "args": vars(a),
                                             "loadavg_before": load0, "loadavg_after": res["loadavg_after"]})
        res = old
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.write_text(render(res))
    write_provenance(out, [ROOT / "params.yaml"], {"script": "benchmarks/throughput.py", "args": vars(a)})
    print(out.read_text())


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def count_step_flops(net: torch.nn.Module, cfg: C.RunConfig, dev) -> float:
    """Counted FLOPs of one training-mode Langevin image-step (forward + input gradient), per image."""
    m = cfg.hp.model
    n = copy.deepcopy(net).train()

    def f(b):
        x = torch.rand(b, m.channels, m.image_size, m.image_size, device=dev, requires_grad=True)
        y = torch.arange(b, device=dev) % m.n_classes if m.n_classes else None
        return count(lambda: torch.autograd.grad(n(x, y).sum(), x))
    return (f(4) - f(2)) / 2


def augmented_per_sample(ts: C.TestSamplingConfig, n_samples: int) -> float:
    """Chains augmented per kept sample (the mixing draws of the buffer protocols), counted by sample_chunks."""
    import math
    from ebm_repro import generate as G
    seen = [0]
    torch.manual_seed(0)
    n_chunks = math.ceil(n_samples / ts.n_chains)
    G.sample_chunks(ts, lambda x, y, it: x, n_chunks, (1, 1, 1), 0,
                    lambda x: (seen.__setitem__(0, seen[0] + len(x)), x)[1])
    return seen[0] / (n_chunks * ts.n_chains)


def dsprites_rates(params: dict, dev, a) -> dict:
    """E11's latent-conditioned dsprites_net (the position model): Langevin image-steps/s under each runtime path.

    compose trains through train.Learner with the reference runtime; the switches apply to it all the same.
    """
    from ebm_repro.experiments.compose.config import compose_config
    cc = compose_config(params, "paper")
    m = cc.model_config("position")
    hp = types.SimpleNamespace(model=m, sampler=cc.sampler)
    b = a.batch
    print(f"[dSprites] position model: batch {b}, {a.steps} steps per job", flush=True)
    torch.manual_seed(0)
    base = make_model(m).to(dev)
    y = torch.rand(b, m.n_classes, device=dev)            # (B, 2): x, y position latents
    jobs = {p: LangevinJob(copy.deepcopy(base), PATHS[p], hp, b, a.steps, dev, True, y=y) for p in a.paths}
    mem = {}
    for k, j in jobs.items():
        with PeakMemory(dev) as pm:
            j()
        mem[k] = pm.bytes
    times = run_rounds(jobs, a.rounds)
    n = copy.deepcopy(base).train()
    x2, x4 = (torch.rand(k, 1, m.image_size, m.image_size, device=dev, requires_grad=True) for k in (2, 4))
    f2 = count(lambda: torch.autograd.grad(n(x2, y[:2]).sum(), x2))
    f4 = count(lambda: torch.autograd.grad(n(x4, y[:4]).sum(), x4))
    return {"variant": f"compose position ({m.image_size}x{m.image_size}x1)", "batch": b, "steps": a.steps,
            "image_steps": jobs["reference"].image_steps, "langevin_s": times, "peak_bytes": mem,
            "flops_per_image_step": (f4 - f2) / 2}


def particle_rates(params: dict, dev, a) -> dict | None:
    """E10's energy net: Langevin sample-steps/s of its own sampler (the image runtime switches do not apply)."""
    from ebm_repro.experiments.particle.config import particle_config
    from ebm_repro.experiments.particle.models import build_model
    from ebm_repro.experiments.particle.sampling import conditional_energy, langevin
    pc = particle_config(params, "paper")
    net = build_model("ebm_ld", pc.net, pc.physics.box_size).to(dev)
    b = pc.train.batch_size
    past, x0 = torch.rand(b, 3, 2, device=dev), torch.rand(b, 2, device=dev)
    e = conditional_energy(net, past)

    def job():
        with Timer(dev) as t:
            langevin(e, x0, pc.langevin)
        return t.wall, t.cpu
    with PeakMemory(dev) as pm:
        job()
    times = run_rounds({"reference": job}, a.rounds)
    return {"variant": "particle ebm_ld", "batch": b, "steps": pc.langevin.n_steps,
            "image_steps": b * pc.langevin.n_steps, "langevin_s": times, "peak_bytes": {"reference": pm.bytes},
            "note": "its own sampler and trainer (experiments/particle): the runtime switches are for image nets"}


def _rate_cells(n_items: float, ts: dict, ref: dict) -> tuple[str, str, str]:
    """(wall rate [range], CPU-time rate, per-round ratio vs reference [range])."""
    w = ts["wall"]
    rate = f"{n_items / med(ts):.1f} [{n_items / max(w):.1f} - {n_items / min(w):.1f}]"
    cpu = f"{n_items / statistics.median(ts['cpu']):.1f}"
    rm, rlo, rhi = ratio(ref, ts)
    return rate, cpu, f"{rm:.2f}x [{rlo:.2f} - {rhi:.2f}]"


def _load_note(r: dict) -> str:
    """Say the machine was shared when the load before the run exceeded half its cores."""
    return " (other jobs shared the machine)" if r["loadavg_before"][0] > 0.5 * (os.cpu_count() or 1) else ""


def render(r: dict) -> str:
    gpu = r["device"] if "cuda" in r["args"]["device"] else None
    L = ["# Throughput: reference path vs runtime switches", "",
         f"Device: **{gpu or r['cpu']}** ({r['args']['device']}); torch {r['torch']}; {r['threads']} threads; "
         f"{r['date']}; load average before / after: {r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f} "
         f"on {os.cpu_count()} cores{_load_note(r)}. Written by "
         f"`benchmarks/throughput.py` (arguments in the .json beside this file). Rates: median over "
         f"{r['args']['rounds']} interleaved rounds [min - max]; vs reference: median of the per-round ratios "
         f"[min - max] (> 1 = faster); CPU rate: per second of process CPU time (all threads), steadier under load.",
         ""]
    for rr in r.get("reruns", []):
        L += [f"Re-measured in a later run ({rr['date']}, {rr['args']['rounds']} rounds, load average "
              f"{rr['loadavg_before'][0]:.1f} / {rr['loadavg_after'][0]:.1f}): "
              + "; ".join(f"{k} ({', '.join(v)})" for k, v in rr["nets"].items()) + ".", ""]
    if gpu is None:
        L += ["**GPU: not measured** -- no accelerator was available to this project; the GPU columns of this "
              "table are empty until `benchmarks/gpu_check.sh` runs on one (it writes throughput_gpu.md) (results/tables/cost.md estimates "
              "GPU-hours from counted FLOPs).", ""]
    compiled = any("compile+channels_last" in n["langevin_s"] for n in r["nets"].values())
    L += ["## Langevin hot loop (training mode: forward + input gradient per image-step)", "",
          *([] if compiled else ["runtime.compile: **not measured** in this run (inductor's C++ kernel builds take many "
                                 "minutes on a CPU; `--compile` times it).", ""]),
          "| net | batch | path | image-steps/s | vs reference | image-steps per CPU-s | counted GFLOP/s | "
          "MFU (bf16 peak) | peak memory |", "|---|---|---|---|---|---|---|---|---|"]
    for label, n in r["nets"].items():
        ref = n["langevin_s"]["reference"]
        for p, ts in n["langevin_s"].items():
            rate, cpu, vs = _rate_cells(n["image_steps"], ts, ref)
            fl = n.get("flops_per_image_step")
            gf = f"{n['image_steps'] / med(ts) * fl / 1e9:.1f}" if fl else "—"
            peak = next((v for k, v in BF16_PEAK.items() if gpu and k in gpu), None)
            mfu = f"{n['image_steps'] / med(ts) * fl / peak:.1%}" if fl and peak else ("not measured" if not gpu else "—")
            mem = n["peak_bytes"].get(p)
            L.append(f"| {label} | {n['batch']} | {p} | {rate} | {vs} | {cpu} | {gf} | {mfu} | "
                     f"{'—' if mem is None else f'{mem / 2**20:.0f} MiB'} |")
    icd = r["nets"].get("ICD multiscale")
    if icd and "authors (ResNetModel)" in icd["langevin_s"]:
        t = icd["langevin_s"]
        au = t["authors (ResNetModel)"]
        L += ["", "## ICD net vs the authors' own PyTorch model (equal maths: same weights, same fp32 energies)", "",
              f"Their `models.py` ResNetModel (CIFAR-10 flags: filter_dim 64, multiscale, self_attn, norm), copied "
              f"to a temporary folder for the run, holding our net's weights (max relative energy difference "
              f"{icd['authors_energy_rel_diff']:.1e}); one Langevin step (forward + input gradient) of batch "
              f"{icd['batch']}, {r['threads']} threads, training mode, interleaved with ours. The fast path is "
              f"params.yaml's paper runtime (fp32, channels_last); bf16 is listed for information only: it does not "
              f"stay within the fp32 tolerance (precision.md), so it is not equal maths.", "",
              "| ours | ours / authors, wall (per-round median [min - max]) | ours / authors, CPU time |",
              "|---|---|---|"]
        for p, note in [("reference", ""), ("channels_last", " (fast path: paper runtime)"),
                        ("bf16", " (not equal maths)")]:
            if p in t:
                m, lo, hi = ratio(au, t[p])
                L.append(f"| {p}{note} | **{m:.2f}x** [{lo:.2f} - {hi:.2f}] | {ratio(au, t[p], 'cpu')[0]:.2f}x |")
    L += ["", "## Test-time sampling (eval mode) -> samples/s", "",
          "Eval-mode image-steps/s over the protocol's image-steps per kept sample (counted by running the "
          "protocol with a counting refine); the reference augmentation's time added where the protocol augments "
          "(runtime.augment batched: see the augmentation table).", "",
          "| net | path | image-steps/s | vs reference | image-steps / sample | augmented images / sample | samples/s |",
          "|---|---|---|---|---|---|---|"]
    for label, n in r["nets"].items():
        if "test_time_s" not in n:
            continue
        ref = n["test_time_s"]["reference"]
        for p, ts in n["test_time_s"].items():
            rate, _, vs = _rate_cells(n["image_steps"], ts, ref)
            aug_s, aug = 0.0, "—"
            if "augment_s" in n:
                aug_s = med(n["augment_s"]["torchvision"]) / n["augment_images"] * n["augmented_per_sample"]
                aug = f"{n['augmented_per_sample']:.1f}"
            sps = 1 / (n["image_steps_per_sample"] / (n["image_steps"] / med(ts)) + aug_s)
            L.append(f"| {label} | {p} | {rate} | {vs} | {n['image_steps_per_sample']:.0f} | {aug} | {sps:.4f} |")
    if any("augment_s" in n for n in r["nets"].values()):
        L += ["", "## Data augmentation (ICD transition with the test-time blur; reference on the CPU)", "",
              "| net | implementation | batch | images/s | vs torchvision |", "|---|---|---|---|---|"]
        for label, n in r["nets"].items():
            if "augment_s" in n:
                tv = n["augment_s"]["torchvision"]
                for p, ts in n["augment_s"].items():
                    rate, _, vs = _rate_cells(n["augment_images"], ts, tv)
                    L.append(f"| {label} | {p} | {n['augment_images']} | {rate} | {vs} |")
    if any("train_s" in n for n in r["nets"].values()):
        L += ["", "## Training iterations (Trainer.train_step, CPU-sized batch and chain length)", "",
              "At a small batch the per-weight work (weight standardisation, spectral norm, Adam, EMA) weighs more "
              "than at the paper's 128 chains.", "",
              "| net | batch | LD steps | path | s / iteration [min - max] | vs reference | iterations per CPU-s |",
              "|---|---|---|---|---|---|---|"]
        for label, n in r["nets"].items():
            if "train_s" in n:
                ref = n["train_s"]["reference"]
                for p, ts in n["train_s"].items():
                    w = ts["wall"]
                    m, lo, hi = ratio(ref, ts)
                    L.append(f"| {label} | {n['train_batch']} | {n['train_steps']} | {p} | {med(ts):.2f} "
                             f"[{min(w):.2f} - {max(w):.2f}] | {m:.2f}x [{lo:.2f} - {hi:.2f}] | "
                             f"{1 / statistics.median(ts['cpu']):.3f} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
