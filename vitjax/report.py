"""Writes a run's outputs: results.json, one CSV per table, and report.md (tables + figures).

All writes are atomic (temporary file in the same folder, then `os.replace`), so an interrupted run
never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from vitjax import experiments, report_trained

TABLES_DIR = "tables"
REPORT_FILE = "report.md"


def write_atomic(path: str, data: str | bytes) -> None:
    """Writes `data` to `path` via a temporary file in the same folder and `os.replace`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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


def build_report(results: dict[str, Any]) -> str:
    """The text of report.md for a results dict (as written to results.json)."""
    out: list[str] = []
    warning = random_weights_line(results["models"])
    if warning:
        out += [warning, ""]
    cfg = results.get("config", {})
    out += [
        "# vitjax report: local representations of self-supervised ViTs",
        "",
        f"Dataset: `{cfg.get('dataset', '?')}`; seed {results['seed']}; experiments: "
        + ", ".join(f"`{n}`" for n in results["experiments"])
        + ". Every number is also in `results.json`, and every table in `tables/*.csv`.",
        "",
        *report_trained.section(results),
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
                    "weights": "random" if m.get("random_weights") else m.get("checkpoint"),
                    "weights hash": str(m.get("weights_hash"))[:16],
                }
                for m in results["models"]
            ]
        ),
    ]
    for name, entry in results["experiments"].items():
        text = entry.get("text", {})
        out += [f"## {name}", ""]
        if text.get("summary"):
            out += [text["summary"], ""]
        for table, rows in entry.get("tables", {}).items():
            out += [f"### {table}", ""]
            if text.get(table):
                out += [text[table], ""]
            out += [to_markdown(rows), f"(`{csv_name(name, table)}`)", ""]
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
    results = experiments.to_jsonable(results)
    write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=1))
    for name, entry in results["experiments"].items():
        for table, rows in entry.get("tables", {}).items():
            write_atomic(os.path.join(workdir, csv_name(name, table)), to_csv(rows))
    write_atomic(os.path.join(workdir, REPORT_FILE), build_report(results))
