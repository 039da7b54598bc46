"""E6: out-of-distribution detection, AUROC of -E(x), CIFAR-10 test vs OOD sets (IGEBM Tab. 2, Fig. 8; ICD Tab. 1).

`score-ood` computes -E(x) of every params.yaml `ood.rows` model on the CIFAR-10 test images and on each set of
`ood.sets` (raw images, no sampling; a conditional model scores max_y -E(x, y)); `report-ood` writes
`results/tables/ood.md` (AUROC per model and set beside IGEBM Tab. 2 / ICD Tab. 1), `results/ood/auroc.json`
and the IGEBM Fig. 8-style histograms `results/figures/ood_hist.{png,pdf}`.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.claims import Claim, number_claim
from ebm_repro.config import ConfigError, _pos

BLOCK = "ood"
TAB2, TAB1 = "igebm_2019/ood_table_2", "improved_cd_2021/ood_table_1"
PLACES = {TAB2: "IGEBM Tab. 2", TAB1: "ICD Tab. 1"}


@dataclass(frozen=True)
class OODSet:
    """One column: how its images are made and where the papers print its AUROC."""
    title: str
    what: str              # how the images are made (table footer)
    stream: int            # random stream of the set (its subset or its generated images), fixed per set
    source: str = ""       # datasets_ood name of a downloaded set ("" = built on the fly here)
    tab2: str = ""         # column in IGEBM Tab. 2 ("" = not there)
    tab1: str = ""         # column in ICD Tab. 1


SETS: dict[str, OODSet] = {
    "svhn": OODSet("SVHN", "SVHN test split (`test_32x32.mat`; the IGEBM code's Svhn class loaded the train split "
                   "by default)", 1, source="svhn", tab2="SVHN", tab1="SVHN"),
    "textures": OODSet("Textures (DTD)", "DTD, every image cropped to its top-left 32x32 pixels at full resolution, "
                       "as both authors' Textures classes do (no resizing)", 2, source="dtd", tab2="Textures",
                       tab1="Textures"),
    "constant": OODSet("Constant colour", "one colour per image, each RGB channel ~ U(0, 1), all pixels equal "
                       "(Tab. 2 \"Monochrome Uniform\")", 3, tab2="Monochrome Uniform"),
    "uniform": OODSet("Uniform noise", "every pixel and channel ~ U(0, 1) (Tab. 2 \"Uniform\"; the IGEBM code's "
                      "randommix drew N(0.5, 0.5^2) instead)", 4, tab2="Uniform"),
    "interpolation": OODSet("CIFAR-10 interpolation", "(x_i + x_j) / 2 of two different CIFAR-10 test images "
                            "(a random permutation paired with its shift by one)", 5, tab2="CIFAR10 Interpolation",
                            tab1="CIFAR10 Interp"),
    "cifar100": OODSet("CIFAR-100", "CIFAR-100 test split, each image once (the ICD code's Cifar100 class returned "
                       "image 0 for every index)", 6, source="cifar100", tab1="CIFAR100"),
}
TAB2_SETS = [k for k, s in SETS.items() if s.tab2]  # the five sets IGEBM Tab. 2 averages


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class OODRow:
    variant: str
    label: str
    # paper rows beside it: "<table>/<model>" with table igebm_2019/ood_table_2 or improved_cd_2021/ood_table_1
    paper: tuple[str, ...] = field(default=(), metadata={"schema": {"minItems": 0}})


@dataclass(frozen=True)
class PerSetting:
    paper: int = _pos(minimum=1)
    smoke: int = _pos(minimum=1)


@dataclass(frozen=True)
class OODConfig:
    rows: tuple[OODRow, ...]
    sets: tuple[str, ...] = field(metadata={"schema": {"items": {"enum": list(SETS)}, "uniqueItems": True}})
    n_images: PerSetting      # images per set (and CIFAR-10 test images); all of a set that holds fewer
    batch_size: PerSetting    # images per forward pass (a conditional model evaluates n_classes times as many)
    seed: int = 0             # subsets and generated sets


def schema() -> dict:
    return C.dataclass_schema(OODConfig)


def paper_row(path: str) -> dict[str, float]:
    """'igebm_2019/ood_table_2/EBM (IGEBM)' -> {set key: AUROC, 'average': ...}, only where the paper prints one."""
    from ebm_repro.report import paper_lookup

    table, model = path.rsplit("/", 1) if "/" in path else (path, "")
    if table not in PLACES:
        raise KeyError(f"{path!r}: the table must be {TAB2} or {TAB1}")
    t = paper_lookup(table)
    if table == TAB2:
        if model not in t:
            raise KeyError(f"{path!r}: no model {model!r} in {TAB2} (has {sorted(t)})")
        row = {k: t[model][s.tab2] for k, s in SETS.items() if s.tab2 in t[model]}
        return {**row, "average": t[model]["Average"]} if "Average" in t[model] else row
    models = {m for col in t.values() for m in col}
    if model not in models:
        raise KeyError(f"{path!r}: no model {model!r} in {TAB1} (has {sorted(models)})")
    return {k: t[s.tab1][model] for k, s in SETS.items() if s.tab1 and t[s.tab1].get(model) is not None}


def paper_key(path: str, col: str) -> str:
    """paper_numbers.yaml path of one printed AUROC (Tab. 2: table/model/set; Tab. 1: table/set/model)."""
    table, model = path.rsplit("/", 1)
    if table == TAB2:
        return f"{path}/{'Average' if col == 'average' else SETS[col].tab2}"
    return f"{table}/{SETS[col].tab1}/{model}"


def check(params: dict) -> None:
    """Rows name existing variants trained on one 32x32x3 dataset; paper rows exist in paper_numbers.yaml."""
    block = params[BLOCK]
    datasets = set()
    for i, r in enumerate(block["rows"]):
        C.check_variant(params, r["variant"], f"ood.rows[{i}].variant")
        for j, path in enumerate(r.get("paper", [])):
            try:
                paper_row(path)
            except KeyError as err:
                raise ConfigError(f"ood.rows[{i}].paper[{j}]: {err.args[0]}") from None
        for setting in ("paper", "smoke"):
            cfg = C.resolve(params, r["variant"], setting=setting, validated=True)
            datasets.add((setting, cfg.dataset))
            if (cfg.hp.model.image_size, cfg.hp.model.channels) != (32, 3):
                raise ConfigError(f"ood.rows[{i}]: variant {r['variant']!r} is not a 32x32x3 model; the OOD sets "
                                  f"are 32x32 RGB")
    for setting in ("paper", "smoke"):
        if len({d for s, d in datasets if s == setting}) > 1:
            raise ConfigError(f"ood.rows: the variants train on different datasets in the {setting} setting "
                              f"({sorted(d for s, d in datasets if s == setting)}); one in-distribution set is needed")


# ----------------------------------------------------------------------------- numeric core
def auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """AUROC of telling in-distribution (positives) from OOD by score (higher = in): sklearn roc_auc_score.

    Equals P(score_in > score_out) + P(tie) / 2 over all in/out pairs (Mann-Whitney U / (n_in n_out)).
    """
    from sklearn.metrics import roc_auc_score

    if len(score_in) == 0 or len(score_out) == 0:
        raise ValueError(f"AUROC needs both sets non-empty, got {len(score_in)} in and {len(score_out)} out")
    s_in, s_out = np.asarray(score_in, np.float64), np.asarray(score_out, np.float64)
    if not (np.isfinite(s_in).all() and np.isfinite(s_out).all()):
        raise ValueError("AUROC of non-finite scores (a diverged model's energies?)")
    labels = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    return float(roc_auc_score(labels, np.concatenate([s_in, s_out])))


def subset(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of n of n_total items drawn without replacement (all of them when n >= n_total)."""
    return np.arange(n_total) if n >= n_total else np.sort(rng.permutation(n_total)[:n])


def build_set(key: str, n: int, in_images: np.ndarray, files: dict[str, Path], seed: int) -> np.ndarray:
    """The images of one OOD set as float32 (m, H, W, C) in [0, 1]; m = n (downloads: min(n, set size))."""
    from ebm_repro.data import load_split
    from ebm_repro.energies import as_float

    s, rng = SETS[key], np.random.default_rng([seed, SETS[key].stream])
    shape = in_images.shape[1:]                                              # (H, W, C)
    if s.source:
        if key not in files:
            raise ValueError(f"set {key!r} needs its test.npz (--set-files {key}=PATH)")
        images, _ = load_split(files[key])
        if images.shape[1:] != shape:
            raise ValueError(f"{files[key]}: images {images.shape[1:]}, the in-distribution set has {shape}")
        return as_float(images[subset(len(images), n, rng)])
    if key == "constant":
        return np.broadcast_to(rng.random((n, 1, 1, shape[2]), dtype=np.float32), (n, *shape)).copy()
    if key == "uniform":
        return rng.random((n, *shape), dtype=np.float32)
    if key == "interpolation":
        if len(in_images) < 2:
            raise ValueError("CIFAR-10 interpolation needs at least 2 test images")
        perm = rng.permutation(len(in_images))
        i, j = perm[:n], np.roll(perm, -1)[:n]                               # i != j for every pair
        return ((in_images[i].astype(np.float32) + in_images[j].astype(np.float32)) / (2 * 255.0))
    raise ValueError(f"unknown OOD set {key!r}")


# ----------------------------------------------------------------------------- commands
def _kv(items: list[str]) -> dict[str, Path]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or k not in SETS:
            raise SystemExit(f"error: --set-files takes SET=PATH with SET one of {sorted(SETS)}, got {it!r}")
        out[k] = Path(v)
    return out


def cmd_score_ood(a) -> None:
    """-E(x) of each ood.rows model on CIFAR-10 test images and every ood.sets set -> scores.npz + scores.json."""
    import torch

    from ebm_repro import checkpoint as ck
    from ebm_repro.data import load_split, write_arrays
    from ebm_repro.datasets_ood import OOD_DATASETS, data_name
    from ebm_repro.energies import as_float, image_energies, load_energy_net
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    torch.set_num_threads(a.threads)
    block, setting = p[BLOCK], p["setting"]
    rows = block["rows"]
    if len(a.models) != len(rows):
        raise SystemExit(f"error: {len(a.models)} models for {len(rows)} ood.rows")
    n, bs, seed = block["n_images"][setting], block["batch_size"][setting], block.get("seed", 0)
    files = _kv(a.set_files)
    in_all, _ = load_split(a.in_test)
    in_idx = subset(len(in_all), n, np.random.default_rng([seed, 0]))
    sets = {"in": as_float(in_all[in_idx])}
    for key in block["sets"]:
        sets[key] = build_set(key, n, in_all, files, seed)
    dev = pick_device(a.device)
    arrays, models = {}, {}
    for r, path in zip(rows, a.models):
        cfg = C.resolve(p, r["variant"])
        meta = ck.load(Path(path))
        info = {"train_step": meta["step"], "diverged": meta.get("diverged"), "model_sha256": ck.file_digest(path),
                "weights": "EMA" if cfg.hp.test_sampling.use_ema else "final",
                "n_classes": cfg.hp.model.n_classes, "multiscale": cfg.hp.model.multiscale}
        models[r["variant"]] = info
        if meta.get("ema" if cfg.hp.test_sampling.use_ema else "model") is None:
            print(f"{r['variant']}: no usable weights (diverged before any checkpoint); not scored")
            continue
        net = load_energy_net(cfg, Path(path), dev)
        for key, images in sets.items():
            score = -image_energies(net, images, None, bs, dev)                            # (m,) -E(x)
            arrays[f"{r['variant']}/{key}"] = score
            print(f"{r['variant']} {key}: {len(images)} images, mean -E {score.mean():.4g}", flush=True)
    out = Path(a.out)
    write_arrays(out, arrays)
    src = {k: {"file": str(files[k]), "sha256": ck.file_digest(files[k]),
               "dataset": data_name(SETS[k].source, setting),
               "what": OOD_DATASETS[data_name(SETS[k].source, setting)]["what"]}
           for k in block["sets"] if SETS[k].source}
    meta = {"setting": setting, "preset": p["preset"], "seed": seed, "rows": rows, "sets": block["sets"],
            "n": {k: len(v) for k, v in sets.items()}, "in_test": {"file": str(a.in_test),
                                                                 "sha256": ck.file_digest(a.in_test),
                                                                 "n_total": len(in_all)},
            "sources": src, "models": models, "device": str(dev)}
    ck.atomic_write_text(out.with_suffix(".json"), json.dumps(meta, indent=1, default=str) + "\n")
    print(f"wrote {out}")


def auroc_table(scores: dict[str, np.ndarray], meta: dict) -> dict:
    """{variant: {set: AUROC, 'average': mean over the Tab. 2 sets when all were run}} (None: not scored)."""
    out = {}
    for r in meta["rows"]:
        v = r["variant"]
        if f"{v}/in" not in scores:
            out[v] = None
            continue
        out[v] = {k: auroc(scores[f"{v}/in"], scores[f"{v}/{k}"]) for k in meta["sets"]}
        if all(k in out[v] for k in TAB2_SETS):
            out[v]["average"] = float(np.mean([out[v][k] for k in TAB2_SETS]))
    return out


def set_title(key: str, meta: dict) -> str:
    """Column title; in the smoke setting a downloaded set's generated stand-in is named."""
    s = SETS[key]
    if meta["setting"] == "smoke" and s.source:
        return f"{s.title.split(' (')[0]} (stand-in: {meta['sources'][key]['dataset']})"
    return s.title


def in_name(meta: dict) -> str:
    """The in-distribution test set (smoke: the CIFAR-10 stand-in)."""
    return "CIFAR-10 test" if meta["setting"] != "smoke" else "shapes test (CIFAR-10 stand-in)"


def ood_table(aurocs: dict, meta: dict) -> str:
    """Markdown of results/tables/ood.md: this run's AUROC per model and set, the papers' rows beside."""
    from tabulate import tabulate

    from ebm_repro.report import paper_lookup

    cols = list(meta["sets"]) + (["average"] if all(k in meta["sets"] for k in TAB2_SETS) else [])
    head = ["Model", "AUROC from"] + [set_title(k, meta) if k != "average" else "Average (Tab. 2's 5 sets)"
                                      for k in cols]
    body = []
    for r in meta["rows"]:
        a, m = aurocs[r["variant"]], meta["models"][r["variant"]]
        if a is None:
            body.append([r["label"], "this run"] + [f"diverged at step {m['diverged']['step']}, nothing to score"]
                        + ["—"] * (len(cols) - 1))
        else:
            body.append([r["label"], f"this run (`{r['variant']}`, step {m['train_step']})"]
                        + [f"{a[k]:.3f}" for k in cols])
        for path in r.get("paper", []):
            pr = paper_row(path)
            body.append(["", f"paper: {PLACES[path.rsplit('/', 1)[0]]} ({path.rsplit('/', 1)[1]})"]
                        + [f"{pr[k]:.2f}" if k in pr else "—" for k in cols])
    setting = meta["setting"]
    lines = [f"# Out-of-distribution detection: AUROC, CIFAR-10 test vs OOD set ({setting} setting)", "",
             tabulate(body, headers=head, tablefmt="github", disable_numparse=True), ""]
    if setting == "smoke":
        lines += ["**Smoke setting: not comparable with the paper rows.** The in-distribution set is the generated "
                  "`shapes` stand-in for CIFAR-10 and every downloaded OOD set is replaced by a generated stand-in "
                  "(named in its column); the models trained for a few dozen steps. The numbers only show that the "
                  "pipeline runs end to end.", ""]
    n = meta["n"]
    lines += ["## How the numbers are made", "",
              "- Score: -E(x) of the raw image (pixel value k / 255, no dequantisation noise, no sampling), model in "
              "eval mode; a class-conditional model scores max over classes of -E(x, y) = -min_y E(x, y) (IGEBM "
              "code, ebm_sandbox.py energyevalmix: `.min(axis=1)` over the 10 labels). ICD's multiscale energy is "
              "the sum of its three scales (the ICD code averaged them; a positive factor leaves AUROC unchanged). "
              "ICD is scored with its EMA weights (test_sampling.use_ema).",
              f"- AUROC: scikit-learn `roc_auc_score`, {in_name(meta)} images labelled positive (higher score = "
              f"in-distribution), {n['in']} images"
              + (" (all)" if n["in"] == meta["in_test"]["n_total"] else f" of {meta['in_test']['n_total']} "
                 f"(random subset, seed {meta['seed']})") + ". 0.5 = chance; below 0.5 the OOD images get "
              "*higher* scores (lower energy) than CIFAR-10.",
              "- Sets (images scored):"]
    for k in meta["sets"]:
        what = meta["sources"][k]["what"] if k in meta["sources"] else SETS[k].what
        lines.append(f"  - {set_title(k, meta)}: {n[k]} images; {what}"
                     + (f" — our split: {SETS[k].what}" if k in meta["sources"] and setting != "smoke" else "")
                     + ".")
    lines += ["- Splits: SVHN is its **test** split (the IGEBM code's `Svhn(train=False)` ignored the flag and read "
              "torchvision's default train split) and CIFAR-100 is its test split with every image once (the ICD "
              "code's `Cifar100.__getitem__` returned image 0 for every index). Our numbers therefore differ in "
              "protocol from the printed ones on these two columns.",
              "- Users of the ICD code report lower AUROC than ICD Tab. 1 (0.72–0.78); the rows above are this "
              "run's own numbers with the settings of params.yaml (`ood`, preset "
              f"`{meta['preset']}`).",
              "- Paper rows: IGEBM Tab. 2 does not say which IGEBM model it scored; the authors' README runs it on "
              "the unconditional CIFAR-10 model, and ICD Tab. 1 lists IGEBM among unconditional models. The "
              "conditional row has no paper row.", ""]
    lines += ["## Baselines quoted from the papers (not computed here)", ""]
    t2, t1 = paper_lookup(TAB2), paper_lookup(TAB1)
    base_cols = [k for k in SETS] + ["average"]
    base = [[m, "IGEBM Tab. 2"] + [f"{t2[m][SETS[k].tab2]:.2f}" if k != "average" and SETS[k].tab2 in t2[m]
                                   else (f"{t2[m]['Average']:.2f}" if k == "average" else "—") for k in base_cols]
            for m in t2 if m != "EBM (IGEBM)"]
    for m in [m for m in t1["SVHN"] if m not in ("IGEBM", "ICD")]:   # Tab. 1's order
        base.append([m, "ICD Tab. 1"] + [f"{t1[SETS[k].tab1][m]:.2f}" if k != "average" and SETS[k].tab1
                                         and t1[SETS[k].tab1].get(m) is not None else "—" for k in base_cols])
    lines += [tabulate(base, headers=["Model (quoted)", "source"] + [SETS[k].title for k in SETS] + ["Average"],
                       tablefmt="github", disable_numparse=True), "",
              "JEM uses class labels (ICD Tab. 1 footnote).", ""]
    return "\n".join(lines)


def ood_figure(scores: dict[str, np.ndarray], aurocs: dict, meta: dict, out_png: Path) -> None:
    """IGEBM Fig. 8 style: histograms of -E(x), CIFAR-10 test vs each OOD set, one row per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebm_repro.runs import save_figure

    rows, sets = meta["rows"], meta["sets"]
    fig, axes = plt.subplots(len(rows), len(sets), figsize=(2.6 * len(sets) + 0.6, 2.3 * len(rows) + 1.0),
                             dpi=120, squeeze=False)
    in_label = in_name(meta)
    for i, r in enumerate(rows):
        v = r["variant"]
        for j, k in enumerate(sets):
            ax = axes[i, j]
            if aurocs[v] is None:
                ax.text(0.5, 0.5, "diverged:\nnothing scored", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                s_in, s_out = scores[f"{v}/in"], scores[f"{v}/{k}"]
                lo, hi = np.percentile(np.concatenate([s_in, s_out]), [0.5, 99.5])
                n_bins = int(np.clip(2 * np.sqrt(min(len(s_in), len(s_out))), 10, 60))
                bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, n_bins + 1)
                ax.hist(np.clip(s_in, lo, hi), bins, density=True, alpha=0.55, color="tab:blue", label=in_label)
                ax.hist(np.clip(s_out, lo, hi), bins, density=True, alpha=0.55, color="tab:red", label="OOD set")
                ax.text(0.03, 0.95, f"AUROC {aurocs[v][k]:.3f}", transform=ax.transAxes, va="top", fontsize=8,
                        bbox=dict(boxstyle="round", fc="white", alpha=0.8, lw=0))
                ax.tick_params(labelsize=7)
                ax.set_yticks([])
            if i == 0:
                ax.set_title(set_title(k, meta), fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{r['label']}\ndensity", fontsize=8)
            if i == len(rows) - 1:
                ax.set_xlabel("score -E(x) (higher = more in-distribution)", fontsize=7)
    handles, labels = next((ax.get_legend_handles_labels() for ax in axes.flat if ax.patches), ([], []))
    if handles:
        fig.legend(handles, [labels[0], "OOD set (column)"], loc="upper right", fontsize=8, ncol=2)
    fig.suptitle(f"OOD detection with -E(x) (IGEBM Fig. 8 style), {meta['setting']} setting: {in_label} "
                 f"({meta['n']['in']} images) vs each set; values clipped to the 0.5-99.5 percentiles", fontsize=9,
                 x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, out_png)
    plt.close(fig)


def cmd_report_ood(a) -> None:
    """results/tables/ood.md, results/ood/auroc.json and results/figures/ood_hist.{png,pdf} from score-ood."""
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.report import write_provenance
    from ebm_repro.runs import load_scores

    p = commands.load(a)
    scores_path = Path(a.scores)
    scores, meta = load_scores(scores_path, p[BLOCK]["rows"], p["setting"], BLOCK, "score-ood")
    aurocs = auroc_table(scores, meta)
    atomic_write_text(Path(a.auroc), json.dumps({"setting": meta["setting"], "auroc": aurocs, "n": meta["n"],
                                                 "rows": meta["rows"]}, indent=1) + "\n")
    atomic_write_text(Path(a.table), ood_table(aurocs, meta))
    ood_figure(scores, aurocs, meta, Path(a.figure))
    inputs = [scores_path, scores_path.with_suffix(".json"), Path(a.params)]
    extra = {"setting": meta["setting"], "preset": meta["preset"], "models": meta["models"], "n": meta["n"]}
    for out in (Path(a.table), Path(a.figure), Path(a.figure).with_suffix(".pdf")):
        write_provenance(out, inputs, extra)
    print(json.dumps(aurocs, indent=1))


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score-ood", help="-E(x) of the ood.rows models on CIFAR-10 test and the OOD sets")
    commands.add_common(p)
    p.add_argument("--models", nargs="+", required=True, help="results/train/<variant>/model.pt per ood.rows entry")
    p.add_argument("--in-test", required=True, help="test.npz of the in-distribution dataset")
    p.add_argument("--set-files", nargs="*", default=[], help="SET=PATH of each downloaded set's test.npz")
    p.add_argument("--out", required=True, help="scores .npz (its .json beside)")
    p.set_defaults(fn=cmd_score_ood)
    p = sub.add_parser("report-ood", help="results/tables/ood.md + figures/ood_hist (IGEBM Tab. 2 / Fig. 8)")
    commands.add_common(p)
    for arg in ("--scores", "--table", "--auroc", "--figure"):
        p.add_argument(arg, required=True)
    p.set_defaults(fn=cmd_report_ood)


# ----------------------------------------------------------------------------- claims
def claims(params: dict, prefix: str) -> list[Claim]:
    """One claim per AUROC the papers print beside an ood.rows model (±0.03), read from results/ood/auroc.json."""
    path = Path(f"{prefix}results/ood/auroc.json")
    got = json.loads(path.read_text()) if path.is_file() else None
    setting = got["setting"] if got else params["setting"]
    out = []
    for r in params[BLOCK]["rows"]:
        for pth in r.get("paper", []):
            for col, value in paper_row(pth).items():
                title = "the average over Tab. 2's five sets" if col == "average" else SETS[col].title
                a = got["auroc"].get(r["variant"]) if got else None
                missing, rep = None, None
                if got is None:
                    missing = f"no {path}"
                elif r["variant"] not in got["auroc"]:
                    missing = f"{r['variant']} is not a row of that run"
                elif a is None:
                    missing = f"{r['variant']} diverged before any usable checkpoint"
                elif col not in a:
                    missing = ("not all of Tab. 2's five sets were run" if col == "average"
                               else f"set {col!r} is not in params.yaml ood.sets")
                else:
                    rep = a[col]
                out.append(number_claim(paper_key(pth, col),
                                        f"OOD AUROC of -E(x), CIFAR-10 test vs {title} ({r['label']})",
                                        PLACES[pth.rsplit("/", 1)[0]], value, rep, "AUROC",
                                        f"{prefix}results/tables/ood.md", setting, missing))
    return out
