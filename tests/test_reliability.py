"""Stop, crash, resume, bad input: nothing computed is lost and nothing silently wrong comes out."""
from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ebm_repro import checkpoint as ck
from ebm_repro import config as C
from ebm_repro.data import prepare_dataset
from ebm_repro.params import load_params

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}


def tiny_params(n_iters: int = 16) -> dict:
    """Repository params with the smoke setting shrunk further, so a CLI training takes seconds."""
    p = load_params(ROOT / "params.yaml")
    p["setting"] = "smoke"
    p["settings"]["smoke"]["overrides"] = {
        "model": {"width": 8}, "sampler": {"n_steps": 3}, "buffer": {"size": 64},
        "loss": {"kl_opt_chains": 4, "ent_min_buffer": 8, "ent_n_neighbours": 8},
        "train": {"batch_size": 8, "n_iters": n_iters, "ckpt_every": 2, "snapshot_every": 1, "n_snapshots": 3,
                  "log_every": 2, "eval_n_samples": 16},
        "test_sampling": {"n_chains": 8, "draw_size": 4, "n_iters": 4, "steps_per_iter": 2, "final_iters_fixed": 1},
    }
    p["settings"]["smoke"]["metrics"]["n_samples"] = 8
    return p


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    prepare_dataset("shapes", d, seed=0, n_train=200, n_test=50)
    return d


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "ebm_repro", *args], cwd=cwd, env=ENV,
                       capture_output=True, text=True, timeout=600)
    if check and p.returncode:
        raise AssertionError(p.stdout[-2000:] + p.stderr[-3000:])
    return p


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- kill -9 and resume
@pytest.mark.parametrize("variant", ["icd", "igebm_uncond"])
def test_kill_at_random_moments_then_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, data_dir, variant):
    params = write_params(tmp_path / "params.yaml", tiny_params(n_iters=16))
    train = ["train", "--params", str(params), "--variant", variant, "--data", str(data_dir), "--threads", "1"]
    cli(*train, "--out", str(tmp_path / "ref"), cwd=tmp_path)

    out, rng, kills, resumed = tmp_path / "run", random.Random(variant), 0, []
    last = out / "ckpt" / "last.pt"
    while kills < 3:
        before = last.stat().st_mtime_ns if last.exists() else 0
        proc = subprocess.Popen([sys.executable, "-m", "ebm_repro", *train, "--out", str(out)],
                                cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:  # wait for fresh progress, then a random moment
            if last.exists() and last.stat().st_mtime_ns != before:
                time.sleep(rng.uniform(0.0, 0.6))
                break
            time.sleep(0.02)
        if proc.poll() is not None:
            break  # finished before we could kill it
        proc.send_signal(signal.SIGKILL)
        log = proc.communicate()[0]
        kills += 1
        resumed += [l for l in log.splitlines() if "resumed from step" in l]
    final = cli(*train, "--out", str(out), cwd=tmp_path)
    resumed += [l for l in final.stdout.splitlines() if "resumed from step" in l]
    assert kills >= 2 and resumed, f"the test must really interrupt training (kills={kills})"
    ref, got = ck.load(tmp_path / "ref" / "model.pt"), ck.load(out / "model.pt")
    assert got["step"] == ref["step"] == 16
    assert states_equal(ref["model"], got["model"])
    if ref["ema"] is not None:
        assert states_equal(ref["ema"], got["ema"])
    assert len(ref["snapshots"]) == len(got["snapshots"]) == 3
    assert all(states_equal(a, b) for a, b in zip(ref["snapshots"], got["snapshots"]))
    assert not list((out / "ckpt").glob(".*.tmp")), "a temp file from a killed write was left behind"


def test_resume_under_a_changed_training_setting_is_refused(tmp_path, data_dir):
    p = tiny_params(n_iters=8)
    params = write_params(tmp_path / "params.yaml", p)
    args = ["train", "--variant", "icd", "--data", str(data_dir), "--out", str(tmp_path / "run")]
    cli(*args, "--params", str(params), cwd=tmp_path)
    before = tree_digest(tmp_path / "run")
    p2 = copy.deepcopy(p)
    p2["recipes"]["icd"]["sampler"]["step_size"] = 50.0
    r = cli(*args, "--params", str(write_params(tmp_path / "p2.yaml", p2)), cwd=tmp_path, check=False)
    assert r.returncode != 0
    assert "written under another training config" in r.stderr and "delete" in r.stderr
    assert tree_digest(tmp_path / "run") == before  # the finished run is untouched


# ----------------------------------------------------------------------------- wrong checkpoints
def test_checkpoint_of_another_architecture_is_refused_naming_the_mismatch(tmp_path, data_dir):
    params = write_params(tmp_path / "params.yaml", tiny_params(n_iters=4))
    cli("train", "--params", str(params), "--variant", "igebm_uncond", "--data", str(data_dir),
        "--out", str(tmp_path / "u"), cwd=tmp_path)
    # sampling the conditional variant from the unconditional model: model arguments differ
    r = cli("sample", "--params", str(params), "--variant", "igebm_cond", "--mode", "single",
            "--model", str(tmp_path / "u" / "model.pt"), "--out", str(tmp_path / "s.npz"), cwd=tmp_path, check=False)
    assert r.returncode != 0 and "arch: checkpoint 'igebm_resnet32_large' vs config 'igebm_resnet32'" in r.stderr
    assert not (tmp_path / "s.npz").exists()
    # same arguments but weights of another net (what the original code loaded silently): keys are named
    c = ck.load(tmp_path / "u" / "model.pt")
    c["model"] = {k: v for k, v in c["model"].items() if not k.startswith("head")} | {"extra.weight": torch.zeros(1)}
    ck.save(tmp_path / "bad.pt", c)
    r = cli("sample", "--params", str(params), "--variant", "igebm_uncond", "--mode", "single",
            "--model", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "s.npz"), cwd=tmp_path, check=False)
    assert r.returncode != 0 and "missing keys: head.bias, head.weight" in r.stderr and "unexpected keys: extra.weight" in r.stderr


# ----------------------------------------------------------------------------- divergence
def test_divergence_keeps_the_last_good_checkpoint_and_the_table_says_so(tmp_path, data_dir):
    p = tiny_params(n_iters=12)
    p["recipes"]["icd"]["train"]["max_abs_energy"] = 1e-12  # any energy "explodes" past this bound
    params = write_params(tmp_path / "params.yaml", p)
    r = cli("train", "--params", str(params), "--variant", "icd", "--data", str(data_dir),
            "--out", str(tmp_path / "icd"), cwd=tmp_path)
    assert "TRAINING DIVERGED" in r.stdout
    m = ck.load(tmp_path / "icd" / "model.pt")
    assert m["diverged"]["step"] == 1 and "max_abs_energy" in m["diverged"]["reason"]
    cli("sample", "--params", str(params), "--variant", "icd", "--mode", "single",
        "--model", str(tmp_path / "icd" / "model.pt"), "--out", str(tmp_path / "s.npz"), cwd=tmp_path)
    cli("metrics", "--params", str(params), "--variant", "icd", "--mode", "single", "--samples",
        str(tmp_path / "s.npz"), "--data", str(data_dir), "--feature-net", str(tmp_path / "none.pt"),
        "--out", str(tmp_path / "m.json"), cwd=tmp_path)
    from ebm_repro.experiments.inception import inception_table
    metrics = json.loads((tmp_path / "m.json").read_text())
    table = inception_table([metrics], [p["inception"]["rows"][-1]])
    assert "diverged at step 1" in table


def test_non_finite_energy_stops_training(tmp_path, data_dir):
    from ebm_repro.train import Trainer

    cfg = C.resolve(tiny_params(n_iters=6), "igebm_uncond", validated=False)
    t = Trainer(cfg, data_dir, tmp_path / "run", device="cpu")
    t.run(stop_after=2, progress=False)
    t.save_checkpoint()
    with torch.no_grad():
        next(t.model.parameters()).fill_(float("nan"))
    out = t.run(progress=False)
    assert out["diverged"]["step"] == 3 and "non-finite" in out["diverged"]["reason"]
    assert out["diverged"]["last_good_step"] == 2
    assert torch.isfinite(ck.load(tmp_path / "run" / "model.pt")["model"][next(iter(t.model.state_dict()))]).all()


# ----------------------------------------------------------------------------- bad input before any work
@pytest.mark.parametrize("mutate, key", [
    (lambda p: p["recipes"]["icd"].update(lr=1e-3), "recipes.icd"),                       # unknown key
    (lambda p: p["recipes"]["icd"]["train"].update(n_iters=10.5), "recipes.icd.train.n_iters"),  # wrong type
    (lambda p: p["recipes"]["icd"]["train"].update(batch_size=0), "recipes.icd.train.batch_size"),  # zero count
    (lambda p: p["recipes"]["igebm"]["buffer"].update(size=-5), "recipes.igebm.buffer.size"),     # negative
    (lambda p: p["inception"]["rows"][-1].update(mode="ensemble"), "needs train.n_snapshots >= 2"),  # impossible
])
def test_bad_params_are_refused_by_every_entry_point_and_touch_nothing(tmp_path, data_dir, mutate, key):
    p = tiny_params()
    mutate(p)
    params = write_params(tmp_path / "params.yaml", p)
    before = tree_digest(data_dir)
    r = cli("train", "--params", str(params), "--variant", "icd", "--data", str(data_dir),
            "--out", str(tmp_path / "run"), cwd=tmp_path, check=False)
    assert r.returncode != 0 and key in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists() and tree_digest(data_dir) == before


def test_corrupt_dataset_archive_fails_its_checksum_and_keeps_existing_outputs(tmp_path, monkeypatch):
    from ebm_repro import data

    out = tmp_path / "cifar10"
    (out / "raw").mkdir(parents=True)
    (out / "raw" / data.DATASETS["cifar10"]["filename"]).write_bytes(b"not a tarball" * 100)
    (out / "train.npz").write_bytes(b"previous good output")
    with pytest.raises(data.DatasetError, match="md5"):
        data.prepare_dataset("cifar10", out)
    assert (out / "train.npz").read_bytes() == b"previous good output"


def test_missing_inception_weights_name_the_path_before_any_work(tmp_path):
    from ebm_repro.metrics import MetricsError, compute_inception_metrics

    where = tmp_path / "data" / "feature_net" / "pt_inception-2015-12-05-6726825d.pth"
    imgs = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(MetricsError, match=str(where).replace(".", r"\.")):
        compute_inception_metrics(imgs, imgs, "inception", where)


def test_full_disk_leaves_no_half_written_table(tmp_path, monkeypatch):
    table = tmp_path / "inception.md"
    table.write_text("old, complete table\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        ck.atomic_write_text(table, "new table " * 1000)
    assert table.read_text() == "old, complete table\n"
    assert [p.name for p in tmp_path.iterdir()] == ["inception.md"]
