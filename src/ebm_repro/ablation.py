"""E3 / E4 / E14 / E15 outputs (ICD Tab. 2, Fig. 8, Fig. 13, App. D.1) from the runs' train logs and metrics.

    python -m ebm_repro.ablation table-ablation --setting smoke --train-dirs D1 .. D5 --metrics M1 .. M5 --out T
    python -m ebm_repro.ablation plot-stability --setting smoke --train-dirs D1 .. D4 --out F.png
    python -m ebm_repro.ablation plot-kl-grad --setting smoke --train-dirs D --out F.png
    python -m ebm_repro.ablation time-truncation --setting smoke --data-dirs DATA1 DATA2 --out timing.json
    python -m ebm_repro.ablation table-truncation --setting smoke --train-dirs D1 D2 --metrics M1 M2 \\
        --timing timing.json --out T
Which variants feed which output is params.yaml `ablation:`; every number sits beside the paper's.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ebm_repro.checkpoint import atomic_write, atomic_write_text
from ebm_repro.report import fmt, sampling_text, score_cells, scoring_text

FACTORS = (("kl_opt", "L_opt"), ("kl_ent", "L_ent"), ("data_aug", "Data aug"), ("multiscale", "Multiscale"))


# ----------------------------------------------------------------------------- inputs
@dataclass
class Run:
    """One trained variant: resolved config (config.yaml), logged rows (train_log.csv), summary, metrics."""
    variant: str
    config: dict
    rows: list[dict]
    summary: dict
    metrics: dict | None = None

    @property
    def hp(self) -> dict:
        return self.config["hp"]

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the logged rows that hold `key` (eval_IS only exists on evaluation steps)."""
        pts = [(int(r["step"]), r[key]) for r in self.rows if r.get(key) is not None]
        return [s for s, _ in pts], [v for _, v in pts]


def read_log(path: Path) -> list[dict]:
    """train_log.csv -> rows of floats; an empty cell (a key logged on other steps only) becomes None."""
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


def load_run(train_dir: Path, metrics_path: Path | None = None) -> Run:
    d = Path(train_dir)
    config = yaml.safe_load((d / "config.yaml").read_text())
    metrics = json.loads(Path(metrics_path).read_text()) if metrics_path else None
    return Run(variant=config["variant"], config=config, rows=read_log(d / "train_log.csv"),
               summary=json.loads((d / "train_summary.json").read_text()), metrics=metrics)


def uses_kl(hp: dict) -> bool:
    return hp["loss"]["kl_opt_coeff"] > 0 or hp["loss"]["kl_ent_coeff"] > 0


# ----------------------------------------------------------------------------- stability rule
@dataclass(frozen=True)
class Verdict:
    stable: bool
    text: str


def stability_rule(gap_bound: float, late_frac: float) -> str:
    """The rule in words, for table footers and figure captions."""
    return (f"**Stability rule** (ICD §3.1 / Fig. 8: stable training keeps E(x+) - E(x-) near 0). A run is *stable* "
            f"iff it finished all its iterations (no NaN, no abort at |mean E(x+)| > train.max_abs_energy) and "
            f"|E(x+) - E(x-)| <= {gap_bound:g} at every logged step of the last {late_frac:.0%} of training "
            f"(batch means at log steps). With the L2 coefficient 1 used here, L_CD + L2 is minimised by fully "
            f"separated energies E(x+) = -0.5, E(x-) = +0.5, i.e. |gap| = 1: a gap past {gap_bound:g} means the "
            f"negatives no longer reach the data's energy, the divergence of Fig. 8.")


def stability_verdict(run: Run, gap_bound: float, late_frac: float) -> Verdict:
    """Stable iff not aborted and max |gap| over the late logged steps <= gap_bound (see stability_rule)."""
    div = run.summary.get("diverged")
    if div:
        return Verdict(False, f"diverged: aborted at step {div['step']} ({div['reason'].split(' at step')[0]})")
    steps, gaps = run.series("gap")
    if not steps:
        raise ValueError(f"{run.variant}: train_log.csv has no logged gap; cannot judge stability")
    n_iters = run.hp["train"]["n_iters"]
    late = [(s, g) for s, g in zip(steps, gaps) if s > (1 - late_frac) * n_iters] or [(steps[-1], gaps[-1])]
    if not all(math.isfinite(g) for _, g in late):
        return Verdict(False, "diverged: non-finite energy gap")
    worst = max(abs(g) for _, g in late)
    span = f"steps {late[0][0]}-{late[-1][0]}"
    if worst <= gap_bound:
        return Verdict(True, f"stable: max abs gap {worst:.3g} <= {gap_bound:g} ({span})")
    return Verdict(False, f"unstable: max abs gap {worst:.3g} > {gap_bound:g} ({span})")


# ----------------------------------------------------------------------------- shared table parts
def _md_rows(body: list[list]) -> list[list[str]]:
    """Table cells as text with "|" escaped (an abort reason like "|mean E(x+)| > 10" would split a cell)."""
    return [[str(c).replace("|", "\\|") for c in row] for row in body]


def _scored(run: Run) -> tuple[str, str]:
    """IS and FID cells of a run's metrics (a diverged run: what was scored instead, or nothing)."""
    return score_cells(run.metrics or {})


def metric_note(runs: list[Run]) -> list[str]:
    """Footer lines on what IS/FID mean here (smoke classifier vs Inception-v3)."""
    m = next((r.metrics for r in runs if r.metrics and r.metrics.get("IS_mean") is not None), None)
    if m is None:
        return ["- No run was scored (all diverged before a usable checkpoint)."]
    datasets = sorted({r.config["dataset"] for r in runs})
    if m["feature_net"] == "smoke_classifier":
        return [f"- **Smoke setting: these are NOT Inception scores.** IS/FID use the smoke feature classifier "
                f"trained by this run on the `shapes` data (weights sha256 `{m['weights_sha256'][:16]}…`; inputs "
                f"resized to its 32x32 and grey copied to RGB). The numbers only show that the DAG runs end to end; "
                f"do not compare them with the paper columns.",
                f"- {m['n_samples']} samples per row, IS over {m['n_splits']} splits; FID against "
                f"{m['n_reference']} {m['fid_reference']} images of {', '.join(datasets)}."]
    gray = any(r.hp["model"]["channels"] == 1 for r in runs)
    return [f"- IS/FID: Inception-v3 (TF 2015-12-05 weights, sha256 `{m['weights_sha256'][:16]}…`), "
            f"{m['n_samples']} samples, {m['n_splits']} splits, FID against {m['n_reference']} "
            f"{m['fid_reference']} images of {', '.join(datasets)}" + (" (grey copied to RGB)." if gray else ".")]


def preset_switches(params: dict, recipe: str) -> list[str]:
    """Dotted keys that preset paper_text changes for a recipe (the paper-vs-code switches of methods.md)."""
    def flat(d: dict, pre: str = "") -> list[str]:
        return [k for key, v in d.items() for k in (flat(v, f"{pre}{key}.") if isinstance(v, dict) else [pre + key])]
    return flat(params["presets"]["paper_text"].get(recipe, {}))


def settings_note(runs: list[Run], switches: list[str] = ()) -> list[str]:
    """Footer lines naming setting, preset and the values of the paper-vs-code switches in these runs."""
    c = runs[0].config
    presets = sorted({r.config["preset"] for r in runs})
    steps = sorted({r.hp["train"]["n_iters"] for r in runs})
    lines = [f"- Setting `{c['setting']}`, preset `{'`, `'.join(presets)}` (params.yaml `presets`: "
             + ("the authors' public code" if presets == ["code"] else "the paper text")
             + " where code and paper disagree); variants and their overrides: params.yaml `variants`."]
    if switches:
        def values(key: str) -> str:
            got = []
            for r in runs:
                v = r.hp
                for part in key.split("."):
                    v = v[part]
                got += [] if v in got else [v]
            return "/".join(map(str, got))
        lines.append("- Paper-vs-code switches (methods.md; preset `paper_text` flips them) as used here: "
                     + ", ".join(f"`{k}` = {values(k)}" for k in switches) + ".")
    if len(steps) > 1:
        lines.append(f"- Rows were trained for different numbers of iterations ({', '.join(map(str, steps))}; "
                     f"see the `train steps` column): compare them with care.")
    return lines


def _check_variants(runs: list[Run], rows: list[dict], what: str) -> None:
    got, want = [r.variant for r in runs], [r["variant"] for r in rows]
    if got != want:
        raise ValueError(f"{what}: runs {got} do not match params.yaml ablation rows {want} (same order)")


# ----------------------------------------------------------------------------- E3: ICD Tab. 2
def run_factors(run: Run) -> dict[str, bool]:
    hp = run.hp
    return {"kl_opt": hp["loss"]["kl_opt_coeff"] > 0, "kl_ent": hp["loss"]["kl_ent_coeff"] > 0,
            "data_aug": hp["augment"]["enabled"], "multiscale": hp["model"]["multiscale"]}


def ablation_table(runs: list[Run], paper_rows: list[dict], gap_bound: float, late_frac: float,
                   switches: list[str] = ()) -> str:
    """results/tables/ablation.md: ICD Tab. 2 rows, this run's IS/FID/stability beside the paper's."""
    from tabulate import tabulate

    body = []
    for run, paper in zip(runs, paper_rows, strict=True):
        f = run_factors(run)
        wrong = [k for k, _ in FACTORS if f[k] != paper[k]]
        if wrong:  # a misconfigured variant must not sit beside the wrong paper row
            raise ValueError(f"variant {run.variant!r} has {', '.join(f'{k}={f[k]}' for k in wrong)} but its paper "
                             f"row has {', '.join(f'{k}={paper[k]}' for k in wrong)}; fix params.yaml")
        is_run, fid_run = _scored(run)
        v = stability_verdict(run, gap_bound, late_frac)
        body.append([*("Yes" if f[k] else "No" for k, _ in FACTORS), is_run, fid_run,
                     ("Yes — " if v.stable else "No — ") + v.text, fmt(paper["IS"]), fmt(paper["FID"]),
                     "Yes" if paper["stable"] else "No", f"`{run.config['preset']}`",
                     scoring_text(run.metrics) if run.metrics else "—", sampling_text(run.hp["test_sampling"]),
                     run.summary["step"], f"`{run.variant}`"])
    head = [name for _, name in FACTORS] + ["IS (this run)", "FID (this run)", "Stable (this run)", "IS (paper)",
                                            "FID (paper)", "Stable (paper)", "preset", "scoring",
                                            "test-time sampling (protocol)", "train steps", "variant"]
    attn = sorted({r.hp["model"]["attention"] for r in runs})
    lines = [f"# ICD ablation (Tab. 2): CIFAR-10-style generation and training stability "
             f"({runs[0].config['setting']} setting)", "",
             tabulate(_md_rows(body), headers=head, tablefmt="github", disable_numparse=True), "",
             "## Notes", "", "- " + stability_rule(gap_bound, late_frac),
             "- Paper columns: ICD (2021) Tab. 2 (src/ebm_repro/paper_numbers.yaml "
             "`improved_cd_2021/ablation_table_2`). The factor columns are read from each run's resolved config.",
             f"- Self-attention: {'on' if attn == [True] else 'mixed' if len(attn) > 1 else 'off'} in every row "
             f"(Tab. 2 does not vary it); the last row is the full ICD variant of inception.md.",
             "- Unstable rows are still scored, as in the paper: both codes keep the checkpoint with the best "
             "training-time IS (IGEBM train.py `model_best`, ICD train.py `best_inception`), so Tab. 2's unstable "
             "rows 1-3 carry IS/FID. A run of ours that aborted is scored from the checkpoint its trainer kept; "
             "the cell names which (best training-time IS, or the last good checkpoint) and the abort step."]
    return "\n".join(lines + settings_note(runs, switches) + metric_note(runs)) + "\n"


# ----------------------------------------------------------------------------- E15: ICD App. D.1
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
        _, fid = _scored(run)
        body.append([row["label"], fid, fmt(p["FID"]), fmt(t["wall_median"], 3), fmt(t["cpu_median"], 3), ratio,
                     p.get("relative_time", "1× (reference)"), fmt(run.summary.get("sec_per_iter"), 3),
                     run.summary["step"], run.hp["loss"]["kl_opt_chains"], run.hp["sampler"]["n_steps"],
                     t["device"], f"`{run.variant}`"])
    head = ["L_opt backprop through", "FID (this run)", "FID (paper)", "s / iteration (benchmark)",
            "CPU s / iteration (benchmark)", "time vs last step (this run)", "time (paper)",
            "s / iteration (training job)", "train steps", "L_KL chains", "Langevin steps", "device", "variant"]
    lines = [f"# Truncated Langevin backpropagation on MNIST (ICD App. D.1) ({runs[0].config['setting']} setting)",
             "", tabulate(_md_rows(body), headers=head, tablefmt="github", disable_numparse=True), "", "## Notes", "",
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


# ----------------------------------------------------------------------------- figures
def _save(fig, out_png: Path) -> None:
    """PNG and PDF beside it, each written atomically."""
    out_png = Path(out_png)
    for path in (out_png, out_png.with_suffix(".pdf")):
        atomic_write(path, lambda f, p=path: fig.savefig(f, format=p.suffix[1:]))


def stability_figure(runs: list[Run], labels: list[str], gap_bound: float, late_frac: float, out_png: Path) -> None:
    """ICD Fig. 8: buffer IS (top) and E(x+) - E(x-) (bottom) over training; no-KL runs left, KL runs right."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex="col", dpi=120)
    for run, label in zip(runs, labels, strict=True):
        col = 1 if uses_kl(run.hp) else 0
        v = stability_verdict(run, gap_bound, late_frac)
        steps, is_ = run.series("eval_IS")
        if not steps:
            raise ValueError(f"{run.variant}: no eval_IS in train_log.csv; set train.eval_every > 0 for it")
        line, = axes[0, col].plot(steps, is_, marker="o", ms=3, label=label)
        gsteps, gaps = run.series("gap")
        axes[1, col].plot(gsteps, gaps, color=line.get_color(), label=f"{label} — {v.text}")
        if run.summary.get("diverged"):  # mark where training stopped
            axes[1, col].plot(gsteps[-1:], gaps[-1:], "x", color=line.get_color(), ms=9)
    for col, title in enumerate(("without L_KL", "with L_KL")):
        axes[0, col].set_title(title)
        axes[0, col].set_ylabel("IS of replay buffer")
        axes[1, col].axhspan(-gap_bound, gap_bound, color="0.9", zorder=0, label=f"stable band ±{gap_bound:g}")
        axes[1, col].axhline(0, color="0.5", lw=0.8)
        axes[1, col].set_ylabel("E(x+) - E(x-)")
        axes[1, col].set_xlabel("training iteration")
        if axes[0, col].lines:
            axes[0, col].legend(fontsize=6.5, loc="best")
            # verdict texts are long: their legend goes under the panel
            axes[1, col].legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    c = runs[0].config
    net = ("smoke classifier, NOT Inception" if c["metrics"]["feature_net"] == "smoke_classifier"
           else "Inception-v3")
    fig.suptitle(f"Training stability (ICD Fig. 8), {c['setting']} setting, preset {c['preset']}\nIS of the newest "
                 f"{c['hp']['train']['eval_n_samples']} replay-buffer samples ({net}); grey band: stability rule "
                 f"(|gap| <= {gap_bound:g} over the last {late_frac:.0%} of training)", fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)
    plt.close(fig)


def kl_grad_figure(run: Run, out_png: Path) -> dict:
    """ICD Fig. 13: |grad L_CD| and |grad L_KL| (parameter-gradient norms) over training; returns a summary."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not uses_kl(run.hp):
        raise ValueError(f"{run.variant}: L_KL is off (kl_opt_coeff = kl_ent_coeff = 0); Fig. 13 needs it on")
    pts = [(int(r["step"]), r["grad_cd"], r["grad_kl"]) for r in run.rows
           if r.get("grad_cd") is not None and r.get("grad_kl") is not None]
    if not pts:
        raise ValueError(f"{run.variant}: train_log.csv holds no grad_cd / grad_kl")
    steps, cd, kl = zip(*pts)
    ratio = [k / c if c > 0 else float("nan") for c, k in zip(cd, kl)]
    finite = sorted(r for r in ratio if math.isfinite(r))
    median = finite[len(finite) // 2] if finite else float("nan")
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True, dpi=120)
    a0.plot(steps, cd, label="‖∇θ L_CD‖")
    lo = run.hp["loss"]
    a0.plot(steps, kl, label=f"‖∇θ L_KL‖ ({lo['kl_opt_coeff']:g} L_opt + {lo['kl_ent_coeff']:g} L_ent)")
    a0.set_yscale("log")
    a0.set_ylabel("gradient norm")
    a0.legend(fontsize=7)
    a1.plot(steps, ratio, color="C2")
    a1.axhline(median, color="0.5", ls="--", lw=0.8, label=f"median {median:.2f}")
    a1.set_ylabel("‖∇ L_KL‖ / ‖∇ L_CD‖")
    a1.set_xlabel("training iteration")
    a1.legend(fontsize=7)
    c = run.config
    fig.suptitle(f"Gradient magnitude of L_KL vs L_CD (ICD Fig. 13): `{run.variant}`, {c['setting']} setting, "
                 f"preset {c['preset']}\npaper: the ratio stays constant over training and L_KL is non-negligible",
                 fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)
    plt.close(fig)
    return {"n_points": len(steps), "median_ratio_kl_over_cd": median, "first_step": steps[0], "last_step": steps[-1]}


# ----------------------------------------------------------------------------- CLI
def _params(a) -> dict:
    from ebm_repro import config as C

    p = C.load_params(a.params)
    if a.setting:
        p["setting"] = a.setting
    return p


def _inputs(dirs: list[str], metrics: list[str] | None) -> list[Path]:
    files = [Path(d) / n for d in dirs for n in ("train_log.csv", "train_summary.json", "config.yaml")]
    return files + [Path(m) for m in metrics or []]


def _provenance(a, out: Path, runs: list[Run], extra: dict, inputs: list[Path]) -> None:
    from ebm_repro.report import write_provenance

    write_provenance(out, _inputs(a.train_dirs, getattr(a, "metrics", None)) + inputs + [Path(a.params)],
                     {"setting": runs[0].config["setting"], "preset": runs[0].config["preset"],
                      "variants": [r.variant for r in runs],
                      "training_hashes": {r.variant: r.summary.get("training_hash") for r in runs},
                      "train_steps": {r.variant: r.summary.get("step") for r in runs}, **extra})


def cmd_time_truncation(a, p: dict) -> None:
    """Interleaved per-iteration timing of the truncation variants -> JSON (input of table-truncation)."""
    import torch

    from ebm_repro import config as C

    torch.set_num_threads(a.threads)
    variants = [r["variant"] for r in p["ablation"]["truncation_rows"]]
    cfgs = [C.resolve(p, v) for v in variants]
    if len(a.data_dirs) != len(cfgs):
        sys.exit(f"error: {len(a.data_dirs)} data dirs for {len(cfgs)} truncation rows")
    n = p["ablation"]["timing_steps"][p["setting"]]
    timing = time_training_steps(cfgs, [Path(d) for d in a.data_dirs], n, a.device)
    timing = {v: {**t, "training_hash": c.training_hash(), "threads": a.threads} for (v, t), c in
              zip(timing.items(), cfgs)}
    atomic_write_text(Path(a.out), json.dumps(timing, indent=1) + "\n")
    print(json.dumps(timing, indent=1))


def main(argv: list[str] | None = None) -> None:
    from ebm_repro.report import paper_lookup

    ap = argparse.ArgumentParser(prog="python -m ebm_repro.ablation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("table-ablation", "plot-stability", "plot-kl-grad", "time-truncation", "table-truncation"):
        sp = sub.add_parser(name)
        sp.add_argument("--params", default="params.yaml")
        sp.add_argument("--setting", choices=("paper", "smoke"))
        sp.add_argument("--out", required=True)
        if name == "time-truncation":
            sp.add_argument("--data-dirs", nargs="+", required=True, help="dataset folder per truncation row")
            sp.add_argument("--threads", type=int, default=1)
            sp.add_argument("--device", default="auto")
            continue
        sp.add_argument("--train-dirs", nargs="+", required=True, help="results/train/<variant> folders, in order")
        if name.startswith("table"):
            sp.add_argument("--metrics", nargs="+", required=True, help="metrics JSON per row, same order")
        if name == "table-truncation":
            sp.add_argument("--timing", required=True, help="JSON written by time-truncation")
    a = ap.parse_args(argv)
    p = _params(a)
    if a.command == "time-truncation":
        return cmd_time_truncation(a, p)
    ab, rule = p["ablation"], p["ablation"]["stability"]
    metrics = getattr(a, "metrics", None) or [None] * len(a.train_dirs)
    if len(metrics) != len(a.train_dirs):
        sys.exit(f"error: {len(a.train_dirs)} train dirs but {len(metrics)} metric files")
    runs = [load_run(Path(d), Path(m) if m else None) for d, m in zip(a.train_dirs, metrics)]
    out, inputs = Path(a.out), []
    switches = sorted({k for r in runs for k in preset_switches(p, r.config["recipe"])})
    try:
        if a.command == "table-ablation":
            _check_variants(runs, ab["ablation_rows"], a.command)
            table = paper_lookup("improved_cd_2021/ablation_table_2")
            paper_rows = [table[r["paper_row"]] for r in ab["ablation_rows"]]
            atomic_write_text(out, ablation_table(runs, paper_rows, rule["gap_bound"], rule["late_frac"], switches))
            extra = {"stability_rule": rule}
        elif a.command == "plot-stability":
            _check_variants(runs, ab["stability_curves"], a.command)
            stability_figure(runs, [c["label"] for c in ab["stability_curves"]], rule["gap_bound"],
                             rule["late_frac"], out)
            extra = {"stability_rule": rule, "verdicts": {r.variant: stability_verdict(
                r, rule["gap_bound"], rule["late_frac"]).text for r in runs}}
        elif a.command == "plot-kl-grad":
            _check_variants(runs, [{"variant": ab["kl_grad_variant"]}], a.command)
            extra = {"summary": kl_grad_figure(runs[0], out)}
        else:
            _check_variants(runs, ab["truncation_rows"], a.command)
            timing = json.loads(Path(a.timing).read_text())
            stale = [r.variant for r in runs if timing.get(r.variant, {}).get("training_hash")
                     != r.summary.get("training_hash")]
            if stale:  # the benchmark must time the configs that were trained
                raise ValueError(f"{a.timing} was measured for other configs of {stale}; rerun time-truncation")
            atomic_write_text(out, truncation_table(runs, ab["truncation_rows"],
                                                    paper_lookup("improved_cd_2021/truncation_app_d1"), timing,
                                                    switches))
            extra, inputs = {"timing": timing}, [Path(a.timing)]
    except ValueError as e:  # a misconfigured params.yaml or mismatched inputs: say which, no traceback
        sys.exit(f"error: {e}")
    for path in ([out, out.with_suffix(".pdf")] if a.command.startswith("plot") else [out]):
        _provenance(a, path, runs, extra, inputs)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
