"""E14: ICD Fig. 13, parameter-gradient magnitude of L_KL vs L_CD over training (from the train log).

`results/figures/kl_grad.{png,pdf}` for the params.yaml `kl_grad.variant` run (the trainer logs grad_cd / grad_kl).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.runs import Run, check_variants, load_run, save_figure, uses_kl, write_run_provenance

BLOCK = "kl_grad"


@dataclass(frozen=True)
class KLGradConfig:
    variant: str


def schema() -> dict:
    return C.dataclass_schema(KLGradConfig)


def check(params: dict) -> None:
    C.check_variant(params, params[BLOCK]["variant"], "kl_grad.variant")


def kl_grad_figure(run: Run, out_png: Path) -> dict:
    """ICD Fig. 13: |grad L_CD| and |grad L_KL| (parameter-gradient norms) over training; returns a summary."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not uses_kl(run.hp):
        raise ValueError(f"{run.variant}: L_KL is off (kl_opt_coeff = kl_ent_coeff = 0); Fig. 13 needs it on")
    pts = [(int(r["step"]), r["grad_cd"], r["grad_kl"]) for r in run.rows
           if r.get("grad_cd") is not None and r.get("grad_kl") is not None]
    if not pts:
        raise ValueError(f"{run.variant}: train_log.csv holds no grad_cd / grad_kl")
    steps, cd, kl = zip(*pts)
    ratio = [k / c if c > 0 else float("nan") for c, k in zip(cd, kl)]
    finite = sorted(r for r in ratio if math.isfinite(r))
    median = finite[len(finite) // 2] if finite else float("nan")
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True, dpi=120)
    a0.plot(steps, cd, label="‖∇θ L_CD‖")
    lo = run.hp["loss"]
    a0.plot(steps, kl, label=f"‖∇θ L_KL‖ ({lo['kl_opt_coeff']:g} L_opt + {lo['kl_ent_coeff']:g} L_ent)")
    a0.set_yscale("log")
    a0.set_ylabel("gradient norm")
    a0.legend(fontsize=7)
    a1.plot(steps, ratio, color="C2")
    a1.axhline(median, color="0.5", ls="--", lw=0.8, label=f"median {median:.2f}")
    a1.set_ylabel("‖∇ L_KL‖ / ‖∇ L_CD‖")
    a1.set_xlabel("training iteration")
    a1.legend(fontsize=7)
    c = run.config
    fig.suptitle(f"Gradient magnitude of L_KL vs L_CD (ICD Fig. 13): `{run.variant}`, {c['setting']} setting, "
                 f"preset {c['preset']}\npaper: the ratio stays constant over training and L_KL is non-negligible",
                 fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png)
    plt.close(fig)
    return {"n_points": len(steps), "median_ratio_kl_over_cd": median, "first_step": steps[0], "last_step": steps[-1]}


def cmd_plot_kl_grad(a) -> None:
    p = commands.load(a)
    runs = [load_run(Path(d)) for d in a.train_dirs]
    check_variants(runs, [{"variant": p[BLOCK]["variant"]}], "plot-kl-grad")
    out = Path(a.out)
    summary = kl_grad_figure(runs[0], out)
    for path in (out, out.with_suffix(".pdf")):
        write_run_provenance(a, path, runs, {"summary": summary}, [])
    print(f"wrote {out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-kl-grad", help="results/figures/kl_grad.{png,pdf} (ICD Fig. 13)")
    commands.add_common(p)
    commands.add_run_args(p, metrics=False)
    p.set_defaults(fn=cmd_plot_kl_grad)
