"""Why rollouts fail: where they go (box exits, speed drift) and what the energy looks like around and away
from the data (IGEBM §5.1 claims EBMs generalise better out of distribution; these numbers test how)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ebm_repro.experiments.particle.config import CONTEXT, ParticleConfig, base_kind

DIAG_HORIZONS = (1, 10, 100)     # horizons quoted for the rollout statistics (those beyond eval.horizon dropped)
LINE_S = np.linspace(-0.5, 3.0, 141)  # candidates last + s * (true step): s = 0 stands still, s = 1 is the truth
LOCAL_HALF, LOCAL_N = 0.05, 41   # local grid: +-0.05 box units around the true next position (2.5 steps)
WIDE_LO, WIDE_HI, WIDE_N = -0.5, 1.5, 41  # wide grid over the box and half a box beyond each wall


def rollout_stats(pred: np.ndarray, test: np.ndarray, cfg: ParticleConfig) -> dict:
    """pred (S, N, n_starts, H, 2) of one kind -> box exits and step-length drift at DIAG_HORIZONS."""
    from ebm_repro.experiments.particle.evaluate import rollout_targets, start_times

    box = cfg.physics.box_size
    starts = start_times(test.shape[1], cfg.eval.horizon, cfg.eval.n_starts)
    last = np.stack([test[:, s + CONTEXT - 1] for s in starts], 1)  # (N, n_starts, 2) last observed position
    true = rollout_targets(test, cfg)  # (N, n_starts, H, 2)
    steps = lambda x, x0: np.linalg.norm(np.diff(np.concatenate([x0[..., None, :], x], -2), axis=-2), axis=-1)  # noqa: E731
    true_len = steps(true, last)  # (N, n_starts, H)
    pred_len = steps(pred, np.broadcast_to(last, pred.shape[:-2] + (2,)))  # (S, N, n_starts, H)
    moving = true_len > 1e-4  # the ball has not stopped (friction), so the ratio is defined
    outside = ((pred < 0) | (pred > box)).any(-1)  # (S, N, n_starts, H)
    # First true bounce of each rollout window (a velocity component reverses) vs the rollout's first box exit.
    full = np.concatenate([last[..., None, :], true], -2)  # (N, n_starts, H+1, 2)
    d = np.diff(full, axis=-2)
    rev = np.concatenate([np.zeros(d.shape[:-2] + (1,), bool), (d[..., 1:, :] * d[..., :-1, :] < 0).any(-1)], -1)
    first_bounce = np.where(rev.any(-1), rev.argmax(-1) + 1, 10**6)  # (N, n_starts) horizon step, 1-based
    left = outside.any(-1)  # (S, N, n_starts)
    first_exit = outside.argmax(-1) + 1
    near = np.abs(first_exit - first_bounce[None]) <= 3
    m = np.broadcast_to(moving, pred_len.shape)
    ratio = np.where(m, pred_len / np.where(moving, true_len, 1.0), np.nan)  # (S, N, n_starts, H)
    curve = np.nanmedian(ratio.reshape(-1, ratio.shape[-1]), axis=0) if m.any() else np.full(ratio.shape[-1], np.nan)
    out = {"ever_left_box": float(left.mean()),
           "median_first_exit": float(np.median(first_exit[left])) if left.any() else float("nan"),
           "exit_within_3_of_first_bounce": float(near[left].mean()) if left.any() else float("nan"),
           "_outside_curve": outside.reshape(-1, outside.shape[-1]).mean(0).tolist(),  # for the figure
           "_step_ratio_curve": curve.tolist()}
    for h in (h for h in DIAG_HORIZONS if h <= cfg.eval.horizon):
        out[f"h{h}"] = {"outside_box": float(outside[..., h - 1].mean()), "median_step_ratio": float(curve[h - 1])}
    return out


def probe_windows(test: np.ndarray, n: int, seed: int, bounce: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """n test windows (past (n, 3, 2), true next (n, 2)) of a moving ball at a fixed seed; bounce=True: only
    windows whose last step reverses a velocity component (a wall), False: only windows without a reversal."""
    d = np.diff(test, axis=1)  # (N, T-1, 2) steps
    flip = (d[:, 2:] * d[:, 1:-1] < 0).any(-1)  # (N, T-3): step into `next` reverses the previous one
    moving = np.abs(d[:, 1:-1]).sum(-1) > 1e-4
    i, t = np.nonzero(moving & (flip if bounce else ~flip))
    if len(i) == 0:
        raise ValueError(f"no {'bounce' if bounce else 'free-flight'} windows in the test trajectories")
    sel = np.random.default_rng(seed).choice(len(i), min(n, len(i)), replace=False)
    win = torch.from_numpy(test[i[sel, None], t[sel, None] + np.arange(CONTEXT + 1)])  # (n, 4, 2)
    return win[:, :CONTEXT], win[:, CONTEXT]


def one_step_errors(kind: str, model: nn.Module, free: tuple, bounce: tuple, cfg: ParticleConfig) -> dict:
    """One-step MSE of the test-time predictor in free flight and at a wall bounce; for energies also how often
    flying straight on (through the wall) has lower energy than the true bounced position."""
    from ebm_repro.experiments.particle.train import one_step_mse

    out = {"mse_free": one_step_mse(kind, model, *free, cfg), "mse_bounce": one_step_mse(kind, model, *bounce, cfg)}
    past, nxt = bounce
    straight = 2 * past[:, -1] - past[:, -2]  # constant velocity: through the wall
    out["mse_bounce_straight_line"] = ((straight - nxt) ** 2).mean().item()
    if is_energy(kind):
        with torch.no_grad():
            out["bounce_straight_below_true_frac"] = (model(past, straight) < model(past, nxt)).float().mean().item()
    return out


@torch.no_grad()
def grid_energy(model: nn.Module, past: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """Energy of every candidate (G, 2) for every window (W, 3, 2) -> (W, G), in chunks of candidates."""
    out = []
    for c in cand.split(256):
        w, g = len(past), len(c)
        rep = past[:, None].expand(w, g, CONTEXT, 2).reshape(w * g, CONTEXT, 2)
        out.append(model(rep, c[None].expand(w, g, 2).reshape(w * g, 2)).view(w, g))
    return torch.cat(out, 1)


def energy_probe(model: nn.Module, past: torch.Tensor, nxt: torch.Tensor, box: float) -> dict:
    """Energy around the true next position, along its step and beyond the walls (all relative to E(true))."""
    model.eval().requires_grad_(False)
    with torch.no_grad():
        e_true = model(past, nxt)  # (W,)
        step = nxt - past[:, -1]  # (W, 2)
        s = torch.as_tensor(LINE_S, dtype=past.dtype)
        line = torch.stack([model(past, past[:, -1] + si * step) for si in s], 1) - e_true[:, None]  # (W, L)
        ax = torch.linspace(-LOCAL_HALF, LOCAL_HALF, LOCAL_N, dtype=past.dtype)
        offs = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
        local = torch.stack([model(past, nxt + o) for o in offs], 1) - e_true[:, None]  # (W, G)
        wx = torch.linspace(WIDE_LO * box, WIDE_HI * box, WIDE_N, dtype=past.dtype)
        wide_pts = torch.stack(torch.meshgrid(wx, wx, indexing="ij"), -1).reshape(-1, 2)  # (G', 2)
        wide = grid_energy(model, past, wide_pts) - e_true[:, None]  # (W, G')
    outside = ((wide_pts < 0) | (wide_pts > box)).any(-1)
    moving = step.norm(dim=1) > 1e-4
    s_star = s[line.argmin(1)]  # (W,) where the energy along the step is lowest
    return {
        "n_windows": len(past),
        "local_argmin_dist": float(offs[local.argmin(1)].norm(dim=1).mean()),  # box units
        "local_grid_spacing": float(ax[1] - ax[0]),
        "line_argmin_s_median": float(s_star[moving].median()) if moving.any() else float("nan"),
        "line_dE": {f"{v:g}": float(line[:, int(np.argmin(np.abs(LINE_S - v)))].mean()) for v in (0.0, 0.5, 1.5, 2.0)},
        "outside_below_true_frac": float((wide[:, outside] < 0).float().mean()),
        "outside_min_dE": float(wide[:, outside].min(1).values.mean()),
        "inside_below_true_frac": float((wide[:, ~outside] < 0).float().mean()),
        "_line": line.mean(0).tolist(),  # for the figure
        "_wide0": wide[0].view(WIDE_N, WIDE_N).tolist(),  # window 0's map, for the figure
        "_window0": [past[0].tolist(), nxt[0].tolist()],
    }


def langevin_temperature(cfg: ParticleConfig) -> float:
    """T = noise^2 / (2 step): the Langevin chain of Eq. 4 (noise added, not scaled) targets exp(-E / T)."""
    return cfg.langevin.noise_std**2 / (2 * cfg.langevin.step_size)


def is_energy(kind: str) -> bool:
    return base_kind(kind) != "feedforward"


def write_figure(preds: dict[str, np.ndarray], stats: dict[str, dict], probes: dict[str, dict], test: np.ndarray,
                 cfg: ParticleConfig, setting: str, png, pdf) -> None:
    """Top: seed-0 rollouts of 3 test trajectories per kind. Bottom: step-length drift and box exits per horizon,
    mean energy along the true step, and one window's energy map over and beyond the box per EBM kind."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import SymLogNorm
    from matplotlib.patches import Rectangle

    from ebm_repro.checkpoint import atomic_write
    from ebm_repro.experiments.particle.evaluate import rollout_targets, start_times
    from ebm_repro.experiments.particle.report import COLORS, LABELS, STYLES_KIND

    kinds, ebms = list(preds), list(probes)
    box, lim = cfg.physics.box_size, (WIDE_LO * cfg.physics.box_size, WIDE_HI * cfg.physics.box_size)
    ncol = max(len(kinds), 3 + len(ebms))
    fig, axes = plt.subplots(2, ncol, figsize=(2.9 * ncol, 6.2), squeeze=False)
    true = rollout_targets(test, cfg)[:3, 0]  # (3, H, 2) first start of test trajectories 0..2
    s0 = start_times(test.shape[1], cfg.eval.horizon, cfg.eval.n_starts)[0]
    traj_colors = ("tab:green", "tab:purple", "tab:orange")
    for ax, k in zip(axes[0], kinds):
        ax.add_patch(Rectangle((0, 0), box, box, fill=False, lw=1.0, color="black"))
        for j in range(3):
            ctx = test[j, s0:s0 + CONTEXT]
            ax.plot(*true[j].T, color="black", lw=0.8, alpha=0.6)
            ax.plot(*np.clip(preds[k][0, j, 0], *lim).T, color=traj_colors[j], lw=1.2)
            ax.plot(*ctx[-1], "o", color=traj_colors[j], ms=4)
        n_far = int((np.abs(preds[k][0, :3, 0] - box / 2) > box).any((-1, -2)).sum())
        ax.set_title(f"{LABELS[k]}" + (f"\n({n_far} of 3 drawn clipped at the frame)" if n_far else ""), fontsize=8)
        ax.set(xlim=lim, ylim=lim, aspect="equal", xlabel="x (box units)", ylabel="y (box units)")
    for ax in axes[0, len(kinds):]:
        ax.axis("off")
    axes[0, 0].plot([], [], color="black", lw=0.8, label="truth")
    axes[0, 0].plot([], [], color="tab:green", lw=1.2, label="rollout (seed 0)")
    axes[0, 0].plot([], [], "o", color="gray", ms=4, label="last observed")
    axes[0, 0].legend(fontsize=6, frameon=False, loc="upper left")
    h = np.arange(1, cfg.eval.horizon + 1)
    a_ratio, a_out, a_line = axes[1, 0], axes[1, 1], axes[1, 2]
    for k in kinds:
        st = dict(color=COLORS[k], ls=STYLES_KIND.get(k, "-"), lw=1.2, label=LABELS[k])
        a_ratio.plot(h, stats[k]["_step_ratio_curve"], **st)
        a_out.plot(h, stats[k]["_outside_curve"], **st)
    a_ratio.axhline(1.0, color="black", lw=0.6, ls=":")
    a_ratio.set(yscale="log", xlabel="rollout step h", ylabel="predicted / true step length (median)",
                title="speed drift (all seeds, test traj.)")
    a_out.set(xlabel="rollout step h", ylabel="fraction of rollouts outside the box", ylim=(-0.02, 1.02),
              title="box exits")
    for k in ebms:
        a_line.plot(LINE_S, probes[k]["_line"], color=COLORS[k], ls=STYLES_KIND.get(k, "-"), lw=1.2, label=LABELS[k])
    a_line.axvline(0.0, color="gray", lw=0.6, ls=":")
    a_line.axvline(1.0, color="black", lw=0.6, ls="--")
    a_line.set(xlabel="candidate = last + s x true step  (s = 1: truth)", ylabel="E - E(true next), mean",
               title=f"energy along the step (seed 0, {probes[ebms[0]]['n_windows']} windows)" if ebms else "")
    for a in (a_ratio, a_out, a_line):
        a.grid(True, alpha=0.3)
        a.title.set_fontsize(8)
        a.legend(fontsize=6, frameon=False)
    for j, k in enumerate(ebms):
        ax = axes[1, 3 + j]
        e = np.asarray(probes[k]["_wide0"]).T  # (y, x) for imshow
        lim_e = float(np.abs(e).max()) or 1.0
        im = ax.imshow(e, origin="lower", extent=(*lim, *lim), cmap="coolwarm",
                       norm=SymLogNorm(linthresh=1e-2, vmin=-lim_e, vmax=lim_e))
        ax.add_patch(Rectangle((0, 0), box, box, fill=False, lw=1.0, color="black"))
        past, nxt = probes[k]["_window0"]
        ax.plot(*np.asarray(past).T, "k.-", ms=4, lw=0.8)
        ax.plot(*nxt, "kx", ms=6)
        ax.set(xlabel="candidate x", ylabel="candidate y", title=f"{LABELS[k]}: E - E(true next)\n(one test window; x = truth)")
        ax.title.set_fontsize(8)
        fig.colorbar(im, ax=ax, shrink=0.8).set_label("E - E(true next)", fontsize=7)
    for ax in axes[1, 3 + len(ebms):]:
        ax.axis("off")
    fig.suptitle(f"Particle rollouts and energies ({setting} setting): diagnosis of IGEBM Fig. 9 / §5.1", fontsize=10)
    fig.tight_layout()
    atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=130))
    atomic_write(pdf, lambda f: fig.savefig(f, format="pdf"))
    plt.close(fig)
