"""Multi-process training with torchrun + DDP on CPU (gloo): equivalence, kill -9 and resume, resharding."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from ebm_repro import checkpoint as ck
from ebm_repro import distributed as D
from ebm_repro.data import prepare_dataset
from ebm_repro.train import Trainer
from tests.test_reliability import tiny_params

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}
N_ITERS = 16  # kill -9 runs: long enough to be killed between checkpoints
# Equivalence: 2 ranks with ddp_buffer shared vs 1 process differ only by float rounding (two half-batch gradient
# means averaged vs one full-batch mean; convolutions on 4 vs 8 images). Langevin (step 10, clipped, clamped) and
# the buffer's uint8 floor amplify rounding chaotically once a value crosses a boundary (3e-2 after 16 steps), so
# the equivalence is checked over N_EQ = 6 steps. Measured there: max |diff| of the weights 4.5e-7, of the spectral
# norm's power-iteration vectors u, v 4.3e-5 (a small spectral gap amplifies weight rounding); 2 -> 1 -> 2
# processes 3.0e-7 and 9.4e-7. The per_rank control (another random stream) differs by > 100 x TOL.
N_EQ = 6
TOL = 5e-6      # weights (and every other state entry but u, v)
TOL_SN = 5e-4   # spectral-norm power-iteration vectors
VARIANT = "igebm_uncond"


def write_params(path: Path, mode: str, n_iters: int) -> Path:
    p = tiny_params(n_iters)
    p["runtime"]["smoke"]["ddp_buffer"] = mode
    # dropout draws its masks per rank's rows from the global stream: off, so shared mode is the one-process run
    p["settings"]["smoke"]["overrides"]["model"]["dropout"] = 0.0
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp")
    prepare_dataset("shapes", d / "data", seed=0, n_train=200, n_test=50)
    for mode in ("shared", "per_rank"):
        for n in (N_EQ, N_ITERS):
            write_params(d / f"{mode}_{n}.yaml", mode, n)
    return d


def train_args(work: Path, mode: str, out: Path, n_iters: int = N_ITERS) -> list[str]:
    return ["train", "--params", str(work / f"{mode}_{n_iters}.yaml"), "--variant", VARIANT, "--data", str(work / "data"),
            "--threads", "1", "--out", str(out)]


def command(args: list[str], nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "ebm_repro", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "ebm_repro", *args]


def run(args: list[str], nproc: int, cwd: Path) -> str:
    p = subprocess.run(command(args, nproc), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout + p.stderr


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of /proc/PID/stat: the parent's pid
            out.append(int(stat.parent.name))
    return out


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (torchrun starts each worker as its child)."""
    for c in children(launcher):
        try:
            env = Path(f"/proc/{c}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return c
    return None


def kill_after_a_checkpoint(args: list[str], nproc: int, out: Path, cwd: Path, seed: int) -> int:
    """Start a run, SIGKILL one process (rank 1 of torchrun's workers) at a random moment after the first
    checkpoint; return the step of the checkpoint it left. torchrun then stops the other rank."""
    last = out / "ckpt" / "last.pt"
    proc = subprocess.Popen(command(args, nproc), cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    victim = proc.pid if nproc == 1 else rank_pid(proc.pid, 1)
    assert proc.poll() is None and victim, "the run finished before it could be killed: make N_ITERS larger"
    os.kill(victim, signal.SIGKILL)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, log[-2000:]
    step = ck.load(last)["step"]
    assert 0 < step < N_ITERS, f"killed at step {step}: the test must interrupt training"
    return step


def max_diff(a: dict, b: dict, sn: bool = False) -> float:
    """Max |a - b| over the weights (sn False) or over the spectral-norm vectors u, v (sn True)."""
    assert a.keys() == b.keys()
    keys = [k for k in a if k.endswith(("._u", "._v")) == sn]
    assert keys
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def one_process(work) -> dict:
    """The reference: one process on the global batch."""
    run(train_args(work, "shared", work / "ref1", N_EQ), 1, work)
    return ck.load(work / "ref1" / "model.pt")


@pytest.fixture(scope="module")
def per_rank_2(work) -> dict:
    """An uninterrupted 2-rank run with a replay buffer and random stream per rank (the default)."""
    log = run(train_args(work, "per_rank", work / "ref2"), 2, work)
    assert log.count('"finished": true') == 1, "only rank 0 reports"
    return ck.load(work / "ref2" / "model.pt")


# ----------------------------------------------------------------------------- (a) equivalence
def test_two_ranks_reach_the_one_process_parameters_on_the_combined_batch(work, one_process):
    out = work / "shared2"
    log = run(train_args(work, "shared", out, N_EQ), 2, work)
    got = ck.load(out / "model.pt")
    assert got["step"] == one_process["step"] == N_EQ
    diff, diff_sn = max_diff(one_process["model"], got["model"]), max_diff(one_process["model"], got["model"], True)
    print(f"2 ranks (shared) vs 1 process: max |weight diff| {diff:.3g}, spectral-norm vectors {diff_sn:.3g}")
    assert diff <= TOL and diff_sn <= TOL_SN
    # the control: per-rank buffers and seeds are another random stream, far outside the tolerance
    run(train_args(work, "per_rank", work / "control", N_EQ), 2, work)
    assert max_diff(one_process["model"], ck.load(work / "control" / "model.pt")["model"]) > 100 * TOL
    # rank 0 alone writes: one summary on stdout, one log row per log step, every rank's buffer in the checkpoint
    assert log.count('"finished": true') == 1
    assert len((out / "train_log.csv").read_text().splitlines()) == 1 + N_EQ // 2
    last = ck.load(out / "ckpt" / "last.pt")
    assert last["world_size"] == 2 and len(last["ranks"]) == 1
    assert torch.equal(last["buffer"]["data"], last["ranks"][0]["buffer"]["data"])  # shared: the same buffer


# ----------------------------------------------------------------------------- (b) kill -9 one rank
def test_kill_one_rank_then_torchrun_resumes_bit_exactly(work, per_rank_2):
    out = work / "killed2"
    args = train_args(work, "per_rank", out)
    step = kill_after_a_checkpoint(args, 2, out, work, seed=1)
    last = ck.load(out / "ckpt" / "last.pt")
    assert last["world_size"] == 2 and not torch.equal(last["buffer"]["data"], last["ranks"][0]["buffer"]["data"])
    log = run(args, 2, work)
    assert f"resumed from step {step} on 2 processes" in log
    got = ck.load(out / "model.pt")
    assert got["step"] == N_ITERS
    assert states_equal(per_rank_2["model"], got["model"])
    assert all(states_equal(a, b) for a, b in zip(per_rank_2["snapshots"], got["snapshots"]))
    assert len(got["snapshots"]) == 3
    assert not list((out / "ckpt").glob(".*.tmp"))


# ----------------------------------------------------------------------------- (c) across world sizes
def test_a_two_rank_checkpoint_resumes_in_one_process_and_back(work, one_process):
    """shared mode: 2 ranks to step 2 -> 1 process to step 4 -> 2 ranks to the end = one process's run."""
    out = work / "cross"
    args = train_args(work, "shared", out, N_EQ)
    run([*args, "--stop-after", "2"], 2, work)
    assert ck.load(out / "ckpt" / "last.pt")["world_size"] == 2 and not (out / "model.pt").exists()
    assert "resumed from step 2\n" in run([*args, "--stop-after", "2"], 1, work)
    assert ck.load(out / "ckpt" / "last.pt")["world_size"] == 1
    assert "resumed from step 4 on 2 processes" in run(args, 2, work)
    got = ck.load(out / "model.pt")
    assert got["step"] == N_EQ
    diff, diff_sn = max_diff(one_process["model"], got["model"]), max_diff(one_process["model"], got["model"], True)
    print(f"2 -> 1 -> 2 processes (shared) vs 1 process: max |weight diff| {diff:.3g}, spectral-norm {diff_sn:.3g}")
    assert diff <= TOL and diff_sn <= TOL_SN


def test_resharding_rule_for_a_changed_world_size():
    """Rank r takes rank r's buffer and streams; a new rank a copy of rank r mod W_old's buffer, fresh streams."""
    buf = [{"data": torch.full((2, 1), i, dtype=torch.uint8), "count": 2, "n_seen": 2, "next": 0,
            "g": torch.tensor([i])} for i in range(2)]
    s = {"buffer": buf[0], "data_g": "g0", "rng": "r0",
         "ranks": [{"buffer": buf[1], "data_g": "g1", "rng": "r1"}]}
    fresh = {"buffer_g": torch.tensor([9]), "data_g": "fresh_g", "rng": "fresh_r"}

    def pick(rank: int, world: int, mode: str = "per_rank", ckpt: dict = s) -> dict:
        me = SimpleNamespace(rt=SimpleNamespace(ddp_buffer=mode), dist=D.Dist(rank, world), _fresh_streams=fresh)
        return Trainer._pick_rank_state(me, ckpt)

    assert pick(1, 4)["data_g"] == "g1" and pick(0, 1)["rng"] == "r0"
    new = pick(3, 4)  # 3 mod 2 = 1
    assert int(new["buffer"]["data"][0, 0]) == 1 and int(new["buffer"]["g"]) == 9
    assert (new["data_g"], new["rng"]) == ("fresh_g", "fresh_r")
    assert pick(1, 2, "shared")["data_g"] == "g0"  # shared: every rank continues rank 0's streams
    one = {k: v for k, v in s.items() if k != "ranks"}  # a one-process checkpoint (written before DDP existed)
    got = pick(1, 2, ckpt=one)
    assert got["buffer"]["data"].eq(0).all() and (got["data_g"], got["rng"]) == ("fresh_g", "fresh_r")


# ----------------------------------------------------------------------------- test-time sampling
def test_two_ranks_sample_exactly_the_one_process_samples_in_order(work, one_process):
    """Chunks seeded by (seed, chunk index): 3 chunks over 2 ranks (2 + 1) gathered in order = one process."""
    p = yaml.safe_load((work / f"shared_{N_EQ}.yaml").read_text())
    p["settings"]["smoke"]["metrics"]["n_samples"] = 20  # n_chains 8: 3 chunks, the last one cut to 4
    (work / "sample.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    got = {}
    for nproc in (1, 2):
        out = work / f"samples_{nproc}.npz"
        run(["sample", "--params", str(work / "sample.yaml"), "--variant", VARIANT, "--mode", "single",
             "--model", str(work / "ref1" / "model.pt"), "--out", str(out), "--threads", "1"], nproc, work)
        got[nproc] = np.load(out)
    assert got[1]["images"].shape == (20, 32, 32, 3)
    assert np.array_equal(got[1]["images"], got[2]["images"])
    assert np.array_equal(got[1]["labels"], got[2]["labels"])
    chunks = got[1]["images"].reshape(20, -1).astype(int)
    assert (chunks[:8].mean() != chunks[8:16].mean()), "chunks must be different draws, not one seed reused"
