"""E12: ICD Fig. 7, very-low-temperature samples: ICD vs IGEBM after N steps of noise-free gradient descent on E.

`results/figures/low_temperature.{png,pdf}`: ICD §3.3 runs "gradient descent 1000 steps on an energy function" and
finds ICD's samples stay naturalistic while IGEBM's converge to strange hues. Low temperature here = the
test-time Langevin step of each variant (its test_sampling step_size and grad_clip, clamp to [0, 1]) with the
noise set to 0, for `n_steps` steps, from the variant's test-time samples (results/samples/<variant>/single.npz:
"after a large number of sampling steps", Fig. 7) or from uniform noise (`start`). `results/low_temperature/
summary.json` holds our proxies of "naturalistic" (the paper states no measure): IS and FID in the setting's
feature space, and the share of colour values driven to the clamp bounds 0 or 255 (strange, saturated hues).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.claims import judged_claim
from ebm_repro.config import ConfigError, _enum, _pos, build_setting_block

BLOCK = "low_temperature"


@dataclass(frozen=True)
class LowTemperatureConfig:
    ours: str                      # the ICD variant (Fig. 7 left)
    baseline: str                  # the IGEBM variant (Fig. 7 right)
    start: str = _enum("samples", "noise")   # samples: the variant's test-time samples; noise: U(0, 1)
    n_steps: int = _pos()          # ICD §3.3: 1000 steps of gradient descent
    n_samples: int = _pos()        # chains per variant (all scored); the figure shows the first n_show
    n_show: int = _pos()
    log_every: int = _pos()        # mean energy logged every log_every steps
    batch_size: int = _pos()       # chains per descent batch
    n_reference: int = _pos(minimum=2)   # FID reference: this many random training images (10000: the ICD code's)
    seed: int = _pos(minimum=0)    # start = noise: the noise seed


def schema() -> dict:
    return C.setting_block_schema(LowTemperatureConfig)


def low_temperature_config(params: dict, setting: str) -> LowTemperatureConfig:
    cfg = build_setting_block(LowTemperatureConfig, params, BLOCK, setting)
    mc = params["settings"][setting]["metrics"]
    if cfg.start == "samples" and cfg.n_samples > mc["n_samples"]:
        # the chains start from the test-time samples: at most the settings.<s>.metrics.n_samples there are
        cfg = dataclasses.replace(cfg, n_samples=mc["n_samples"], n_show=min(cfg.n_show, mc["n_samples"]))
    if cfg.n_show > cfg.n_samples:
        raise ConfigError(f"low_temperature ({setting}): n_show {cfg.n_show} > n_samples {cfg.n_samples}")
    return cfg


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        cfg = low_temperature_config(params, setting)
        for key in ("ours", "baseline"):
            C.check_variant(params, getattr(cfg, key), f"low_temperature.{setting}.{key}")
        data = {C.resolve(params, v, setting=setting, validated=True).dataset for v in (cfg.ours, cfg.baseline)}
        if len(data) > 1:  # one FID reference and one "real colours" share for both columns
            raise ConfigError(f"low_temperature.{setting}: ours and baseline train on different datasets "
                              f"{sorted(data)}")


# ----------------------------------------------------------------------------- descent
def descent_config(ts, n_steps: int):
    """The variant's test-time Langevin step (step size, gradient clip, clamp) with no noise: gradient descent."""
    from ebm_repro.config import SamplerConfig

    return SamplerConfig(n_steps=n_steps, step_size=ts.step_size, noise_std=0.0, grad_clip=ts.grad_clip, clamp=True)


def descend(energy, x0, cfg, log_every: int):
    """x <- clamp(x - step * clip(dE/dx), 0, 1), cfg.n_steps times (cfg.noise_std must be 0).

    Returns (x (B, ...), steps, mean energies): the batch-mean energy at step 0 and every log_every steps.
    """
    import torch

    from ebm_repro.sampling import make_langevin

    if cfg.noise_std != 0:
        raise ValueError(f"low temperature is noise-free descent; got noise_std {cfg.noise_std}")
    run = make_langevin(cfg)

    def mean_energy(x):
        with torch.no_grad():
            return float(energy(x).mean())

    x, t = x0.detach(), 0
    steps, energies = [0], [mean_energy(x)]
    while t < cfg.n_steps:
        n = min(log_every, cfg.n_steps - t)
        x = run(energy, x, n_steps=n).x
        t += n
        steps.append(t)
        energies.append(mean_energy(x))
    return x, steps, energies


def clipped_share(images) -> float:
    """Share of colour values at the clamp bounds (uint8 0 or 255): saturated hues."""
    import numpy as np

    return float(np.isin(images, (0, 255)).mean())


# ----------------------------------------------------------------------------- figure
def low_temperature_figure(cols: list[dict], out_png: Path, title: str) -> None:
    """One column per variant: start images (top strip), low-temperature samples (grid), mean energy vs step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ebm_repro.report import tile_images
    from ebm_repro.runs import save_figure

    n_show = len(cols[0]["final"])
    per_row = min(8, n_show)
    n_rows = -(-n_show // per_row)
    fig, axes = plt.subplots(3, len(cols), figsize=(3.8 * len(cols), 0.5 * n_rows + 4.0), dpi=150, squeeze=False,
                             gridspec_kw={"height_ratios": [1, n_rows, 2.2]})

    def grid(images, rows):
        pad = np.zeros((rows * per_row - len(images), *images.shape[1:]), np.uint8)
        return np.concatenate([images, pad]).reshape(rows, per_row, *images.shape[1:])

    for j, c in enumerate(cols):
        top, mid, bottom = axes[:, j]
        top.imshow(tile_images(grid(c["start"][:per_row], 1)), interpolation="nearest")
        top.set_title(f"{c['label']}\nstart (first {per_row} chains): {c['start_desc']}", fontsize=6.5)
        mid.imshow(tile_images(grid(c["final"], n_rows)), interpolation="nearest")
        m = c["metrics"]
        mid.set_title(f"after {c['steps'][-1]} steps of gradient descent (step {c['step_size']:g}, clip "
                      f"{c['grad_clip']:g}, no noise)\nIS {m['IS_mean']:.2f} "
                      f"(start {c['start_metrics']['IS_mean']:.2f}), "
                      f"FID {m['FID']:.1f} (start {c['start_metrics']['FID']:.1f})\nvalues at 0 or 255: "
                      f"{c['clipped']:.1%} (start {c['start_clipped']:.1%})", fontsize=6)
        for ax in (top, mid):
            ax.set_xticks([])
            ax.set_yticks([])
        bottom.plot(c["steps"], c["energies"], marker=".", ms=3)
        bottom.set_xlabel("gradient-descent step", fontsize=7)
        bottom.set_ylabel("mean energy E(x)", fontsize=7)
        bottom.tick_params(labelsize=6)
        bottom.grid(alpha=0.3)
    fig.suptitle("\n".join(textwrap.fill(t, int(fig.get_figwidth() * 16)) for t in title.split("\n")), fontsize=7.5)
    fig.tight_layout()
    save_figure(fig, out_png)
    plt.close(fig)


# ----------------------------------------------------------------------------- command
def cmd_low_temperature(a) -> None:
    """Low-temperature samples of the ICD and IGEBM variants, their proxies of realism -> figure + summary."""
    import numpy as np
    import torch

    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.data import load_split
    from ebm_repro.generate import load_models, quantize_output
    from ebm_repro.metrics import compute_inception_metrics
    from ebm_repro.report import write_provenance
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    setting = p["setting"]
    cfg = low_temperature_config(p, setting)
    mc = p["settings"][setting]["metrics"]
    dev = pick_device(a.device)
    variants = (cfg.ours, cfg.baseline)
    if len(a.models) != 2 or len(a.samples) != 2:
        raise SystemExit("error: --models and --samples take two files each: ours, then baseline")
    # FID reference: the same random training images for both variants (10000 = data.reference_images
    # "train_10k", the ICD code's set), whatever each recipe's own metrics.fid_reference is
    train = load_split(Path(a.data) / "train.npz")[0]
    ref = train[np.sort(np.random.default_rng(0).permutation(len(train))[:cfg.n_reference])]
    real_clipped = clipped_share(train)

    def score(images):
        return compute_inception_metrics(images, ref, mc["feature_net"], Path(a.feature_net),
                                         n_splits=min(mc["n_splits"], cfg.n_samples),  # few chains: fewer splits
                                         batch_size=mc["batch_size"], device=str(dev),
                                         kid=False)

    cols, summary = [], {"setting": setting, "preset": p["preset"], "feature_net": mc["feature_net"],
                         "config": dataclasses.asdict(cfg), "real_train_clipped": real_clipped, "variants": {}}
    for v, model, samples in zip(variants, a.models, a.samples):
        rc = C.resolve(p, v)
        ts = rc.hp.test_sampling
        net = load_models(rc, Path(model), "single", dev)[0].requires_grad_(False)  # gradients w.r.t. x only
        if cfg.start == "samples":
            with np.load(samples, allow_pickle=False) as z:
                start = z["images"][:cfg.n_samples]                          # (N, H, W, C) uint8
            if len(start) < cfg.n_samples:
                raise ValueError(f"{samples} holds {len(start)} samples; low_temperature.n_samples is "
                                 f"{cfg.n_samples}")
            x0 = torch.from_numpy(start).permute(0, 3, 1, 2).float() / 255.0  # (N, C, H, W)
            start_desc = f"the first {cfg.n_samples} test-time samples (single.npz)"
        else:
            g = torch.Generator().manual_seed(cfg.seed)
            m = rc.hp.model
            x0 = torch.rand((cfg.n_samples, m.channels, m.image_size, m.image_size), generator=g)
            start = quantize_output(x0, ts.quantize).permute(0, 2, 3, 1).numpy()
            start_desc = f"U(0, 1) noise (seed {cfg.seed})"
        dc = descent_config(ts, cfg.n_steps)
        finals, traces = [], []
        for b in range(0, cfg.n_samples, cfg.batch_size):
            x, steps, energies = descend(lambda z: net(z, None), x0[b:b + cfg.batch_size].to(dev), dc,
                                         cfg.log_every)
            finals.append(quantize_output(x, ts.quantize).permute(0, 2, 3, 1).cpu().numpy())
            traces.append(np.asarray(energies) * len(x))
        final = np.concatenate(finals)
        energies = (np.sum(traces, 0) / cfg.n_samples).tolist()
        col = {"variant": v, "label": f"{v} ({rc.recipe} recipe, preset {rc.preset})", "start": start[:cfg.n_show],
               "final": final[:cfg.n_show], "start_desc": start_desc, "steps": steps, "energies": energies,
               "step_size": dc.step_size, "grad_clip": dc.grad_clip, "metrics": score(final),
               "start_metrics": score(start), "clipped": clipped_share(final), "start_clipped": clipped_share(start)}
        cols.append(col)
        summary["variants"][v] = {k: col[k] for k in ("steps", "energies", "step_size", "grad_clip", "metrics",
                                                      "start_metrics", "clipped", "start_clipped", "start_desc")}
        print(f"{v}: IS {col['metrics']['IS_mean']:.3f} (start {col['start_metrics']['IS_mean']:.3f}), clipped "
              f"{col['clipped']:.4f}, energy {energies[0]:.4g} -> {energies[-1]:.4g}", flush=True)
    out = Path(a.out)
    net_name = "Inception-v3" if mc["feature_net"] == "inception" else "the smoke classifier (NOT Inception)"
    title = (f"Very-low-temperature samples (ICD Fig. 7): ours {cfg.ours} vs IGEBM {cfg.baseline}, {setting} "
             f"setting; {cfg.n_steps} steps of noise-free descent with each variant's test-time step.\n"
             f"IS / FID ({net_name}; FID vs {len(ref)} training images) over all {cfg.n_samples} chains; "
             f"training images "
             f"have {real_clipped:.1%} of their values at 0/255.")
    low_temperature_figure(cols, out, title)
    atomic_write_text(Path(a.summary), json.dumps(summary, indent=1) + "\n")
    inputs = [*map(Path, a.models), *map(Path, a.samples), Path(a.data) / "train.npz", Path(a.feature_net),
              Path(a.params)]
    for path in (out, out.with_suffix(".pdf"), Path(a.summary)):
        write_provenance(path, inputs, {"setting": setting, "preset": p["preset"], "summary": summary["variants"]})
    print(f"wrote {out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-low-temperature", help="results/figures/low_temperature.{png,pdf} (ICD Fig. 7)")
    commands.add_common(p)
    p.add_argument("--models", nargs=2, required=True, help="model.pt of low_temperature.ours, then .baseline")
    p.add_argument("--samples", nargs=2, required=True, help="their single.npz (the chains' start)")
    p.add_argument("--data", required=True, help="dataset folder (train.npz)")
    p.add_argument("--feature-net", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--summary", required=True, help="JSON of the proxies (read by claims)")
    p.set_defaults(fn=cmd_low_temperature)


# ----------------------------------------------------------------------------- claims
def claims(params: dict, prefix: str) -> list:
    """ICD §3.3 / Fig. 7: ICD's low-temperature samples stay naturalistic, IGEBM's converge to strange hues."""
    cfg = low_temperature_config(params, params["setting"])
    out = f"{prefix}results/figures/low_temperature.png"
    path = Path(f"{prefix}results/low_temperature/summary.json")
    s = json.loads(path.read_text()) if path.is_file() else None
    missing = None if s else f"{path} missing (rule plot_low_temperature)"
    setting = (s or {}).get("setting", params["setting"])
    ours, base = ((s["variants"][cfg.ours], s["variants"][cfg.baseline]) if s else (None, None))
    claim = ("very-low-temperature samples (1000 steps of gradient descent on E): ICD keeps naturalistic image "
             "modes, IGEBM converges to images with strange hues (CIFAR-10)")
    rows = []
    is_held = is_val = None
    if s:
        io, ib = ours["metrics"]["IS_mean"], base["metrics"]["IS_mean"]
        is_val, is_held = f"IS {io:.2f} ({cfg.ours}) vs {ib:.2f} ({cfg.baseline})", io > ib
    rows.append(judged_claim(
        "qualitative/low_temperature/is", claim, "ICD §3.3 Fig. 7", "ICD more naturalistic than IGEBM", is_val,
        f"our proxy (the paper states no measure): IS of the {cfg.n_samples} low-temperature samples in the "
        f"setting's feature space, {cfg.ours} > {cfg.baseline}", is_held, out, setting, missing))
    hue_held = hue_val = None
    if s:
        real = s["real_train_clipped"]
        do, db = abs(ours["clipped"] - real), abs(base["clipped"] - real)
        hue_val = (f"values at 0/255: {ours['clipped']:.1%} ({cfg.ours}), {base['clipped']:.1%} ({cfg.baseline}), "
                   f"training images {real:.1%}")
        hue_held = do < db
    rows.append(judged_claim(
        "qualitative/low_temperature/hues", claim, "ICD §3.3 Fig. 7", "IGEBM saturates to strange hues, ICD does not",
        hue_val, f"our proxy: share of colour values at the clamp bounds 0 or 255 after descent; {cfg.ours}'s is "
        f"nearer the training images' share than {cfg.baseline}'s", hue_held, out, setting, missing))
    return rows
