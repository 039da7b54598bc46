"""E15: ICD App. D.1, truncated Langevin backpropagation on MNIST: FID and time per iteration, last vs all steps.

`results/tables/truncation.md` for params.yaml `truncation.rows`; the seconds per iteration come from an
interleaved benchmark of both variants in one process (`time-truncation`), so both see the same machine load.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.checkpoint import atomic_write_text
from ebm_repro.config import _enum, _pos
from ebm_repro.report import fmt, paper_lookup
from ebm_repro.runs import (Run, check_variants, load_run, md_rows, metric_note, preset_switches, scored,
                            settings_note, write_run_provenance)

BLOCK = "truncation"


@dataclass(frozen=True)
class TruncationRow:
    variant: str
    label: str
    paper: str = _enum("last_step_only", "all_steps")   # its entry of improved_cd_2021/truncation_app_d1


@dataclass(frozen=True)
class TimingSteps:
    paper: int = _pos(minimum=1)
    smoke: int = _pos(minimum=1)


@dataclass(frozen=True)
class TruncationConfig:
    rows: tuple[TruncationRow, ...]
    timing_steps: TimingSteps       # timed iterations per variant in the interleaved benchmark


def schema() -> dict:
    return C.dataclass_schema(TruncationConfig)


def check(params: dict) -> None:
    for i, r in enumerate(params[BLOCK]["rows"]):
        C.check_variant(params, r["variant"], f"truncation.rows[{i}].variant")


def truncation_table(runs: list[Run], rows: list[dict], paper: dict, timing: dict, switches: list[str] = ()) -> str:
    """results/tables/truncation.md: FID and seconds per iteration, L_opt through the last vs all Langevin steps.

    `timing` comes from time_training_steps: {variant: {wall_median, cpu_median, n_steps, device}}.
    """
    from tabulate import tabulate

    by_kind = {row["paper"]: run for run, row in zip(runs, rows, strict=True)}
    for kind, run in by_kind.items():
        if run.hp["loss"]["kl_all_steps"] != (kind == "all_steps") or run.hp["loss"]["kl_opt_coeff"] <= 0:
            raise ValueError(f"variant {run.variant!r} (row {kind}) has loss.kl_all_steps="
                             f"{run.hp['loss']['kl_all_steps']}, kl_opt_coeff={run.hp['loss']['kl_opt_coeff']}")
    base = timing[by_kind["last_step_only"].variant] if "last_step_only" in by_kind else None
    body = []
    for run, row in zip(runs, rows):
        p, t = paper[row["paper"]], timing[run.variant]
        ratio = f"{t['wall_median'] / base['wall_median']:.2f}×" if base else "—"
        _, fid = scored(run)
        body.append([row["label"], fid, fmt(p["FID"]), fmt(t["wall_median"], 3), fmt(t["cpu_median"], 3), ratio,
                     p.get("relative_time", "1× (reference)"), fmt(run.summary.get("sec_per_iter"), 3),
                     run.summary["step"], run.hp["loss"]["kl_opt_chains"], run.hp["sampler"]["n_steps"],
                     t["device"], f"`{run.variant}`"])
    head = ["L_opt backprop through", "FID (this run)", "FID (paper)", "s / iteration (benchmark)",
            "CPU s / iteration (benchmark)", "time vs last step (this run)", "time (paper)",
            "s / iteration (training job)", "train steps", "L_KL chains", "Langevin steps", "device", "variant"]
    lines = [f"# Truncated Langevin backpropagation on MNIST (ICD App. D.1) ({runs[0].config['setting']} setting)",
             "", tabulate(md_rows(body), headers=head, tablefmt="github", disable_numparse=True), "", "## Notes", "",
             "- The two variants differ only in `loss.kl_all_steps`: L_opt (ICD Eq. 6) is backpropagated through "
             "the last Langevin step (the code's default) or through every step of the first `kl_opt_chains` chains.",
             f"- s / iteration (benchmark): median wall (and process CPU) time of one training iteration over "
             f"{next(iter(timing.values()))['n_steps']} iterations per variant, the two variants' iterations "
             f"interleaved in one process after a warm-up, so both see the same machine load; `time vs last step` is "
             f"the ratio of these medians. The training job's own mean (train_summary.json `sec_per_iter`, incl. log "
             f"steps) is shown too; on a shared machine it also reflects whatever else ran at the time.",
             "- Paper columns: ICD (2021) App. D.1 (`improved_cd_2021/truncation_app_d1`). Samples (paper Figs. 18/19): "
             "this run's `figures/samples_<variant>_single.png`."]
    return "\n".join(lines + settings_note(runs, switches) + metric_note(runs)) + "\n"


def time_training_steps(cfgs: list, data_dirs: list[Path], n_steps: int, device: str = "auto") -> dict:
    """Seconds per training iteration of each config, steps interleaved A, B, A, B, ... in one process.

    Separate training jobs on a shared machine see different loads; interleaving gives every config the same
    conditions, so the ratio (ICD App. D.1: "over 3 times slower") is measured fairly. Warm-up steps first fill
    the buffer past loss.ent_min_buffer so that L_ent is active, as in steady-state training.
    """
    import statistics
    import tempfile
    import time

    import torch

    from ebm_repro.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainers = [Trainer(c, Path(d), Path(tmp) / c.variant, device) for c, d in zip(cfgs, data_dirs, strict=True)]
        for t in trainers:
            for _ in range(t.hp.loss.ent_min_buffer // t.hp.train.batch_size + 2):
                t.train_step()
        wall = {t.cfg.variant: [] for t in trainers}
        cpu = {t.cfg.variant: [] for t in trainers}
        for _ in range(n_steps):
            for t in trainers:
                sync = torch.cuda.synchronize if t.dev.type == "cuda" else (lambda: None)
                sync()
                w0, c0 = time.perf_counter(), time.process_time()
                t.train_step()
                sync()
                wall[t.cfg.variant].append(time.perf_counter() - w0)
                cpu[t.cfg.variant].append(time.process_time() - c0)
        return {v: {"wall_median": statistics.median(wall[v]), "cpu_median": statistics.median(cpu[v]),
                    "n_steps": n_steps, "device": str(trainers[0].dev)} for v in wall}


def claims(params: dict, prefix: str) -> list:
    """ICD App. D.1: the two FIDs, "all steps is over 3 times slower" and "little degradation" with truncation."""
    from ebm_repro.claims import TOLERANCE, judged_claim, missing, number_claim

    setting, table = params["setting"], f"{prefix}results/tables/truncation.md"
    timing_path = f"{prefix}results/truncation/timing.json"
    paper = paper_lookup("improved_cd_2021/truncation_app_d1")
    out, fid, wall, whys = [], {}, {}, []
    for r in params[BLOCK]["rows"]:
        mpath = f"{prefix}results/metrics/{r['variant']}/single.json"
        why = missing(table, mpath, timing_path)
        m = None if why else json.loads(Path(mpath).read_text())
        if m is not None and m.get("FID") is None:
            why, m = f"{r['variant']} diverged at step {m['diverged']['step']} before a usable checkpoint", None
        fid[r["paper"]] = m and m["FID"]
        wall[r["paper"]] = None if why else json.loads(Path(timing_path).read_text())[r["variant"]]["wall_median"]
        whys.append(why)
        out.append(number_claim(f"improved_cd_2021/truncation_app_d1/{r['paper']}/FID",
                                f"MNIST FID, L_opt backpropagated through {r['label']}", "ICD App. D.1",
                                paper[r["paper"]]["FID"], fid[r["paper"]], "FID", table, setting, why))
    why = next((w for w in whys if w), None)
    if not why and set(fid) != {"last_step_only", "all_steps"}:
        why = "params.yaml truncation.rows lacks a last_step_only or an all_steps row"
    ratio = None if why else wall["all_steps"] / wall["last_step_only"]
    out.append(judged_claim("improved_cd_2021/truncation_app_d1/all_steps/relative_time",
                            "backpropagation through all steps of sampling is over 3 times slower to train",
                            "ICD App. D.1", paper["all_steps"]["relative_time"],
                            None if why else f"{ratio:.2f}x (interleaved benchmark, median s/iteration)",
                            "s/iteration(all steps) / s/iteration(last step) > 3", None if why else ratio > 3,
                            table, setting, why))
    tol = TOLERANCE["FID"]
    diff = None if why else fid["last_step_only"] - fid["all_steps"]
    out.append(judged_claim("qualitative/truncation/little_degradation",
                            "we find little degradation in performance with the truncation of backpropagation",
                            "ICD App. D.1",
                            f"FID(last) - FID(all) = {paper['last_step_only']['FID'] - paper['all_steps']['FID']:.2f}",
                            None if why else f"FID(last) - FID(all) = {diff:.2f}",
                            f"FID(last step) <= FID(all steps) + {tol:g} (the FID tolerance)",
                            None if why else diff <= tol, table, setting, why))
    return out


def cmd_time_truncation(a) -> None:
    """Interleaved per-iteration timing of the truncation variants -> JSON (input of table-truncation)."""
    import torch

    p = commands.load(a)
    torch.set_num_threads(a.threads)
    variants = [r["variant"] for r in p[BLOCK]["rows"]]
    cfgs = [C.resolve(p, v) for v in variants]
    if len(a.data_dirs) != len(cfgs):
        sys.exit(f"error: {len(a.data_dirs)} data dirs for {len(cfgs)} truncation rows")
    n = p[BLOCK]["timing_steps"][p["setting"]]
    timing = time_training_steps(cfgs, [Path(d) for d in a.data_dirs], n, a.device)
    timing = {v: {**t, "training_hash": c.training_hash(), "threads": a.threads} for (v, t), c in
              zip(timing.items(), cfgs)}
    atomic_write_text(Path(a.out), json.dumps(timing, indent=1) + "\n")
    print(json.dumps(timing, indent=1))


def cmd_table_truncation(a) -> None:
    p = commands.load(a)
    rows = p[BLOCK]["rows"]
    if len(a.metrics) != len(a.train_dirs):
        raise SystemExit(f"error: {len(a.train_dirs)} train dirs but {len(a.metrics)} metric files")
    runs = [load_run(Path(d), Path(m)) for d, m in zip(a.train_dirs, a.metrics)]
    check_variants(runs, rows, "table-truncation")
    timing = json.loads(Path(a.timing).read_text())
    stale = [r.variant for r in runs if timing.get(r.variant, {}).get("training_hash") != r.summary.get("training_hash")]
    if stale:  # the benchmark must time the configs that were trained
        raise ValueError(f"{a.timing} was measured for other configs of {stale}; rerun time-truncation")
    switches = sorted({k for r in runs for k in preset_switches(p, r.config["recipe"])})
    out = Path(a.out)
    atomic_write_text(out, truncation_table(runs, rows, paper_lookup("improved_cd_2021/truncation_app_d1"), timing,
                                            switches))
    write_run_provenance(a, out, runs, {"timing": timing}, [Path(a.timing)])
    print(f"wrote {out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("time-truncation", help="interleaved s/iteration of the truncation variants -> JSON")
    commands.add_common(p)
    p.add_argument("--data-dirs", nargs="+", required=True, help="dataset folder per truncation row")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_time_truncation)
    p = sub.add_parser("table-truncation", help="results/tables/truncation.md (ICD App. D.1)")
    commands.add_common(p)
    commands.add_run_args(p, metrics=True)
    p.add_argument("--timing", required=True, help="JSON written by time-truncation")
    p.set_defaults(fn=cmd_table_truncation)
