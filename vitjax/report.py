"""Writes a run's outputs: results.json, one CSV per table, and report.md (tables + figures).

All writes are atomic (temporary file in the same folder, then `os.replace`), so an interrupted run
never leaves a half-written file behind, and respect the umask (`vitjax.fileio`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from vitjax import canonical, fileio
from vitjax.models import families

TABLES_DIR = "tables"
REPORT_FILE = "report.md"


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Union of the rows' keys in order of first appearance."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of `rows` (missing cells empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=table_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def format_cell(value: Any) -> str:
    """Markdown cell: floats to 3 decimals (4 significant digits when small), None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value).replace("|", "\\|")


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown pipe table of `rows`."""
    if not rows:
        return "(no rows)\n"
    columns = table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def csv_name(experiment: str, table: str) -> str:
    return os.path.join(TABLES_DIR, f"{experiment}_{table}.csv")


def random_weights_line(models: Sequence[dict[str, Any]]) -> str | None:
    """The report's first line when any model has random weights, else None."""
    random = [m["name"] for m in models if m.get("random_weights")]
    if not random:
        return None
    which = "All models" if len(random) == len(models) else "Models " + ", ".join(random)
    return (
        f"**WARNING: RANDOM WEIGHTS.** {which} in this report have random weights (no checkpoint "
        "was given), so the numbers below test the pipeline only and say nothing about the "
        "pretrained models."
    )


def is_known_answer(model: dict[str, Any]) -> bool:
    """Whether a results.json model entry is a hand-built known-answer model (models.known)."""
    return model.get("size") == "known" and str(model.get("weights_hash") or "").startswith(
        "known-"
    )


def known_answer_line(models: Sequence[dict[str, Any]]) -> str | None:
    """A report line naming the known-answer models, else None."""
    known = [m["name"] for m in models if is_known_answer(m)]
    if not known:
        return None
    return (
        f"**NOTE: KNOWN-ANSWER MODELS.** {', '.join(known)} are hand-built (`vitjax.models.known`), "
        "neither random nor pretrained: their patch tokens are a known function of the pixels, so "
        "their numbers check the pipeline against answers computed by hand."
    )


# `Result.scalars` key: names of the datasets an experiment read (the report's header says them).
DATASETS_SCALAR = "datasets"

# Tables larger than this are linked as CSV, not inlined in report.md.
MAX_INLINE_ROWS = 30
MAX_INLINE_CELLS = 400


def experiment_datasets(entry: dict[str, Any]) -> str:
    """The datasets an experiment read (its `datasets` scalar), as report text."""
    names = (entry.get("scalars") or {}).get(DATASETS_SCALAR)
    if not names:
        return "not recorded"
    return ", ".join(f"`{n}`" for n in names)


def _pivot(
    rows: Sequence[dict[str, Any]],
    value: str,
    column: Callable[[dict[str, Any]], str],
    where: Callable[[dict[str, Any]], bool] = lambda r: True,
    index: str = "model",
) -> list[dict[str, Any]]:
    """One row per `index` value, one column per `column(row)`, cells `row[value]` (last wins)."""
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        if where(r) and r.get(value) is not None:
            out.setdefault(r.get(index), {index: r.get(index)})[column(r)] = r[value]
    return list(out.values())


def _mean_pivot(rows, value, column, where=lambda r: True) -> list[dict[str, Any]]:
    """As `_pivot`, but the mean of every cell's values."""
    cells: dict[Any, dict[str, list[float]]] = {}
    for r in rows:
        if where(r) and r.get(value) is not None:
            cells.setdefault(r["model"], {}).setdefault(column(r), []).append(float(r[value]))
    return [
        {"model": m, **{c: sum(v) / len(v) for c, v in cols.items()}} for m, cols in cells.items()
    ]


def _fewshot(t):
    keep = ("model", "knn_miou", "knn_paper", "linear_miou", "linear_paper")
    rows = [{k: r[k] for k in keep if r.get(k) is not None} for r in t.get("tab2", [])]
    return "Tab. 2: mIoU at the table's few-shot size (paper values only where comparable)", rows


def _variance(t):
    def keep(k: str) -> bool:
        return (
            k == "model"
            or k == "knn_full"
            or k == "knn_removed_paper"
            or (k.startswith("var_frac_top") and k != "var_frac_top1")
            or (k.startswith("knn_top-variance") and k.endswith("_removed"))
        )

    rows = [
        {k: v for k, v in r.items() if keep(k) and v is not None} for r in t.get("overview", [])
    ]
    return "share of variance in the top-N dimensions; k-NN mIoU with all / top-N removed", rows


def _layerwise(t):
    best: dict[str, dict[str, Any]] = {}
    for r in t.get("by_layer", []):
        if r.get("miou") is not None and r["miou"] >= best.get(r["model"], {}).get("best_miou", -1):
            best[r["model"]] = {
                "model": r["model"],
                "best_miou": r["miou"],
                "at_block": r["layer"],
                "relative_depth": r["relative_depth"],
            }
    return "best k-NN mIoU over blocks and where it is", list(best.values())


def _robustness(t):
    rows = t.get("scores", [])
    strongest: dict[str, float] = {}
    for r in rows:
        if r["corruption"] != "clean":
            strongest[r["corruption"]] = max(strongest.get(r["corruption"], r["level"]), r["level"])

    def column(r):
        return "clean" if r["corruption"] == "clean" else f"{r['corruption']} {r['level']:g}"

    def where(r):
        return r["method"] == "knn" and (
            r["corruption"] == "clean" or r["level"] == strongest.get(r["corruption"])
        )

    return "k-NN mIoU clean and at the strongest level of each corruption", _pivot(
        rows, "miou", column, where
    )


def _global_context(t):
    return "mean R^2 per feature variant (Tab. 6)", _pivot(
        t.get("r2", []), "r2_mean", lambda r: str(r["features"])
    )


def _tiling_vs_full(t):
    return "mIoU of tiled vs whole-image input (Tab. 5)", _pivot(
        t.get("scores", []), "miou", lambda r: f"{r['input']} {r['method']}"
    )


def _fair1m(t):
    rows = t.get("outcomes", [])

    def where(r):
        return r["removed"] == 0 and r["perturbation"] != "clean"

    ident = _mean_pivot(
        rows,
        "same_patch_frac",
        lambda r: "identification same_patch",
        lambda r: where(r) and r["mode"] == "identification",
    )
    retr = _mean_pivot(
        rows,
        "at_least_fine_frac",
        lambda r: "retrieval at_least_fine",
        lambda r: where(r) and r["mode"] == "retrieval",
    )
    merged = {r["model"]: dict(r) for r in ident}
    for r in retr:
        merged.setdefault(r["model"], {"model": r["model"]}).update(r)
    return "fraction of query patches, mean over all perturbation levels", list(merged.values())


def _tracking(t):
    rows = t.get("association", [])
    gaps = sorted({r["gap"] for r in rows})
    geometry = rows[0]["geometry"] if rows else None
    return f"instance accuracy at the shortest and longest frame gap ({geometry})", _pivot(
        rows,
        "instance_acc",
        lambda r: f"gap {r['gap']}",
        lambda r: r["geometry"] == geometry and r["gap"] in (gaps[0], gaps[-1]),
    )


def _scalemae(t):
    rows = t.get("knn", [])
    gsds = sorted({r["relative_gsd"] for r in rows})
    return "k-NN accuracy at native and coarsest GSD, mean over datasets", _mean_pivot(
        rows,
        "accuracy",
        lambda r: f"{r['representation']} gsd {r['relative_gsd']:g}",
        lambda r: r["removed"] == 0 and r["relative_gsd"] in (gsds[0], gsds[-1]),
    )


def _mae_reconstruction(t):
    rows = t.get("reconstruction", [])
    top = max((r["mask_ratio"] for r in rows), default=None)
    return f"PSNR (dB) at mask ratio {top} per feature variant (Tab. 4)", _pivot(
        rows, "psnr", lambda r: str(r["features"]), lambda r: r["mask_ratio"] == top
    )


# Experiment -> tables -> (what the headline is, one row per model): the paper's headline quantity.
HEADLINES: dict[str, Callable[[dict[str, Any]], tuple[str, list[dict[str, Any]]]]] = {
    "fewshot": _fewshot,
    "variance": _variance,
    "layerwise": _layerwise,
    "robustness": _robustness,
    "global_context": _global_context,
    "tiling_vs_full": _tiling_vs_full,
    "fair1m_retrieval": _fair1m,
    "tracking": _tracking,
    "scalemae_knn": _scalemae,
    "mae_reconstruction": _mae_reconstruction,
}


def headline(name: str, entry: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """(description, rows) of an experiment's headline quantity per model, or None."""
    fn = HEADLINES.get(name)
    if fn is None:
        return None
    try:
        return fn(entry.get("tables", {}))
    except (KeyError, TypeError, ValueError, IndexError):
        # A table of another shape (older result, custom experiment): no summary, the full
        # tables below still stand.
        return None


def table_block(name: str, table: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown of one table: inline when small, else a link to its CSV with its size."""
    path = csv_name(name, table)
    columns = table_columns(rows)
    if len(rows) <= MAX_INLINE_ROWS and len(rows) * len(columns) <= MAX_INLINE_CELLS:
        return [to_markdown(rows), f"(`{path}`)", ""]
    return [f"Full table ({len(rows)} rows x {len(columns)} columns): [`{path}`]({path})", ""]


def warnings_section(results: dict[str, Any]) -> list[str]:
    """Lines of the report's "Warnings" section (every experiment's `warnings`), or []."""
    lines = [
        f"- `{name}`: {warning}"
        for name, entry in results.get("experiments", {}).items()
        for warning in entry.get("warnings") or ()
    ]
    if not lines:
        return []
    return ["## Warnings", "", "Parts of the results below are missing or partial:", "", *lines, ""]


def global_vector(model: dict[str, Any]) -> str:
    """What the model's `cls`/global output is (its family record's `global_output`), e.g. SigLIP's
    attention-pooling head, which has no CLS token; '-' for a family the registry does not know."""
    name = model.get("family")
    return families.get_family(name).global_output if name in families.family_names() else "-"


def build_report(results: dict[str, Any]) -> str:
    """The text of report.md for a results dict (as written to results.json).

    Layout: random-weights warning, a summary (datasets read and the headline quantity per
    model of every experiment), the models, then every experiment's tables (small ones inline,
    large ones linked as CSV) and figures.
    """
    out: list[str] = []
    warning = random_weights_line(results["models"])
    if warning:
        out += [warning, ""]
    known_note = known_answer_line(results["models"])
    if known_note:
        out += [known_note, ""]
    entries = results["experiments"]
    out += [
        "# vitjax report: local representations of self-supervised ViTs",
        "",
        f"Seed {results['seed']}; experiments: "
        + ", ".join(f"`{n}`" for n in entries)
        + ". Every number is also in `results.json`, and every table in `tables/*.csv`.",
        "",
        *warnings_section(results),
        "## Summary",
        "",
        to_markdown(
            [
                {
                    "experiment": f"[{n}](#{n})",
                    "datasets read": experiment_datasets(e),
                    "headline": (
                        headline(n, e) or ("no summary for this experiment; see its tables",)
                    )[0],
                }
                for n, e in entries.items()
            ]
        ),
    ]
    for name, entry in entries.items():
        head = headline(name, entry)
        if head and head[1]:
            out += [f"**{name}**: {head[0]}", "", to_markdown(head[1])]
    out += [
        "## Models",
        "",
        to_markdown(
            [
                {
                    "model": m["name"],
                    "family": m.get("family"),
                    "size": m.get("size"),
                    "patch": m.get("patch_size"),
                    "depth": m.get("depth"),
                    "weights": "random"
                    if m.get("random_weights")
                    else ("known-answer" if is_known_answer(m) else m.get("checkpoint")),
                    "weights hash": str(m.get("weights_hash"))[:16],
                    # The family record's `global_output` (SigLIP: no CLS token, the MAP head).
                    "global representation": global_vector(m),
                }
                for m in results["models"]
            ]
        ),
    ]
    for name, entry in entries.items():
        text = entry.get("text", {})
        out += [f"## {name}", "", f"Datasets read: {experiment_datasets(entry)}.", ""]
        if text.get("summary"):
            out += [text["summary"], ""]
        for table, rows in entry.get("tables", {}).items():
            out += [f"### {table}", ""]
            if text.get(table):
                out += [text[table], ""]
            out += table_block(name, table, rows)
        for fig, path in entry.get("figures", {}).items():
            caption = text.get(fig, fig)
            out += [f"![{fig}]({path})", "", f"*{caption}*", ""]
        how = "reused from cache" if entry.get("cached") else f"{entry.get('seconds', 0):.1f} s"
        out += [f"<sub>cache key {entry.get('cache_key')}, {how}</sub>", ""]
    versions = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items())
    out += ["## Environment", "", versions, ""]
    return "\n".join(out)


def write_results(workdir: str, results: dict[str, Any]) -> None:
    """Writes results.json, tables/*.csv and report.md under `workdir`."""
    results = canonical.to_jsonable(results)
    fileio.atomic_write_text(os.path.join(workdir, "results.json"), json.dumps(results, indent=1))
    for name, entry in results["experiments"].items():
        for table, rows in entry.get("tables", {}).items():
            fileio.atomic_write_text(os.path.join(workdir, csv_name(name, table)), to_csv(rows))
    fileio.atomic_write_text(os.path.join(workdir, REPORT_FILE), build_report(results))
