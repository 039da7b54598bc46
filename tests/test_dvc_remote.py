"""Shared storage: `dvc push` to a remote, `dvc pull` in a fresh clone, and Snakemake then has nothing to do."""
from __future__ import annotations

import hashlib
import os
import shutil
import time

import yaml

from tests.test_workflow import BIN, ROOT, copy_repo, job_counts, run

SMOKE = "workflow/dvc/smoke/dvc.yaml"
STAGE = f"{SMOKE}:train_model-icd_abl_cd"  # data (prepare_dataset-shapes) -> checkpoint + training results
TARGET = "smoke/results/train/icd_abl_cd/model.pt"
FILES = ["smoke/data/shapes/train.npz", "smoke/data/shapes/checksums.json", TARGET,
         "smoke/results/train/icd_abl_cd/train_summary.json", "smoke/results/train/icd_abl_cd/train_log.csv"]
GIT = ["git", "-c", "user.email=test@example.org", "-c", "user.name=test"]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dvc_remote_round_trip_restores_outputs_and_snakemake_has_nothing_to_do(tmp_path):
    (tmp_path / "repo").mkdir()
    repo = copy_repo(tmp_path / "repo")
    shutil.copy2(ROOT / ".gitignore", repo / ".gitignore")  # results and data stay out of git, as in the project
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # a shorter training: same DAG and stages, fewer steps (this test is about storage, not learning)
    params["variants"]["icd_abl_cd"]["setting_overrides"]["smoke"]["train"]["n_iters"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], cwd=repo)
    run([*GIT, "add", "-A"], cwd=repo)
    run([*GIT, "commit", "-qm", "workflow"], cwd=repo)
    run([str(BIN / "dvc"), "repro", STAGE], cwd=repo, timeout=600)
    # the README recipe: a remote (here a local folder; s3://... with the [s3] extra), then commit the lock
    remote = tmp_path / "remote"
    run([str(BIN / "dvc"), "remote", "add", "-d", "shared", str(remote)], cwd=repo)
    run([*GIT, "add", "-A"], cwd=repo)
    run([*GIT, "commit", "-qm", "results and remote"], cwd=repo)
    run([str(BIN / "dvc"), "push", "--with-deps", STAGE], cwd=repo)
    assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], cwd=tmp_path)
    assert not (clone / TARGET).exists()  # git carries no data or results
    run([str(BIN / "dvc"), "pull", "--with-deps", STAGE], cwd=clone)
    for f in FILES:
        assert sha(clone / f) == sha(repo / f), f
    # DVC writes files in its own order, so an input can end up newer than its output; force the bad case
    earlier = time.time() - 120
    for f in FILES[2:]:  # the training outputs written before their input
        os.utime(clone / f, (earlier, earlier))
    snake = [str(BIN / "snakemake"), "--cores", "1", "--config", "setting=smoke", "--", TARGET]
    dry = run([snake[0], "-n", *snake[1:]], cwd=clone)
    assert job_counts(dry.stdout) == {"train_model": 1}  # Snakemake would retrain on mtime alone
    run([snake[0], "--touch", *snake[1:]], cwd=clone)  # README: re-stamp the pulled files in DAG order
    dry = run([snake[0], "-n", *snake[1:]], cwd=clone)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    for f in FILES:  # touching changed no byte
        assert sha(clone / f) == sha(repo / f), f
