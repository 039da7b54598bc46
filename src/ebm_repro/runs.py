"""Trained runs as the tables and figures read them: resolved config, train log, summary, metrics; footers.

Shared by the experiments that compare several trained variants (ablation, stability, kl_grad, truncation):
the stability rule (ICD §3.1 / Fig. 8), the footer lines naming setting, preset and switches, figure saving.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ebm_repro.checkpoint import atomic_write
from ebm_repro.report import score_cells


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
def md_rows(body: list[list]) -> list[list[str]]:
    """Table cells as text with "|" escaped (an abort reason like "|mean E(x+)| > 10" would split a cell)."""
    return [[str(c).replace("|", "\\|") for c in row] for row in body]


def scored(run: Run) -> tuple[str, str]:
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


def check_variants(runs: list[Run], rows: list[dict], what: str) -> None:
    got, want = [r.variant for r in runs], [r["variant"] for r in rows]
    if got != want:
        raise ValueError(f"{what}: runs {got} do not match params.yaml ablation rows {want} (same order)")


def save_figure(fig, out_png: Path) -> None:
    """PNG and PDF beside it, each written atomically."""
    out_png = Path(out_png)
    for path in (out_png, out_png.with_suffix(".pdf")):
        atomic_write(path, lambda f, p=path: fig.savefig(f, format=p.suffix[1:]))


def run_inputs(dirs: list[str], metrics: list[str] | None) -> list[Path]:
    files = [Path(d) / n for d in dirs for n in ("train_log.csv", "train_summary.json", "config.yaml")]
    return files + [Path(m) for m in metrics or []]


def write_run_provenance(a, out: Path, runs: list[Run], extra: dict, inputs: list[Path]) -> None:
    from ebm_repro.report import write_provenance

    write_provenance(out, run_inputs(a.train_dirs, getattr(a, "metrics", None)) + inputs + [Path(a.params)],
                     {"setting": runs[0].config["setting"], "preset": runs[0].config["preset"],
                      "variants": [r.variant for r in runs],
                      "training_hashes": {r.variant: r.summary.get("training_hash") for r in runs},
                      "train_steps": {r.variant: r.summary.get("step") for r in runs}, **extra})


def load_scores(path: Path, rows: list, setting: str, block: str, verb: str) -> tuple[dict, dict]:
    """Arrays of a scoring stage's .npz and its .json sidecar, refused when scored for other rows or setting."""
    import numpy as np

    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if meta["rows"] != rows or meta["setting"] != setting:
        raise SystemExit(f"error: {path} was scored for other {block}.rows or setting; rerun {verb}")
    return arrays, meta
