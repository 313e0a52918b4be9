"""Layer-wise k-NN (Fig. 3): how patch classification improves through the blocks, per class.

For every requested block, the (final-LayerNorm-normalised) patch tokens of that block are the
k-NN support and queries; the table holds mIoU and accuracy per layer, and IoU per class and layer
(a heatmap per model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from vitjax import errors, experiments, plotting
from vitjax.experiments import common


def resolve_layers(layers: Sequence[int], depth: int) -> list[int]:
    """Block indices (0-based, ascending, unique) of `config.layerwise.layers` for a model of
    `depth` blocks: `()` = every block; negative indices count from the last block.

    Raises:
      ConfigError: a non-integer entry, or an index outside the model.
    """
    if not layers:
        return list(range(depth))
    out = set()
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise errors.ConfigError(
                f"config.layerwise.layers={tuple(layers)!r}: expected block indices (ints), "
                "e.g. (0, -1), or () for every block"
            )
        index = layer + depth if layer < 0 else layer
        if not 0 <= index < depth:
            raise errors.ConfigError(
                f"config.layerwise.layers={tuple(layers)!r}: layer {layer} outside a "
                f"{depth}-block model"
            )
        out.add(int(index))
    return sorted(out)


def per_class_rows(
    model_row: dict[str, Any], layer: int, iou: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """One wide row: IoU of every class at `layer` (None where the class is absent)."""
    row = {**model_row, "layer": layer}
    for name, value in zip(class_names, np.asarray(iou, np.float64)):
        row[name] = float(value) if np.isfinite(value) else None
    return row


def layer_rows(feats: Any, layer: int) -> np.ndarray:
    """Patch features of block `layer` (0-based) of a FeatureSet as rows: [N * h * w, D]
    (a view of the store's memmap)."""
    array = feats.patch[layer]
    return array.reshape(-1, array.shape[-1])


@experiments.register("layerwise")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    data = common.load_segmentation(ctx.config)
    data_cfg = ctx.config.data
    by_layer, per_class, heat, curves = [], [], {}, {}
    for model in ctx.models:
        depth = int(model.spec.depth)
        layers = resolve_layers(cfg.layers, depth)
        grid = common.grid_of(model, data.train.tiles.shape[1:3])
        labels = data.train.patch_targets(grid, data_cfg.patch_label_rule)
        matrix = np.full((data.num_classes, len(layers)), np.nan)
        # All layers come out of one forward pass per split; each layer is a view of it.
        train = ctx.features(model, data.train.tiles, key=data.split_key("train"), layers=layers)
        evals = ctx.features(model, data.eval.tiles, key=data.split_key("eval"), layers=layers)
        for j, layer in enumerate(ctx.progress(layers, len(layers), f"{model.name} layers")):
            support = layer_rows(train, layer)
            queries = layer_rows(evals, layer)
            pred = common.knn_predict(
                support, labels, queries, data.num_classes, ctx.config.knn, mesh=ctx.mesh
            )
            s = common.score(pred, data.eval, grid, data.num_classes, data_cfg)
            by_layer.append(
                {
                    **common.model_row(model),
                    "layer": layer,
                    "relative_depth": (layer + 1) / depth,
                    "miou": s["miou"],
                    "acc": s["acc"],
                }
            )
            per_class.append(
                per_class_rows(common.model_row(model), layer, s["iou"], data.class_names)
            )
            matrix[:, j] = s["iou"]
        heat[model.name] = matrix
        curves[model.name] = (
            [(layer + 1) / depth for layer in layers],
            [r["miou"] for r in by_layer if r["model"] == model.name],
        )
    mark = plotting.random_weights_mark(ctx.models)
    fig_curve = ctx.figure_path("miou_by_layer")
    plotting.line_plot(
        fig_curve,
        {"k-NN mIoU per block": curves},
        xlabel="relative depth (block + 1) / depth",
        ylabel="mIoU (0-1)",
        keys=plotting.model_keys(ctx.models),
        mark=mark,
    )
    fig_heat = ctx.figure_path("iou_per_class")
    first_layers = resolve_layers(cfg.layers, int(ctx.models[0].spec.depth))
    plotting.heatmaps(
        fig_heat,
        heat,
        row_labels=data.class_names,
        col_labels=first_layers if len({m.spec.depth for m in ctx.models}) == 1 else [],
        cbar_label="IoU (0-1; blank = class absent)",
        xlabel="block (0 = first)",
        ylabel="class",
        mark=mark,
    )
    return experiments.Result(
        tables={"by_layer": by_layer, "per_class": per_class},
        figures={"miou_by_layer": fig_curve, "iou_per_class": fig_heat},
        text={
            "summary": f"Layer-wise k-NN patch classification on {ctx.config.dataset}.",
            "by_layer": "k-NN mIoU and accuracy of every block's (normalised) patch tokens.",
            "per_class": "IoU of every class at every block (empty where the class is absent).",
            "miou_by_layer": plotting.caption(
                "Fig. 3: measured k-NN mIoU of each block's patch tokens against relative depth.",
                "where each model's curve peaks, i.e. which block holds the most local semantic "
                "information",
                ctx.models,
            ),
            "iou_per_class": plotting.caption(
                "Fig. 3 (per class): measured IoU per class (rows) and block (columns), one "
                "panel per model.",
                "that stuff classes saturate at earlier blocks than small things",
                ctx.models,
            ),
        },
        scalars={"datasets": [ctx.config.dataset]},
    )


def defaults() -> ml_collections.ConfigDict:
    """The `layerwise` section (Fig. 3): k-NN per block, overall and per class."""
    c = ml_collections.ConfigDict()
    c.layers = ()  # block indices, e.g. (0, 3, -1); () = every block
    return c
