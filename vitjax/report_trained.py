"""The report's trained-vs-random table: each trained model next to a random one of the same shape.

A trained model (a checkpoint) is paired with the random-weight model of the same family, size,
patch size and depth in the same run (e.g. `mae:ti:16:pretrained:demo_mae` with `mae:ti:16:none`
at `model_depth=3`). For every experiment one headline quantity (`HEADLINES`) is compared; the
section says plainly where the trained model does not beat the random one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Headline:
    """One experiment's headline quantity: the mean of `column` over a model's rows of `table`
    that match `where`; `higher_is_better` None for a descriptive quantity (no winner)."""

    table: str
    column: str
    where: tuple[tuple[str, Any], ...] = ()
    higher_is_better: bool | None = True
    label: str = ""


HEADLINES: dict[str, tuple[Headline, ...]] = {
    "fewshot": (
        Headline("tab2", "knn_miou", label="few-shot k-NN mIoU"),
        Headline("tab2", "linear_miou", label="few-shot linear mIoU"),
    ),
    "variance": (
        Headline(
            "overview",
            "var_frac_top1",
            higher_is_better=None,
            label="variance share of the top dimension",
        ),
        Headline("overview", "knn_full", label="k-NN mIoU, all dims"),
    ),
    "layerwise": (Headline("by_layer", "miou", label="k-NN mIoU, mean over layers"),),
    "robustness": (
        Headline("scores", "miou", (("method", "knn"),), label="k-NN mIoU, mean over corruptions"),
    ),
    "global_context": (
        Headline("r2", "r2_mean", (("features", "full"),), label="ridge R^2 of class fractions"),
    ),
    "tiling_vs_full": (
        Headline("scores", "miou", (("method", "knn"),), label="k-NN mIoU, tiles and full"),
    ),
    "fair1m_retrieval": (
        Headline(
            "outcomes",
            "at_least_fine_frac",
            (("mode", "retrieval"), ("perturbation", "clean"), ("removed", 0)),
            label="retrieval: same fine class or better",
        ),
    ),
    "tracking": (Headline("association", "instance_acc", label="association accuracy"),),
    "scalemae_knn": (Headline("knn", "accuracy", (("removed", 0),), label="scene k-NN accuracy"),),
    "mae_reconstruction": (
        Headline("reconstruction", "psnr", (("features", "full"),), label="reconstruction PSNR"),
    ),
}


def _shape(model: dict[str, Any]) -> tuple:
    return (model.get("family"), model.get("size"), model.get("patch_size"), model.get("depth"))


def pairs(models: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(trained, random) model entries of `results["models"]` with the same shape."""
    random = {}
    for m in models:
        if m.get("random_weights"):
            random.setdefault(_shape(m), m)
    return [
        (m, random[_shape(m)])
        for m in models
        if not m.get("random_weights") and _shape(m) in random
    ]


def headline_value(rows: Sequence[dict[str, Any]], model: str, h: Headline) -> float | None:
    """Mean of `h.column` over `model`'s matching rows; None when there is none (or non-finite)."""
    values = []
    for row in rows:
        if row.get("model") != model or any(row.get(k) != v for k, v in h.where):
            continue
        value = row.get(h.column)
        if isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
    return sum(values) / len(values) if values else None


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (pair, experiment, headline) that both models have a value for."""
    out = []
    for trained, random in pairs(results.get("models", [])):
        for name, entry in results.get("experiments", {}).items():
            for h in HEADLINES.get(name, ()):
                table = entry.get("tables", {}).get(h.table, [])
                a = headline_value(table, trained["name"], h)
                b = headline_value(table, random["name"], h)
                if a is None or b is None:
                    continue
                if h.higher_is_better is None:
                    verdict = "(descriptive)"
                elif a == b:
                    verdict = "tie"
                else:
                    verdict = "yes" if (a > b) == h.higher_is_better else "NO"
                out.append(
                    {
                        "experiment": name,
                        "quantity": h.label or h.column,
                        "trained": trained["name"],
                        "random": random["name"],
                        "trained value": a,
                        "random value": b,
                        "trained - random": a - b,
                        "trained better": verdict,
                    }
                )
    return out


def section(results: dict[str, Any]) -> list[str]:
    """Markdown lines of the section (empty when no trained model has a random twin)."""
    from vitjax import report  # report imports this module: resolved when called

    table = rows(results)
    if not table:
        return []
    losses = [r for r in table if r["trained better"] == "NO"]
    out = [
        "## Trained vs random weights",
        "",
        "Each trained model next to the random-weight model of the same shape, on one headline "
        "quantity per experiment (mean over the experiment's rows for that model).",
        "",
        report.to_markdown(table),
    ]
    if losses:
        out.append(
            "**The trained model does not beat the random one on:** "
            + "; ".join(f"{r['experiment']} ({r['quantity']}, {r['trained']})" for r in losses)
            + "."
        )
    else:
        out.append("The trained models beat their random twins on every headline quantity.")
    trained = {r["trained"] for r in table}
    for model in results.get("models", []):
        if model["name"] in trained:
            for warning in model.get("training_warnings", []):
                out.extend(["", f"**Training of {model['name']} warned:** {warning}."])
    return [*out, ""]
