"""Helpers of the experiment tests: results/train/<variant> folders as the trainer writes them."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from ebm_repro import config as C
from ebm_repro import runs as R
from ebm_repro.report import paper_lookup

ROOT = Path(__file__).resolve().parents[2]
BOUND, LATE = 0.5, 0.5


def write_run(root: Path, params: dict, variant: str, gaps: list[float], every: int = 5, diverged=None,
              eval_is: dict | None = None, extra_cols: dict | None = None, sec_per_iter: float = 0.5,
              metrics: dict | None = None, setting: str = "smoke") -> Path:
    """A results/train/<variant> folder as the trainer writes it, with the given logged gaps (one per log step)."""
    d = root / variant
    d.mkdir(parents=True)
    cfg = C.resolve(params, variant, setting=setting).to_dict()
    cfg["hp"]["train"]["n_iters"] = every * len(gaps)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rows = []
    for i, g in enumerate(gaps):
        step = every * (i + 1)
        r = {"step": step, "gap": g, "e_pos": g / 2, "e_neg": -g / 2, "loss": 0.1, "sec_per_iter": sec_per_iter}
        r.update({k: v[i] for k, v in (extra_cols or {}).items()})
        if eval_is and step in eval_is:
            r["eval_IS"] = eval_is[step]
        rows.append(r)
    keys = sorted({k for r in rows for k in r})
    with open(d / "train_log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    summary = {"variant": variant, "step": rows[-1]["step"] if not diverged else diverged["step"],
               "diverged": diverged, "sec_per_iter": sec_per_iter, "training_hash": "h", "device": "cpu"}
    (d / "train_summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        (root / f"{variant}.json").write_text(json.dumps(metrics))
    return d


def scored(is_mean=2.5, fid=120.0, net="smoke_classifier") -> dict:
    return {"IS_mean": is_mean, "IS_std": 0.1, "FID": fid, "diverged": None, "feature_net": net,
            "weights_sha256": "ab" * 32, "n_samples": 200, "n_splits": 10, "n_reference": 5000,
            "fid_reference": "train"}


def ablation_runs(tmp_path, params, gaps_by_variant=None, metrics_by_variant=None):
    rows = params["ablation"]["rows"]
    runs = []
    for i, r in enumerate(rows):
        gaps = (gaps_by_variant or {}).get(r["variant"], [0.1, 0.05, 0.02, 0.01])
        m = (metrics_by_variant or {}).get(r["variant"], scored(2.0 + i, 150.0 - 10 * i))
        d = write_run(tmp_path, params, r["variant"], gaps, metrics=m)
        runs.append(R.load_run(d, tmp_path / f"{r['variant']}.json"))
    table = paper_lookup("improved_cd_2021/ablation_table_2")
    return runs, [table[r["paper_row"]] for r in rows]
