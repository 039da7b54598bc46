"""E16: IGEBM Fig. 13 / ICD Fig. 14, nearest training neighbours of generated samples, in pixel and feature space.

`results/figures/nearest_neighbours.{png,pdf}`: for the first `n_show` samples of each variant
(`results/samples/<variant>/single.npz`), the `k` nearest training images by L2 distance in pixel space (values in
[0, 1], all H x W x C of them, as IGEBM ebm_sandbox.py nearest_neighbor: 10 samples x 5 neighbours) and in the
setting's feature space (Inception-v3 pool3 in the paper setting, the smoke classifier's pool features in smoke),
the distance under each neighbour. `results/neighbours/summary.json`: the nearest-neighbour distances of all
`n_queries` samples beside those of `n_reference` real test images, the reference for "not a copy".
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.claims import TOLERANCE, judged_claim
from ebm_repro.config import ConfigError, _pos, build_setting_block

BLOCK = "neighbours"
SPACES = ("pixel", "feature")
# The search ranks by |q|^2 + |k|^2 - 2 q.k in float32 (one matmul per chunk), which can misorder near-ties by
# ~1e-6 |x|^2; it keeps k + RERANK_EXTRA candidates and recomputes their distances directly, so a duplicate is
# found at exactly 0 and every printed distance is |q - k| itself.
RERANK_EXTRA = 8


@dataclass(frozen=True)
class NeighboursConfig:
    variants: tuple[str, ...]      # samples of results/samples/<variant>/single.npz, one figure row each
    n_queries: int = _pos()        # samples searched (the first n of single.npz) for the summary statistics
    n_reference: int = _pos()      # real test images searched: their NN distances are the "not a copy" reference
    n_show: int = _pos()           # samples shown per variant and space (the first n_show)
    k: int = _pos()                # neighbours shown per sample (IGEBM code: 5)
    copy_quantile: float = _pos(maximum=0.5)   # a sample nearer than this quantile of the real test NN distances
    query_chunk: int = _pos()      # queries per distance block (memory: query_chunk x key_chunk floats)
    key_chunk: int = _pos()        # training images per distance block
    batch_size: int = _pos()       # feature-network batch


def schema() -> dict:
    return C.setting_block_schema(NeighboursConfig)


def neighbours_config(params: dict, setting: str) -> NeighboursConfig:
    cfg = build_setting_block(NeighboursConfig, params, BLOCK, setting)
    n_samples = params["settings"][setting]["metrics"]["n_samples"]
    if cfg.n_queries > n_samples:  # the queries are the samples of single.npz: at most metrics.n_samples
        cfg = dataclasses.replace(cfg, n_queries=n_samples, n_show=min(cfg.n_show, n_samples))
    if cfg.n_show > cfg.n_queries:
        raise ConfigError(f"neighbours ({setting}): n_show {cfg.n_show} > n_queries {cfg.n_queries}")
    return cfg


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        cfg = neighbours_config(params, setting)
        for i, v in enumerate(cfg.variants):
            C.check_variant(params, v, f"neighbours.{setting}.variants[{i}]")
        data = {C.resolve(params, v, setting=setting, validated=True).dataset for v in cfg.variants}
        if len(data) > 1:  # one training set is searched for all of them
            raise ConfigError(f"neighbours.{setting}.variants train on different datasets {sorted(data)}; "
                              f"list variants of one dataset")


# ----------------------------------------------------------------------------- search
def nearest(queries, keys, k: int, query_chunk: int, key_chunk: int, device="cpu"):
    """The k nearest keys of every query by L2 distance: (dist (N, k), index (N, k)), nearest first, on CPU.

    queries (N, D), keys (M, D) float tensors; distance blocks of query_chunk x key_chunk, so N, M = 50k, D = 3072
    needs ~0.6 GB for the keys on the device plus one block.
    """
    import torch

    if k > len(keys):
        raise ValueError(f"k = {k} neighbours asked from only {len(keys)} keys")
    dev = torch.device(device)
    keys = keys.to(dev, torch.float32)
    k_sq = keys.pow(2).sum(1)                                           # (M,)
    kk = min(k + RERANK_EXTRA, len(keys))                               # candidates kept per query
    out_d, out_i = [], []
    for q0 in range(0, len(queries), query_chunk):
        q = queries[q0:q0 + query_chunk].to(dev, torch.float32)         # (n, D)
        q_sq = q.pow(2).sum(1, keepdim=True)                            # (n, 1)
        best_d = torch.full((len(q), 0), float("inf"), device=dev)
        best_i = torch.zeros((len(q), 0), dtype=torch.long, device=dev)
        for k0 in range(0, len(keys), key_chunk):
            d2 = (q_sq + k_sq[k0:k0 + key_chunk] - 2 * q @ keys[k0:k0 + key_chunk].T).clamp_min(0)  # (n, m)
            idx = torch.arange(k0, k0 + d2.shape[1], device=dev).expand(len(q), -1)
            best_d, pos = torch.cat([best_d, d2], 1).topk(min(kk, best_d.shape[1] + d2.shape[1]), 1,
                                                          largest=False)
            best_i = torch.cat([best_i, idx], 1).gather(1, pos)
        exact = (q[:, None, :] - keys[best_i]).norm(dim=2)               # (n, kk): |q - key| recomputed
        exact, pos = exact.sort(1)
        out_d.append(exact[:, :k].cpu())
        out_i.append(best_i.gather(1, pos)[:, :k].cpu())
    return torch.cat(out_d), torch.cat(out_i)


def flat_pixels(images):
    """uint8 (N, H, W, C) -> float32 (N, H * W * C) in [0, 1]."""
    import torch

    return torch.from_numpy(images).flatten(1).float() / 255.0


def copy_stats(sample_d1, ref_d1, quantile: float) -> dict:
    """Nearest-neighbour distances of samples vs real test images: medians, the copy threshold and share below it."""
    import torch

    s, r = sample_d1.double(), ref_d1.double()
    thr = float(torch.quantile(r, quantile))                           # linear interpolation between order stats
    return {"median": float(torch.quantile(s, 0.5)), "min": float(s.min()),
            "ref_median": float(torch.quantile(r, 0.5)), "ref_min": float(r.min()), "threshold": thr,
            "share_below": float((s < thr).double().mean()), "n": len(s), "n_ref": len(r)}


# ----------------------------------------------------------------------------- figure
def neighbours_figure(panels: list[dict], out_png: Path, title: str) -> None:
    """Panels (variant x space) of n_show rows: the sample, a gap, its k nearest training images, distances below.

    Each panel: {"label", "samples" uint8 (S, H, W, C), "neighbours" uint8 (S, k, H, W, C), "dist" (S, k),
    "stats" (copy_stats)}.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ebm_repro.report import tile_images
    from ebm_repro.runs import save_figure

    n_cols = 2 if len(panels) > 1 else 1
    n_rows = -(-len(panels) // n_cols)
    s, k = panels[0]["dist"].shape
    h, w = panels[0]["samples"].shape[1:3]
    pad, below = 4, max(8, h // 3)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * (k + 2) * 0.85 + 0.4, n_rows * (s * 0.78 + 0.9)),
                             dpi=150, squeeze=False)
    for ax, p in zip(axes.flat, panels):
        blank = np.full_like(p["samples"][:, None], 255)                                     # (S, 1, H, W, C)
        grid = np.concatenate([p["samples"][:, None], blank, p["neighbours"]], 1)           # (S, k + 2, H, W, C)
        ax.imshow(tile_images(grid, pad=pad, below=below), interpolation="nearest")
        cw, ch = w + pad, h + pad + below
        for i in range(s):
            for j in range(k):
                ax.text((j + 2) * cw + cw / 2 - pad / 2, i * ch + pad // 2 + h + below / 2, f"{p['dist'][i, j]:.2f}",
                        ha="center", va="center", fontsize=5.5)
        ax.set_xticks([cw / 2 - pad / 2] + [(j + 2) * cw + cw / 2 - pad / 2 for j in range(k)],
                      ["sample"] + [f"NN {j + 1}" for j in range(k)], fontsize=6)
        ax.set_yticks([])
        ax.tick_params(length=0)
        st = p["stats"]
        ax.set_title(f"{p['label']}\nmedian NN distance over {st['n']} samples {st['median']:.2f} "
                     f"(real test images {st['ref_median']:.2f}); min {st['min']:.2f}", fontsize=6.5)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=7.5)
    fig.tight_layout()
    save_figure(fig, out_png)
    plt.close(fig)


# ----------------------------------------------------------------------------- command
def cmd_plot_neighbours(a) -> None:
    """Nearest training neighbours of every variant's samples in pixel and feature space -> figure + summary."""
    import numpy as np

    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.data import load_split
    from ebm_repro.metrics import pool_features
    from ebm_repro.report import write_provenance
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    setting = p["setting"]
    cfg = neighbours_config(p, setting)
    if len(a.samples) != len(cfg.variants):
        raise SystemExit(f"error: {len(a.samples)} sample files for {len(cfg.variants)} neighbours.variants")
    mc = p["settings"][setting]["metrics"]
    dev = str(pick_device(a.device))
    train, _ = load_split(Path(a.data) / "train.npz")                    # (M, H, W, C) uint8
    test = load_split(Path(a.data) / "test.npz")[0][:cfg.n_reference]
    samples = {}
    for v, path in zip(cfg.variants, a.samples):
        with np.load(path, allow_pickle=False) as z:
            imgs = z["images"][:cfg.n_queries]
        if len(imgs) < cfg.n_show:  # a diverged run writes no samples
            raise ValueError(f"{path} holds {len(imgs)} samples; neighbours needs at least n_show = {cfg.n_show}")
        samples[v] = imgs

    def embed(images, space):
        if space == "pixel":
            return flat_pixels(images)
        return pool_features(images, mc["feature_net"], Path(a.feature_net), mc["batch_size"], dev)

    net_name = "Inception-v3 pool3 (2048-d)" if mc["feature_net"] == "inception" else "smoke classifier pool"
    panels, summary = [], {"setting": setting, "preset": p["preset"], "feature_net": mc["feature_net"],
                           "config": dataclasses.asdict(cfg), "stats": {}}
    for space in SPACES:
        keys = embed(train, space)
        ref_d, _ = nearest(embed(test, space), keys, 1, cfg.query_chunk, cfg.key_chunk, dev)
        for v in cfg.variants:
            d, idx = nearest(embed(samples[v], space), keys, cfg.k, cfg.query_chunk, cfg.key_chunk, dev)
            st = copy_stats(d[:, 0], ref_d[:, 0], cfg.copy_quantile)
            summary["stats"].setdefault(v, {})[space] = st
            label = f"{v}: L2 in {'pixel space ([0, 1] values)' if space == 'pixel' else net_name + ' features'}"
            panels.append({"variant": v, "space": space, "label": label, "samples": samples[v][:cfg.n_show],
                           "neighbours": train[idx[:cfg.n_show].numpy()], "dist": d[:cfg.n_show].numpy(),
                           "stats": st})
            print(f"{v} / {space}: {json.dumps(st)}", flush=True)
    panels.sort(key=lambda q: (cfg.variants.index(q["variant"]), SPACES.index(q["space"])))
    out = Path(a.out)
    title = (f"Nearest training neighbours of generated samples (IGEBM Fig. 13, ICD Fig. 14), {setting} setting: "
             f"sample left, its {cfg.k} nearest of {len(train)} training images right, L2 distance under each.\n"
             f"Reference: the nearest-neighbour distance of {len(test)} real test images to the same training set.")
    neighbours_figure(panels, out, title)
    atomic_write_text(Path(a.summary), json.dumps(summary, indent=1) + "\n")
    inputs = [Path(a.data) / "train.npz", Path(a.data) / "test.npz", Path(a.feature_net), *map(Path, a.samples),
              Path(a.params)]
    for path in (out, out.with_suffix(".pdf"), Path(a.summary)):
        write_provenance(path, inputs, {"setting": setting, "preset": p["preset"], "stats": summary["stats"]})
    print(f"wrote {out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-neighbours", help="results/figures/nearest_neighbours.{png,pdf} (IGEBM Fig. 13)")
    commands.add_common(p)
    p.add_argument("--samples", nargs="+", required=True, help="single.npz per neighbours.variants entry, in order")
    p.add_argument("--data", required=True, help="dataset folder (train.npz, test.npz)")
    p.add_argument("--feature-net", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--summary", required=True, help="JSON of the distance statistics (read by claims)")
    p.set_defaults(fn=cmd_plot_neighbours)


# ----------------------------------------------------------------------------- claims
def claims(params: dict, prefix: str) -> list:
    """IGEBM §4.1 / ICD App. B.1: samples are not copies of training images, per variant and distance space."""
    cfg = neighbours_config(params, params["setting"])
    out = f"{prefix}results/figures/nearest_neighbours.png"
    path = Path(f"{prefix}results/neighbours/summary.json")
    summary = json.loads(path.read_text()) if path.is_file() else None
    tol = TOLERANCE["share"]
    rows = []
    for v in cfg.variants:
        for space in SPACES:
            st = (summary or {}).get("stats", {}).get(v, {}).get(space)
            criterion = (f"share of samples whose nearest training image is nearer (L2, {space} space) than the "
                         f"{cfg.copy_quantile:.0%} quantile of real test images' nearest-training distances <= "
                         f"{cfg.copy_quantile:.0%} + {tol:.0%} (the audit's share tolerance); real unseen images "
                         f"give {cfg.copy_quantile:.0%} by construction")
            reproduced = held = None
            if st:
                reproduced = (f"{st['share_below']:.1%} of {st['n']} samples below {st['threshold']:.3g}; median NN "
                              f"distance {st['median']:.3g} (real test {st['ref_median']:.3g})")
                held = st["share_below"] <= cfg.copy_quantile + tol
            rows.append(judged_claim(
                f"qualitative/neighbours/{v}/{space}", "generated images are not copies of training images",
                "IGEBM §4.1 Fig. 13; ICD App. B.1 Fig. 14", "no sample is a near-copy of a training image",
                reproduced, criterion, held, out, (summary or {}).get("setting", params["setting"]),
                missing=None if summary else f"{path} missing (rule plot_neighbours)"))
    return rows
