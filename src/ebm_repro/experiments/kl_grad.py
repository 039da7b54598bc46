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


def grad_series(run: Run) -> tuple[list[int], list[float], list[float], list[float]]:
    """Logged steps, |grad L_CD|, |grad L_KL| and their ratio KL / CD (NaN where |grad L_CD| = 0)."""
    if not uses_kl(run.hp):
        raise ValueError(f"{run.variant}: L_KL is off (kl_opt_coeff = kl_ent_coeff = 0); Fig. 13 needs it on")
    pts = [(int(r["step"]), r["grad_cd"], r["grad_kl"]) for r in run.rows
           if r.get("grad_cd") is not None and r.get("grad_kl") is not None]
    if not pts:
        raise ValueError(f"{run.variant}: train_log.csv holds no grad_cd / grad_kl")
    steps, cd, kl = map(list, zip(*pts))
    return steps, cd, kl, [k / c if c > 0 else float("nan") for c, k in zip(cd, kl)]


def median_of(xs: list[float]) -> float:
    """Median of the finite values (upper median for an even count, as in the figure); NaN when none."""
    finite = sorted(x for x in xs if math.isfinite(x))
    return finite[len(finite) // 2] if finite else float("nan")


def ratio_drift(ratio: list[float]) -> float:
    """Median ratio over the later half of the logged steps / over the earlier half (1 = constant)."""
    half = len(ratio) // 2
    return median_of(ratio[half:]) / median_of(ratio[:half]) if half else float("nan")


def claims(params: dict, prefix: str) -> list:
    """ICD App. D.4 / Fig. 13: the L_KL gradient is non-negligible and its ratio to L_CD's stays constant."""
    from ebm_repro.claims import judged_claim, missing

    setting, fig = params["setting"], f"{prefix}results/figures/kl_grad.png"
    crit = params["audit"]["kl_grad"]
    tdir = Path(f"{prefix}results/train/{params[BLOCK]['variant']}")
    why = missing(fig, *(tdir / n for n in ("train_log.csv", "train_summary.json", "config.yaml")))
    med = drift = None
    if not why:
        ratio = grad_series(load_run(tdir))[3]
        med, drift = median_of(ratio), ratio_drift(ratio)
    why2 = why or (None if math.isfinite(drift) else "fewer than two finite grad_cd / grad_kl ratios in the log")
    place = "ICD App. D.4, Fig. 13"
    return [
        judged_claim("qualitative/kl_grad/non_negligible", "the gradient of the KL objective is non-negligible",
                     place, "non-negligible", None if why else f"median ratio {med:.3g}",
                     f"median |grad L_KL| / |grad L_CD| over training >= {crit['min_median_ratio']:g} "
                     "(params.yaml audit.kl_grad)", None if why else med >= crit["min_median_ratio"],
                     fig, setting, why),
        judged_claim("qualitative/kl_grad/constant_ratio",
                     "relative magnitude of gradients of both training objectives remains constant across training",
                     place, "constant", None if why2 else f"late / early median ratio {drift:.3g}",
                     f"median ratio over the later half of the logged steps within x{crit['max_drift']:g} of the "
                     "earlier half's (params.yaml audit.kl_grad)",
                     None if why2 else 1 / crit["max_drift"] <= drift <= crit["max_drift"], fig, setting, why2),
    ]


def kl_grad_figure(run: Run, out_png: Path) -> dict:
    """ICD Fig. 13: |grad L_CD| and |grad L_KL| (parameter-gradient norms) over training; returns a summary."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, cd, kl, ratio = grad_series(run)
    median = median_of(ratio)
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
