"""Argparse pieces shared by every verb of `python -m ebm_repro` (algorithm and experiments): params and setting."""
from __future__ import annotations

import argparse
from pathlib import Path

from ebm_repro.config import PRESETS


def add_common(p: argparse.ArgumentParser) -> None:
    """--params, --setting, --preset, --threads, --device: every verb resolves the same params.yaml."""
    p.add_argument("--params", default="params.yaml", help="params.yaml to use (relative to the working dir)")
    p.add_argument("--setting", choices=("paper", "smoke"), help="override params.yaml `setting`")
    p.add_argument("--preset", choices=PRESETS, help="override params.yaml `preset`")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (Snakemake passes {threads})")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def add_run_args(p: argparse.ArgumentParser, metrics: bool) -> None:
    """--train-dirs (results/train/<variant> folders) [and --metrics, one JSON per run] and --out."""
    p.add_argument("--train-dirs", nargs="+", required=True, help="results/train/<variant> folders, in order")
    if metrics:
        p.add_argument("--metrics", nargs="+", required=True, help="metrics JSON per run, same order")
    p.add_argument("--out", required=True)


def load(a) -> dict:
    """Validated params.yaml with the command line's --setting / --preset applied."""
    from ebm_repro.params import load_params  # above the experiments: imported when a command runs

    params = load_params(Path(a.params))
    if a.setting:
        params["setting"] = a.setting
    if a.preset:
        params["preset"] = a.preset
    return params
