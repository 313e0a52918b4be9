"""High-variance feature dimensions (Fig. 1): spectrum, removal sweep, BatchNorm, cross-dataset overlap.

Per model, the variance of every feature dimension over the train patch tokens gives the spectrum
(Fig. 1a). k-NN and linear mIoU are then measured with the N highest-variance dimensions removed,
N swept up to `cfg.removed[-1]` (Fig. 1b/1c), against the control of removing N random dimensions.
The alternative fix, standardising every dimension (a non-affine BatchNorm), is scored too. Finally
the top-`cfg.top_n` sets computed on different datasets are compared: a large overlap means the
high-variance dimensions are a property of the model, not of the data.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import ml_collections
import numpy as np

from vitjax import errors, experiments, paper_numbers, plotting, probes
from vitjax.data import registry
from vitjax.experiments import common


def random_dims(rng: np.random.Generator, dim: int, n: int) -> np.ndarray:
    """n distinct random dimensions out of `dim` (sorted)."""
    return np.sort(rng.choice(dim, size=min(n, dim), replace=False))


def spectrum(features: np.ndarray, variance: np.ndarray | None = None) -> np.ndarray:
    """Per-dimension variance sorted descending, as a fraction of the total: float64 [D].

    Args:
      features: float [N, D] array-like (streamed in chunks, see `probes.feature_moments`).
      variance: float [D] variance of `features` already computed (then `features` is not read).
    """
    if variance is None:
        variance = probes.feature_moments(features)[1]
    var = np.sort(np.asarray(variance, np.float64))[::-1]
    total = var.sum()
    return var / total if total > 0 else var


def removal_sweep(
    ctx: experiments.Context,
    model: experiments.ModelHandle,
    support: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    data: common.SegData,
    grid: tuple[int, int],
    counts: list[int],
    method: str,
    order: np.ndarray,
    random_control: bool,
) -> list[dict[str, Any]]:
    """mIoU with the top-N (and N random) dimensions removed, for every N of `counts`."""
    rows = []
    dim = support.shape[1]
    rng = ctx.rng(model.name, method)
    field = "config.variance." + ("removed" if method == "knn" else "linear_removed")
    for n in ctx.removal_counts(counts, dim, field, model.name):
        controls = [("top-variance", order[:n])]
        if random_control and n > 0:
            controls.append(("random", random_dims(rng, dim, n)))
        for control, dims in controls:
            pred = common.predict(
                method, ctx, model, support, labels, queries, data.num_classes, drop_dims=dims
            )
            s = common.score(pred, data.eval, grid, data.num_classes, ctx.config.data)
            rows.append(
                {
                    **common.model_row(model),
                    "method": method,
                    "removed": int(n),
                    "control": control,
                    "miou": s["miou"],
                    "acc": s["acc"],
                }
            )
    return rows


def overlap_plan(config: ml_collections.ConfigDict, names: list[str]) -> dict[str, str]:
    """The overlap datasets that cannot be read, each with the reason.

    A real dataset other than `config.dataset` is read from its `config.data.other_roots` entry;
    when that folder does not exist the dataset is skipped (a note in the report) rather than
    failing after the removal sweep.

    Returns:
      {skipped dataset: reason} (empty when every dataset can be read).

    Raises:
      ConfigError: an unknown dataset name, or a real dataset without an `other_roots` entry.
    """
    segmentation = registry.list_datasets(registry.SEGMENTATION)
    known = {*segmentation, *registry.list_datasets(registry.IMAGES)}
    skipped = {}
    for name in names:
        if name not in known:
            raise errors.ConfigError(
                f"config.variance.overlap_datasets: unknown dataset {name!r}; expected some of "
                f"{', '.join(sorted(known))}"
            )
        preset = name in segmentation and registry.get_dataset(name, registry.SEGMENTATION).preset
        if preset and name != config.dataset:
            root = common.other_root(config, name)
            if not os.path.isdir(root):
                skipped[name] = f"root {root!r} (config.data.other_roots) does not exist"
    return skipped


@experiments.register("variance")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    # Checked first: a missing dataset must not cost a whole removal sweep before it shows.
    overlap_names = list(cfg.overlap_datasets)
    skipped = overlap_plan(ctx.config, overlap_names)
    for name, reason in skipped.items():
        ctx.log(f"overlap: skipping {name}: {reason}")
    data = common.load_segmentation(ctx.config)
    top_n = cfg.top_n
    removal, bn_rows, summary, spectra = [], [], [], {}
    for model in ctx.models:
        spec, width, model_removal, model_bn = model_measurements(ctx, cfg, model, data)
        spectra[model.name] = spec
        removal += model_removal
        bn_rows += model_bn
        if top_n >= width:
            ctx.warn(
                f"config.variance.top_n: {top_n} is at or above {model.name}'s feature width "
                f"{width}: its overview has no top-{top_n} columns"
            )
        row = overview_row(ctx, model, data, top_n, spec, width, model_removal, model_bn)
        summary.append(row)
        ctx.log(
            f"{model.name}: top-{top_n} dims hold {row[f'var_frac_top{top_n}']:.2%} of variance"
        )

    overlap = overlap_rows(ctx, cfg, overlap_names, skipped)
    skipped_text = "".join(f" Skipped {name}: {reason}." for name, reason in skipped.items())
    fig_spectrum, fig_removal = figures(ctx, spectra, removal)
    return experiments.Result(
        tables={"overview": summary, "removal": removal, "batchnorm": bn_rows, "overlap": overlap},
        figures={"spectrum": fig_spectrum, "removal_curve": fig_removal},
        text={
            "summary": f"High-variance feature dimensions on {ctx.config.dataset}: how much of the "
            "variance a few dimensions hold, and what removing or normalising them does.",
            "overview": f"Per model: share of variance in the top-{top_n} dimensions, and mIoU "
            f"with all dimensions, the top-{top_n} removed, {top_n} random removed, or "
            "standardised (paper value beside MAE ViT-B on Cityscapes).",
            "removal": "k-NN and linear mIoU with the N highest-variance dimensions removed, "
            "and with N random dimensions removed as the control.",
            "batchnorm": "k-NN and linear mIoU after standardising every dimension with the "
            "statistics of the labelled train patches (the MAE linear probe's non-affine "
            "BatchNorm, eps 1e-6), the alternative to removal.",
            "overlap": f"Overlap of the top-{top_n} variance dimensions computed on different "
            f"datasets (1 = the same dimensions).{skipped_text}",
            "spectrum": plotting.caption(
                "Fig. 1a: variance of each feature dimension (sorted) as a fraction of the total. "
                + spectrum_summary(spectra),
                "that a few dimensions hold a large share of the variance (a steep head), most "
                "of all in MAE",
                ctx.models,
            ),
            "removal_curve": plotting.caption(
                "Fig. 1b/c: measured mIoU as the N highest-variance dimensions (solid) or N "
                "random dimensions (dashed) are removed.",
                "that removing MAE's top-variance dimensions raises its k-NN mIoU while random "
                "removals do not",
                ctx.models,
            ),
        },
        scalars={
            # The segmentation data, plus every overlap dataset that was read.
            "datasets": [
                d for d in dict.fromkeys([ctx.config.dataset, *overlap_names]) if d not in skipped
            ],
            "top_n": top_n,
            "overlap_skipped": sorted(skipped),
            experiments.SKIPPED_INPUTS: sorted(skipped),
        },
    )


def model_measurements(ctx, cfg, model, data) -> tuple[np.ndarray, int, list[dict], list[dict]]:
    """One model's variance spectrum [D], feature width, removal-sweep rows and BatchNorm rows."""
    data_cfg = ctx.config.data
    grid = common.grid_of(model, data.train.tiles.shape[1:3])
    support = common.patch_features(ctx, model, data.train.tiles, data.split_key("train"))
    queries = common.patch_features(ctx, model, data.eval.tiles, data.split_key("eval"))
    labels = data.train.patch_targets(grid, data_cfg.patch_label_rule)
    # One streamed pass pair over all train patches serves order and spectrum (the same
    # statistic the cross-dataset overlap computes on unlabelled images).
    variance_all = probes.feature_moments(support)[1]
    order = common.variance_order(support, variance=variance_all)
    spec = spectrum(support, variance=variance_all)
    removal = []
    for method, counts in (("knn", cfg.removed), ("linear", cfg.linear_removed)):
        removal += removal_sweep(
            ctx,
            model,
            support,
            labels,
            queries,
            data,
            grid,
            list(counts),
            method,
            order,
            cfg.random_control,
        )
    bn_rows = []
    if cfg.batchnorm:
        bn_rows = batchnorm_rows(ctx, model, support, labels, queries, data, grid)
    return spec, int(support.shape[1]), removal, bn_rows


def batchnorm_rows(ctx, model, support, labels, queries, data, grid) -> list[dict]:
    """k-NN and linear mIoU with every dimension standardised (the MAE probe's BatchNorm)."""
    # The linear probe's own BatchNorm (labelled train patches, eps 1e-6): the k-NN gets
    # features normalised by exactly that operation, the probe applies it itself.
    stats = probes.feature_normalizer(support, rows=np.flatnonzero(labels != common.IGNORE))
    inputs = {
        "knn": (
            common.standardize(support, stats=stats),
            common.standardize(queries, stats=stats),
            False,
        ),
        "linear": (support, queries, True),
    }
    rows = []
    for method, (method_support, method_queries, probe_bn) in inputs.items():
        pred = common.predict(
            method,
            ctx,
            model,
            method_support,
            labels,
            method_queries,
            data.num_classes,
            batchnorm=probe_bn,
        )
        s = common.score(pred, data.eval, grid, data.num_classes, ctx.config.data)
        rows.append(
            {
                **common.model_row(model),
                "method": method,
                "features": "batchnorm",
                "miou": s["miou"],
                "acc": s["acc"],
            }
        )
    return rows


def overview_row(ctx, model, data, top_n, spec, width, removal, bn_rows) -> dict[str, Any]:
    """The overview table's row of one model: variance shares, key mIoUs, the paper's MAE-200."""
    row = {
        **common.model_row(model),
        "dims": width,
        f"var_frac_top{top_n}": float(spec[:top_n].sum()),
        "var_frac_top1": float(spec[0]),
    }
    for r in removal:
        if r["removed"] in (0, top_n):
            name = "full" if r["removed"] == 0 else f"{r['control']}{top_n}_removed"
            row[f"{r['method']}_{name}"] = r["miou"]
    for r in bn_rows:
        row[f"{r['method']}_batchnorm"] = r["miou"]
    if model.spec.family == "mae":
        # The paper's "MAE-200" k-NN number, beside ours only where the setting is the same.
        protocol = paper_numbers.run_protocol(
            ctx.config,
            train_per_group=ctx.config.data.train_per_group,
            n_train_images=data.train.num_images,
            n_eval_images=data.eval.num_images,
        )
        protocol["removed_dims"] = top_n
        comparison = paper_numbers.paper_comparison(
            model.describe(), protocol, "knn", paper_numbers.MAE_REMOVED_200_PROTOCOL
        )
        paper = paper_numbers.CITYSCAPES_MAE_REMOVED_200["knn"]
        row["knn_removed_paper"] = paper if paper_numbers.is_comparable(comparison) else None
        row["knn_removed_vs_paper"] = comparison
    return row


def figures(ctx, spectra: dict[str, np.ndarray], removal: list[dict]) -> tuple[str, str]:
    """Writes the spectrum and removal-curve figures; returns their paths."""
    mark = plotting.random_weights_mark(ctx.models)
    fig_spectrum = ctx.figure_path("spectrum")
    plotting.line_plot(
        fig_spectrum,
        {"variance spectrum": {m: (np.arange(1, len(v) + 1), v) for m, v in spectra.items()}},
        xlabel="dimension rank (1 = highest variance)",
        ylabel="fraction of total variance",
        logy=True,
        keys=plotting.model_keys(ctx.models),
        integer_x=True,
        mark=mark,
    )
    fig_removal = ctx.figure_path("removal_curve")
    panels: dict[str, dict] = {}
    keys = {}
    for method in ("knn", "linear"):
        panel = {}
        for model in ctx.models:
            for control in ("top-variance", "random"):
                pts = [
                    r
                    for r in removal
                    if r["model"] == model.name
                    and r["method"] == method
                    and (r["control"] == control or r["removed"] == 0)
                ]
                if len(pts) > 1 or (pts and control == "top-variance"):
                    label = f"{model.name} ({control})"
                    panel[label] = ([r["removed"] for r in pts], [r["miou"] for r in pts])
                    keys[label] = (model.spec.family, model.name, control)
        panels[f"{method}: top-N removed vs random-N removed"] = panel
    plotting.line_plot(
        fig_removal,
        panels,
        xlabel="removed dimensions N",
        ylabel="mIoU (0-1)",
        keys=keys,
        integer_x=True,
        mark=mark,
    )
    return fig_spectrum, fig_removal


def spectrum_summary(spectra: dict[str, np.ndarray]) -> str:
    """One sentence on the measured spectra: the top dimension's share against a flat spectrum.

    Args:
      spectra: model name -> sorted variance fractions [D].
    """
    if not spectra:
        return "No spectrum was measured."
    parts = [
        f"{name} {spec[0]:.1%} ({spec[0] * len(spec):.1f}x the flat 1/{len(spec)})"
        for name, spec in spectra.items()
    ]
    return "Measured share of the top dimension: " + ", ".join(parts) + "."


def overlap_rows(
    ctx: experiments.Context,
    cfg: ml_collections.ConfigDict,
    names: list[str],
    skipped: dict[str, str],
) -> list[dict]:
    """Pairwise top-N overlap of variance orders computed on each dataset of `names`.

    Pairs with a dataset of `skipped` get no overlap and a note with the reason.
    """
    top_n = cfg.top_n
    rows = []
    for model in ctx.models:
        orders = {}
        for name in names:
            if name in skipped:
                continue
            tiles, key = common.load_images(ctx.config, name)
            feats = common.patch_features(ctx, model, tiles, key)
            orders[name] = common.variance_order(feats)
        for a, b in itertools.combinations(names, 2):
            row = {**common.model_row(model), "dataset_a": a, "dataset_b": b, "top_n": top_n}
            missing = [d for d in (a, b) if d in skipped]
            if missing:
                row.update(overlap=None, chance=None)
                row["note"] = "; ".join(f"{d} skipped: {skipped[d]}" for d in missing)
            else:
                row["overlap"] = common.topn_overlap(orders[a], orders[b], top_n)
                row["chance"] = min(top_n, len(orders[a])) / len(orders[a])
            rows.append(row)
    return rows


# Fig. 1: numbers of highest-variance dimensions removed (the authors' research code tried 10-750).
VARIANCE_SWEEP = (0, 10, 25, 50, 100, 200, 300, 400, 500, 600, 750)


def defaults() -> ml_collections.ConfigDict:
    """The `variance` section (Fig. 1): spectrum; k-NN/linear as the top-N dims are removed."""
    c = ml_collections.ConfigDict()
    c.removed = VARIANCE_SWEEP
    c.linear_removed = VARIANCE_SWEEP  # the paper sweeps the linear probe as well
    c.top_n = 200  # the paper's choice for MAE
    c.random_control = True
    c.batchnorm = True
    c.overlap_datasets = ("cityscapes", "ade20k")  # top-N sets compared across these datasets
    return c
