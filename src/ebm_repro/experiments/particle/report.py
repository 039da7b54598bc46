"""E10 outputs: MSE-per-horizon figure (IGEBM Fig. 9), markdown table and a JSON summary."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebm_repro.checkpoint import atomic_write, atomic_write_text
from ebm_repro.experiments.particle.config import MODELS, ParticleConfig

TABLE_HORIZONS = (1, 5, 10, 20, 50, 100)  # issue E10: table columns (those beyond eval.horizon are dropped)
LABELS = {"feedforward": "Feed-forward", "ebm_ld": "EBM (Langevin)", "ebm_mppi": "EBM (MPPI)",
          "constant_position": "reference: ball stands still", "constant_velocity": "reference: constant velocity"}
COLORS = {"feedforward": "tab:gray", "ebm_ld": "tab:blue", "ebm_mppi": "tab:red",
          "constant_position": "black", "constant_velocity": "black"}
STYLES = {"constant_position": ":", "constant_velocity": "--"}


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
    """Rollout .npz files of evaluate -> {kind: Curve} in MODELS order."""
    runs = {}
    for p in paths:
        with np.load(p) as z:
            runs[str(z["kind"])] = summarise(str(z["kind"]), z["mse"])
    return {k: runs[k] for k in MODELS if k in runs}


def baseline_curves(test: np.ndarray, cfg: ParticleConfig) -> dict[str, np.ndarray]:
    """Mean rollout MSE (H,) of the learning-free references on the same test rollouts."""
    from ebm_repro.experiments.particle.evaluate import BASELINES, rollout_mse

    return {k: rollout_mse(k, None, test, cfg).mean((0, 1)) for k in BASELINES}


def claims(runs: dict[str, Curve]) -> dict[str, bool]:
    """The paper's Fig. 9 claims, checked on mean MSE at step 1 and at the last horizon step."""
    ff, ld, mp = (runs[k].mean for k in MODELS)
    return {"ebm_ld_higher_1step_than_ff": bool(ld[0] > ff[0]),
            "ebm_mppi_higher_1step_than_ff": bool(mp[0] > ff[0]),
            "ebm_ld_lower_last_step_than_ff": bool(ld[-1] < ff[-1]),
            "ebm_mppi_lower_last_step_than_ff": bool(mp[-1] < ff[-1]),
            "ebm_mppi_lower_last_step_than_ld": bool(mp[-1] < ld[-1])}


def write_table(runs: dict[str, Curve], refs: dict[str, np.ndarray], cfg: ParticleConfig, setting: str,
                path: Path) -> None:
    """Markdown table: mean MSE ± SE over seeds [SE over trajectories] at TABLE_HORIZONS, plus references."""
    hs = [h for h in TABLE_HORIZONS if h <= cfg.eval.horizon]
    n_seeds = next(iter(runs.values())).per_seed.shape[0]
    lines = [f"# Particle dynamics: multistep rollout MSE (IGEBM §5.1, Fig. 9) -- {setting} setting", "",
             "| model | " + " | ".join(f"h={h}" for h in hs) + " |", "|---|" + "---|" * len(hs)]
    for k, c in runs.items():
        cells = [f"{c.mean[h - 1]:.2e} ± {c.se_seed[h - 1]:.1e} [{c.se_traj[h - 1]:.1e}]" for h in hs]
        lines.append(f"| {LABELS[k]} | " + " | ".join(cells) + " |")
    for k, m in refs.items():
        lines.append(f"| *{LABELS[k]}* | " + " | ".join(f"{m[h - 1]:.2e}" for h in hs) + " |")
    ok = claims(runs)
    yn = {True: "yes", False: "no"}
    h = cfg.eval.horizon
    lines += ["", f"MSE of the predicted position (box units, mean over x and y) h steps into a rollout that feeds "
              f"predictions back. Cell: mean ± standard error over {n_seeds} training seeds [standard error over "
              f"{cfg.data.n_test} test trajectories]; {cfg.eval.n_starts} rollout start(s) per trajectory. "
              f"Training iterations (batch {cfg.train.batch_size}): feed-forward {cfg.train.n_iters.feedforward}, "
              f"EBM-LD {cfg.train.n_iters.ebm_ld}, EBM-MPPI {cfg.train.n_iters.ebm_mppi}; Langevin "
              f"{cfg.langevin.n_steps} steps, MPPI {cfg.mppi.n_steps} steps x {cfg.mppi.n_samples} samples.", "",
              "Paper's claims (Fig. 9), as this run shows them:",
              f"- EBM 1-step error higher than feed-forward: LD {yn[ok['ebm_ld_higher_1step_than_ff']]}, "
              f"MPPI {yn[ok['ebm_mppi_higher_1step_than_ff']]}",
              f"- EBM {h}-step error lower than feed-forward: LD {yn[ok['ebm_ld_lower_last_step_than_ff']]}, "
              f"MPPI {yn[ok['ebm_mppi_lower_last_step_than_ff']]}",
              f"- MPPI {h}-step error lower than LD: {yn[ok['ebm_mppi_lower_last_step_than_ld']]}", ""]
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
        ax.plot(h, c.mean, color=COLORS[k], lw=1.8, label=LABELS[k])
        lo = np.clip(c.mean - c.se_total, c.mean * 1e-3, None)  # keep the band positive on a log axis
        ax.fill_between(h, lo, c.mean + c.se_total, color=COLORS[k], alpha=0.25, lw=0)
    for k, m in refs.items():
        ax.plot(np.arange(1, len(m) + 1), m, color=COLORS[k], ls=STYLES[k], lw=0.9, label=LABELS[k])
    ax.set_yscale("log")
    ax.set_xlabel("rollout step")
    ax.set_ylabel("MSE (box units$^2$)")
    n_seeds = next(iter(runs.values())).per_seed.shape[0]
    ax.set_title(f"Particle rollouts ({setting}): mean ± SE, {n_seeds} seeds x {cfg.data.n_test} test traj.",
                 fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=150))
    atomic_write(pdf, lambda f: fig.savefig(f, format="pdf"))
    plt.close(fig)


def write_summary(runs: dict[str, Curve], refs: dict[str, np.ndarray], path: Path) -> None:
    """JSON metrics (for `dvc metrics`): MSE ± SEs at the table horizons, and the claim checks."""
    out = {"claims": claims(runs), "models": {}, "references": {
        k: {f"h{h}": float(m[h - 1]) for h in TABLE_HORIZONS if h <= len(m)} for k, m in refs.items()}}
    for k, c in runs.items():
        hs = [h for h in TABLE_HORIZONS if h <= len(c.mean)]
        out["models"][k] = {f"h{h}": {"mse": float(c.mean[h - 1]), "se_seed": float(c.se_seed[h - 1]),
                                      "se_traj": float(c.se_traj[h - 1])} for h in hs}
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
