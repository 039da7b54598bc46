"""E5: likelihood evaluation, energies of train vs test images and of q(x) samples (IGEBM §4.2, Fig. 2).

`score-likelihood` computes E(x) of every params.yaml `likelihood.rows` model on training images, test images and
its own Langevin samples; `report-likelihood` writes `results/tables/likelihood.md` (mean ± std beside §4.2's
numbers, and the "close" criterion), `results/likelihood/summary.json` and `results/figures/energy_hist.{png,pdf}`
(IGEBM Fig. 2: relative energies of q(x) samples vs training data, test images added).
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.claims import Claim, judged_claim
from ebm_repro.config import _enum, _pos

BLOCK = "likelihood"
PAPER = "igebm_2019/likelihood_sec_4_2"
PARTS = ("train", "test", "samples")


@dataclass(frozen=True)
class LikelihoodRow:
    variant: str
    label: str
    paper: str = _enum("unconditional", "conditional", "none")   # its entry of igebm_2019/likelihood_sec_4_2


@dataclass(frozen=True)
class PerSetting:
    paper: int = _pos(minimum=1)
    smoke: int = _pos(minimum=1)


@dataclass(frozen=True)
class LikelihoodConfig:
    rows: tuple[LikelihoodRow, ...]
    n_train: PerSetting       # training images scored (random subset; all when the split holds fewer)
    n_test: PerSetting        # test images scored
    n_samples: PerSetting     # q(x) samples scored (the first of results/samples/<variant>/single.npz)
    batch_size: PerSetting    # images per forward pass
    close_within: float = _pos()   # "close": |mean_train - mean_test| <= close_within x pooled std
    seed: int = 0


def schema() -> dict:
    return C.dataclass_schema(LikelihoodConfig)


def check(params: dict) -> None:
    for i, r in enumerate(params[BLOCK]["rows"]):
        C.check_variant(params, r["variant"], f"likelihood.rows[{i}].variant")


# ----------------------------------------------------------------------------- numeric core
def stats(e: np.ndarray) -> dict:
    """Mean and (population) std of energies, as the IGEBM code's np.mean / np.std print them."""
    e = np.asarray(e, np.float64)
    return {"n": int(len(e)), "mean": float(e.mean()), "std": float(e.std())} if len(e) else \
        {"n": 0, "mean": None, "std": None}


def separation(a: dict, b: dict) -> float | None:
    """|mean_a - mean_b| / pooled std, pooled std = sqrt((std_a^2 + std_b^2) / 2) (Cohen's d, equal weights)."""
    if a["mean"] is None or b["mean"] is None:
        return None
    pooled = math.sqrt((a["std"] ** 2 + b["std"] ** 2) / 2)
    if pooled == 0:
        return 0.0 if a["mean"] == b["mean"] else math.inf
    return abs(a["mean"] - b["mean"]) / pooled


def paper_stats(which: str) -> dict | None:
    """§4.2's printed mean ± std of train and test energies for 'unconditional' / 'conditional'; None for 'none'."""
    from ebm_repro.report import paper_lookup

    if which == "none":
        return None
    p = paper_lookup(PAPER)[which]
    return {part: {"mean": p[part][0], "std": p[part][1]} for part in ("train", "test")}


# ----------------------------------------------------------------------------- commands
def cmd_score_likelihood(a) -> None:
    """E(x) of each likelihood.rows model on train / test images and its samples -> energies.npz + .json."""
    import torch

    from ebm_repro import checkpoint as ck
    from ebm_repro.data import load_split, write_arrays
    from ebm_repro.energies import as_float, image_energies, load_energy_net
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    torch.set_num_threads(a.threads)
    block, setting = p[BLOCK], p["setting"]
    rows = block["rows"]
    if not (len(a.models) == len(a.samples) == len(rows)):
        raise SystemExit(f"error: {len(a.models)} models and {len(a.samples)} sample files for {len(rows)} "
                         f"likelihood.rows")
    n = {part: block[f"n_{part}"][setting] for part in PARTS}
    seed, bs, dev = block.get("seed", 0), block["batch_size"][setting], pick_device(a.device)
    arrays, models, used = {}, {}, {}
    for r, model_path, samples_path in zip(rows, a.models, a.samples):
        v = r["variant"]
        cfg = C.resolve(p, v)
        data_dir = Path(a.data_root) / cfg.dataset
        parts = {}
        for i, part in enumerate(("train", "test")):
            images, labels = load_split(data_dir / f"{part}.npz")
            rng = np.random.default_rng([seed, i])
            idx = np.arange(len(images)) if n[part] >= len(images) else np.sort(rng.permutation(len(images))[:n[part]])
            parts[part] = (images[idx], labels[idx], f"{len(idx)} of {len(images)} {cfg.dataset} {part} images")
        with np.load(samples_path, allow_pickle=False) as z:
            s_img, s_lab = z["images"][:n["samples"]], z["labels"][:n["samples"]]
            s_info = json.loads(str(z["info"]))
        parts["samples"] = (s_img, s_lab, f"the first {len(s_img)} of {samples_path} (step {s_info['train_step']})")
        meta = ck.load(Path(model_path))
        models[v] = {"train_step": meta["step"], "diverged": meta.get("diverged"),
                     "model_sha256": ck.file_digest(model_path), "samples_sha256": ck.file_digest(samples_path),
                     "weights": "EMA" if cfg.hp.test_sampling.use_ema else "final",
                     "n_classes": cfg.hp.model.n_classes, "dataset": cfg.dataset}
        used[v] = {part: desc for part, (_, _, desc) in parts.items()}
        if meta.get("ema" if cfg.hp.test_sampling.use_ema else "model") is None:
            print(f"{v}: no usable weights (diverged before any checkpoint); not scored")
            continue
        net = load_energy_net(cfg, Path(model_path), dev)
        for part, (images, labels, _) in parts.items():
            # conditional model: E(x, y) under the image's own label (IGEBM ebm_sandbox.py energyeval feeds Y_GT);
            # samples under the label they were sampled for
            y = labels if cfg.hp.model.n_classes else None
            if len(images):
                arrays[f"{v}/{part}"] = image_energies(net, as_float(images), y, bs, dev)      # (m,) E(x)
                print(f"{v} {part}: {len(images)} images, E {arrays[f'{v}/{part}'].mean():.4g}", flush=True)
    out = Path(a.out)
    write_arrays(out, arrays)
    info = {"setting": setting, "preset": p["preset"], "seed": seed, "rows": rows, "n": n, "models": models,
            "images": used, "device": str(dev)}
    ck.atomic_write_text(out.with_suffix(".json"), json.dumps(info, indent=1, default=str) + "\n")
    print(f"wrote {out}")


def summarise(energies: dict[str, np.ndarray], meta: dict, close_within: float) -> dict:
    """Per variant: stats of train / test / samples, train-test and samples-train separations, the verdicts."""
    out = {}
    for r in meta["rows"]:
        v = r["variant"]
        if f"{v}/train" not in energies:
            out[v] = None
            continue
        s = {part: stats(energies.get(f"{v}/{part}", np.zeros(0))) for part in PARTS}
        d_tt, d_qt = separation(s["train"], s["test"]), separation(s["samples"], s["train"])
        out[v] = {**s, "train_test_sep": d_tt, "samples_train_sep": d_qt,
                  "train_test_close": d_tt is not None and d_tt <= close_within,
                  "samples_train_close": d_qt is not None and d_qt <= close_within}
    return out


def decimals(scale: float) -> int:
    """Decimals that show 2-3 significant digits of numbers of this scale (a std): 0.127 -> 3, 0.0117 -> 4."""
    return max(0, 2 - math.floor(math.log10(scale))) if scale > 0 and math.isfinite(scale) else 3


def _ms(s: dict, nd: int = 4) -> str:
    return "—" if s is None or s.get("mean") is None else f"{s['mean']:.{nd}g} ± {s['std']:.{nd}g}"


def likelihood_table(summary: dict, meta: dict, close_within: float) -> str:
    """Markdown of results/tables/likelihood.md."""
    from tabulate import tabulate

    body = []
    for r in meta["rows"]:
        v, s, m = r["variant"], summary[r["variant"]], meta["models"][r["variant"]]
        ps = paper_stats(r["paper"])
        p_sep = separation(ps["train"], ps["test"]) if ps else None
        if s is None:
            body.append([r["label"], f"diverged at step {m['diverged']['step']}, nothing to score"] + ["—"] * 5
                        + [_ms(ps and ps["train"], 6), _ms(ps and ps["test"], 6),
                           f"{p_sep:.2f}" if p_sep is not None else "—", f"`{v}`"])
            continue
        verdict = "yes" if s["train_test_close"] else "no"
        body.append([r["label"], _ms(s["train"]), _ms(s["test"]), f"{s['train_test_sep']:.2f} ({verdict})",
                     _ms(s["samples"]), f"{s['samples_train_sep']:.2f}" if s["samples_train_sep"] is not None
                     else "—", m["train_step"], _ms(ps and ps["train"], 6), _ms(ps and ps["test"], 6),
                     f"{p_sep:.2f}" if p_sep is not None else "—", f"`{v}`"])
    # no "|" in cells: it would split a markdown cell
    head = ["Model", "E(train) (this run)", "E(test) (this run)", "abs(Δ mean) / pooled std (close?)",
            "E(q(x) samples)", "q(x) vs train: abs(Δ mean) / pooled std", "train steps", "E(train) (paper)",
            "E(test) (paper)", "abs(Δ mean) / pooled std (paper)", "variant"]
    setting = meta["setting"]
    lines = [f"# Likelihood evaluation: energies of train vs test images (IGEBM §4.2) ({setting} setting)", "",
             tabulate(body, headers=head, tablefmt="github", disable_numparse=True), ""]
    if setting == "smoke":
        lines += ["**Smoke setting: not comparable with the paper columns.** The images are the generated `shapes` "
                  "stand-in for CIFAR-10 and the models trained for a few dozen steps; the numbers only show that "
                  "the pipeline runs end to end.", ""]
    first = meta["images"][meta["rows"][0]["variant"]]
    lines += ["## How the numbers are made", "",
              "- Energy: E(x) of the raw image (pixel value k / 255, no dequantisation noise), model in eval mode, "
              "mean ± std (population std, as the IGEBM code's `np.std`). Lower energy = higher likelihood; "
              "energies are defined up to the unknown log partition function, so only differences mean anything.",
              "- Conditional model: E(x, y) under the image's own label (IGEBM ebm_sandbox.py `energyeval` feeds the "
              "true label `Y_GT`); its samples under the label they were sampled for. ICD: EMA weights, the sum of "
              "its three scales' energies.",
              f"- Images per row: {first['train']}; {first['test']}; q(x): the first {meta['n']['samples']} "
              f"samples of `results/samples/<variant>/single.npz` (the model's test-time Langevin samples, "
              f"params.yaml `test_sampling`).",
              f"- \"Close\" (the paper: \"the small mean difference relative to individual standard deviation "
              f"indicates EBMs assign close likelihoods on train and test sets\"): |mean_train - mean_test| <= "
              f"{close_within:g} x pooled std, pooled std = sqrt((std_train^2 + std_test^2) / 2) (Cohen's d; 0.5 = "
              f"a \"medium\" effect). The paper's own numbers give the ratios in the paper column.",
              "- Paper columns: IGEBM (2019) §4.2 (`igebm_2019/likelihood_sec_4_2`); absolute energies depend on "
              "the L2 energy regulariser and training length, so compare the ratio, not the raw values.",
              "- Figure `energy_hist` (IGEBM Fig. 2, \"relative energy of points sampled from q(x) compared to "
              "CIFAR10 train data points\"): the same energies minus the mean training energy.", ""]
    return "\n".join(lines)


def energy_figure(energies: dict[str, np.ndarray], summary: dict, meta: dict, out_png: Path) -> None:
    """IGEBM Fig. 2: histograms of E(x) - mean E(train) for train images, test images and q(x) samples."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebm_repro.runs import save_figure

    rows = meta["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(4.3 * len(rows), 3.8), dpi=120, squeeze=False)
    colours = {"train": "tab:blue", "test": "tab:orange", "samples": "tab:green"}
    names = {"train": "train images", "test": "test images", "samples": "q(x) samples"}
    for ax, r in zip(axes[0], rows):
        v, s = r["variant"], summary[r["variant"]]
        if s is None:
            ax.text(0.5, 0.5, "diverged: nothing scored", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(r["label"], fontsize=9)
            continue
        ref = s["train"]["mean"]
        rel = {part: energies[f"{v}/{part}"] - ref for part in PARTS if f"{v}/{part}" in energies}
        lo, hi = np.percentile(np.concatenate(list(rel.values())), [0.5, 99.5])
        n_bins = int(np.clip(2 * np.sqrt(min(len(e) for e in rel.values())), 10, 60))
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, n_bins + 1)
        nd = decimals(s["train"]["std"])
        for part, e in rel.items():
            ax.hist(np.clip(e, lo, hi), bins, density=True, histtype="step", lw=1.6, color=colours[part],
                    label=f"{names[part]} (n={len(e)}): {round(e.mean(), nd) + 0.0:+.{nd}f} ± {e.std():.{nd}f}")
        ax.set_title(f"{r['label']}\ntrain vs test: abs(Δ mean) / pooled std = {s['train_test_sep']:.2f}",
                     fontsize=9)
        ax.set_xlabel("relative energy E(x) − mean E(train images)", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    data = "CIFAR-10" if meta["setting"] != "smoke" else "shapes (CIFAR-10 stand-in)"
    fig.suptitle(f"Relative energies of q(x) samples vs {data} training images (IGEBM Fig. 2), test images added "
                 f"(§4.2); {meta['setting']} setting; values clipped to the 0.5-99.5 percentiles", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_png)
    plt.close(fig)


def cmd_report_likelihood(a) -> None:
    """results/tables/likelihood.md, results/likelihood/summary.json, results/figures/energy_hist.{png,pdf}."""
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.report import write_provenance
    from ebm_repro.runs import load_scores

    p = commands.load(a)
    path = Path(a.energies)
    energies, meta = load_scores(path, p[BLOCK]["rows"], p["setting"], BLOCK, "score-likelihood")
    close = p[BLOCK]["close_within"]
    summary = summarise(energies, meta, close)
    atomic_write_text(Path(a.summary), json.dumps({"setting": meta["setting"], "close_within": close,
                                                   "rows": meta["rows"], "summary": summary}, indent=1) + "\n")
    atomic_write_text(Path(a.table), likelihood_table(summary, meta, close))
    energy_figure(energies, summary, meta, Path(a.figure))
    inputs = [path, path.with_suffix(".json"), Path(a.params)]
    extra = {"setting": meta["setting"], "preset": meta["preset"], "models": meta["models"], "images": meta["images"]}
    for out in (Path(a.table), Path(a.figure), Path(a.figure).with_suffix(".pdf")):
        write_provenance(out, inputs, extra)
    print(json.dumps(summary, indent=1))


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score-likelihood", help="E(x) of the likelihood.rows models on train / test / samples")
    commands.add_common(p)
    p.add_argument("--models", nargs="+", required=True, help="results/train/<variant>/model.pt per row")
    p.add_argument("--samples", nargs="+", required=True, help="results/samples/<variant>/single.npz per row")
    p.add_argument("--data-root", required=True, help="the setting's data/ folder (datasets in <root>/<name>/)")
    p.add_argument("--out", required=True, help="energies .npz (its .json beside)")
    p.set_defaults(fn=cmd_score_likelihood)
    p = sub.add_parser("report-likelihood", help="results/tables/likelihood.md + figures/energy_hist (IGEBM Fig. 2)")
    commands.add_common(p)
    for arg in ("--energies", "--table", "--summary", "--figure"):
        p.add_argument(arg, required=True)
    p.set_defaults(fn=cmd_report_likelihood)


# ----------------------------------------------------------------------------- claims
def claims(params: dict, prefix: str) -> list[Claim]:
    """IGEBM §4.2 (train and test energies close) and Fig. 2 (q(x) like the data) per row with a paper entry."""
    path = Path(f"{prefix}results/likelihood/summary.json")
    got = json.loads(path.read_text()) if path.is_file() else None
    setting = got["setting"] if got else params["setting"]
    k = params[BLOCK]["close_within"]
    crit = f"abs(Δmean) <= {k:g} x pooled std, pooled std = sqrt((std_a^2 + std_b^2) / 2)"  # no "|": table cells
    output = f"{prefix}results/tables/likelihood.md"
    out = []
    for r in params[BLOCK]["rows"]:
        if r["paper"] == "none":
            continue
        ps = paper_stats(r["paper"])
        s = got["summary"].get(r["variant"]) if got else None
        missing = (f"no {path}" if got is None else f"{r['variant']} is not a row of that run"
                   if r["variant"] not in got["summary"] else "diverged before any usable checkpoint")
        rep = None if s is None else (f"train {_ms(s['train'])}, test {_ms(s['test'])}: "
                                      f"abs(Δ mean)/pooled std = {s['train_test_sep']:.2f}")
        close = judged_claim(
            f"{PAPER}/{r['paper']}/train/0",  # the mean train energy: the row of the closeness claim
            f"train and test energies are close: no over-fitting to training images ({r['label']})",
            "IGEBM §4.2", f"train {_ms(ps['train'], 6)}, test {_ms(ps['test'], 6)}: abs(Δ mean)/pooled std = "
                          f"{separation(ps['train'], ps['test']):.2f}",
            rep, crit.replace("Δmean", "mean_train - mean_test"), None if s is None else s["train_test_close"],
            output, setting, missing)
        out.append(close)
        # the other printed numbers of the row: an energy's offset is arbitrary, so each is shown beside ours
        # and judged only through the closeness criterion above (same verdict)
        for part, i, what in (("train", 1, "std"), ("test", 0, "mean"), ("test", 1, "std")):
            ours = None if s is None else s[part]["std" if i else "mean"]
            out.append(Claim(f"{PAPER}/{r['paper']}/{part}/{i}", f"{what} energy of {part} images ({r['label']})",
                             "IGEBM §4.2", ps[part]["std" if i else "mean"], ours,
                             "energy scale arbitrary: judged by the train/test closeness row", close.verdict, output))
        rep = None if s is None else (f"q(x) {_ms(s['samples'])} vs train {_ms(s['train'])}: "
                                      f"abs(Δ mean)/pooled std = {s['samples_train_sep']:.2f}"
                                      if s["samples_train_sep"] is not None else None)
        out.append(judged_claim(
            f"qualitative/likelihood/fig2_{r['paper']}",
            f"q(x) exhibits a relatively similar energy distribution to the training data ({r['label']})",
            "IGEBM Fig. 2", "similar", rep, crit.replace("Δmean", "mean_q(x) - mean_train"),
            None if rep is None else s["samples_train_close"], output, setting,
            missing if s is None else "no q(x) samples scored"))
    return out
