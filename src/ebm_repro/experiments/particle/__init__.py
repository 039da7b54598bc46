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


NAMES = {"feedforward": "feed-forward", "ebm_ld": "EBM-LD", "ebm_mppi": "EBM-MPPI"}
# summary.json "claims" key -> (IGEBM §5.1's words, model, model compared with, rollout step: first | last)
CLAIMS = {
    "ebm_ld_higher_1step_than_ff": ("EBM (LD): higher initial error than the feed-forward network", "ebm_ld",
                                    "feedforward", "first"),
    "ebm_mppi_higher_1step_than_ff": ("EBM (MPPI): higher initial error than the feed-forward network", "ebm_mppi",
                                      "feedforward", "first"),
    "ebm_ld_lower_last_step_than_ff": ("EBM (LD): significantly lower error for multistep prediction than the "
                                       "feed-forward network", "ebm_ld", "feedforward", "last"),
    "ebm_mppi_lower_last_step_than_ff": ("EBM (MPPI): significantly lower error for multistep prediction than the "
                                         "feed-forward network", "ebm_mppi", "feedforward", "last"),
    "ebm_mppi_lower_last_step_than_ld": ("MPPI based sampling leads to better generalization than LD based sampling",
                                         "ebm_mppi", "ebm_ld", "last"),
}


def claims(params: dict, prefix: str) -> list:
    """IGEBM §5.1 / Fig. 9, judged on the mean rollout MSE of results/particle/summary.json."""
    import json
    from pathlib import Path

    from ebm_repro.claims import judged_claim, missing

    setting, table = params["setting"], f"{prefix}results/tables/particle.md"
    summary = f"{prefix}results/particle/summary.json"
    why = missing(table, summary)
    s = None if why else json.loads(Path(summary).read_text())
    out = []
    for name, (words, a, b, when) in CLAIMS.items():
        got = None
        if s:
            hs = sorted(int(h[1:]) for h in s["models"][a])
            h = hs[0] if when == "first" else hs[-1]
            mse = {k: s["models"][k][f"h{h}"]["mse"] for k in (a, b)}
            got = f"{mse[a]:.3g} vs {mse[b]:.3g} at step {h}"
        rel = "higher" if "higher" in name else "lower"
        out.append(judged_claim(f"igebm_2019/particle_fig_9#{name}", words, "IGEBM §5.1, Fig. 9",
                                f"{NAMES[a]} {rel} than {NAMES[b]}", got,
                                f"mean rollout MSE of {NAMES[a]} {rel} than of {NAMES[b]} at the {when} rollout step",
                                s and s["claims"][name], table, setting, why))
    return out


def add_commands(sub: argparse._SubParsersAction) -> None:
    from ebm_repro.experiments.particle.cli import add_commands as add  # torch: only when a command runs

    add(sub)
