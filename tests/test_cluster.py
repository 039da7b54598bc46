"""Running elsewhere: the SLURM profile resolves with its executor plugin, and a failed job's cause is on screen."""
from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

from tests.test_workflow import BIN, ROOT, copy_repo, job_counts, run

SLURM = "workflow/profiles/slurm"


def _job_resources(stdout: str, rule: str) -> dict[str, str]:
    """The `resources:` line of the first job of `rule` in a dry run's listing."""
    block = stdout.split(f"rule {rule}:")[1]
    line = re.search(r"^\s+resources: (.*)$", block, re.M)[1]
    return dict(kv.split("=", 1) for kv in line.split(", "))


def test_slurm_profile_dry_run_resolves_and_asks_sbatch_for_a_gpu():
    """The README's command with -n: the plugin loads, and each GPU rule gets a GPU, its runtime and memory."""
    try:
        from snakemake_executor_plugin_slurm.submit_string import get_submit_command
        from snakemake_executor_plugin_slurm.utils import set_gres_string
    except ImportError as err:  # pinned in requirements.txt
        raise AssertionError(f"snakemake-executor-plugin-slurm is missing ({err}); pip install -r requirements.txt")
    p = run([str(BIN / "snakemake"), "--profile", SLURM, "-n", "--forceall", "results/tables/inception.md"])
    assert "workflow/profiles/slurm" in p.stderr  # "Using profile workflow/profiles/slurm ..."
    assert job_counts(p.stdout)["train_model"] == 3
    res = _job_resources(p.stdout, "train_model")
    assert (res["gpu"], res["runtime"], res["mem_mb"], res["cpus_per_task"]) == ("1", "4320", "64000", "8")
    assert "gpu" not in _job_resources(p.stdout, "make_inception_table")  # CPU-only jobs ask for no GPU

    class Resources(SimpleNamespace):
        def get(self, key, default=None):
            return getattr(self, key, default)

    job = SimpleNamespace(threads=8, resources=Resources(**{k: int(res[k]) for k in
                                                           ("gpu", "runtime", "mem_mb", "cpus_per_task")}))
    call = get_submit_command(job, dict(run_uuid="u", slurm_logfile="l", comment_str="c", account="",
                                        partition="", workdir="/w")) + set_gres_string(job)
    for flag in ("-t 4320", "--mem 64000", "--cpus-per-task=8", "--gpus=1"):
        assert flag in call, call


def test_a_failed_job_prints_its_log_and_the_fix_under_the_error(tmp_path):
    """show-failed-logs (default profile): the dataset's own message names the file and the fix on screen."""
    repo = copy_repo(tmp_path)
    raw = repo / "data/cifar10/raw"
    raw.mkdir(parents=True)
    (raw / "cifar-10-python.tar.gz").write_bytes(b"not the archive")  # md5 fails without any network access
    p = run([str(BIN / "snakemake"), "data/cifar10/train.npz", "--cores", "1"], cwd=repo, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Error in rule prepare_dataset" in out
    tail = out[out.index("Error in rule prepare_dataset"):]
    assert "Logfile logs/prepare_dataset_cifar10.log" in tail
    assert "expected c58f30108f718f92721af3b95e74349a" in tail
    assert "Fix: delete data/cifar10/raw/cifar-10-python.tar.gz" in tail
    assert len(tail.splitlines()) < 30  # the whole story fits one screen below the error
    shutil.rmtree(repo / "data")
