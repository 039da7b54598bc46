"""Command-line entry points; Snakemake rules and DVC stages call exactly these (`python -m ebm_repro.cli`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ebm_repro import checkpoint as ck
from ebm_repro import config as C


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params.yaml to use (relative to the working dir)")
    p.add_argument("--setting", choices=("paper", "smoke"), help="override params.yaml `setting`")
    p.add_argument("--preset", choices=("code", "paper_text"), help="override params.yaml `preset`")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (Snakemake passes {threads})")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def _params(a) -> dict:
    params = C.load_params(a.params)
    if a.setting:
        params["setting"] = a.setting
    if a.preset:
        params["preset"] = a.preset
    return params


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
    summary = train(cfg, Path(a.data), Path(a.out), device=a.device,
                    feature_net=Path(a.feature_net) if a.feature_net else None)
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
        print(f"variant {a.variant} diverged ({div['reason']}) before any checkpoint usable for mode {a.mode}; "
              f"writing no samples")
        images = np.zeros((0, cfg.hp.model.image_size, cfg.hp.model.image_size, cfg.hp.model.channels), np.uint8)
        labels = np.zeros((0,), np.int64)
    else:
        if div:
            print(f"variant {a.variant} diverged ({div['reason']}); sampling its {scored}")
        images, labels = generate(cfg, Path(a.model), a.mode, n, device=a.device, seed=cfg.hp.train.seed)
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
    from ebm_repro.train import pick_device
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


def cmd_metrics_baselines(a) -> None:
    """IS/FID of real test images and of uniform noise under this setting's scoring: the scale of every row."""
    from ebm_repro.data import load_split, reference_images
    from ebm_repro.metrics import compute_inception_metrics

    p = _params(a)
    mc = C._build(C.MetricsConfig, p["settings"][p["setting"]]["metrics"])
    test, _ = load_split(Path(a.data) / "test.npz")
    ref = reference_images(Path(a.data), "train")
    n = min(mc.n_samples, len(test))
    noise = np.random.default_rng(0).integers(0, 256, (mc.n_samples, *test.shape[1:]), dtype=np.uint8)
    kw = dict(n_splits=mc.n_splits, batch_size=mc.batch_size, device=str(_device(a.device)), kid=False)
    out = {"real_test": {"what": f"the first {n} test images", **compute_inception_metrics(
               test[:n], ref, mc.feature_net, Path(a.feature_net), **kw)},
           "uniform_noise": {"what": f"{mc.n_samples} images of uniform noise (seed 0)", **compute_inception_metrics(
               noise, ref, mc.feature_net, Path(a.feature_net), **kw)},
           "fid_reference": "train", "setting": p["setting"]}
    ck.atomic_write_text(Path(a.out), json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: {m: v[m] for m in ("IS_mean", "FID")} for k, v in out.items() if isinstance(v, dict)}))


def cmd_table_inception(a) -> None:
    from ebm_repro.report import authors_footer, inception_table, with_authors_rows, write_provenance

    p = _params(a)
    metrics = [json.loads(Path(m).read_text()) for m in a.metrics]
    rows = p["inception_rows"]
    if len(metrics) != len(rows):
        raise SystemExit(f"got {len(metrics)} metric files for {len(rows)} inception_rows")
    authors = [json.loads(Path(m).read_text()) for m in a.authors_metrics]
    entries = p.get("authors_checkpoints", [])
    all_metrics, all_rows = with_authors_rows(metrics, rows, authors, entries)
    unfit = {}  # entries whose file the current preset's net cannot take (e.g. paper_text's Fig. 15b net)
    for e in entries:
        arch = C.resolve(p, e["variant"]).hp.model.arch
        if arch not in C.AUTHORS_SOURCE_ARCHS[e["source"]]:
            unfit[e["variant"]] = f"preset {p['preset']} builds arch {arch}, which {e['source']} files do not fill"
    baselines = json.loads(Path(a.baselines).read_text())
    table = inception_table(all_metrics, all_rows, baselines) + authors_footer(
        authors, entries, p["settings"][p["setting"]]["prefix"], unfit)
    ck.atomic_write_text(Path(a.out), table)
    write_provenance(Path(a.out), [Path(m) for m in a.metrics + a.authors_metrics]
                     + [Path(a.baselines), Path(a.params)],
                     {"setting": p["setting"], "preset": p["preset"],
                      "dataset_checksums": json.loads(Path(a.data_checksums).read_text()),
                      "config_hashes": {m["variant"] + "/" + m["mode"]: m["config_hash"] for m in metrics},
                      "train_steps": {m["variant"]: m["train_step"] for m in metrics},
                      "authors_checkpoints": {m["variant"] + "/" + m["mode"]: m["imported"] for m in authors}})
    print(f"wrote {a.out}")


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
    "metrics-baselines": (cmd_metrics_baselines, ["data", "feature_net", "out"]),
    "table-inception": (cmd_table_inception, ["data_checksums", "baselines", "out"]),
    "import-checkpoint": (cmd_import_checkpoint, ["variant", "path", "out"]),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ebm_repro.cli", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (fn, args) in COMMANDS.items():
        sp = sub.add_parser(name)
        _common(sp)
        for arg in args:
            sp.add_argument("--" + arg.replace("_", "-"), required=True)
        if name == "train":
            sp.add_argument("--feature-net", help="feature network for train.eval_every > 0")
        if name == "table-inception":
            sp.add_argument("--metrics", nargs="+", required=True)
            sp.add_argument("--authors-metrics", nargs="*", default=[],
                            help="metrics of imported authors' checkpoints (params.yaml authors_checkpoints)")
        if name == "import-checkpoint":
            from ebm_repro.authors import SOURCES
            sp.add_argument("--source", required=True, choices=sorted(SOURCES),
                            help="igebm_tf: IGEBM TF checkpoint prefix; icd_pth: ICD code model_<iter>.pth")
            sp.add_argument("--trust-pickle", action="store_true",
                            help="fully unpickle a .pth whose extra objects a weights-only load refuses "
                                 "(runs code from the file: only for files you trust)")
        sp.set_defaults(fn=fn)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ebm_repro.data import DatasetError
    from ebm_repro.metrics import MetricsError

    try:
        a.fn(a)
    except (C.ConfigError, ck.CheckpointError, DatasetError, MetricsError) as e:
        # a user-fixable problem: say what and how, without a traceback
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
