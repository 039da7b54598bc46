"""E13: ICD Fig. 6 / Fig. 12, Langevin chains from one fixed start with and without data-augmentation transitions.

`results/figures/aug_chains.{png,pdf}`: `n_chains` chains of the variant's test-time Langevin step (its
test_sampling step size, noise, gradient clip; EMA weights per test_sampling.use_ema) start from the same U(0, 1)
image. The plain chains only take Langevin steps; the augmented ones also take the ICD test-time transition (crop,
flip, colour jitter, grayscale and test_sampling's Gaussian blur, ICD §2.3) after every `augment_every` steps up
to the last `final_steps_plain` steps, which are plain (test_inception.py `nomix`). Columns: the chains every
`show_every` steps (taken before a transition at that step). ICD Fig. 12: without transitions all chains converge
to the same image, with them the chains separate; `results/aug_chains/summary.json` measures that as the mean
pairwise RMS difference of the final images, against that of random training images.
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
from ebm_repro.config import ConfigError, _pos, build_setting_block

BLOCK = "aug_chains"


@dataclass(frozen=True)
class AugChainsConfig:
    variant: str                   # an ICD variant with augment.enabled
    n_chains: int = _pos(minimum=2)   # chains per condition, all from one start image
    n_steps: int = _pos()          # Langevin steps per chain
    augment_every: int = _pos()    # a transition after every augment_every steps (ICD §2.3 / code: 20) ...
    final_steps_plain: int = _pos(minimum=0)   # ... except in the last final_steps_plain steps (code nomix: 4 x 20)
    show_every: int = _pos()       # a figure column every show_every steps
    same_frac: float = _pos(maximum=1)   # "the same image": mean pairwise RMS < same_frac x that of training images
    n_reference: int = _pos(minimum=2)   # random training images giving the pairwise-RMS scale
    seed: int = _pos(minimum=0)    # start image and Langevin noise


def schema() -> dict:
    return C.setting_block_schema(AugChainsConfig)


def aug_chains_config(params: dict, setting: str) -> AugChainsConfig:
    cfg = build_setting_block(AugChainsConfig, params, BLOCK, setting)
    where = f"aug_chains ({setting})"
    if cfg.n_steps % cfg.show_every:
        raise ConfigError(f"{where}: n_steps {cfg.n_steps} is not a multiple of show_every {cfg.show_every}")
    if not transition_steps(cfg.n_steps, cfg.augment_every, cfg.final_steps_plain):
        raise ConfigError(f"{where}: no transition fits: augment_every {cfg.augment_every} > n_steps "
                          f"{cfg.n_steps} - final_steps_plain {cfg.final_steps_plain}")
    return cfg


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        cfg = aug_chains_config(params, setting)
        C.check_variant(params, cfg.variant, f"aug_chains.{setting}.variant")


def require_augmentation(params: dict, cfg, setting: str) -> None:
    """The named variant must augment (checked when the command runs, before any chain)."""
    if not C.resolve(params, cfg.variant, setting=setting, validated=True).hp.augment.enabled:
        raise ConfigError(f"aug_chains.{setting}.variant: {cfg.variant!r} has augment.enabled false, so its "
                          f"transition is the identity; name a variant with augmentation")


# ----------------------------------------------------------------------------- chains
def transition_steps(n_steps: int, every: int, final_plain: int) -> list[int]:
    """Steps after which a transition is taken: every, 2 every, ... while >= max(final_plain, 1) steps follow."""
    return list(range(every, n_steps - max(final_plain, 1) + 1, every))


def run_chains(energy, x0, sampler, n_steps: int, transitions: list[int], snapshots: list[int], transition=None):
    """Langevin chains with `transition` (x -> x') after step t for t in transitions (none if None).

    Returns the chains at each step in snapshots (S, B, C, H, W), taken before a transition at the same step, and
    the number of transition calls.
    """
    import torch

    from ebm_repro.sampling import make_langevin

    run = make_langevin(sampler)
    x, t, shots, calls = x0.detach(), 0, [], 0
    for b in sorted({*transitions, *snapshots, n_steps}):
        if b > t:
            x = run(energy, x, n_steps=b - t).x
            t = b
        if b in snapshots:
            shots.append(x.detach().cpu().clone())
        if transition is not None and b in transitions:
            x = transition(x)
            calls += 1
    return torch.stack(shots), calls


def pairwise_rms(x) -> float:
    """Mean over pairs i < j of the RMS difference sqrt(mean((x_i - x_j)^2)) of images x (B, ...) in [0, 1]."""
    import torch

    flat = x.flatten(1).double()
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5            # (B, B)
    i, j = torch.triu_indices(len(x), len(x), 1)
    return float(d[i, j].mean())


# ----------------------------------------------------------------------------- figure
def aug_chains_figure(panels: list[dict], snapshots: list[int], out_png: Path, title: str) -> None:
    """One panel per condition: a row per chain, a column per snapshot step (uint8 images (S, B, H, W, C))."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebm_repro.report import tile_images
    from ebm_repro.runs import save_figure

    s, b, h, w = panels[0]["images"].shape[:4]
    pad = 2
    width = max(0.55 * s + 1.2, 6.0)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, len(panels) * (0.55 * b + 1.0) + 0.5), dpi=150)

    def wrap(text: str) -> str:
        return "\n".join(textwrap.fill(t, int(width * 16)) for t in text.split("\n"))

    for ax, p in zip(axes, panels):
        ax.imshow(tile_images(p["images"].transpose(1, 0, 2, 3, 4), pad=pad), interpolation="nearest")
        ax.set_xticks([j * (w + pad) + w / 2 for j in range(s)],
                      ["start" if t == 0 else str(t) for t in snapshots], fontsize=6)
        ax.set_yticks([i * (h + pad) + h / 2 for i in range(b)], [str(i + 1) for i in range(b)], fontsize=6)
        ax.set_xlabel("Langevin step", fontsize=7)
        ax.set_ylabel("chain", fontsize=7)
        ax.set_title(wrap(p["title"]), fontsize=7)
    fig.suptitle(wrap(title), fontsize=7.5)
    fig.tight_layout()
    save_figure(fig, out_png)
    plt.close(fig)


# ----------------------------------------------------------------------------- command
def cmd_aug_chains(a) -> None:
    """Chains from one start with and without augmentation transitions -> figure + summary."""
    import numpy as np
    import torch

    from ebm_repro.augment import Blur, make_augment
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.config import SamplerConfig
    from ebm_repro.data import load_split
    from ebm_repro.generate import load_models, quantize_output
    from ebm_repro.report import write_provenance
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    setting = p["setting"]
    cfg = aug_chains_config(p, setting)
    require_augmentation(p, cfg, setting)
    rc = C.resolve(p, cfg.variant)
    ts, m = rc.hp.test_sampling, rc.hp.model
    dev = pick_device(a.device)
    net = load_models(rc, Path(a.model), "single", dev)[0].requires_grad_(False)  # gradients w.r.t. x only
    sampler = SamplerConfig(n_steps=1, step_size=ts.step_size, noise_std=ts.noise_std, grad_clip=ts.grad_clip,
                            clamp=True)
    augment = make_augment(rc.hp.augment, m.image_size,
                           Blur(ts.blur_p, ts.blur_kernel, ts.blur_sigma_min, ts.blur_sigma_max))

    def transition(x):
        if ts.quantize == "code":  # the ICD code reads each chain through PIL: uint8, floor (generate._perturb)
            x = (x * 255).clamp(0, 255).floor() / 255
        return augment(x.cpu()).to(x.device)

    g = torch.Generator().manual_seed(cfg.seed)
    x0 = torch.rand((1, m.channels, m.image_size, m.image_size), generator=g).expand(cfg.n_chains, -1, -1, -1)
    trans = transition_steps(cfg.n_steps, cfg.augment_every, cfg.final_steps_plain)
    snaps = list(range(0, cfg.n_steps + 1, cfg.show_every))
    train, _ = load_split(Path(a.data) / "train.npz")
    pick = np.random.default_rng(cfg.seed).choice(len(train), min(cfg.n_reference, len(train)), replace=False)
    ref = pairwise_rms(torch.from_numpy(train[np.sort(pick)]).float() / 255.0)
    panels, summary = [], {"setting": setting, "preset": p["preset"], "variant": cfg.variant,
                           "config": dataclasses.asdict(cfg), "transition_steps": trans, "snapshot_steps": snaps,
                           "reference_pairwise_rms": ref, "conditions": {}}
    for name, fn in (("plain", None), ("augmented", transition)):
        torch.manual_seed(cfg.seed)  # same Langevin noise stream for both conditions
        shots, calls = run_chains(lambda z: net(z, None), x0.to(dev), sampler, cfg.n_steps, trans, snaps, fn)
        rms = pairwise_rms(shots[-1])
        summary["conditions"][name] = {"final_pairwise_rms": rms, "fraction_of_reference": rms / ref,
                                       "transitions": calls}
        images = quantize_output(shots.flatten(0, 1), ts.quantize).permute(0, 2, 3, 1).numpy()
        what = ("Langevin steps only" if fn is None else
                f"with a transition after every {cfg.augment_every} steps (after steps {trans[0]}-{trans[-1]}; "
                f"{calls} per chain)")
        panels.append({"images": images.reshape(len(snaps), cfg.n_chains, *images.shape[1:]),
                       "title": f"{name}: {what}; final images differ by mean pairwise RMS {rms:.3f} "
                                f"({rms / ref:.0%} of random training pairs)"})
        print(f"{name}: {calls} transitions, final pairwise RMS {rms:.4f} (reference {ref:.4f})", flush=True)
    out = Path(a.out)
    blur = f", Gaussian blur p {ts.blur_p:g}" if ts.blur_p else ""
    title = (f"Langevin chains from one fixed start with and without data-augmentation transitions (ICD Fig. 6 / 12):"
             f" {cfg.variant}, {setting} setting, {cfg.n_chains} chains, test-time step {ts.step_size:g}, noise "
             f"{ts.noise_std:g}\ntransition = ICD test-time augmentation (crop-resize, flip, colour jitter, "
             f"grayscale{blur}); columns every {cfg.show_every} steps, shown before the transition at that step")
    aug_chains_figure(panels, snaps, out, title)
    atomic_write_text(Path(a.summary), json.dumps(summary, indent=1) + "\n")
    inputs = [Path(a.model), Path(a.data) / "train.npz", Path(a.params)]
    for path in (out, out.with_suffix(".pdf"), Path(a.summary)):
        write_provenance(path, inputs, {"setting": setting, "preset": p["preset"],
                                        "conditions": summary["conditions"]})
    print(f"wrote {out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-aug-chains", help="results/figures/aug_chains.{png,pdf} (ICD Fig. 6 / 12)")
    commands.add_common(p)
    p.add_argument("--model", required=True, help="model.pt of aug_chains.variant")
    p.add_argument("--data", required=True, help="dataset folder (train.npz: the pairwise-distance scale)")
    p.add_argument("--out", required=True)
    p.add_argument("--summary", required=True, help="JSON of the chain distances (read by claims)")
    p.set_defaults(fn=cmd_aug_chains)


# ----------------------------------------------------------------------------- claims
def claims(params: dict, prefix: str) -> list:
    """ICD Fig. 12 / App. D.3: plain chains from one start collapse to one image; augmented chains separate."""
    cfg = aug_chains_config(params, params["setting"])
    out = f"{prefix}results/figures/aug_chains.png"
    path = Path(f"{prefix}results/aug_chains/summary.json")
    s = json.loads(path.read_text()) if path.is_file() else None
    missing = None if s else f"{path} missing (rule plot_aug_chains)"
    setting = (s or {}).get("setting", params["setting"])
    scale = (f"{cfg.same_frac:g} x the mean pairwise RMS difference of {cfg.n_reference} random training images")
    rows = []
    for name, claim, paper, held_if in (
            ("plain", "without data-augmentation transitions, all chains from a fixed start converge to the same "
                      "image", "the same image", "<"),
            ("augmented", "with data-augmentation transitions the chains from the same start separate",
                          "different images", ">=")):
        val = held = None
        if s:
            c = s["conditions"][name]
            val = (f"mean pairwise RMS of the {cfg.n_chains} final images {c['final_pairwise_rms']:.3f} "
                   f"({c['fraction_of_reference']:.0%} of the training-image scale)")
            frac = c["fraction_of_reference"]
            held = frac < cfg.same_frac if held_if == "<" else frac >= cfg.same_frac
        rows.append(judged_claim(f"qualitative/aug_chains/{name}", claim, "ICD Fig. 12, App. D.3 (Fig. 6)", paper,
                                 val, f"mean pairwise RMS difference of the final images {held_if} {scale}", held,
                                 out, setting, missing))
    return rows
