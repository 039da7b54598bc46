"""Image panels for figures: a table of images with column titles, row labels and framed (highlighted) cells."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ebm_repro.runs import save_figure


def image_panel(cells: np.ndarray, col_titles: list[str], row_labels: list[str], title: str, out_png: Path,
                highlight: np.ndarray | None = None, highlight_label: str = "", col_gaps: tuple[int, ...] = (),
                row_gaps: tuple[int, ...] = ()) -> None:
    """cells uint8 (R, K, H, W, C) -> PNG + PDF; highlight (R, K) bool draws a red frame round a cell.

    col_gaps / row_gaps: indices of columns / rows after which a wider gap separates groups.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    r, k, h, w, c = cells.shape
    if len(col_titles) != k or len(row_labels) != r:
        raise ValueError(f"image_panel: {k} columns / {r} rows but {len(col_titles)} titles / {len(row_labels)} labels")
    if c == 1:
        cells = np.repeat(cells, 3, axis=-1)
    pad, gap = 2, 8
    xs = [j * (w + pad) + gap * sum(g < j for g in col_gaps) for j in range(k)]   # left edge of each column
    ys = [i * (h + pad) + gap * sum(g < i for g in row_gaps) for i in range(r)]
    canvas = np.full((ys[-1] + h + pad, xs[-1] + w + pad, 3), 255, np.uint8)
    for i in range(r):
        for j in range(k):
            canvas[ys[i] + 1:ys[i] + 1 + h, xs[j] + 1:xs[j] + 1 + w] = cells[i, j]
    label_w = 0.055 * max(len(t) for t in row_labels)   # inches of 6-pt row labels left of the images
    fig, ax = plt.subplots(figsize=(k * 0.62 + 0.8 + label_w, r * 0.62 + 1.6), dpi=150)
    ax.imshow(canvas, interpolation="nearest")
    if highlight is not None:
        for i, j in zip(*np.nonzero(highlight)):
            ax.add_patch(Rectangle((xs[j] + 0.5, ys[i] + 0.5), w, h, fill=False, edgecolor="red", linewidth=1.4))
    ax.xaxis.tick_top()
    ax.set_xticks([x + 1 + w / 2 for x in xs], col_titles, fontsize=6)
    ax.set_yticks([y + 1 + h / 2 for y in ys], row_labels, fontsize=6)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    chars = int(fig.get_figwidth() * 72 / (7 * 0.6))   # characters of 7-pt text across the figure

    def wrap(text: str) -> str:
        return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))

    line = 0.11 / fig.get_figheight()                    # one line of 6-7 pt text, as a share of the height
    title = wrap(title)
    fig.suptitle(title, fontsize=7, y=0.995, va="top")   # centred on the figure, not on the (offset) image axes
    head, foot = (title.count("\n") + 1.5) * line, 0.0
    if highlight_label:
        highlight_label = wrap(highlight_label)
        fig.text(0.5, 0.005, highlight_label, ha="center", va="bottom", fontsize=6, color="red")
        foot = (highlight_label.count("\n") + 1) * line
    fig.tight_layout(rect=(0, foot, 1, 1 - head))
    save_figure(fig, Path(out_png))
    plt.close(fig)
