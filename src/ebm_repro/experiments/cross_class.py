"""E8: IGEBM §4.2 / Figs. 6 and 12, cross-class mapping: Langevin from a test image of class a under label b.

The authors' code (ebm_sandbox.py `crossclass`, l.345-379) starts each chain at a test image of another class,
runs the conditional model's Langevin graph 10 times under the target label and shows the image after every
call. Measurable criterion for "reliably convert these images to images of the target class" (paper §4.2):
the judge classifier of E7 assigns at least `criterion` of the mapped images to the target class (mean over the
class pairs). Outputs: results/figures/cross_class.{png,pdf}, results/cross_class/cross_class.json.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.config import SamplerConfig, _pos

BLOCK = "cross_class"
RESULTS = "results/cross_class/cross_class.json"
FIGURE = "results/figures/cross_class.png"


@dataclass(frozen=True)
class ClassPair:
    source: int = _pos(minimum=0)   # class of the test images the chains start from
    target: int = _pos(minimum=0)   # label the conditional model samples under


@dataclass(frozen=True)
class CrossClassConfig:
    variant: str                         # a conditional EBM (IGEBM: the conditional CIFAR-10 model)
    pairs: tuple[ClassPair, ...]
    n_images: int = _pos()               # images mapped per pair (the target-class share)
    rows: int = _pos()                   # of which shown in the figure
    sampler: SamplerConfig               # one call of the code's Langevin graph: n_steps steps
    calls: int = _pos()                  # calls, one figure column after each (code: 10)
    batch_size: int = _pos()
    seed: int = _pos(minimum=0)
    criterion: float = _pos(maximum=1)   # mean target-class share that counts as "reliably converts"


def schema() -> dict:
    return C.setting_block_schema(CrossClassConfig)


def cross_class_config(params: dict, setting: str) -> CrossClassConfig:
    cc = C.build_setting_block(CrossClassConfig, params, BLOCK, setting)
    where = f"cross_class.{setting}"
    C.check_variant(params, cc.variant, f"{where}.variant")
    n = C.resolve(params, cc.variant, setting=setting, validated=True).hp.model.n_classes
    if n == 0:
        raise C.ConfigError(f"{where}.variant: {cc.variant!r} is unconditional; cross-class mapping needs a "
                            f"conditional model (model.n_classes > 0)")
    for i, pr in enumerate(cc.pairs):
        if pr.source >= n or pr.target >= n or pr.source == pr.target:
            raise C.ConfigError(f"{where}.pairs[{i}]: source and target must be two different classes < {n}, "
                                f"got {pr.source} -> {pr.target}")
    if cc.rows > cc.n_images:
        raise C.ConfigError(f"{where}.rows ({cc.rows}) must be <= n_images ({cc.n_images})")
    if not cc.sampler.clamp:
        raise C.ConfigError(f"{where}.sampler.clamp must be true: images stay in [0, 1] (ebm_sandbox.py l.799)")
    return cc


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        cross_class_config(params, setting)


def map_pair(net, x, target: int, cc: CrossClassConfig, device):
    """Chains from images x (N, C, H, W) under label `target`: the images after each call (calls, N, C, H, W)."""
    import torch

    from ebm_repro.sampling import make_langevin

    run = make_langevin(cc.sampler)
    snaps = []
    for i in range(0, len(x), cc.batch_size):
        z = x[i:i + cc.batch_size].to(device)
        y = torch.full((len(z),), target, dtype=torch.long, device=device)
        per_call = []
        for _ in range(cc.calls):                # the code feeds each call's output into the next (l.356-360)
            z = run(lambda v: net(v, y), z).x
            per_call.append(z.cpu())
        snaps.append(torch.stack(per_call))
    return torch.cat(snaps, dim=1)


def cmd_map_cross_class(a) -> None:
    """E8: map test images of each source class to its target class; judge them; figure + JSON."""
    import numpy as np
    import torch

    from ebm_repro.checkpoint import atomic_write_text, file_digest
    from ebm_repro.classifier import load_classifier, load_ebm, predict, to_unit
    from ebm_repro.runtime import pick_device
    from ebm_repro.data import DATASETS, load_split
    from ebm_repro.report import write_provenance

    p = commands.load(a)
    torch.set_num_threads(a.threads)
    cc = cross_class_config(p, p["setting"])
    cfg = C.resolve(p, cc.variant)
    dev = pick_device(a.device)
    net, meta = load_ebm(cfg, Path(a.model), dev)
    net.requires_grad_(False)
    judge, jinfo = load_classifier(Path(a.classifier))
    judge.to(dev)
    images, labels = load_split(Path(a.data) / "test.npz")
    names = tuple(DATASETS[cfg.dataset]["classes"])
    rng = np.random.default_rng(cc.seed)
    torch.manual_seed(cc.seed)
    pairs, panel_rows = [], []
    for pr in cc.pairs:
        src = np.flatnonzero(labels == pr.source)
        tgt = np.flatnonzero(labels == pr.target)
        if len(src) < cc.n_images or len(tgt) < cc.rows:
            raise SystemExit(f"error: test split has {len(src)} images of class {pr.source} and {len(tgt)} of "
                             f"class {pr.target}; cross_class needs n_images = {cc.n_images} and rows = {cc.rows}")
        x = to_unit(torch.from_numpy(images[np.sort(rng.choice(src, cc.n_images, replace=False))]))
        ref = images[np.sort(rng.choice(tgt, cc.rows, replace=False))]       # (rows, H, W, C): target examples
        snaps = map_pair(net, x, pr.target, cc, dev)                          # (calls, N, C, H, W)
        before, after = predict(judge, x), predict(judge, snaps[-1])
        pairs.append({"source": pr.source, "target": pr.target, "source_name": names[pr.source],
                      "target_name": names[pr.target], "n": cc.n_images,
                      "share_target": float((after == pr.target).float().mean()),
                      "share_source": float((after == pr.source).float().mean()),
                      "share_target_before": float((before == pr.target).float().mean())})
        u8 = [(s[:cc.rows].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy() for s in [x, *snaps]]
        panel_rows.append((np.stack(u8 + [ref], axis=1), (after[:cc.rows] != pr.target).numpy()))  # (rows, K, ...)
    mean_share = float(np.mean([q["share_target"] for q in pairs]))
    out = {"setting": p["setting"], "preset": p["preset"], "variant": cc.variant, "dataset": cfg.dataset,
           "train_step": meta["step"], "model_sha256": file_digest(Path(a.model)),
           "classifier": {"arch": jinfo["arch"], "test_acc": jinfo["test_acc"], "n_test": jinfo["n_test"]},
           "pairs": pairs, "mean_share_target": mean_share, "criterion": cc.criterion,
           "held": mean_share >= cc.criterion, "config": asdict(cc)}
    png = Path(a.out_png)
    cross_class_figure(out, panel_rows, png)
    atomic_write_text(Path(a.out_json), json.dumps(out, indent=1) + "\n")
    for path in (png, png.with_suffix(".pdf"), Path(a.out_json)):
        write_provenance(path, [Path(a.model), Path(a.classifier), Path(a.data) / "test.npz", Path(a.params)],
                         {"setting": p["setting"], "variant": cc.variant, "train_step": meta["step"]})
    print(json.dumps(pairs, indent=1))


def cross_class_figure(r: dict, panel_rows: list, out_png: Path) -> None:
    """Figs. 6 / 12 as a table of images: a block of rows per class pair, one column per Langevin call."""
    import numpy as np

    from ebm_repro.panels import image_panel

    cc = r["config"]
    steps = cc["sampler"]["n_steps"]
    k = cc["calls"]
    cols = ["start\n(source class)"] + [f"{steps * (j + 1)}\nsteps" for j in range(k)] + ["a test image\nof the target"]
    cells = np.concatenate([c for c, _ in panel_rows])                           # (pairs * rows, K, H, W, C)
    miss = np.concatenate([np.pad(m[:, None], ((0, 0), (k, 1))) for _, m in panel_rows])  # final column only
    labels = [f"{q['source_name']} → {q['target_name']}" + (f" ({100 * q['share_target']:.0f}% judged "
              f"{q['target_name']})" if i == 0 else "") for q in r["pairs"] for i in range(cc["rows"])]
    title = (f"Cross-class mapping with the conditional EBM (IGEBM Figs. 6, 12)\n`{r['variant']}`, {r['setting']} "
             f"setting: Langevin under the target label from test images of the source class\nimages judged as the "
             f"target class: {100 * r['mean_share_target']:.0f}% (mean over {len(r['pairs'])} pairs x "
             f"{cc['n_images']} images; criterion >= {100 * r['criterion']:.0f}%)")
    image_panel(cells, cols, labels, title, out_png, highlight=miss,
                highlight_label=f"red frame: the judge ({r['classifier']['arch']}, test accuracy "
                                f"{r['classifier']['test_acc']:.1f}%) does not assign the final image to the "
                                f"target class",
                col_gaps=(0, k), row_gaps=tuple(cc["rows"] * (i + 1) - 1 for i in range(len(r["pairs"]) - 1)))


def claims(params: dict, prefix: str) -> list:
    """IGEBM §4.2: the conditional EBM converts images of one class to another (judged by the E7 classifier)."""
    from ebm_repro.claims import judged_claim

    path = Path(f"{prefix}{RESULTS}")
    r = json.loads(path.read_text()) if path.is_file() else None
    crit = r["criterion"] if r else cross_class_config(params, params["setting"]).criterion
    value = None
    if r:
        value = (f"mean target-class share {r['mean_share_target']:.2f} over {len(r['pairs'])} pairs ("
                 + ", ".join(f"{q['source_name']}→{q['target_name']} {q['share_target']:.2f}"
                             + (f" ({q['share_target_before']:.2f} before mapping)" if "share_target_before" in q else "")
                             for q in r["pairs"])
                 + f"); judge test accuracy {r['classifier']['test_acc']:.1f}%")
    return [judged_claim("qualitative/cross_class/target_class_share",
                         "initialised with an image of another class, the conditional EBM's Langevin chains "
                         "reliably convert it to an image of the target class", "IGEBM §4.2, Figs. 6 / 12",
                         "reliably converts", value,
                         f"the judge classifier assigns >= {crit:.0%} of the mapped images to the target class "
                         f"(mean over the class pairs)", r["held"] if r else None, f"{prefix}{FIGURE}",
                         r["setting"] if r else params["setting"], missing=f"no {path}")]


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map-cross-class", help="E8: results/figures/cross_class.* (IGEBM Figs. 6 / 12)")
    commands.add_common(p)
    p.add_argument("--model", required=True, help="results/train/<variant>/model.pt of a conditional variant")
    p.add_argument("--classifier", required=True, help="the judge written by train-classifier")
    p.add_argument("--data", required=True, help="dataset folder with test.npz")
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-json", required=True)
    p.set_defaults(fn=cmd_map_cross_class)
