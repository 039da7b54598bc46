"""Tables and figures: every reproduced number beside the paper's, with a provenance sidecar."""
from __future__ import annotations

import json
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from ebm_repro.checkpoint import atomic_write, atomic_write_text, file_digest

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def paper_numbers() -> dict:
    """The papers' printed numbers (src/ebm_repro/paper_numbers.yaml, copied from the spec)."""
    return yaml.safe_load(resources.files("ebm_repro").joinpath("paper_numbers.yaml").read_text())


def paper_lookup(path: str) -> dict:
    """'igebm_2019/inception_table_4b/unconditional/IGEBM (single)' -> {'IS': 6.43}."""
    node = paper_numbers()
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"paper number {path!r}: no {part!r} in paper_numbers.yaml")
        node = node[part]
    return node


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_provenance(output: Path, inputs: list[Path], extra: dict) -> None:
    """Sidecar <output>.provenance.json: git commit, input checksums and what produced it."""
    prov = {"output": str(output), "git_commit": git_commit(),
            "inputs": {str(p): file_digest(p) for p in inputs if Path(p).is_file()}, **extra}
    atomic_write_text(Path(str(output) + ".provenance.json"), json.dumps(prov, indent=1, default=str) + "\n")


def fmt(v, nd=2) -> str:
    """A table number, or an em dash where there is none."""
    return "—" if v is None else f"{v:.{nd}f}"


def score_cells(m: dict) -> tuple[str, str]:
    """IS (mean ± std) and FID cells of a metrics dict; a diverged run says where, and what was scored instead."""
    if m.get("diverged") and m.get("IS_mean") is None:
        return (f"diverged at step {m['diverged']['step']} (nothing to score)",) * 2
    is_cell, fid_cell = f"{m['IS_mean']:.2f} ± {m['IS_std']:.2f}", fmt(m["FID"])
    if m.get("diverged"):
        note = f" (diverged at step {m['diverged']['step']}; scored: {m['scored']})"
        return is_cell + note, fid_cell + note
    return is_cell, fid_cell


# Short names of the papers' tables and figures, for citing the source of each quoted number.
PAPER_PLACES = {"igebm_2019/inception_table_4b": "IGEBM Tab. 4b", "improved_cd_2021/generation_fig_3": "ICD Fig. 3",
                "improved_cd_2021/ablation_table_2": "ICD Tab. 2", "improved_cd_2021/truncation_app_d1": "ICD App. D.1"}


def paper_source(path: str) -> str:
    """'igebm_2019/inception_table_4b/unconditional/IGEBM (single)' -> 'IGEBM Tab. 4b'."""
    head = "/".join(path.split("/")[:2])
    return PAPER_PLACES.get(head, head)


def paper_cells(paths: list[str]) -> dict[str, tuple[float, str]]:
    """Each metric's first non-null value over the rows' paper entries, with the place that printed it."""
    cells = {}
    for p in paths:
        for k, v in paper_lookup(p).items():
            if v is not None and k not in cells:
                cells[k] = (v, paper_source(p))
    return cells


def sampling_text(ts: dict) -> str:
    """One line describing a test-time sampling protocol (params.yaml test_sampling)."""
    base = (f"{ts['n_iters']} it × {ts['steps_per_iter']} steps, step {ts['step_size']:g}, "
            f"noise {ts['noise_std']:g}, clip {ts['grad_clip']:g}")
    if ts["protocol"] == "fresh_chains":
        head = f"fresh_chains: {ts['n_chains']} new chains per chunk, all refined each iteration"
    else:
        rows = -(-ts["n_chains"] // ts["draw_size"]) * ts["draw_size"]
        where = "ONE buffer for all chunks" if ts["protocol"] == "persistent_buffer" else "a new buffer per chunk"
        head = (f"{ts['protocol']}: {ts['n_chains']} of {rows} chains kept per chunk, {where}, "
                f"{ts['draw_size']} drawn per iteration" + (" with replacement" if ts["draw_with_replacement"] else ""))
    extra = []
    if ts["reinit_frac"]:
        extra.append(f"reset {ts['reinit_frac']:.0%}")
    if ts["label_redraw_frac"]:
        extra.append(f"relabel {ts['label_redraw_frac']:.0%}")
    if ts["augment_every_iter"]:
        extra.append("augmentation" + (f" + blur p {ts['blur_p']:g}" if ts["blur_p"] else ""))
    if ts["final_iters_fixed"]:
        extra.append(f"last {ts['final_iters_fixed']} it fixed"
                     + (f" (sweep in {ts['final_sweep_parts']} slices)" if ts.get("final_sweep_parts") else ""))
    if ts["use_ema"]:
        extra.append("EMA weights")
    return f"{head}; {base}" + (f"; {', '.join(extra)}" if extra else "")


def scoring_text(m: dict) -> str:
    """FID reference and IS split order of one metrics dict."""
    if m.get("n_reference") is None:
        return f"FID vs {m['fid_reference']}"
    order = "IS splits shuffled" if m.get("samples_shuffle") else "IS splits in generation order"
    return f"FID vs {m['n_reference']} images (`{m['fid_reference']}`); {order}"


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
    for row, m in zip(rows, metrics, strict=True):
        paper = paper_cells(row["paper"])
        is_run, fid_run = score_cells(m)
        if m.get("KID_mean") is not None:
            kid = f"{m['KID_mean']:.4f} ± {m['KID_std']:.4f}"
        else:
            kid = is_run if m.get("diverged") else "—"
        cite = lambda k, nd: (f"{fmt(paper[k][0], nd)} ({paper[k][1]})" if k in paper else "—")  # noqa: E731
        body.append([row["row"], is_run, fid_run, kid, cite("IS", 2), cite("FID", 1),
                     m.get("n_samples", 0), m["train_step"], f"`{m['preset']}`", scoring_text(m),
                     sampling_text(m["test_sampling"])])
    head = ["Model", "IS (this run)", "FID (this run)", "KID (this run)", "IS (paper)", "FID (paper)",
            "#samples", "train steps", "preset", "scoring", "test-time sampling (protocol)"]
    # conventions come from a row that was scored (a row that diverged before any checkpoint has no metrics)
    m0 = next((m for m in metrics if m.get("IS_mean") is not None), {**metrics[0], "n_reference": "n/a",
                                                                      "weights_sha256": "n/a (nothing scored)"})
    lines = [f"# CIFAR-10-style generation: Inception Score and FID ({m0['setting']} setting)", "",
             tabulate(body, headers=head, tablefmt="github", disable_numparse=True), ""]
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
                  f"{fmt(real.get('std'))} with this classifier (the ceiling); one class only scores 1.00.",
                  f"- IS: {m0['n_splits']} splits, uint8 inputs; split order and FID reference per row (`scoring`)."]
    presets = sorted({m["preset"] for m in metrics})
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


def save_grid(images: np.ndarray, labels: np.ndarray, out_png: Path, title: str, nrow: int = 10,
              per_class: bool = False, class_names: tuple[str, ...] | None = None) -> None:
    """Sample grid (PNG + PDF beside it); per_class puts one class per row (IGEBM Fig. 4a)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if per_class:
        classes = sorted(c for c in set(labels.tolist()) if c >= 0)
        rows = [images[labels == c][:nrow] for c in classes]
        rows = [np.concatenate([r, np.zeros((nrow - len(r), *images.shape[1:]), np.uint8)]) for r in rows]
        names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in classes]
    else:
        n = min(len(images), nrow * nrow)
        pad = np.zeros((nrow * nrow - n, *images.shape[1:]), np.uint8)
        grid = np.concatenate([images[:n], pad])
        rows = [grid[i * nrow:(i + 1) * nrow] for i in range(nrow)]
        names = None
    h, w = images.shape[1:3]
    canvas = np.ones((len(rows) * (h + 2), nrow * (w + 2), 3), np.uint8) * 255
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            canvas[i * (h + 2) + 1:i * (h + 2) + 1 + h, j * (w + 2) + 1:j * (w + 2) + 1 + w] = im
    fig, ax = plt.subplots(figsize=(nrow * 0.6 + 1.5, len(rows) * 0.6 + 0.8), dpi=150)
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([])
    if names:
        ax.set_yticks([i * (h + 2) + h / 2 for i in range(len(rows))], names, fontsize=7)
    else:
        ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    for path in (out_png, out_png.with_suffix(".pdf")):
        atomic_write(path, lambda f, p=path: fig.savefig(f, format=p.suffix[1:]))
    plt.close(fig)
