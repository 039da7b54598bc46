"""E10 outputs: MSE-per-horizon figure (IGEBM Fig. 9), markdown table and a JSON summary."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebm_repro.checkpoint import atomic_write, atomic_write_text
from ebm_repro.experiments.particle.config import ALL_KINDS, FIG15C, MODELS, ParticleConfig

TABLE_HORIZONS = (1, 5, 10, 20, 50, 100)  # issue E10: table columns (those beyond eval.horizon are dropped)
_BASE_LABELS = {"feedforward": "Feed-forward", "ebm_ld": "EBM (Langevin)", "ebm_mppi": "EBM (MPPI)"}
_BASE_COLORS = {"feedforward": "tab:gray", "ebm_ld": "tab:blue", "ebm_mppi": "tab:red"}
LABELS = {**_BASE_LABELS, **{k + FIG15C: v + ", Fig. 15c input" for k, v in _BASE_LABELS.items()},
          "constant_position": "reference: ball stands still", "constant_velocity": "reference: constant velocity"}
COLORS = {**_BASE_COLORS, **{k + FIG15C: v for k, v in _BASE_COLORS.items()},
          "constant_position": "black", "constant_velocity": "black"}
STYLES = {"constant_position": ":", "constant_velocity": "--"}
STYLES_KIND = {k + FIG15C: (0, (4, 1.5)) for k in MODELS}  # variants: dashed, in their base kind's colour


@dataclass(frozen=True)
class Curve:
    """Rollout MSE of one model: per-seed and per-trajectory curves and their summaries."""
    kind: str
    per_seed: np.ndarray   # (S, H): mean over trajectories and starts
    per_traj: np.ndarray   # (N, H): mean over seeds and starts
    mean: np.ndarray       # (H,)
    se_seed: np.ndarray    # (H,) standard error over training seeds
    se_traj: np.ndarray    # (H,) standard error over test trajectories

    @property
    def se_total(self) -> np.ndarray:
        """Both sources of uncertainty combined (independent, so variances add)."""
        return np.sqrt(self.se_seed**2 + self.se_traj**2)


def summarise(kind: str, mse: np.ndarray) -> Curve:
    """mse (S, N, n_starts, H) -> Curve; starts are averaged first (they share a trajectory)."""
    per = mse.mean(2)  # (S, N, H)
    s, n = per.shape[:2]
    per_seed, per_traj = per.mean(1), per.mean(0)
    se_seed = per_seed.std(0, ddof=1) / np.sqrt(s) if s > 1 else np.full(per.shape[2], np.nan)
    se_traj = per_traj.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(per.shape[2], np.nan)
    return Curve(kind, per_seed, per_traj, per.mean((0, 1)), se_seed, se_traj)


def load_rollouts(paths: list[Path]) -> dict[str, Curve]:
    """Rollout .npz files of evaluate -> {kind: Curve} in ALL_KINDS order."""
    runs = {}
    for p in paths:
        with np.load(p) as z:
            runs[str(z["kind"])] = summarise(str(z["kind"]), z["mse"])
    return {k: runs[k] for k in ALL_KINDS if k in runs}


def baseline_curves(test: np.ndarray, cfg: ParticleConfig) -> dict[str, np.ndarray]:
    """Mean rollout MSE (H,) of the learning-free references on the same test rollouts."""
    from ebm_repro.experiments.particle.evaluate import BASELINES, rollout_mse

    return {k: rollout_mse(k, None, test, cfg).mean((0, 1)) for k in BASELINES}


def claims(runs: dict[str, Curve], suffix: str = "") -> dict[str, bool]:
    """The paper's Fig. 9 claims, on mean MSE at step 1 and at the last horizon step (kinds: base + suffix)."""
    ff, ld, mp = (runs[k + suffix].mean if k + suffix in runs else None for k in MODELS)
    out = {}
    for name, c in (("ld", ld), ("mppi", mp)):
        if c is not None:
            out[f"ebm_{name}_higher_1step_than_ff"] = bool(c[0] > ff[0])
            out[f"ebm_{name}_lower_last_step_than_ff"] = bool(c[-1] < ff[-1])
    if ld is not None and mp is not None:
        out["ebm_mppi_lower_last_step_than_ld"] = bool(mp[-1] < ld[-1])
    return out


def training_lines(train_runs: list[dict], cfg: ParticleConfig) -> list[str]:
    """Footer lines: the stopping rule and, per kind, iterations run / best iteration / stop reason / time."""
    t = cfg.train
    lines = [f"Training (batch {t.batch_size}, Adam lr {t.lr:g}, betas ({t.beta1:g}, {t.beta2:g})), one rule for every "
             f"model: one-step MSE on {t.val_windows} fixed windows of {t.val_traj} held-out training trajectories "
             f"every {t.eval_every} iterations; stop after {t.patience} validations without a "
             f"{100 * t.min_rel_improvement:g}% relative improvement, or at {t.max_iters} iterations; the "
             f"best-validation weights are kept. Per seed: iterations run (best iteration, why it stopped), "
             f"CPU minutes of training:"]
    for k in ALL_KINDS:
        rs = sorted((r for r in train_runs if r["kind"] == k), key=lambda r: r["seed"])
        if rs:
            cells = ", ".join(f"{r['iters']} ({r['best_iter']}, {r['stopped'].replace('_', ' ')})" for r in rs)
            cpu = ", ".join(f"{r['cpu_seconds'] / 60:.1f}" for r in rs)
            lines.append(f"- {LABELS[k]}: {cells}; {cpu} CPU min")
    return lines


def diagnosis_lines(diag: dict, runs: dict[str, Curve], cfg: ParticleConfig) -> list[str]:
    """Footer lines from diagnose.json: where rollouts go and what the energy looks like there."""
    h = cfg.eval.horizon
    hs = [x for x in (1, 10, 100) if x <= h]
    n_win = next(iter(diag["probes"].values()))["n_windows"] if diag["probes"] else 0
    lines = ["Diagnosis (figure results/figures/particle_rollouts.png). Rollouts of all seeds on all test "
             "trajectories:", "",
             "| model | " + " | ".join(f"outside box h={x}" for x in hs) + " | ever left box | median first exit "
             "step | exits within 3 steps of the first true bounce | " + " | ".join(f"step ratio h={x}" for x in hs)
             + f" | median MSE h={h} |", "|---|" + "---|" * (2 * len(hs) + 4)]
    for k, st in diag["rollouts"].items():
        med = float(np.median(runs[k].per_traj[:, -1])) if k in runs else float("nan")
        lines.append(f"| {LABELS[k]} | " + " | ".join(f"{st[f'h{x}']['outside_box']:.2f}" for x in hs)
                     + f" | {st['ever_left_box']:.2f} | {st['median_first_exit']:.0f} | "
                     f"{st['exit_within_3_of_first_bounce']:.2f} | "
                     + " | ".join(f"{st[f'h{x}']['median_step_ratio']:.3f}" for x in hs) + f" | {med:.2e} |")
    lines += ["", "Step ratio: predicted / true distance moved in that rollout step (median over moving balls); "
              ">1 = the rollout speeds up.", "",
              f"One step from true context, seed-0 models, {n_win} test windows each: in free flight, and at a wall "
              "bounce (the true step reverses a velocity component):", "",
              "| model | one-step MSE, free flight | one-step MSE, bounce | bounce: E(straight on) < E(truth) |",
              "|---|---|---|---|"]
    ref = None
    for k, o in diag.get("one_step", {}).items():
        ref = o["mse_bounce_straight_line"]
        below = f"{o['bounce_straight_below_true_frac']:.3f}" if "bounce_straight_below_true_frac" in o else "--"
        lines.append(f"| {LABELS[k]} | {o['mse_free']:.2e} | {o['mse_bounce']:.2e} | {below} |")
    if ref is not None:
        lines += ["", f"Flying straight on (constant velocity, through the wall) scores {ref:.2e} on the bounce windows."]
    lines += ["", f"Energies of the seed-0 models on {n_win} free-flight test windows:", "",
              "| energy (seed 0) | argmin along the step, s (truth 1) | E(s=0) - E(truth) | E(s=0.5) - E(truth) | "
              "E(s=1.5) - E(truth) | E(s=2) - E(truth) | local argmin distance to truth | share of off-box "
              "candidates below E(truth) | mean min over off-box candidates of E - E(truth) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, p in diag["probes"].items():
        d = p["line_dE"]
        lines.append(f"| {LABELS[k]} | {p['line_argmin_s_median']:.3f} | {d['0']:.3g} | {d['0.5']:.3g} | "
                     f"{d['1.5']:.3g} | {d['2']:.3g} | {p['local_argmin_dist']:.4f} (grid {p['local_grid_spacing']:.4f}) "
                     f"| {p['outside_below_true_frac']:.3f} | {p['outside_min_dE']:.3g} |")
    lines += ["", f"Candidates: last observed position + s x (true next - last), s in [-0.5, 3]; local grid +-0.05 "
              f"around the truth; off-box grid: points of [-0.5, 1.5]^2 outside the box. Langevin target "
              f"temperature T = noise^2 / (2 step) = {diag['langevin_temperature']:.3g} (energy units)."]
    return lines


def write_table(runs: dict[str, Curve], refs: dict[str, np.ndarray], cfg: ParticleConfig, setting: str,
                path: Path, train_runs: list[dict] | None = None, diag: dict | None = None) -> None:
    """Markdown table: mean MSE ± SE over seeds [SE over trajectories] at TABLE_HORIZONS, references, footer."""
    hs = [h for h in TABLE_HORIZONS if h <= cfg.eval.horizon]
    n_seeds = next(iter(runs.values())).per_seed.shape[0]
    lines = [f"# Particle dynamics: multistep rollout MSE (IGEBM §5.1, Fig. 9) -- {setting} setting", "",
             "| model | " + " | ".join(f"h={h}" for h in hs) + " |", "|---|" + "---|" * len(hs)]
    for k, c in runs.items():
        cells = [f"{c.mean[h - 1]:.2e} ± {c.se_seed[h - 1]:.1e} [{c.se_traj[h - 1]:.1e}]" for h in hs]
        lines.append(f"| {LABELS[k]} | " + " | ".join(cells) + " |")
    for k, m in refs.items():
        lines.append(f"| *{LABELS[k]}* | " + " | ".join(f"{m[h - 1]:.2e}" for h in hs) + " |")
    yn = {True: "yes", False: "no"}
    h = cfg.eval.horizon
    lines += ["", f"MSE of the predicted position (box units, mean over x and y) h steps into a rollout that feeds "
              f"predictions back. Cell: mean ± standard error over {n_seeds} training seeds [standard error over "
              f"{cfg.data.n_test} test trajectories]; {cfg.eval.n_starts} rollout start(s) per trajectory. "
              f"Langevin {cfg.langevin.n_steps} steps (step {cfg.langevin.step_size:g}, noise "
              f"{cfg.langevin.noise_std:g}, gradient clip {cfg.langevin.grad_clip:g}), MPPI {cfg.mppi.n_steps} "
              f"steps x {cfg.mppi.n_samples} samples (noise {cfg.mppi.noise_std:g}); chains start at the last "
              f"observed position. Rows \"Fig. 15c input\": the same model fed positions only (net.rel_scale 0), "
              f"the regressor outputting the position itself.", ""]
    if train_runs:
        lines += training_lines(train_runs, cfg) + [""]
    for suffix, name in (("", "our input (positions + offsets from the last position)"), (FIG15C, "Fig. 15c input")):
        ok = claims(runs, suffix) if "feedforward" + suffix in runs else {}
        if not ok:
            continue
        parts = ["EBM 1-step error higher than feed-forward: "
                 + ", ".join(f"{n} {yn[ok[f'ebm_{m}_higher_1step_than_ff']]}" for m, n in (("ld", "LD"), ("mppi", "MPPI"))
                             if f"ebm_{m}_higher_1step_than_ff" in ok),
                 f"EBM {h}-step error lower than feed-forward: "
                 + ", ".join(f"{n} {yn[ok[f'ebm_{m}_lower_last_step_than_ff']]}" for m, n in (("ld", "LD"), ("mppi", "MPPI"))
                             if f"ebm_{m}_lower_last_step_than_ff" in ok)]
        if "ebm_mppi_lower_last_step_than_ld" in ok:
            parts.append(f"MPPI {h}-step error lower than LD: {yn[ok['ebm_mppi_lower_last_step_than_ld']]}")
        lines += [f"Paper's claims (Fig. 9), as this run shows them -- {name}:", *(f"- {x}" for x in parts), ""]
    if diag:
        lines += diagnosis_lines(diag, runs, cfg) + [""]
    atomic_write_text(path, "\n".join(lines))


def write_figure(runs: dict[str, Curve], refs: dict[str, np.ndarray], cfg: ParticleConfig, setting: str,
                 png: Path, pdf: Path) -> None:
    """Log-scale MSE per horizon step; band = ± combined SE (seeds and trajectories), thin lines = seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, c in runs.items():
        h = np.arange(1, len(c.mean) + 1)
        for s in c.per_seed:
            ax.plot(h, s, color=COLORS[k], lw=0.5, alpha=0.35)
        ax.plot(h, c.mean, color=COLORS[k], ls=STYLES_KIND.get(k, "-"), lw=1.8, label=LABELS[k])
        lo = np.clip(c.mean - c.se_total, c.mean * 1e-3, None)  # keep the band positive on a log axis
        ax.fill_between(h, lo, c.mean + c.se_total, color=COLORS[k], alpha=0.25, lw=0)
    for k, m in refs.items():
        ax.plot(np.arange(1, len(m) + 1), m, color=COLORS[k], ls=STYLES[k], lw=0.9, label=LABELS[k])
    ax.set_yscale("log")
    ax.set_xlabel("rollout step")
    ax.set_ylabel("MSE (box units$^2$)")
    n_seeds = next(iter(runs.values())).per_seed.shape[0]
    ax.set_title(f"Particle rollouts, IGEBM Fig. 9 analogue ({setting}):\nmean ± SE, {n_seeds} seeds x "
                 f"{cfg.data.n_test} test trajectories", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=150))
    atomic_write(pdf, lambda f: fig.savefig(f, format="pdf"))
    plt.close(fig)


def write_summary(runs: dict[str, Curve], refs: dict[str, np.ndarray], path: Path) -> None:
    """JSON metrics (for `dvc metrics`): MSE ± SEs at the table horizons, and the claim checks."""
    out = {"claims": claims(runs), "claims_fig15c": claims(runs, FIG15C) if "feedforward" + FIG15C in runs else {},
           "models": {}, "references": {
        k: {f"h{h}": float(m[h - 1]) for h in TABLE_HORIZONS if h <= len(m)} for k, m in refs.items()}}
    for k, c in runs.items():
        hs = [h for h in TABLE_HORIZONS if h <= len(c.mean)]
        out["models"][k] = {f"h{h}": {"mse": float(c.mean[h - 1]), "se_seed": float(c.se_seed[h - 1]),
                                      "se_traj": float(c.se_traj[h - 1])} for h in hs}
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
