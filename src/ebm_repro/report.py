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


def paper_numbers_path() -> Path:
    return Path(str(resources.files("ebm_repro").joinpath("paper_numbers.yaml")))


def paper_numbers() -> dict:
    """The papers' printed numbers (src/ebm_repro/paper_numbers.yaml, copied from the spec)."""
    return yaml.safe_load(paper_numbers_path().read_text())


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


HTML_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:1.2em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:12.5px}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left;min-width:5em}
th{background:#eef1f5;position:sticky;top:0}tr:nth-child(even) td{background:#fafafa}
code{font-size:90%;background:#f3f3f3;padding:0 2px}td code{font-size:80%;word-break:break-all}
h1{font-size:1.35em}h2{font-size:1.15em;margin-top:1.4em}"""


def markdown_html(text: str, title: str) -> str:
    """A standalone HTML page of one of our Markdown tables (GitHub pipe tables; raw HTML in the text is escaped)."""
    import html

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{HTML_STYLE}</style></head>\n<body>\n{body}</body></html>\n")


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


def tile_images(grid: np.ndarray, pad: int = 2, below: int = 0, fill: int = 255) -> np.ndarray:
    """uint8 images (R, C, H, W, ch) -> one RGB canvas (R * (H + pad + below), C * (W + pad), 3).

    Image (i, j) starts at row i * (H + pad + below) + pad // 2, column j * (W + pad) + pad // 2; `below` leaves
    rows of `fill` under each image for a caption (a distance, a step). Grey images (ch = 1) are copied to RGB.
    """
    if grid.dtype != np.uint8 or grid.ndim != 5 or grid.shape[-1] not in (1, 3):
        raise ValueError(f"tile_images wants uint8 (R, C, H, W, 1 or 3), got {grid.dtype} {grid.shape}")
    r, c, h, w = grid.shape[:4]
    if grid.shape[-1] == 1:
        grid = np.repeat(grid, 3, axis=-1)
    ch, cw = h + pad + below, w + pad
    canvas = np.full((r * ch, c * cw, 3), fill, np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = i * ch + pad // 2, j * cw + pad // 2
            canvas[y:y + h, x:x + w] = grid[i, j]
    return canvas
