"""E1, E2, E3 (top row): CIFAR-10 generation, IS / FID / KID per row beside IGEBM Tab. 4b and ICD Fig. 3.

`results/tables/inception.md`: one row per params.yaml `inception.rows` entry (a variant sampled as a single
model or a historical ensemble), reference points computed by the run (real test images, uniform noise), the
authors' released checkpoints beside our rows when their files are present (`inception.authors_checkpoints`),
and the baselines the papers quote. Sample grids (IGEBM Fig. 3 / 4a) are the `plot-samples` figures of the rows.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebm_repro import checkpoint as ck
from ebm_repro import commands
from ebm_repro import config as C
from ebm_repro.config import ConfigError, _enum
from ebm_repro.report import (fmt, paper_cells, paper_lookup, paper_numbers, paper_source, sampling_text, score_cells,
                              scoring_text)

BLOCK = "inception"

# Which of our archs each authors' checkpoint format can fill (src/ebm_repro/authors/).
AUTHORS_SOURCE_ARCHS = {"igebm_tf": ("igebm_resnet32_large", "igebm_resnet32"),
                        "icd_pth": ("icd_resnet", "icd_celeba")}


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class InceptionRow:
    """One table row: a variant sampled as one model or as its historical ensemble, and its paper numbers."""
    row: str
    variant: str
    mode: str = _enum("single", "ensemble")
    paper: tuple[str, ...] = field(metadata={"schema": {"minItems": 0}})  # paths into paper_numbers.yaml


@dataclass(frozen=True)
class AuthorsEntry:
    """The authors' released file for a variant, scored with our sampling and metrics beside our row."""
    variant: str                     # our variant whose net and sampling they use
    mode: str = _enum("single")      # one checkpoint: no historical ensemble
    source: str = _enum(*sorted(AUTHORS_SOURCE_ARCHS))
    # relative to the setting's prefix; no spaces or '..' (it lands in a shell command)
    path: str = field(metadata={"schema": {"pattern": r"^data/authors/(?!.*\.\.)[A-Za-z0-9_./-]+$"}})
    beside: str                      # the inception.rows row it stands beside
    description: str                 # what the file is and where it comes from
    trust_pickle: bool = False       # icd_pth: full unpickle (runs the file's code)


@dataclass(frozen=True)
class InceptionConfig:
    rows: tuple[InceptionRow, ...]
    authors_checkpoints: tuple[AuthorsEntry, ...] = field(default=(), metadata={"schema": {"minItems": 0}})


def schema() -> dict:
    return C.dataclass_schema(InceptionConfig)


def check(params: dict) -> None:
    """Rows name existing variants (an ensemble one with snapshots); authors' entries fit a row and an arch."""
    block = params[BLOCK]
    for i, row in enumerate(block["rows"]):
        C.check_variant(params, row["variant"], f"inception.rows[{i}].variant")
        for setting in ("paper", "smoke"):
            cfg = C.resolve(params, row["variant"], setting=setting, validated=True)
            if row["mode"] == "ensemble" and cfg.hp.train.n_snapshots < 2:
                raise ConfigError(f"inception.rows[{i}]: mode 'ensemble' needs train.n_snapshots >= 2 "
                                  f"for variant {row['variant']!r}")
    seen: set[str] = set()
    for i, e in enumerate(block.get("authors_checkpoints", [])):
        where = f"inception.authors_checkpoints[{i}]"
        C.check_variant(params, e["variant"], f"{where}.variant")
        if e["variant"] in seen:  # its results live in results/*/authors_<variant>/
            raise ConfigError(f"{where}.variant: a second entry for {e['variant']!r}; keep one per variant")
        seen.add(e["variant"])
        rows = [r for r in block["rows"] if r["row"] == e["beside"]]
        if not rows or (rows[0]["variant"], rows[0]["mode"]) != (e["variant"], e["mode"]):
            raise ConfigError(f"{where}.beside: {e['beside']!r} is not an inception.rows row of variant "
                              f"{e['variant']!r}, mode {e['mode']!r}")
        arch = C.resolve(params, e["variant"], setting="paper", preset="code", validated=True).hp.model.arch
        if arch not in AUTHORS_SOURCE_ARCHS[e["source"]]:
            raise ConfigError(f"{where}.source: {e['source']!r} checkpoints fill arch "
                              f"{' / '.join(AUTHORS_SOURCE_ARCHS[e['source']])}, variant {e['variant']!r} "
                              f"builds {arch!r} (preset code)")


# ----------------------------------------------------------------------------- table
def baseline_lines(b: dict) -> list[str]:
    """A small table of the scores real test images and uniform noise get under the same scoring."""
    from tabulate import tabulate

    body = [[name, v["what"], f"{v['IS_mean']:.2f} ± {v['IS_std']:.2f}", fmt(v["FID"])]
            for name, v in (("real test images", b["real_test"]), ("uniform noise", b["uniform_noise"]))]
    return ["## Reference points computed by this run", "",
            tabulate(body, headers=["images", "what", "IS", f"FID (vs `{b['fid_reference']}`)"],
                     tablefmt="github", disable_numparse=True), "",
            "A row's samples are better than noise when they beat the noise row; real test images are the ceiling "
            "this feature network allows.", ""]


def inception_table(metrics: list[dict], rows: list[dict], baselines: dict | None = None) -> str:
    """Markdown for results/tables/inception.md from per-row metric dicts (same order as rows)."""
    from tabulate import tabulate

    body = []
    missing = [m for m in metrics if m.get("status") == "missing"]  # a manual download that is not there (E17-E19)
    for row, m in zip(rows, metrics, strict=True):
        paper = paper_cells(row["paper"])
        cite = lambda k, nd: (f"{fmt(paper[k][0], nd)} ({paper[k][1]})" if k in paper else "—")  # noqa: E731
        if "status" in m:  # a dataset's status.json stands in for the row's metrics
            from ebm_repro.datasets_large import missing_cell

            cell = (missing_cell(m["dataset"], Path(m["path"])) if m["status"] == "missing" else
                    "not run: dataset found after this DAG was built (dvc.yaml has no E17-E19 training; "
                    "run Snakemake)")
            body.append([row["row"], cell, "—", "—", cite("IS", 2), cite("FID", 1), 0, "—", "—", "—", "—"])
            continue
        is_run, fid_run = score_cells(m)
        if m.get("KID_mean") is not None:
            kid = f"{m['KID_mean']:.4f} ± {m['KID_std']:.4f}"
        else:
            kid = is_run if m.get("diverged") else "—"
        body.append([row["row"], is_run, fid_run, kid, cite("IS", 2), cite("FID", 1),
                     m.get("n_samples", 0), m["train_step"], f"`{m['preset']}`", scoring_text(m),
                     sampling_text(m["test_sampling"])])
    head = ["Model", "IS (this run)", "FID (this run)", "KID (this run)", "IS (paper)", "FID (paper)",
            "#samples", "train steps", "preset", "scoring", "test-time sampling (protocol)"]
    # conventions come from a row that was scored (a row that diverged before any checkpoint has no metrics)
    m0 = next((m for m in metrics if m.get("IS_mean") is not None), {**metrics[0], "n_reference": "n/a",
                                                                      "weights_sha256": "n/a (nothing scored)"})
    scored = [m for m in metrics if "status" not in m]
    lines = [f"# CIFAR-10-style generation: Inception Score and FID ({m0['setting']} setting)", "",
             tabulate(body, headers=head, tablefmt="github", disable_numparse=True), ""]
    if missing:
        lines += ["## Datasets not found (manual downloads, params.yaml `large_data`)", ""]
        lines += [f"- {msg}" for msg in dict.fromkeys(m["message"] for m in missing)] + [""]  # one per dataset
    lines += baseline_lines(baselines) if baselines else []
    lines += ["## Metric conventions", ""]
    if m0["feature_net"] == "inception":
        lines += [f"- Feature network: Inception-v3 (TF 2015-12-05 weights, torch-fidelity `inception-v3-compat`), "
                  f"weights sha256 `{m0['weights_sha256'][:16]}…`.",
                  f"- IS: logits, {m0['n_splits']} splits, images as uint8. The split order is per row (`scoring`): "
                  f"the IGEBM code (test_inception.py) scores the 50k images in generation order, the ICD code "
                  f"shuffles them first (`random.shuffle(images)`); preset `code` follows each.",
                  "- FID/KID: pool3 (2048-d) features against the row's reference set (`scoring`): the IGEBM code "
                  "used all 60k CIFAR-10 images (`train_test`), the ICD code 10k random training images "
                  "(`train_10k`); preset `paper_text` uses the 50k training images (`train`)."]
    else:
        real = m0.get("feature_net_real_IS") or {}
        lines += ["- **Smoke setting: these are NOT Inception scores.** The Inception weights cannot be fetched "
                  "offline, so the feature network is a small CNN classifier trained by this run on the "
                  f"generated `shapes` data (test accuracy {m0.get('feature_net_acc', float('nan')):.3f}, weights "
                  f"sha256 `{m0['weights_sha256'][:16]}…`). IS uses its logits, FID/KID its penultimate features. "
                  "The numbers only show that the DAG runs end to end; do not compare them with the paper column.",
                  f"- Scale of the smoke IS: real `shapes` test images score IS {fmt(real.get('mean'))} ± "
                  f"{fmt(real.get('std'))} with this classifier (the ceiling); one class only scores 1.00. The smoke "
                  f"models train for minutes: they learn colours and blobs, not the ten shapes, so their IS stays "
                  f"near 1 and FID against the noise row above is the measure of what they learned. An augmentation "
                  f"transition (ICD rows) also raises the IS of noise-like images (crops, blur), without learning.",
                  f"- IS: {m0['n_splits']} splits, uint8 inputs; split order and FID reference per row (`scoring`)."]
    presets = sorted({m["preset"] for m in scored})
    lines += [f"- Preset {', '.join(f'`{p}`' for p in presets)}: hyperparameters from "
              "the authors' public code (`code`; `code_2020` = ICD's paper-era release 54b46ad) or the paper text "
              "(`paper_text`) where they disagree; docs/fidelity.md lists every switch with the authors' file and line.",
              "- Paper cells name the table or figure that printed each number.",
              "", "## Baselines quoted from the papers (not computed here)", ""]
    pn = paper_numbers()
    base = [[name, fmt(v.get("IS")), fmt(v.get("FID"), 1), "ICD (2021) Fig. 3"]
            for name, v in pn["improved_cd_2021"]["generation_fig_3"]["CIFAR-10 unconditional"].items()]
    base += [[f"{name} (conditional)", fmt(v.get("IS")), "—", "IGEBM (2019) Tab. 4b"]
             for name, v in pn["igebm_2019"]["inception_table_4b"]["conditional"].items()]
    lines += [tabulate(base, headers=["Model (quoted)", "IS (paper)", "FID (paper)", "source"],
                       tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines)


AUTHORS_ROW = "authors' checkpoint"


def with_authors_rows(metrics: list[dict], rows: list[dict], authors: list[dict],
                      entries: list[dict]) -> tuple[list[dict], list[dict]]:
    """Insert an "authors' checkpoint" row (imported weights, our sampling + metrics) after the row it stands beside."""
    by_key = {(m["variant"], m["mode"]): m for m in authors}
    unknown = set(by_key) - {(e["variant"], e["mode"]) for e in entries}
    if unknown or any(not m.get("imported") for m in authors):
        raise ValueError(f"authors' metrics {sorted(unknown)} match no params.yaml authors_checkpoints entry "
                         f"(or were not computed from an imported checkpoint)")
    out_m, out_r = [], []
    for m, row in zip(metrics, rows):
        out_m.append(m)
        out_r.append(row)
        for e in entries:
            if e["beside"] == row["row"] and (e["variant"], e["mode"]) in by_key:
                a = by_key[(e["variant"], e["mode"])]
                it = a["imported"]["iteration"]  # their training iteration, from the file name
                out_m.append({**a, "train_step": f"{it} (theirs)" if it is not None else "unknown (theirs)"})
                out_r.append({**row, "row": f"{row['row']} — {AUTHORS_ROW}"})
    return out_m, out_r


def authors_footer(authors: list[dict], entries: list[dict], prefix: str, unfit: dict[str, str]) -> str:
    """Where each authors' row came from, and which files would add the missing ones (no row is ever invented).

    `unfit`: variant -> why its authors' file cannot fill the net the current preset builds.
    """
    if not entries:
        return ""
    have = {(m["variant"], m["mode"]): m["imported"] for m in authors}
    lines = ["", "## Authors' checkpoints", "",
             f"Rows marked \"{AUTHORS_ROW}\" score the authors' released weights, imported into our network "
             "(`ebm-repro import-checkpoint`), with the same test-time sampling and metrics as our trained row "
             "above them. Their row against the paper column tests our evaluation; our row against theirs tests "
             "our training.", ""]
    for e in entries:
        imp = have.get((e["variant"], e["mode"]))
        if imp:
            sha = ", ".join(f"`{n}` sha256 `{d[:12]}…`" for n, d in imp["files"].items())
            lines.append(f"- {e['beside']}: `{imp['path']}` ({e['source']}, their iteration "
                         f"{imp['iteration'] if imp['iteration'] is not None else 'unknown'}; {sha}).")
        elif e["variant"] in unfit:
            lines.append(f"- {e['beside']}: no row; {unfit[e['variant']]}.")
        else:
            lines.append(f"- {e['beside']}: no row; place {e['description']} at `{prefix}{e['path']}`"
                         + (" (`.index` + `.data-*`)" if e["source"] == "igebm_tf" else "")
                         + " and rerun Snakemake to add it (dvc.yaml has no authors' stages).")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- audit
ENSEMBLE_PAPER = "igebm_2019/inception_table_4b/unconditional/IGEBM (10 historical ensemble)"


def claims(params: dict, prefix: str) -> list:
    """Every paper cell an inception row cites (IS, FID) and IGEBM §4.1's "the historical ensemble improves IS"."""
    from collections import Counter

    from ebm_repro.claims import judged_claim, missing, number_claim

    setting, table = params["setting"], f"{prefix}results/tables/inception.md"
    rows = params[BLOCK]["rows"]
    cited = Counter(p for r in rows for p in r["paper"])  # a cell two rows cite gets one audit row per row
    out, is_mean, why_of = [], {}, {}
    from ebm_repro.datasets_large import base_of

    for r in rows:
        if base_of(C.resolve(params, r["variant"], validated=True).dataset) is not None:
            continue  # a manual download's row (E17, E18): claimed by experiments/large_data.py with its status
        mpath = f"{prefix}results/metrics/{r['variant']}/{r['mode']}.json"
        why = missing(table, mpath)
        m = None if why else json.loads(Path(mpath).read_text())
        if m is not None and m.get("IS_mean") is None:
            why, m = f"{r['variant']} diverged at step {m['diverged']['step']} before a usable checkpoint", None
        is_mean[(r["variant"], r["mode"])], why_of[(r["variant"], r["mode"])] = m and m["IS_mean"], why
        for p in r["paper"]:
            section, name = p.split("/")[-2:]
            for kind, v in paper_lookup(p).items():
                if v is not None:
                    key = f"{p}/{kind}" + (f"#{r['row']}" if cited[p] > 1 else "")
                    got = m and m["IS_mean" if kind == "IS" else kind]
                    where = section if section.startswith("CIFAR-10") else f"CIFAR-10 {section}"
                    out.append(number_claim(key, f"{kind} of {name}, {where} (our row: {r['row']})",
                                            paper_source(p), v, got, kind, table, setting, why))
    ens = next((r for r in rows if ENSEMBLE_PAPER in r["paper"]), None)
    single = ens and next((r for r in rows if (r["variant"], r["mode"]) == (ens["variant"], "single")), None)
    words = ("sampling from the last 10 snapshots of a model (historical ensemble) improves the Inception score "
             "(6.43 -> 6.79)")
    criterion = "IS mean of the ensemble row > IS mean of the single row of the same variant"
    if not single:
        out.append(judged_claim("qualitative/inception/ensemble_improves_is", words, "IGEBM §4.1, Tab. 4b",
                                "IS(ensemble) > IS(single)", None, criterion, None, table, setting,
                                "params.yaml inception.rows has no single + ensemble pair citing IGEBM Tab. 4b"))
        return out
    e, s = (is_mean[(ens["variant"], mode)] for mode in ("ensemble", "single"))
    why = why_of[(ens["variant"], "ensemble")] or why_of[(ens["variant"], "single")]
    out.append(judged_claim("qualitative/inception/ensemble_improves_is", words, "IGEBM §4.1, Tab. 4b",
                            "IS(ensemble) > IS(single)", None if why else f"{e:.2f} vs {s:.2f}", criterion,
                            None if why else e > s, table, setting, why))
    return out


# ----------------------------------------------------------------------------- commands
def cmd_metrics_baselines(a) -> None:
    """IS/FID of real test images and of uniform noise under this setting's scoring: the scale of every row."""
    from ebm_repro.data import load_split, reference_images
    from ebm_repro.metrics import compute_inception_metrics
    from ebm_repro.runtime import pick_device

    p = commands.load(a)
    mc = C.from_dict(C.MetricsConfig, p["settings"][p["setting"]]["metrics"])
    test, _ = load_split(Path(a.data) / "test.npz")
    ref = reference_images(Path(a.data), "train")
    n = min(mc.n_samples, len(test))
    noise = np.random.default_rng(0).integers(0, 256, (mc.n_samples, *test.shape[1:]), dtype=np.uint8)
    kw = dict(n_splits=mc.n_splits, batch_size=mc.batch_size, device=str(pick_device(a.device)), kid=False)
    out = {"real_test": {"what": f"the first {n} test images", **compute_inception_metrics(
               test[:n], ref, mc.feature_net, Path(a.feature_net), **kw)},
           "uniform_noise": {"what": f"{mc.n_samples} images of uniform noise (seed 0)", **compute_inception_metrics(
               noise, ref, mc.feature_net, Path(a.feature_net), **kw)},
           "fid_reference": "train", "setting": p["setting"]}
    ck.atomic_write_text(Path(a.out), json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: {m: v[m] for m in ("IS_mean", "FID")} for k, v in out.items() if isinstance(v, dict)}))


def cmd_table_inception(a) -> None:
    from ebm_repro.report import write_provenance

    p = commands.load(a)
    metrics = [json.loads(Path(m).read_text()) for m in a.metrics]  # or a dataset's status.json (missing)
    scored = [m for m in metrics if "status" not in m]
    rows = p[BLOCK]["rows"]
    if len(metrics) != len(rows):
        raise SystemExit(f"got {len(metrics)} metric files for {len(rows)} inception.rows")
    authors = [json.loads(Path(m).read_text()) for m in a.authors_metrics]
    entries = p[BLOCK].get("authors_checkpoints", [])
    all_metrics, all_rows = with_authors_rows(metrics, rows, authors, entries)
    unfit = {}  # entries whose file the current preset's net cannot take (e.g. paper_text's Fig. 15b net)
    for e in entries:
        arch = C.resolve(p, e["variant"]).hp.model.arch
        if arch not in AUTHORS_SOURCE_ARCHS[e["source"]]:
            unfit[e["variant"]] = f"preset {p['preset']} builds arch {arch}, which {e['source']} files do not fill"
    baselines = json.loads(Path(a.baselines).read_text())
    table = inception_table(all_metrics, all_rows, baselines) + authors_footer(
        authors, entries, p["settings"][p["setting"]]["prefix"], unfit)
    ck.atomic_write_text(Path(a.out), table)
    write_provenance(Path(a.out), [Path(m) for m in a.metrics + a.authors_metrics]
                     + [Path(a.baselines), Path(a.params)],
                     {"setting": p["setting"], "preset": p["preset"],
                      "dataset_checksums": json.loads(Path(a.data_checksums).read_text()),
                      "config_hashes": {m["variant"] + "/" + m["mode"]: m["config_hash"] for m in scored},
                      "train_steps": {m["variant"]: m["train_step"] for m in scored},
                      "missing_datasets": [m["dataset"] for m in metrics if m.get("status") == "missing"],
                      "authors_checkpoints": {m["variant"] + "/" + m["mode"]: m["imported"] for m in authors}})
    print(f"wrote {a.out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics-baselines", help="IS/FID of real test images and of uniform noise")
    commands.add_common(p)
    for arg in ("--data", "--feature-net", "--out"):
        p.add_argument(arg, required=True)
    p.set_defaults(fn=cmd_metrics_baselines)
    p = sub.add_parser("table-inception", help="results/tables/inception.md")
    commands.add_common(p)
    p.add_argument("--metrics", nargs="+", required=True, help="metrics JSON per inception.rows entry, in order")
    p.add_argument("--authors-metrics", nargs="*", default=[], help="metrics of imported authors' checkpoints")
    for arg in ("--data-checksums", "--baselines", "--out"):
        p.add_argument(arg, required=True)
    p.set_defaults(fn=cmd_table_inception)
