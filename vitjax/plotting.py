"""Figures for the report: line plots and heatmaps written as PNG (matplotlib Agg, atomic writes)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: figures are files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vitjax import report  # noqa: E402

Series = tuple[Sequence[float], Sequence[float]]


def _save(fig, path: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    report.write_atomic(path, buf.getvalue())
    return path


def line_plot(
    path: str,
    panels: Mapping[str, Mapping[str, Series]],
    xlabel: str,
    ylabel: str,
    logy: bool = False,
    logx: bool = False,
    styles: Mapping[str, str] | None = None,
    suptitle: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> str:
    """One subplot per panel, one line per series.

    Args:
      path: PNG path.
      panels: panel title -> {series label -> (x values, y values)}.
      xlabel, ylabel: axis labels (shared by all panels).
      logy, logx: log axes.
      styles: series label -> matplotlib format string (e.g. "--" for controls).
      suptitle: title over all panels.
      colors: series label -> matplotlib colour (default: the colour cycle).

    Returns:
      `path`.
    """
    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    legend: dict[str, object] = {}
    for ax, (title, series) in zip(axes.flat, panels.items()):
        for label, (x, y) in series.items():
            y = np.asarray(y, dtype=float)
            fmt = (styles or {}).get(label, "-")
            kwargs = {"color": colors[label]} if colors and label in colors else {}
            (line,) = ax.plot(
                np.asarray(x, dtype=float), y, fmt, marker="o", markersize=3, label=label, **kwargs
            )
            legend.setdefault(label, line)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    # Panels share their series: one legend beside the figure instead of one over each panel.
    if legend:
        fig.legend(
            list(legend.values()), list(legend), loc="center left", bbox_to_anchor=(1.0, 0.5),
            fontsize=7,
        )  # fmt: skip
    return _save(fig, path)


def heatmaps(
    path: str,
    panels: Mapping[str, np.ndarray],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    xlabel: str = "",
    ylabel: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    annotate: bool = False,
) -> str:
    """One heatmap per panel (rows x cols matrices sharing the labels), with a colour bar.

    Args:
      path: PNG path.
      panels: panel title -> float [len(row_labels), len(col_labels)] (NaN drawn blank).
      row_labels, col_labels: tick labels.
      xlabel, ylabel: axis labels.
      vmin, vmax: colour range.
      annotate: write each value in its cell.

    Returns:
      `path`.
    """
    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = -(-n // cols)
    h = max(2.8, 0.9 + 0.22 * len(row_labels))
    w = max(3.0, 1.2 + 0.3 * len(col_labels))
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False, sharey=True)
    image = None
    for ax, (title, matrix) in zip(axes.flat, panels.items()):
        matrix = np.asarray(matrix, dtype=float)
        image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
        ax.set_title(title, fontsize=9)
        if col_labels:
            ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], fontsize=6)
        ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels], fontsize=6)
        if ax in axes[-1, :] or len(panels) <= cols:
            ax.set_xlabel(xlabel)
        if ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        if annotate:
            for (i, j), v in np.ndenumerate(matrix):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    return _save(fig, path)
