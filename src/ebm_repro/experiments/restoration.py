"""E7: IGEBM §4.2 / Fig. 5, image restoration by Langevin dynamics started at (corrupted) test images.

Three starts, each run under the conditional model with the image's true label (ebm_sandbox.py: every task
feeds `Y_GT`): the clean image (identity), salt-and-pepper corruption (all pixels updated, task `anticorrupt`),
lower half replaced by uniform noise (only the lower half updated, task `boxcorrupt`). A CIFAR-10 classifier
trained here (`train-classifier`, its test accuracy reported) judges whether the object changed: the share of
images whose predicted class after Langevin differs from its prediction on the clean image (paper: about 10% /
30%), and the MSE to the clean image (the code's boxcorrupt measure).
Outputs: results/restoration/{restoration.json, panel.npz}, results/tables/restoration.md,
results/figures/restoration.{png,pdf}.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.classifier_config import ARCHS, ClassifierTrainConfig
from ebm_repro.config import SamplerConfig, _enum, _pos

BLOCK = "restoration"
TASKS = ("identity", "salt_and_pepper", "inpainting")
TASK_NAMES = {"identity": "test image (identity)", "salt_and_pepper": "salt-and-pepper", "inpainting":
              "lower half inpainted"}
RESULTS = "results/restoration/restoration.json"
TABLE = "results/tables/restoration.md"
PAPER_KEY = "igebm_2019/restoration_fig_5"
PAPER_ENTRY = {"identity": "start_at_test_image", "salt_and_pepper": "salt_and_pepper_or_inpainting",
               "inpainting": "salt_and_pepper_or_inpainting"}


@dataclass(frozen=True)
class TaskCalls:
    """sess.run calls of the code's Langevin graph per start (each runs sampler.n_steps steps)."""
    identity: int = _pos()
    salt_and_pepper: int = _pos()
    inpainting: int = _pos()


@dataclass(frozen=True)
class SaltPepperConfig:
    rate: float = _pos(maximum=1)                 # share of pixel positions hit, half set to low, half to high
    low: float = _pos(minimum=0, maximum=1)       # the value of "pepper" pixels (all channels)
    high: float = _pos(minimum=0, maximum=1)      # the value of "salt" pixels


@dataclass(frozen=True)
class JudgeConfig:
    """The classifier that judges whether an object changed (trained by the workflow, test accuracy reported)."""
    arch: str = _enum(*ARCHS)
    augment: bool                                  # random crop (pad 4) + horizontal flip during training
    train: ClassifierTrainConfig


@dataclass(frozen=True)
class RestorationConfig:
    variant: str                       # the EBM (Fig. 5: the conditional model)
    n_images: int = _pos()             # test images restored per start (a seeded random subset)
    batch_size: int = _pos()
    seed: int = _pos(minimum=0)
    sampler: SamplerConfig             # one call of the code's Langevin graph: n_steps steps
    calls: TaskCalls
    salt_and_pepper: SaltPepperConfig
    grid_rows: int = _pos()            # images shown in the figure
    classifier: JudgeConfig


def schema() -> dict:
    return C.setting_block_schema(RestorationConfig)


def restoration_config(params: dict, setting: str) -> RestorationConfig:
    rc = C.build_setting_block(RestorationConfig, params, BLOCK, setting)
    C.check_variant(params, rc.variant, f"restoration.{setting}.variant")
    if rc.salt_and_pepper.low >= rc.salt_and_pepper.high:
        raise C.ConfigError(f"restoration.{setting}.salt_and_pepper: low must be < high")
    if not rc.sampler.clamp:
        raise C.ConfigError(f"restoration.{setting}.sampler.clamp must be true: images stay in [0, 1] "
                            f"(ebm_sandbox.py clips every step)")
    return rc


def check(params: dict) -> None:
    for setting in ("paper", "smoke"):
        restoration_config(params, setting)


# ----------------------------------------------------------------------------- corruption and restoration
def salt_and_pepper(x, rate: float, low: float, high: float, generator=None):
    """Corrupt a share `rate` of pixel positions (all channels): half to `low`, half to `high`.

    x (B, C, H, W) -> (corrupted (B, C, H, W), mask (B, 1, H, W) bool). ebm_sandbox.py l.263-271: u ~ U(0, 1)
    per pixel position; u < 0.05 -> 0.1, 0.05 < u < 0.1 -> 0.9.
    """
    import torch

    b, _, h, w = x.shape
    u = torch.rand((b, 1, h, w), generator=generator).to(x.device)   # (B, 1, H, W)
    pepper, salt = u < rate / 2, (u >= rate / 2) & (u < rate)
    out = torch.where(pepper, torch.full_like(x, low), x)
    out = torch.where(salt, torch.full_like(x, high), out)
    return out, pepper | salt


def lower_half_mask(x):
    """(1, 1, H, W) float: 1 on rows H/2.. (the pixels to inpaint), 0 on the known upper half (l.302, l.780)."""
    import torch

    h, w = x.shape[-2:]
    m = torch.zeros((1, 1, h, w), device=x.device)
    m[..., h // 2:, :] = 1.0
    return m


def langevin_restore(energy, x0, sampler: SamplerConfig, n_steps: int, mask=None):
    """Langevin from x0 (B, C, H, W) for n_steps; with a mask (1 = update), the other pixels never move.

    The code multiplies both the noise and the gradient step by the mask (ebm_sandbox.py l.790, l.798). Here the
    chain runs on z and the energy sees known * (1 - m) + z * m: the gradient on known pixels is exactly zero and
    the output takes them from x0 itself, so noise and steps reach the masked pixels only, as in the code.
    """
    import dataclasses

    from ebm_repro.sampling import make_langevin

    run = make_langevin(dataclasses.replace(sampler, n_steps=n_steps))
    if mask is None:
        return run(energy, x0).x
    known = x0 * (1 - mask)

    def compose(z):
        return known + z * mask                    # (B, C, H, W): known pixels from x0, the rest from z

    return compose(run(lambda z: energy(compose(z)), x0).x)


def restore_all(net, images, labels, rc: RestorationConfig, generator, device) -> dict:
    """Every start of TASKS for float images (N, C, H, W) -> {task: (start, restored)} on the CPU."""
    import torch

    out = {t: ([], []) for t in TASKS}
    conditional = net.cfg.n_classes > 0
    for i in range(0, len(images), rc.batch_size):
        x = images[i:i + rc.batch_size].to(device)                               # (B, C, H, W)
        y = labels[i:i + rc.batch_size].to(device) if conditional else None     # the true label (code: Y_GT)

        def energy(z, y=y):
            return net(z, y)

        sp = rc.salt_and_pepper
        starts = {"identity": (x, None),
                  "salt_and_pepper": (salt_and_pepper(x, sp.rate, sp.low, sp.high, generator)[0], None)}
        m = lower_half_mask(x)
        noise = torch.rand(x.shape, generator=generator).to(device)              # l.302: U(0, 1) fill
        starts["inpainting"] = (x * (1 - m) + noise * m, m)
        for t in TASKS:
            x0, mask = starts[t]
            n = getattr(rc.calls, t) * rc.sampler.n_steps
            xr = langevin_restore(energy, x0, rc.sampler, n, mask)
            out[t][0].append(x0.cpu())
            out[t][1].append(xr.detach().cpu())
    return {t: (torch.cat(s), torch.cat(r)) for t, (s, r) in out.items()}


def _u8(x):
    """[0, 1] float (N, C, H, W) -> uint8 (N, H, W, C), rounded (ebm_sandbox.py rescale_im)."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------- commands
def cmd_train_classifier(a) -> None:
    """The judge of E7/E8: a classifier trained on the variant's dataset; weights + test accuracy."""
    import torch

    from ebm_repro.classifier import make_classifier, save_classifier, train_classifier
    from ebm_repro.runtime import pick_device
    from ebm_repro.data import load_split

    p = commands.load(a)
    torch.set_num_threads(a.threads)
    rc = restoration_config(p, p["setting"])
    cfg = C.resolve(p, rc.variant)
    jc, data = rc.classifier, Path(a.data)
    train, test = load_split(data / "train.npz"), load_split(data / "test.npz")
    n_classes = int(max(train[1].max(), test[1].max())) + 1
    shape = C.DATASET_SHAPES[cfg.dataset]
    torch.manual_seed(jc.train.seed)
    model = make_classifier(jc.arch, n_classes, shape[2], shape[0])
    info = train_classifier(model, train, test, jc.train, jc.augment, pick_device(a.device))
    save_classifier(Path(a.out), model, jc.arch, shape, n_classes,
                    {"dataset": cfg.dataset, "setting": p["setting"], "config": asdict(jc), **info})
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1))


def cmd_restore_images(a) -> None:
    """Langevin from test images: identity, salt-and-pepper, inpainting; class changes and MSE -> JSON + NPZ."""
    import numpy as np
    import torch

    from ebm_repro.checkpoint import atomic_write, atomic_write_text, file_digest
    from ebm_repro.classifier import load_classifier, load_ebm, predict, to_unit
    from ebm_repro.runtime import pick_device
    from ebm_repro.data import load_split

    p = commands.load(a)
    torch.set_num_threads(a.threads)
    rc = restoration_config(p, p["setting"])
    cfg = C.resolve(p, rc.variant)
    dev = pick_device(a.device)
    net, meta = load_ebm(cfg, Path(a.model), dev)
    net.requires_grad_(False)                      # gradients w.r.t. the images only
    judge, jinfo = load_classifier(Path(a.classifier))
    judge.to(dev)
    images, labels = load_split(Path(a.data) / "test.npz")
    if rc.n_images > len(labels):
        raise SystemExit(f"error: restoration.n_images = {rc.n_images} > {len(labels)} test images")
    idx = np.sort(np.random.default_rng(rc.seed).permutation(len(labels))[:rc.n_images])
    x = to_unit(torch.from_numpy(images[idx]))                                  # (N, C, H, W)
    y = torch.from_numpy(labels[idx])
    torch.manual_seed(rc.seed)
    gen = torch.Generator().manual_seed(rc.seed)                                 # corruption masks and fills
    res = restore_all(net, x, y, rc, gen, dev)
    pred_clean = predict(judge, x)
    tasks, panel = {}, {"clean": _u8(x[:rc.grid_rows]), "labels": y[:rc.grid_rows].numpy(),
                        "pred_clean": pred_clean[:rc.grid_rows].numpy()}
    for t, (start, restored) in res.items():
        pred = predict(judge, restored)
        changed = (pred != pred_clean)
        mse = ((restored - x) ** 2).mean(dim=(1, 2, 3))                         # (N,), ebm_sandbox.py l.310
        mse0 = ((start - x) ** 2).mean(dim=(1, 2, 3))
        tasks[t] = {"share_changed": float(changed.float().mean()), "n_changed": int(changed.sum()),
                    "accuracy_after": 100.0 * float((pred == y).float().mean()),
                    "mse_start": float(mse0.mean()), "mse_after": float(mse.mean()), "mse_after_std": float(mse.std()),
                    "langevin_steps": getattr(rc.calls, t) * rc.sampler.n_steps,
                    "pixels_updated": "lower half" if t == "inpainting" else "all"}
        panel.update({f"{t}_start": _u8(start[:rc.grid_rows]), f"{t}_restored": _u8(restored[:rc.grid_rows]),
                      f"{t}_pred": pred[:rc.grid_rows].numpy()})
    out = {"setting": p["setting"], "preset": p["preset"], "variant": rc.variant, "dataset": cfg.dataset,
           "train_step": meta["step"], "model_sha256": file_digest(Path(a.model)),
           "classifier": {"arch": jinfo["arch"], "test_acc": jinfo["test_acc"], "n_test": jinfo["n_test"],
                          "sha256": file_digest(Path(a.classifier))},
           "accuracy_clean": 100.0 * float((pred_clean == y).float().mean()),
           "n_images": rc.n_images, "config": asdict(rc), "tasks": tasks}
    atomic_write(Path(a.out_npz), lambda f: np.savez_compressed(f, **panel))
    atomic_write_text(Path(a.out_json), json.dumps(out, indent=1) + "\n")
    print(json.dumps(tasks, indent=1))


def restoration_table(r: dict, paper: dict) -> str:
    """results/tables/restoration.md: class changes and MSE per start, the paper's approximate shares beside."""
    from tabulate import tabulate

    from ebm_repro.report import fmt

    body = []
    for t in TASKS:
        m = r["tasks"][t]
        body.append([TASK_NAMES[t], m["langevin_steps"], m["pixels_updated"],
                     f"{100 * m['share_changed']:.1f}% ({m['n_changed']}/{r['n_images']})",
                     f"~{100 * paper[PAPER_ENTRY[t]]:.0f}%", fmt(m["mse_start"], 4),
                     f"{m['mse_after']:.4f} ± {m['mse_after_std']:.4f}", fmt(m["accuracy_after"], 1)])
    head = ["Langevin start", "steps", "pixels updated", "class changed (this run)", "class changed (paper)",
            "MSE to clean: start", "MSE to clean: after", "classifier accuracy after (%)"]
    c, cl = r["config"], r["classifier"]
    smoke = r["setting"] == "smoke"
    lines = [f"# Image restoration by Langevin dynamics (IGEBM Fig. 5) ({r['setting']} setting)", "",
             tabulate(body, headers=head, tablefmt="github", disable_numparse=True), "", "## Notes", "",
             f"- {r['n_images']} test images of `{r['dataset']}` (seeded random subset), each run under "
             f"`{r['variant']}` (step {r['train_step']}) with its true label, as the authors' code does. Langevin: "
             f"step size {c['sampler']['step_size']:g}, noise {c['sampler']['noise_std']:g}, gradient clip "
             f"{c['sampler']['grad_clip']:g} (0 = none), images clipped to [0, 1].",
             f"- Salt-and-pepper: {c['salt_and_pepper']['rate']:.0%} of pixel positions (all channels), half set "
             f"to {c['salt_and_pepper']['low']:g}, half to {c['salt_and_pepper']['high']:g}; every pixel is updated. "
             f"Inpainting: the lower half is replaced by U(0, 1) noise and only it is updated; the upper half is "
             f"copied from the test image.",
             f"- *Class changed*: the judge classifier's prediction after Langevin differs from its prediction on "
             f"the clean image. Judge: `{cl['arch']}` trained by this workflow, test accuracy "
             f"**{cl['test_acc']:.1f}%** on {cl['n_test']} test images (accuracy on the clean restoration subset: "
             f"{r['accuracy_clean']:.1f}%). MSE: per image over pixels and channels in [0, 1], mean ± std over "
             f"images (the code's `boxcorrupt` measure).",
             f"- Paper column: IGEBM Fig. 5 caption (`{PAPER_KEY}`), \"approx. 10% objects change with ground truth "
             f"initialization and 30% of objects change in salt/pepper corruption or in-painting\"; the paper does not "
             f"say how the change was judged.",
             f"- Setting `{r['setting']}`, preset `{r['preset']}`; parameters: params.yaml `restoration`."]
    if smoke:
        lines.append("- **Smoke setting: a tiny model on the generated `shapes` stand-in; the numbers only show "
                     "that the DAG runs end to end. Do not compare them with the paper column.**")
    return "\n".join(lines) + "\n"


def restoration_figure(r: dict, panel: dict, class_names: tuple[str, ...], out_png: Path) -> None:
    """Fig. 5 as a table of images: per row one test image, its starts and their restorations."""
    import numpy as np

    from ebm_repro.panels import image_panel

    short = {"identity": "identity", "salt_and_pepper": "salt-pepper", "inpainting": "inpainting"}
    cols = [("clean\ntest image", panel["clean"], None)]
    for t in TASKS:
        if t != "identity":
            cols.append((f"{short[t]}\nstart", panel[f"{t}_start"], None))
        steps = r["tasks"][t]["langevin_steps"]
        cols.append((f"{short[t]}\n{steps} steps", panel[f"{t}_restored"], panel[f"{t}_pred"]))
    cells = np.stack([c[1] for c in cols], axis=1)                             # (R, K, H, W, C)
    changed = np.stack([(c[2] != panel["pred_clean"]) if c[2] is not None else
                        np.zeros(len(panel["clean"]), bool) for c in cols], axis=1)   # (R, K)

    def name(k):
        return class_names[k] if k < len(class_names) else str(k)

    rows = [f"{name(int(y))} (judged {name(int(p))})" for y, p in zip(panel["labels"], panel["pred_clean"])]
    sh = {t: 100 * r["tasks"][t]["share_changed"] for t in TASKS}
    title = (f"Restoration by Langevin dynamics (IGEBM Fig. 5)\n`{r['variant']}`, {r['setting']} setting, "
             f"{r['n_images']} test images; class changed:\nidentity {sh['identity']:.0f}%, salt-and-pepper "
             f"{sh['salt_and_pepper']:.0f}%, inpainting {sh['inpainting']:.0f}% (paper: ~10% / ~30% / ~30%)")
    image_panel(cells, [c[0] for c in cols], rows, title, out_png, highlight=changed,
                highlight_label=f"red frame: the judge ({r['classifier']['arch']}, test accuracy "
                                f"{r['classifier']['test_acc']:.1f}%)\npredicts another class than on the clean image",
                col_gaps=(1, 3))


def cmd_report_restoration(a) -> None:
    import numpy as np

    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.data import DATASETS
    from ebm_repro.report import paper_lookup, write_provenance

    r = json.loads(Path(a.results).read_text())
    panel = dict(np.load(a.panel))
    table = Path(a.out_table)
    atomic_write_text(table, restoration_table(r, paper_lookup(PAPER_KEY)))
    png = Path(a.out_png)
    restoration_figure(r, panel, tuple(DATASETS[r["dataset"]]["classes"]), png)
    extra = {"setting": r["setting"], "variant": r["variant"], "train_step": r["train_step"],
             "classifier_test_acc": r["classifier"]["test_acc"]}
    for out in (table, png, png.with_suffix(".pdf")):
        write_provenance(out, [Path(a.results), Path(a.panel), Path(a.params)], extra)
    print(f"wrote {table} and {png}")


def claims(params: dict, prefix: str) -> list:
    """IGEBM Fig. 5: share of images whose class changes, per start (±5 points)."""
    from ebm_repro.claims import number_claim
    from ebm_repro.report import paper_lookup

    path = Path(f"{prefix}{RESULTS}")
    r = json.loads(path.read_text()) if path.is_file() else None
    paper = paper_lookup(PAPER_KEY)
    out = []
    for t in TASKS:
        value = r["tasks"][t]["share_changed"] if r else None
        shared = list(PAPER_ENTRY.values()).count(PAPER_ENTRY[t]) > 1  # one printed ~30% for two starts
        out.append(number_claim(f"{PAPER_KEY}/{PAPER_ENTRY[t]}" + (f"#{t}" if shared else ""),
                                f"share of test images whose object changes under Langevin from: {TASK_NAMES[t]}",
                                "IGEBM Fig. 5", paper[PAPER_ENTRY[t]], value, "share", f"{prefix}{TABLE}",
                                r["setting"] if r else params["setting"], missing=f"no {path}"))
    return out


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-classifier", help="the judge classifier of E7/E8 (weights + test accuracy)")
    commands.add_common(p)
    p.add_argument("--data", required=True, help="dataset folder with train.npz and test.npz")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_train_classifier)
    p = sub.add_parser("restore-images", help="E7: Langevin restoration of test images -> JSON + NPZ")
    commands.add_common(p)
    p.add_argument("--model", required=True, help="results/train/<variant>/model.pt")
    p.add_argument("--classifier", required=True, help="the judge written by train-classifier")
    p.add_argument("--data", required=True, help="dataset folder with test.npz")
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-npz", required=True)
    p.set_defaults(fn=cmd_restore_images)
    p = sub.add_parser("report-restoration", help="results/tables/restoration.md and figures/restoration.*")
    commands.add_common(p)
    p.add_argument("--results", required=True, help="JSON written by restore-images")
    p.add_argument("--panel", required=True, help="NPZ written by restore-images")
    p.add_argument("--out-table", required=True)
    p.add_argument("--out-png", required=True)
    p.set_defaults(fn=cmd_report_restoration)
