"""`python -m ebm_repro <verb>`: the algorithm's verbs here, each experiment's from its module (experiments/).

Snakemake rules and DVC stages call exactly these commands.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ebm_repro import checkpoint as ck
from ebm_repro import commands
from ebm_repro import config as C


def _params(a) -> dict:
    return commands.load(a)


def cmd_check_config(a) -> None:
    p = _params(a)
    print(f"params.yaml valid: {len(p['variants'])} variants, settings paper/smoke, preset {p['preset']}")


def cmd_prepare_feature_net(a) -> None:
    p = _params(a)
    kind = p["settings"][p["setting"]]["metrics"]["feature_net"]
    out = Path(a.out)
    if kind == "inception":
        from ebm_repro.metrics import download_inception_weights
        download_inception_weights(out)
    else:
        from ebm_repro.feature_net import train_feature_classifier
        data = Path(a.data)
        info = train_feature_classifier(data / "train.npz", data / "test.npz", out, seed=0)
        print(json.dumps(info, indent=1))


def cmd_train(a) -> None:
    from ebm_repro.train import train

    cfg = C.resolve(_params(a), a.variant)
    summary = train(cfg, Path(a.data), Path(a.out), device=a.device, stop_after=a.stop_after,
                    feature_net=Path(a.feature_net) if a.feature_net else None)
    if "rank" not in summary:  # under torchrun only rank 0 reports (Trainer.finish)
        print(json.dumps(summary, indent=1, default=str))


def cmd_sample(a) -> None:
    from ebm_repro.generate import generate

    p = _params(a)
    cfg = C.resolve(p, a.variant)
    n = p["settings"][p["setting"]]["metrics"]["n_samples"]
    meta = ck.load(Path(a.model))
    div, scored = meta.get("diverged"), None
    if div:
        # Both codes keep the best checkpoint by training-time IS, so their unstable Tab. 2 rows were still
        # scored: score the weights the trainer kept (best training-time IS, else the last good checkpoint).
        scored = div.get("scored") or (f"last good checkpoint, step {div['last_good_step']}"
                                       if div.get("last_good_step") else None)
        usable = meta["model"] is not None and (a.mode != "ensemble" or len(meta["snapshots"]) >= 2)
        if not usable:
            scored = None
    if div and scored is None:
        if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 alone writes
            return
        print(f"variant {a.variant} diverged ({div['reason']}) before any checkpoint usable for mode {a.mode}; "
              f"writing no samples")
        images = np.zeros((0, cfg.hp.model.image_size, cfg.hp.model.image_size, cfg.hp.model.channels), np.uint8)
        labels = np.zeros((0,), np.int64)
    else:
        if div:
            print(f"variant {a.variant} diverged ({div['reason']}); sampling its {scored}")
        out = generate(cfg, Path(a.model), a.mode, n, device=a.device, seed=cfg.hp.train.seed)
        if out is None:  # a rank > 0 under torchrun: rank 0 gathered its samples and writes them
            return
        images, labels = out
    imported = meta.get("imported")  # an authors' checkpoint (ebm_repro.authors): where it came from
    info = dict(variant=a.variant, mode=a.mode, train_step=meta["step"], diverged=div, scored=scored,
                config=cfg.to_dict(),
                imported=imported and {k: imported[k] for k in ("source", "path", "files", "iteration")})
    ck.atomic_write(Path(a.out), lambda f: np.savez(f, images=images, labels=labels,
                                                      info=json.dumps(info, default=str)))
    print(f"wrote {len(images)} samples to {a.out}")


def cmd_metrics(a) -> None:
    from ebm_repro.data import FID_REFERENCES, reference_images
    from ebm_repro.metrics import compute_inception_metrics

    p = _params(a)
    cfg = C.resolve(p, a.variant)
    mc, sc = cfg.metrics, cfg.hp.metrics
    z = np.load(a.samples, allow_pickle=False)
    info = json.loads(str(z["info"]))
    out = dict(variant=a.variant, mode=a.mode, setting=cfg.setting, preset=cfg.preset,
               train_step=info["train_step"], diverged=info["diverged"], scored=info.get("scored"),
               test_sampling=info["config"]["hp"]["test_sampling"], feature_net=mc.feature_net,
               n_splits=mc.n_splits, fid_reference=sc.fid_reference,
               fid_reference_desc=FID_REFERENCES[sc.fid_reference], config_hash=cfg.hash(),
               imported=info.get("imported"))  # the authors' checkpoint this row scores, if any
    if len(z["images"]):
        if mc.feature_net == "smoke_classifier":  # read as data only, before any other work
            from ebm_repro.feature_net import load_feature_info
            fn = load_feature_info(Path(a.feature_net))
            out["feature_net_acc"], out["feature_net_real_IS"] = fn.get("test_acc"), fn.get("real_test_IS")
        ref = reference_images(Path(a.data), sc.fid_reference)
        out.update(compute_inception_metrics(z["images"], ref, mc.feature_net, Path(a.feature_net),
                                             n_splits=mc.n_splits, batch_size=mc.batch_size,
                                             device=str(_device(a.device)), shuffle=sc.is_shuffle))
    ck.atomic_write_text(Path(a.out), json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps({k: out.get(k) for k in ("IS_mean", "IS_std", "FID", "n_samples")}))


def _device(d: str):
    from ebm_repro.runtime import pick_device
    return pick_device(d)


def cmd_plot_samples(a) -> None:
    from ebm_repro.report import CIFAR10_CLASSES, save_grid, write_provenance

    p = _params(a)
    z = np.load(a.samples)
    info = json.loads(str(z["info"]))
    title = f"{a.variant} / {a.mode} ({p['setting']} setting, preset {p['preset']}, step {info['train_step']})"
    if info["diverged"]:
        title += f" — DIVERGED at step {info['diverged']['step']}"
    if info.get("imported"):
        title += f" — authors' checkpoint {Path(info['imported']['path']).name}"
    names = CIFAR10_CLASSES if p["settings"][p["setting"]]["dataset"] == "cifar10" else None
    save_grid(z["images"], z["labels"], Path(a.out), title, per_class=bool((z["labels"] >= 0).any()),
              class_names=names)
    write_provenance(Path(a.out), [Path(a.samples)], {
        "variant": a.variant, "mode": a.mode, "train_step": info["train_step"], "setting": p["setting"],
        "preset": p["preset"], "config_hash": C.resolve(p, a.variant).hash(), "diverged": info["diverged"]})


def cmd_import_checkpoint(a) -> None:
    from ebm_repro.authors import import_checkpoint

    cfg = C.resolve(_params(a), a.variant)
    info = import_checkpoint(a.source, cfg, Path(a.path), Path(a.out), trust_pickle=a.trust_pickle)
    print(json.dumps({k: info[k] for k in ("source", "variant", "path", "iteration", "files", "n_mapped")}, indent=1))
    for reason, names in info["dropped"].items():
        print(f"dropped {len(names)}: {reason}")
    print(f"wrote {a.out}")


COMMANDS = {
    "check-config": (cmd_check_config, []),
    "prepare-feature-net": (cmd_prepare_feature_net, ["data", "out"]),
    "train": (cmd_train, ["variant", "data", "out"]),
    "sample": (cmd_sample, ["variant", "mode", "model", "out"]),
    "metrics": (cmd_metrics, ["variant", "mode", "samples", "data", "feature_net", "out"]),
    "plot-samples": (cmd_plot_samples, ["variant", "mode", "samples", "out"]),
    "import-checkpoint": (cmd_import_checkpoint, ["variant", "path", "out"]),
}


def build_parser() -> argparse.ArgumentParser:
    """Every verb: the algorithm's (COMMANDS) and each experiment's (EXPERIMENTS[name].add_commands)."""
    from ebm_repro.experiments import EXPERIMENTS

    ap = argparse.ArgumentParser(prog="python -m ebm_repro", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (fn, args) in COMMANDS.items():
        sp = sub.add_parser(name)
        commands.add_common(sp)
        for arg in args:
            sp.add_argument("--" + arg.replace("_", "-"), required=True)
        if name == "train":
            sp.add_argument("--feature-net", help="feature network for train.eval_every > 0")
            sp.add_argument("--stop-after", type=int, metavar="STEPS",
                            help="stop after this many more steps (resumable from the last multiple of "
                                 "train.ckpt_every); default: train to train.n_iters")
        if name == "import-checkpoint":
            from ebm_repro.authors import SOURCES
            sp.add_argument("--source", required=True, choices=sorted(SOURCES),
                            help="igebm_tf: IGEBM TF checkpoint prefix; icd_pth: ICD code model_<iter>.pth")
            sp.add_argument("--trust-pickle", action="store_true",
                            help="fully unpickle a .pth whose extra objects a weights-only load refuses "
                                 "(runs code from the file: only for files you trust)")
        sp.set_defaults(fn=fn)
    for exp in EXPERIMENTS.values():
        exp.add_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    from ebm_repro.data import DatasetError
    from ebm_repro.metrics import MetricsError

    try:
        a.fn(a)
    except (ValueError, ck.CheckpointError, DatasetError, MetricsError) as e:
        # a user-fixable problem (ConfigError is a ValueError): say what and how, without a traceback
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
