"""IGEBM §5 particle dynamics (experiment E10): simulate -> train -> rollouts -> report.

Modules: config (params.yaml `particle:` block), simulate (ball in a box), models (Fig. 15c energy and
regressor), sampling (Langevin, MPPI), train (L_ML + L_KL + L_Reg), evaluate (rollouts), report, cli.
Choices the paper leaves open are marked "our choice" in params.yaml; the main ones:
- chains start at the last observed position (no replay buffer, §9.6; the paper states no initialisation);
- every time step also gets its offset from the last observed position as input (net.rel_scale), and the
  regressor predicts an offset from that position (net.ff_residual), the same anchor the EBM chains use;
- iteration counts per model kind fit the CPU budget; the regressor, ~40x cheaper per step, gets more.
"""
from __future__ import annotations  # noqa: E402 (after the docstring above)

import argparse

from ebm_repro.experiments.particle.config import particle_config, particle_schema

BLOCK = "particle"


def schema() -> dict:
    return particle_schema()


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        particle_config(params, setting)


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ebm_repro.experiments.particle.cli import add_commands as add  # torch: only when a command runs

    add(sub)
