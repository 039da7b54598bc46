"""2-D toy densities: every training recipe (IGEBM CD / ML, ICD with / without L_KL) learns 8 Gaussians and two rings.

Not a paper experiment: the quickest visual and numeric proof that each recipe's sampler, buffer, loss and
optimiser train through the one training step (train.Learner). config: params.yaml `toy2d:` block; run: densities,
training, distances, the figure `results/figures/toy2d.{png,pdf}` and `results/toy2d/metrics.json`.
"""
from __future__ import annotations

import argparse

from ebm_repro import commands
from ebm_repro.experiments.toy2d.config import toy2d_config, toy2d_schema

BLOCK = "toy2d"


def schema() -> dict:
    return toy2d_schema()


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        toy2d_config(params, setting)


def add_commands(sub: argparse._SubParsersAction) -> None:
    def run(args) -> None:
        from ebm_repro.experiments.toy2d.run import cmd_toy2d  # torch: only when the command runs

        cmd_toy2d(args)

    p = sub.add_parser("toy2d", help="results/figures/toy2d.{png,pdf} and results/toy2d/metrics.json")
    commands.add_common(p)
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-pdf", default=None, help="default: the PNG path with .pdf")
    p.add_argument("--out-json", required=True)
    p.set_defaults(fn=run)
