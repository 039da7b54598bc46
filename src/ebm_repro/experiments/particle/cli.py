"""E10 commands: `python -m ebm_repro particle-{simulate,train,evaluate,diagnose,report} --setting paper|smoke ...`."""
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
from ebm_repro.experiments.particle.config import ALL_KINDS, ParticleConfig, particle_config
from ebm_repro.report import write_provenance


def _config(args) -> ParticleConfig:
    p = commands.load(args)
    args.setting = p["setting"]  # the tables and provenance name the setting that ran
    return particle_config(p, p["setting"])


def _load_models(paths: list[str]) -> list[tuple[str, dict]]:
    """Every checkpoint, read as data only, before any work starts."""
    fix = "delete it and rerun the particle train step"
    return [(p, load_data(Path(p), "particle model", f"ebm-repro's particle models always load as data, "
                                                     f"so this one was not written by it: {fix}.", fix))
            for p in paths]


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
    t0, c0 = time.perf_counter(), time.process_time()
    model, history, summary = train(args.model, cfg, data["train"], args.seed, log=lambda s: print(s, flush=True))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    # Plain tensors, numbers and strings only: loadable with torch.load(weights_only=True).
    save(Path(args.out), {"kind": args.model, "seed": args.seed, "state_dict": model.state_dict(),
                          "config": dataclasses.asdict(cfg), "train_hash": cfg.train_hash(args.model),
                          "seconds": seconds, "cpu_seconds": cpu, **summary})
    atomic_write_text(Path(args.history), json.dumps({"kind": args.model, "seed": args.seed, "seconds": seconds,
                                                      "cpu_seconds": cpu, **summary, "history": history},
                                                     indent=1) + "\n")
    print(f"trained {args.model} seed {args.seed}: {summary['iters']} iterations ({summary['stopped']}), best "
          f"{summary['best_iter']}, {seconds:.1f}s wall / {cpu:.1f}s CPU -> {args.out}")


def cmd_evaluate(args) -> None:
    from ebm_repro.experiments.particle.evaluate import rollout_predictions, rollout_targets, start_times
    from ebm_repro.experiments.particle.models import build_model
    from ebm_repro.experiments.particle.simulate import load_dataset

    cfg = _config(args)
    ckpts = _load_models(args.ckpts)
    data, _ = load_dataset(Path(args.data))
    target = rollout_targets(data["test"], cfg).astype(np.float64)  # (N, n_starts, H, 2)
    mses, preds, seeds = [], [], []
    for path, ck in ckpts:
        if not isinstance(ck, dict) or (ck.get("kind"), ck.get("train_hash")) != (args.model, cfg.train_hash(args.model)):
            raise ConfigError(f"{path} is not a {args.model} model trained with the current params; retrain it")
        model = build_model(args.model, cfg.net_for(args.model), cfg.physics.box_size)
        model.load_state_dict(ck["state_dict"])
        t0 = time.perf_counter()
        preds.append(rollout_predictions(args.model, model, data["test"], cfg))  # (N, n_starts, H, 2)
        mses.append(((preds[-1] - target) ** 2).mean(-1))  # (N, n_starts, H)
        seeds.append(ck["seed"])
        print(f"{args.model} seed {ck['seed']}: 1-step MSE {mses[-1][..., 0].mean():.3e}, "
              f"{cfg.eval.horizon}-step {mses[-1][..., -1].mean():.3e} ({time.perf_counter() - t0:.1f}s)")
    atomic_write(Path(args.out), lambda f: np.savez_compressed(
        f, mse=np.stack(mses), pred=np.stack(preds), seeds=np.array(seeds), kind=np.array(args.model),
        starts=start_times(data["test"].shape[1], cfg.eval.horizon, cfg.eval.n_starts)))


def cmd_diagnose(args) -> None:
    from ebm_repro.experiments.particle import diagnose as D
    from ebm_repro.experiments.particle.models import build_model
    from ebm_repro.experiments.particle.simulate import load_dataset

    cfg = _config(args)
    test = load_dataset(Path(args.data))[0]["test"]
    preds, stats, probes = {}, {}, {}
    for path in args.rollouts:
        with np.load(path) as z:
            kind = str(z["kind"])
            preds[kind] = z["pred"]  # (S, N, n_starts, H, 2)
        stats[kind] = D.rollout_stats(preds[kind], test, cfg)
    free = D.probe_windows(test, cfg.eval.probe_windows, cfg.eval.seed, bounce=False)
    bounce = D.probe_windows(test, cfg.eval.probe_windows, cfg.eval.seed, bounce=True)
    steps = {}
    for path, ck in _load_models(args.ckpts):
        kind = ck.get("kind") if isinstance(ck, dict) else None
        if kind not in ALL_KINDS or ck.get("train_hash") != cfg.train_hash(kind):
            raise ConfigError(f"{path} is not a {kind} model trained with the current params; retrain it")
        model = build_model(kind, cfg.net_for(kind), cfg.physics.box_size)
        model.load_state_dict(ck["state_dict"])
        steps[kind] = D.one_step_errors(kind, model, free, bounce, cfg)
        if D.is_energy(kind):
            probes[kind] = D.energy_probe(model, *free, cfg.physics.box_size)
        print(f"{kind} seed {ck['seed']}: {steps[kind]}")
    order = lambda d: {k: d[k] for k in ALL_KINDS if k in d}  # noqa: E731
    preds, stats, probes, steps = order(preds), order(stats), order(probes), order(steps)
    D.write_figure(preds, stats, probes, test, cfg, args.setting, Path(args.figure_png), Path(args.figure_pdf))
    out = {"rollouts": stats, "one_step": steps, "probes": probes, "langevin_temperature": D.langevin_temperature(cfg)}
    atomic_write_text(Path(args.out), json.dumps(out) + "\n")
    inputs = [Path(p) for p in (*args.rollouts, *args.ckpts, args.data, args.params)]
    for o in (args.out, args.figure_png, args.figure_pdf):
        write_provenance(Path(o), inputs, {"setting": args.setting, "experiment": "E10", "config_hash": _hash(cfg)})


def _hash(cfg: ParticleConfig) -> str:
    """Hash of every section but `threads` (provenance of the report and diagnosis outputs)."""
    return cfg.section_hash(*(f.name for f in dataclasses.fields(cfg) if f.name != "threads"))


def cmd_report(args) -> None:
    from ebm_repro.experiments.particle.report import baseline_curves, load_rollouts, write_figure, write_summary, write_table
    from ebm_repro.experiments.particle.simulate import load_dataset

    cfg = _config(args)
    runs = load_rollouts([Path(p) for p in args.rollouts])
    refs = baseline_curves(load_dataset(Path(args.data))[0]["test"], cfg)
    train_runs = [json.loads(Path(p).read_text()) for p in args.histories]
    diag = json.loads(Path(args.diagnosis).read_text()) if args.diagnosis else None
    write_table(runs, refs, cfg, args.setting, Path(args.table), train_runs, diag)
    write_figure(runs, refs, cfg, args.setting, Path(args.figure_png), Path(args.figure_pdf))
    write_summary(runs, refs, Path(args.summary))
    inputs = [Path(p) for p in (*args.rollouts, *args.histories, *([args.diagnosis] if args.diagnosis else []),
                                args.data, args.params)]
    for out in (args.table, args.figure_png, args.figure_pdf, args.summary):
        write_provenance(Path(out), inputs, {"setting": args.setting, "experiment": "E10", "config_hash": _hash(cfg)})
    print(Path(args.table).read_text())


def add_commands(sub: argparse._SubParsersAction) -> None:
    """particle-simulate, particle-train, particle-evaluate, particle-diagnose, particle-report."""
    cmds = {}
    for name, fn in [("simulate", cmd_simulate), ("train", cmd_train), ("evaluate", cmd_evaluate),
                     ("diagnose", cmd_diagnose), ("report", cmd_report)]:
        p = sub.add_parser(f"particle-{name}", help=f"E10 {name}")
        commands.add_common(p)
        p.set_defaults(fn=fn)
        cmds[name] = p
    cmds["simulate"].add_argument("--out", required=True)
    for name in ("train", "evaluate"):
        p = cmds[name]
        p.add_argument("--model", choices=ALL_KINDS, required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--out", required=True)
    cmds["train"].add_argument("--seed", type=int, required=True)
    cmds["train"].add_argument("--history", required=True)
    cmds["evaluate"].add_argument("--ckpts", nargs="+", required=True)
    dp = cmds["diagnose"]
    dp.add_argument("--data", required=True)
    dp.add_argument("--rollouts", nargs="+", required=True, help="evaluate outputs, one per model kind")
    dp.add_argument("--ckpts", nargs="+", required=True, help="one checkpoint per model kind (seed 0), for the probes")
    for opt in ("--out", "--figure-png", "--figure-pdf"):
        dp.add_argument(opt, required=True)
    rp = cmds["report"]
    rp.add_argument("--rollouts", nargs="+", required=True)
    rp.add_argument("--data", required=True, help="trajectories, for the learning-free reference rows")
    rp.add_argument("--histories", nargs="*", default=[], help="train outputs (.json): the footer's training lines")
    rp.add_argument("--diagnosis", help="diagnose output (.json): the footer's diagnosis")
    for opt in ("--table", "--figure-png", "--figure-pdf", "--summary"):
        rp.add_argument(opt, required=True)
