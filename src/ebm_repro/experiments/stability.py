"""E4: ICD Fig. 8, training stability: IS of the replay buffer and E(x+) - E(x-) over training, per variant.

`results/figures/stability.{png,pdf}` for params.yaml `stability.curves` (no L_KL, + spectral norm, + self-attention,
L_KL + self-attention), each curve labelled with its verdict under `stability_rule`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.runs import Run, check_variants, load_run, save_figure, stability_verdict, uses_kl, write_run_provenance

BLOCK = "stability"


@dataclass(frozen=True)
class Curve:
    variant: str
    label: str


@dataclass(frozen=True)
class StabilityConfig:
    curves: tuple[Curve, ...]


def schema() -> dict:
    return C.dataclass_schema(StabilityConfig)


def check(params: dict) -> None:
    for i, c in enumerate(params[BLOCK]["curves"]):
        C.check_variant(params, c["variant"], f"stability.curves[{i}].variant")


def stability_figure(runs: list[Run], labels: list[str], gap_bound: float, late_frac: float, out_png: Path) -> None:
    """ICD Fig. 8: buffer IS (top) and E(x+) - E(x-) (bottom) over training; no-KL runs left, KL runs right."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex="col", dpi=120)
    for run, label in zip(runs, labels, strict=True):
        col = 1 if uses_kl(run.hp) else 0
        v = stability_verdict(run, gap_bound, late_frac)
        steps, is_ = run.series("eval_IS")
        if not steps:
            raise ValueError(f"{run.variant}: no eval_IS in train_log.csv; set train.eval_every > 0 for it")
        line, = axes[0, col].plot(steps, is_, marker="o", ms=3, label=label)
        gsteps, gaps = run.series("gap")
        axes[1, col].plot(gsteps, gaps, color=line.get_color(), label=f"{label} — {v.text}")
        if run.summary.get("diverged"):  # mark where training stopped
            axes[1, col].plot(gsteps[-1:], gaps[-1:], "x", color=line.get_color(), ms=9)
    for col, title in enumerate(("without L_KL", "with L_KL")):
        axes[0, col].set_title(title)
        axes[0, col].set_ylabel("IS of replay buffer")
        axes[1, col].axhspan(-gap_bound, gap_bound, color="0.9", zorder=0, label=f"stable band ±{gap_bound:g}")
        axes[1, col].axhline(0, color="0.5", lw=0.8)
        axes[1, col].set_ylabel("E(x+) - E(x-)")
        axes[1, col].set_xlabel("training iteration")
        if axes[0, col].lines:
            axes[0, col].legend(fontsize=6.5, loc="best")
            # verdict texts are long: their legend goes under the panel
            axes[1, col].legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    c = runs[0].config
    net = ("smoke classifier, NOT Inception" if c["metrics"]["feature_net"] == "smoke_classifier"
           else "Inception-v3")
    fig.suptitle(f"Training stability (ICD Fig. 8), {c['setting']} setting, preset {c['preset']}\nIS of the newest "
                 f"{c['hp']['train']['eval_n_samples']} replay-buffer samples ({net}); grey band: stability rule "
                 f"(|gap| <= {gap_bound:g} over the last {late_frac:.0%} of training)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png)
    plt.close(fig)


def expected_stable(hp: dict) -> bool:
    """ICD §3.1 / Fig. 8: with L_KL training is stable; without it, only spectral norm without self-attention is."""
    return uses_kl(hp) or (hp["model"]["spectral_norm"] and not hp["model"]["attention"])


def paper_words(hp: dict) -> str:
    """What ICD Fig. 8's caption says about a curve with this configuration."""
    attn = hp["model"]["attention"]
    if uses_kl(hp):
        return "KL loss maintains an energy difference near 0" + (", even with self attention" if attn else "")
    if not hp["model"]["spectral_norm"]:
        return "without the KL loss term, EBM training quickly diverges" + (" (with self attention)" if attn else "")
    if attn:
        return "spectral normalization cannot be combined with self attention without destabilizing training"
    return "spectral normalization prevents divergence of energies (without L_KL)"


def claims(params: dict, prefix: str) -> list:
    """ICD Fig. 8 per curve: stable or not as the paper says, under params.yaml stability_rule; IS rises with L_KL."""
    from ebm_repro.claims import judged_claim, missing

    setting, fig = params["setting"], f"{prefix}results/figures/stability.png"
    rule = C.stability_rule(params)
    criterion = (f"stability rule: finished without abort and |E(x+) - E(x-)| <= {rule.gap_bound:g} over the last "
                 f"{rule.late_frac:.0%} of training")
    out, kl_runs, whys = [], [], []
    for c in params[BLOCK]["curves"]:
        tdir = Path(f"{prefix}results/train/{c['variant']}")
        why = missing(fig, *(tdir / n for n in ("train_log.csv", "train_summary.json", "config.yaml")))
        run = None if why else load_run(tdir)
        whys.append(why)
        v = run and stability_verdict(run, rule.gap_bound, rule.late_frac)
        want = run and expected_stable(run.hp)
        words = paper_words(run.hp) if run else f"curve '{c['label']}'"
        out.append(judged_claim(f"qualitative/stability/{c['variant']}", f"{words} (curve: {c['label']})",
                                "ICD §3.1, Fig. 8", None if run is None else ("stable" if want else "unstable"),
                                v and v.text, criterion, v and v.stable == want, fig, setting, why))
        if run and uses_kl(run.hp):
            kl_runs.append(run)
    series = [r.series("eval_IS")[1] for r in kl_runs]
    why = next((w for w in whys if w), None)
    have = not why and bool(series) and all(len(s) >= 2 for s in series)
    out.append(judged_claim(
        "qualitative/stability/kl_is_rises", "Inception scores rapidly rise with KL loss", "ICD §3.1, Fig. 8",
        "buffer IS rises", "; ".join(f"{r.variant}: {s[0]:.2f} -> {s[-1]:.2f}" for r, s in zip(kl_runs, series))
        if have else None, "buffer IS at the last evaluation > at the first, every L_KL curve",
        all(s[-1] > s[0] for s in series) if have else None, fig, setting,
        why or "no L_KL curve with two buffer-IS evaluations (params.yaml train.eval_every)"))
    return out


def cmd_plot_stability(a) -> None:
    p = commands.load(a)
    curves, rule = p[BLOCK]["curves"], C.stability_rule(p)
    runs = [load_run(Path(d)) for d in a.train_dirs]
    check_variants(runs, curves, "plot-stability")
    out = Path(a.out)
    stability_figure(runs, [c["label"] for c in curves], rule.gap_bound, rule.late_frac, out)
    verdicts = {r.variant: stability_verdict(r, rule.gap_bound, rule.late_frac).text for r in runs}
    for path in (out, out.with_suffix(".pdf")):
        write_run_provenance(a, path, runs, {"stability_rule": p["stability_rule"], "verdicts": verdicts}, [])
    print(f"wrote {out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-stability", help="results/figures/stability.{png,pdf} (ICD Fig. 8)")
    commands.add_common(p)
    commands.add_run_args(p, metrics=False)
    p.set_defaults(fn=cmd_plot_stability)
