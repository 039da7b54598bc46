"""E17-E19 in the DAG: absent downloads add no training job and their rows say what to fetch; present ones
(tiny stand-ins in the real formats) add every job of their branch."""
from __future__ import annotations

import json

import yaml

from tests import large_standins as S
from tests.test_workflow import BIN, copy_repo, job_counts, run

E17_E19 = ["igebm_imagenet32", "icd_imagenet32", "icd_celebahq128", "icd_lsun_bedroom128",
           "icd_celeba_young", "icd_celeba_female", "icd_celeba_smiling", "icd_celeba_wavy"]


def _dry(repo, *targets):
    return run([str(BIN / "snakemake"), "-n", "--forceall", "--cores", "all", *targets], cwd=repo)


def test_paper_dag_with_the_downloads_present_lists_every_e17_e19_job(tmp_path):
    repo = copy_repo(tmp_path)
    absent = _dry(repo)
    S.write_all(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name, counts in S.standin_counts().items():
        params["large_data"][name].update(counts)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = _dry(repo)
    got, before = job_counts(p.stdout), job_counts(absent.stdout)
    assert "prepare_large_dataset" not in before and "train_attribute_classifier" not in before
    assert got["check_large_dataset"] == before["check_large_dataset"] == 3
    assert got["prepare_large_dataset"] == 3 and got["prepare_attribute_dataset"] == 4
    assert got["train_model"] == before["train_model"] + len(E17_E19)
    for v in E17_E19:
        assert f"--variant {v} " in p.stdout, v
    # E17/E18 rows: sampled, scored and plotted like the CIFAR-10 rows (E19's models are only composed)
    assert got["sample_model"] == before["sample_model"] + 4
    assert got["compute_metrics"] == before["compute_metrics"] + 4 and got["plot_samples"] == before["plot_samples"] + 4
    assert got["train_attribute_classifier"] == got["sample_compose_celeba"] == got["make_compose_celeba_table"] == 1
    assert "[ebm-repro]" not in p.stderr  # no "not found" message once the folders are there
    assert "ImageNet 32x32: not found at data/raw/imagenet32" in absent.stderr


def test_missing_downloads_give_status_and_not_run_rows_while_the_dag_builds(tmp_path):
    repo = copy_repo(tmp_path)
    run([str(BIN / "snakemake"), "--cores", "1", "--config", "setting=smoke", "--",
         "smoke/data/imagenet32/status.json", "smoke/data/celebahq128/status.json"], cwd=repo)
    status = json.loads((repo / "smoke/data/celebahq128/status.json").read_text())
    assert status["status"] == "missing" and "CelebAMask-HQ.zip" in status["message"]
    # the E19 table from the status alone
    run([str(BIN / "snakemake"), "--cores", "1", "--config", "setting=smoke", "--",
         "smoke/results/tables/compose_celeba.md"], cwd=repo)
    table = (repo / "smoke/results/tables/compose_celeba.md").read_text()
    assert "not run: dataset missing (put CelebAMask-HQ.zip, unzipped at `smoke/data/raw/CelebAMask-HQ`)" in table
    assert "0.847" in table  # the paper's ICD (Young) cell, quoted beside
