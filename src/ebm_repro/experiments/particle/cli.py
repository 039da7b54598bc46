"""E10 commands: `python -m ebm_repro particle-{simulate,train,evaluate,report} --setting paper|smoke ...`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ebm_repro import commands
from ebm_repro.checkpoint import atomic_write, atomic_write_text, load_data, save
from ebm_repro.config import ConfigError
from ebm_repro.experiments.particle.config import MODELS, ParticleConfig, particle_config


def _config(args) -> ParticleConfig:
    p = commands.load(args)
    args.setting = p["setting"]  # the tables and provenance name the setting that ran
    return particle_config(p, p["setting"])


def cmd_simulate(args) -> None:
    from ebm_repro.experiments.particle.simulate import make_dataset, save_dataset

    cfg = _config(args)
    t0 = time.perf_counter()
    arrays = make_dataset(cfg.physics, cfg.data)
    meta = {"setting": args.setting, "physics": dataclasses.asdict(cfg.physics),
            "data": dataclasses.asdict(cfg.data), "hash": cfg.section_hash("physics", "data")}
    save_dataset(Path(args.out), arrays, meta)
    print(f"simulated train {arrays['train'].shape} test {arrays['test'].shape} "
          f"in {time.perf_counter() - t0:.1f}s -> {args.out}")


def cmd_train(args) -> None:
    from ebm_repro.experiments.particle.simulate import load_dataset
    from ebm_repro.experiments.particle.train import train

    cfg = _config(args)
    data, meta = load_dataset(Path(args.data))
    if meta["hash"] != cfg.section_hash("physics", "data"):
        raise ConfigError(f"{args.data} was simulated with other physics/data params; re-run simulate")
    t0 = time.perf_counter()
    model, history = train(args.model, cfg, data["train"], args.seed, log=lambda s: print(s, flush=True))
    seconds = time.perf_counter() - t0
    save(Path(args.out), {"kind": args.model, "seed": args.seed, "state_dict": model.state_dict(),
                          "config": dataclasses.asdict(cfg), "train_hash": cfg.train_hash(args.model),
                          "seconds": seconds})
    atomic_write_text(Path(args.history), json.dumps({"kind": args.model, "seed": args.seed, "seconds": seconds,
                                                      "history": history}, indent=1) + "\n")
    print(f"trained {args.model} seed {args.seed} in {seconds:.1f}s -> {args.out}")


def cmd_evaluate(args) -> None:
    from ebm_repro.experiments.particle.evaluate import rollout_mse, start_times
    from ebm_repro.experiments.particle.models import build_model
    from ebm_repro.experiments.particle.simulate import load_dataset

    cfg = _config(args)
    fix = "delete it and rerun the particle train step"
    ckpts = [(path, load_data(Path(path), "particle model", f"ebm-repro's particle models always load as data, "
                                                             f"so this one was not written by it: {fix}.", fix))
             for path in args.ckpts]  # all read (as data only) before the dataset
    data, _ = load_dataset(Path(args.data))
    mses, seeds = [], []
    for path, ck in ckpts:
        want = (args.model, cfg.train_hash(args.model))
        if not isinstance(ck, dict) or (ck.get("kind"), ck.get("train_hash")) != want:
            raise ConfigError(f"{path} is not a {args.model} model trained with the current params; retrain it")
        model = build_model(args.model, cfg.net, cfg.physics.box_size)
        model.load_state_dict(ck["state_dict"])
        t0 = time.perf_counter()
        mses.append(rollout_mse(args.model, model, data["test"], cfg))  # (N, n_starts, H)
        seeds.append(ck["seed"])
        print(f"{args.model} seed {ck['seed']}: 1-step MSE {mses[-1][..., 0].mean():.3e}, "
              f"{cfg.eval.horizon}-step {mses[-1][..., -1].mean():.3e} ({time.perf_counter() - t0:.1f}s)")
    atomic_write(Path(args.out), lambda f: np.savez_compressed(
        f, mse=np.stack(mses), seeds=np.array(seeds), kind=np.array(args.model),
        starts=start_times(data["test"].shape[1], cfg.eval.horizon, cfg.eval.n_starts)))


def cmd_report(args) -> None:
    from ebm_repro.experiments.particle.report import baseline_curves, load_rollouts, write_figure, write_summary, write_table
    from ebm_repro.experiments.particle.simulate import load_dataset
    from ebm_repro.report import write_provenance

    cfg = _config(args)
    runs = load_rollouts([Path(p) for p in args.rollouts])
    refs = baseline_curves(load_dataset(Path(args.data))[0]["test"], cfg)
    write_table(runs, refs, cfg, args.setting, Path(args.table))
    write_figure(runs, refs, cfg, args.setting, Path(args.figure_png), Path(args.figure_pdf))
    write_summary(runs, refs, Path(args.summary))
    inputs = [Path(p) for p in (*args.rollouts, args.data, args.params)]
    for out in (args.table, args.figure_png, args.figure_pdf, args.summary):
        write_provenance(Path(out), inputs, {"setting": args.setting, "experiment": "E10",
                                             "config_hash": cfg.section_hash(*(f.name for f in dataclasses.fields(cfg) if f.name != "threads"))})
    print(Path(args.table).read_text())


def add_commands(sub: argparse._SubParsersAction) -> None:
    """particle-simulate, particle-train, particle-evaluate, particle-report."""
    cmds = {}
    for name, fn in [("simulate", cmd_simulate), ("train", cmd_train), ("evaluate", cmd_evaluate),
                     ("report", cmd_report)]:
        p = sub.add_parser(f"particle-{name}", help=f"E10 {name}")
        commands.add_common(p)
        p.set_defaults(fn=fn)
        cmds[name] = p
    cmds["simulate"].add_argument("--out", required=True)
    for name in ("train", "evaluate"):
        p = cmds[name]
        p.add_argument("--model", choices=MODELS, required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--out", required=True)
    cmds["train"].add_argument("--seed", type=int, required=True)
    cmds["train"].add_argument("--history", required=True)
    cmds["evaluate"].add_argument("--ckpts", nargs="+", required=True)
    rp = cmds["report"]
    rp.add_argument("--rollouts", nargs="+", required=True)
    rp.add_argument("--data", required=True, help="trajectories, for the learning-free reference rows")
    for opt in ("--table", "--figure-png", "--figure-pdf", "--summary"):
        rp.add_argument(opt, required=True)
