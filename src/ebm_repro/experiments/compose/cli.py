"""E11 commands: `python -m ebm_repro compose-{train,regressor,sample,evaluate} --setting paper|smoke ...`."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ebm_repro import commands
from ebm_repro.experiments.compose.config import ATTRIBUTES, ComposeConfig, compose_config


def _config(args) -> ComposeConfig:
    import torch

    p = commands.load(args)
    args.setting = p["setting"]
    torch.set_num_threads(args.threads)
    return compose_config(p, p["setting"])


def cmd_train(args) -> None:
    from ebm_repro.experiments.compose.train import train_attribute
    from ebm_repro.runtime import pick_device

    cfg = _config(args)
    s = train_attribute(cfg, args.attribute, Path(args.data), Path(args.out),
                        Path(args.ckpt) if args.ckpt else None, pick_device(args.device),
                        log=lambda m: print(m, flush=True))
    print(json.dumps(s, indent=1))


def cmd_regressor(args) -> None:
    from ebm_repro.experiments.compose.regressor import save_regressor, train_regressor
    from ebm_repro.runtime import pick_device

    cfg = _config(args)
    model, info = train_regressor(cfg, Path(args.data), pick_device(args.device), log=lambda m: print(m, flush=True))
    save_regressor(Path(args.out), model.cpu(), cfg, info)
    print(json.dumps(info, indent=1))


def cmd_sample(args) -> None:
    from ebm_repro.experiments.compose.sample import save_samples, sample_all
    from ebm_repro.experiments.compose.train import load_attribute_model
    from ebm_repro.report import write_provenance
    from ebm_repro.runtime import pick_device

    cfg = _config(args)
    if len(args.models) != len(ATTRIBUTES):
        raise SystemExit(f"error: --models takes the {len(ATTRIBUTES)} model files in the order {ATTRIBUTES}")
    dev, t0 = pick_device(args.device), time.perf_counter()
    models = {a: load_attribute_model(Path(p), cfg, a, dev) for a, p in zip(ATTRIBUTES, args.models)}
    arrays = sample_all(cfg, models, Path(args.data), dev, log=lambda m: print(m, flush=True))
    meta = {"setting": args.setting, "rows": [list(r.models) for r in cfg.rows], "mode": cfg.joint.mode,
            "hash": cfg.section_hash("joint", "rows", "eval", "chain_init", "held_out"),
            "training_hashes": {a: cfg.train_hash(a) for a in ATTRIBUTES}, "seconds": time.perf_counter() - t0}
    save_samples(Path(args.out), arrays, meta)
    write_provenance(Path(args.out), [Path(p) for p in args.models] + [Path(args.params)], meta)
    print(f"wrote {args.out} in {meta['seconds']:.1f}s")


def cmd_evaluate(args) -> None:
    from ebm_repro.checkpoint import atomic_write_text
    from ebm_repro.experiments.compose import report
    from ebm_repro.experiments.compose.regressor import load_regressor
    from ebm_repro.experiments.compose.sample import load_samples
    from ebm_repro.report import write_provenance

    cfg = _config(args)
    arrays, meta = load_samples(Path(args.samples))
    want = cfg.section_hash("joint", "rows", "eval", "chain_init", "held_out")
    if meta["hash"] != want or meta["training_hashes"] != {a: cfg.train_hash(a) for a in ATTRIBUTES}:
        raise SystemExit(f"error: {args.samples} was sampled under another compose config; rerun compose-sample")
    regressor, info = load_regressor(Path(args.regressor), cfg)
    results = report.evaluate(arrays, meta, regressor, seed=cfg.eval.seed)
    out_png = Path(args.figure)
    atomic_write_text(Path(args.table), report.table(results, cfg, meta, info))
    report.figure(arrays, meta, cfg, out_png)
    report.write_json(Path(args.summary), report.summary(results, cfg, meta, info))
    inputs = [Path(args.samples), Path(args.regressor), Path(args.params)]
    for path in (Path(args.table), out_png, out_png.with_suffix(".pdf"), Path(args.summary)):
        write_provenance(path, inputs, {"setting": args.setting, "experiment": "compose", "mode": cfg.joint.mode,
                                        "config_hash": cfg.section_hash("joint", "rows", "eval", "claims")})
    print(f"wrote {args.table}, {out_png} (+ .pdf), {args.summary}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compose-train", help="E11: train one conditional dSprites EBM (scale|position|rotation|shape)")
    commands.add_common(p)
    p.add_argument("--attribute", required=True, choices=ATTRIBUTES)
    p.add_argument("--data", required=True, help="prepared dSprites folder (train.npz)")
    p.add_argument("--out", required=True, help="model file")
    p.add_argument("--ckpt", default=None, help="resumable checkpoint (written every compose.train.ckpt_every)")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("compose-regressor", help="E11: train the latent regressor on the real dSprites split")
    commands.add_common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_regressor)
    p = sub.add_parser("compose-sample", help="E11: joint Langevin sampling of every composition in compose.rows")
    commands.add_common(p)
    p.add_argument("--data", required=True, help="prepared dSprites folder (test.npz: the target latents)")
    p.add_argument("--models", nargs="+", required=True, help=f"model files in the order {' '.join(ATTRIBUTES)}")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_sample)
    p = sub.add_parser("compose-evaluate", help="E11: results/tables/compose.md, figures/dsprites_compose.*")
    commands.add_common(p)
    p.add_argument("--samples", required=True)
    p.add_argument("--regressor", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--figure", required=True, help="PNG path; the PDF is written beside it")
    p.add_argument("--summary", required=True)
    p.set_defaults(fn=cmd_evaluate)
