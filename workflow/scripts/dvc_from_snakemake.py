"""Write dvc.yaml (paper) and workflow/dvc/smoke/dvc.yaml from the Snakemake DAG, so both tools run one DAG.

    python workflow/scripts/dvc_from_snakemake.py          # rewrite both files
    python workflow/scripts/dvc_from_snakemake.py --check  # exit 1 if they are stale (tests run this)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"paper": ROOT / "dvc.yaml", "smoke": ROOT / "workflow" / "dvc" / "smoke" / "dvc.yaml"}
HEADER = ("# GENERATED from the Snakemake DAG by workflow/scripts/dvc_from_snakemake.py -- do not edit by hand.\n"
          "# Setting: {setting}. Each stage runs the same `python -m ebm_repro...` command as its Snakemake job.\n")
PERSIST_RULES = {"train_model", "train_particle_model", "train_compose_model"}  # expensive: keep outputs across `dvc repro`


def snakemake_jobs(setting: str) -> list[dict]:
    """Every job of the default target under a setting: rule, wildcards, input, output, log, shell command."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, ResourceSettings,
                                          StorageSettings)

    cwd = os.getcwd()
    os.chdir(ROOT)
    # E17-E19 manual downloads join the Snakemake DAG only when their folders are there (large_data.smk):
    # dvc.yaml is generated as if none were, so it never depends on what one machine holds
    os.environ["EBM_REPRO_NO_LOCAL_DATA"] = "1"
    try:
        with contextlib.redirect_stderr(io.StringIO()), SnakemakeApi(OutputSettings()) as api:
            wf = api.workflow(snakefile=ROOT / "Snakefile", resource_settings=ResourceSettings(cores=64),
                              # authors' checkpoints join the Snakemake DAG only when their files are present;
                              # dvc.yaml must not depend on local downloads, so it is generated without them
                              config_settings=ConfigSettings(config={
                                  "setting": setting, "inception": {"authors_checkpoints": []}}),
                              storage_settings=StorageSettings())
            w = wf.dag(DAGSettings(forceall=True)).workflow_api._workflow
            w._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
            w._build_dag()
            jobs = [dict(rule=j.rule.name, wildcards=dict(j.wildcards), input=sorted(map(str, j.input)),
                         output=sorted(map(str, j.output)), log=sorted(map(str, j.log)),
                         cmd=j.shellcmd) for j in w.dag.jobs if j.rule.name != "all"]
    finally:
        os.chdir(cwd)
        os.environ.pop("EBM_REPRO_NO_LOCAL_DATA")
    return sorted(jobs, key=lambda j: (j["rule"], sorted(j["wildcards"].items())))


def _params_for(job: dict, params: dict, setting: str) -> list[str]:
    """params.yaml keys a stage depends on (DVC reruns the stage when one changes)."""
    rule, wc = job["rule"], job["wildcards"]
    if rule in ("check_large_dataset", "prepare_large_dataset"):
        return [f"large_data.{wc['large']}"]
    if rule == "prepare_attribute_dataset":
        return ["large_data.celebahq128"]
    if "compose_celeba" in rule or rule == "train_attribute_classifier":
        return ["compose_celeba"]
    if rule.startswith(("prepare_dataset", "prepare_feature_net")):
        return [f"settings.{setting}.dataset", f"settings.{setting}.metrics.feature_net"]
    if rule == "prepare_ood_set":  # the set's files and md5 (or generator) live in datasets_ood.py
        return []
    if rule in ("score_ood", "score_likelihood"):  # the experiment's models under this setting
        block = rule.split("_", 1)[1]
        recipes = sorted({params["variants"][r["variant"]]["recipe"] for r in params[block]["rows"]})
        return ["preset", block, "presets", *[f"recipes.{r}" for r in recipes],
                *[f"variants.{r['variant']}" for r in params[block]["rows"]], f"settings.{setting}"]
    if rule in ("report_ood", "report_likelihood"):
        return [rule.split("_", 1)[1]]
    if "particle" in rule:
        return ["particle"]
    if "toy2d" in rule:
        return ["toy2d"]
    if "compose" in rule:
        return ["compose"]
    if rule == "time_truncation_steps":
        return ["truncation", "preset", "recipes.icd",
                *[f"variants.{r['variant']}" for r in params["truncation"]["rows"]], f"settings.{setting}"]
    own = {"plot_low_temperature": ("low_temperature", ("ours", "baseline")),
           "plot_aug_chains": ("aug_chains", ("variant",)), "plot_neighbours": ("neighbours", ())}
    if rule in own:  # qualitative figures: their block, and the named variants' test-time sampling / augmentation
        block, keys = own[rule]
        b = {**params[block]["paper"], **(params[block].get("smoke", {}) if setting == "smoke" else {})}
        vs = [b[k] for k in keys]
        return ["preset", block, *(["presets"] if vs else []),
                *sorted({f"recipes.{params['variants'][v]['recipe']}" for v in vs}), *[f"variants.{v}" for v in vs],
                f"settings.{setting}.metrics"]
    blocks = {"make_ablation_table": ["ablation", "stability_rule"], "plot_stability": ["stability", "stability_rule"],
              "plot_kl_grad": ["kl_grad"], "make_truncation_table": ["truncation"],
              # claims() read every experiment block (rows, criteria); the tables' own stages track the rest
              "make_audit_page": ["audit", "stability_rule", *sorted(
                  b for b in params if b not in ("setting", "preset", "recipes", "presets", "variants", "settings",
                                                 "stability_rule", "audit"))]}
    blocks.update({"train_classifier": ["restoration"], "restore_images": ["restoration"],  # E7-E9
                   "make_restoration_report": ["restoration"], "map_cross_class": ["cross_class", "restoration"],
                   "train_finetune_classifier": ["finetune"], "make_finetune_table": ["finetune"]})
    if rule == "render_report_tables":  # Markdown -> HTML: its inputs are all it reads
        return []
    if rule in blocks:  # the experiment's own block (src/ebm_repro/experiments/)
        return ["preset", *blocks[rule], f"settings.{setting}.metrics"]
    if "variant" in wc:
        recipe = params["variants"][wc["variant"]]["recipe"]
        return ["preset", f"recipes.{recipe}", "presets", f"variants.{wc['variant']}",
                f"settings.{setting}"]
    return ["preset", "inception", f"settings.{setting}.metrics"]


def dvc_stages(setting: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    python = sys.executable
    stages = {}
    for job in snakemake_jobs(setting):
        name = "-".join([job["rule"], *job["wildcards"].values()])
        cmd = job["cmd"].replace(python, "python").strip()
        logdirs = sorted({os.path.dirname(p) for p in job["log"]})
        if logdirs:  # Snakemake creates log folders itself; DVC does not
            cmd = f"mkdir -p {' '.join(logdirs)} && {cmd}"
        outs, metrics, plots = [], [], []
        for o in job["output"]:
            if o.endswith("train_log.csv"):
                plots.append({o: {"x": "step", "y": "gap"}})  # E(x+) - E(x-) over training
            elif o.endswith(".json") and ("/metrics/" in o or o.endswith("train_summary.json")):
                # cached like every output: results/ is not in git, so a DVC remote is where they travel
                metrics.append(o)
            elif job["rule"] in PERSIST_RULES:
                outs.append({o: {"persist": True}})
            else:
                outs.append(o)
        stage = {"cmd": cmd, "deps": [*job["input"], "src/ebm_repro"],
                 "params": _params_for(job, params, setting)}
        if outs:
            stage["outs"] = outs
        if metrics:
            stage["metrics"] = metrics
        if plots:
            stage["plots"] = plots
        if setting == "smoke":
            stage["wdir"] = "../../.."
        stages[name] = stage
    return {"stages": stages}


def render(setting: str) -> str:
    # params.yaml is looked up relative to each stage's wdir, i.e. the repository root
    return HEADER.format(setting=setting) + yaml.safe_dump(dvc_stages(setting), sort_keys=False, width=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if a dvc.yaml differs from the DAG")
    a = ap.parse_args()
    stale = []
    for setting, path in TARGETS.items():
        text = render(setting)
        if a.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        sys.exit(f"stale: {', '.join(stale)} -- run python workflow/scripts/dvc_from_snakemake.py")


if __name__ == "__main__":
    main()
