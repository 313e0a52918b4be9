"""Figures for the report: line plots and heatmaps written as PNG (matplotlib Agg, atomic writes).

Series styles: a figure's series are told apart by colour = model family, marker = model within
the family, line style = variant (e.g. outcome, control, removed dims); see `series_styles`.
Log axes and integer axes are ticked at plain numbers (no "2x10^0"), and a figure of random-weight
models carries a visible mark (`random_weights_mark`).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: figures are files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

from vitjax import fileio  # noqa: E402

Series = tuple[Sequence[float], Sequence[float]]
# (family, member, variant): colour by family, marker by member, line style by variant.
SeriesKey = tuple[str, str, str]

LINESTYLES: tuple[Any, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _colours(n: int) -> list[tuple[float, ...]]:
    """n distinct colours: tab10, then tab20's light shades, then an even sweep of a colormap."""
    tab10 = [plt.get_cmap("tab10")(i) for i in range(10)]
    if n <= 10:
        return tab10[:n]
    if n <= 20:
        return tab10 + [plt.get_cmap("tab20")(2 * i + 1) for i in range(n - 10)]
    return [plt.get_cmap("turbo")(v) for v in np.linspace(0.05, 0.95, n)]


def series_styles(keys: Mapping[str, SeriesKey]) -> dict[str, dict[str, Any]]:
    """matplotlib line properties of every series label: colour by family, marker by member
    (model) within its family, line style by variant.

    Args:
      keys: label -> (family, member, variant), in drawing order.

    Returns:
      label -> {"color", "marker", "linestyle"}; distinct keys get distinct styles (when a family
      has more members or a figure more variants than there are markers or line styles, every
      series gets its own colour instead).
    """
    families = list(dict.fromkeys(k[0] for k in keys.values()))
    colours = dict(zip(families, _colours(len(families))))
    members: dict[str, list[str]] = {}
    for family, member, _ in keys.values():
        members.setdefault(family, [])
        if member not in members[family]:
            members[family].append(member)
    variants = list(dict.fromkeys(k[2] for k in keys.values()))
    out = {
        label: {
            "color": colours[family],
            "marker": MARKERS[members[family].index(member) % len(MARKERS)],
            "linestyle": LINESTYLES[variants.index(variant) % len(LINESTYLES)],
        }
        for label, (family, member, variant) in keys.items()
    }
    triples = {(str(s["color"]), s["marker"], str(s["linestyle"])) for s in out.values()}
    if len(triples) < len(set(keys.values())):
        for label, colour in zip(out, _colours(len(out))):
            out[label]["color"] = colour
    return out


def model_keys(models: Iterable[Any], variant: str = "") -> dict[str, SeriesKey]:
    """Series keys of one series per model (label = model name): colour by `spec.family`."""
    return {m.name: (str(m.spec.family), m.name, variant) for m in models}


def random_weights_mark(models: Iterable[Any]) -> str | None:
    """The figure mark of models with random weights ('random weights' or which ones), or None."""
    models = list(models)
    random = [m.name for m in models if m.random_weights]
    if not random:
        return None
    if len(random) == len(models):
        return "RANDOM WEIGHTS: tests the pipeline, not the pretrained models"
    # Wrapped: a single line naming a dozen models would stretch the figure past readability.
    text = f"RANDOM WEIGHTS ({len(random)} of {len(models)} models): " + ", ".join(random)
    return textwrap.fill(text, width=100, break_on_hyphens=False, break_long_words=False)


def caption(measured: str, paper_finding: str | None, models: Iterable[Any] = ()) -> str:
    """A figure caption: what was measured, then the paper's finding as the paper's (never as a
    fact about these data), and a warning when the models have random weights.

    Args:
      measured: sentence(s) describing what the figure shows.
      paper_finding: what the paper reports, as a clause ("that ..."), or None.
      models: the models drawn (objects with `name` and `random_weights`).
    """
    out = measured.rstrip()
    if paper_finding:
        out += f" The paper reports {paper_finding.rstrip('.')}."
    if random_weights_mark(models):
        out += " These models have random weights, so the figure tests the pipeline only."
    return out


def _mark(fig, mark: str | None) -> None:
    if mark:
        fig.text(
            0.5,
            1.0,
            mark,
            ha="center",
            va="bottom",
            fontsize=9,
            color="darkred",
            weight="bold",
            bbox={"boxstyle": "round", "facecolor": "mistyrose", "edgecolor": "darkred"},
        )


def _plain_log_ticks(ax, values: np.ndarray, integer: bool) -> None:
    """Ticks of a log x axis at the data values, written as plain numbers."""
    values = np.unique(values[np.isfinite(values) & (values > 0)])
    if 0 < len(values) <= 15:
        ax.xaxis.set_major_locator(ticker.FixedLocator(values))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.xaxis.set_major_formatter(
        ticker.FuncFormatter(lambda v, _: f"{v:.0f}" if integer else f"{v:g}")
    )


def line_figure(
    panels: Mapping[str, Mapping[str, Series]],
    xlabel: str | Mapping[str, str],
    ylabel: str,
    logy: bool = False,
    logx: bool = False,
    keys: Mapping[str, SeriesKey] | None = None,
    integer_x: bool = False,
    mark: str | None = None,
    suptitle: str | None = None,
):
    """The matplotlib Figure of `line_plot` (not saved); see there."""
    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    labels = list(dict.fromkeys(label for series in panels.values() for label in series))
    keys = dict(keys or {})
    # A series without a key is its own family: every such series gets its own colour.
    for label in labels:
        keys.setdefault(label, (f"_{label}", label, ""))
    styles = series_styles({label: keys[label] for label in labels})
    legend: dict[str, object] = {}
    for ax, (title, series) in zip(axes.flat, panels.items()):
        xs_all = []
        for label, (x, y) in series.items():
            x = np.asarray(x, dtype=float)
            xs_all.append(x)
            # Long series (spectra) get a marker every ~1/12 of their length, not on each point.
            every = max(1, len(x) // 12) if len(x) > 24 else None
            (line,) = ax.plot(
                x,
                np.asarray(y, dtype=float),
                markersize=4,
                markevery=every,
                label=label,
                **styles[label],
            )
            legend.setdefault(label, line)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel.get(title, "") if isinstance(xlabel, Mapping) else xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        values = np.concatenate(xs_all) if xs_all else np.zeros(0)
        if logx:
            ax.set_xscale("log")
            _plain_log_ticks(ax, values, integer_x)
        elif integer_x:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    # Panels share their series: one legend beside the figure instead of one over each panel.
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=7,
        )
    _mark(fig, mark)
    return fig


def line_plot(
    path: str,
    panels: Mapping[str, Mapping[str, Series]],
    xlabel: str | Mapping[str, str],
    ylabel: str,
    logy: bool = False,
    logx: bool = False,
    keys: Mapping[str, SeriesKey] | None = None,
    integer_x: bool = False,
    mark: str | None = None,
    suptitle: str | None = None,
) -> str:
    """One subplot per panel, one line per series, written as a PNG.

    Args:
      path: PNG path.
      panels: panel title -> {series label -> (x values [n], y values [n])}.
      xlabel: x-axis label with units, or panel title -> label (panels whose x differ).
      ylabel: y-axis label (shared by all panels).
      logy, logx: log axes (log x is ticked at the data values, as plain numbers).
      keys: series label -> (family, member, variant) for `series_styles`; a label without a key
        gets a colour of its own.
      integer_x: the x values are counts (shots, frame gaps): integer ticks only.
      mark: text of a box over the figure (e.g. `random_weights_mark(models)`).
      suptitle: title over all panels.

    Returns:
      `path`.
    """
    return _save(
        line_figure(panels, xlabel, ylabel, logy, logx, keys, integer_x, mark, suptitle), path
    )


def heatmap_figure(
    panels: Mapping[str, np.ndarray],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    cbar_label: str,
    xlabel: str = "",
    ylabel: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    annotate: bool = False,
    mark: str | None = None,
):
    """The matplotlib Figure of `heatmaps` (not saved); see there."""
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
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        bar.set_label(cbar_label)
    _mark(fig, mark)
    return fig


def heatmaps(
    path: str,
    panels: Mapping[str, np.ndarray],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    cbar_label: str,
    xlabel: str = "",
    ylabel: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    annotate: bool = False,
    mark: str | None = None,
) -> str:
    """One heatmap per panel (rows x cols matrices sharing the labels), with a labelled colour bar.

    Args:
      path: PNG path.
      panels: panel title -> float [len(row_labels), len(col_labels)] (NaN drawn blank).
      row_labels, col_labels: tick labels.
      cbar_label: what the colour means, with units (e.g. "IoU (0-1)").
      xlabel, ylabel: axis labels.
      vmin, vmax: colour range.
      annotate: write each value in its cell.
      mark: text of a box over the figure (e.g. `random_weights_mark(models)`).

    Returns:
      `path`.
    """
    fig = heatmap_figure(
        panels, row_labels, col_labels, cbar_label, xlabel, ylabel, vmin, vmax, annotate, mark
    )
    return _save(fig, path)


def _save(fig, path: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    fileio.atomic_write_bytes(path, buf.getvalue())
    return path
