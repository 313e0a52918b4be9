"""Tiled vs full-image input (Tab. 5).

"tiles": the protocol's non-overlapping tiles (Cityscapes: 8x4 tiles of 256 px resized to 224).
"full": each whole image resized to `cfg.full_hw` and given to the model at once (the default keeps
the tiled patch density: 1024x2048 -> 896x1792). Both are scored at pixel level against the
original label maps (patch predictions stitched and nearest-upsampled), so their patch grids need
not match.
"""

from __future__ import annotations

import ml_collections

from vitjax import experiments
from vitjax.experiments import common


@experiments.register("tiling_vs_full")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    data_cfg = ctx.config.data
    method_names = common.methods(cfg.methods, "config.tiling_vs_full.methods")
    inputs = {
        "tiles": common.load_segmentation(ctx.config),
        "full": common.load_segmentation(ctx.config, full_hw=tuple(cfg.full_hw)),
    }
    rows = []
    for model in ctx.models:
        for name, data in inputs.items():
            grid = common.grid_of(model, data.train.tiles.shape[1:3])
            if not common.runs_at(model, data.train.tiles.shape[1:3]):
                ctx.log(f"{model.name}: skipped {name} input, grid {grid} != native grid")
                rows.append(
                    {
                        **common.model_row(model),
                        "input": name,
                        "model_input_hw": "x".join(str(v) for v in data.eval.tiles.shape[1:3]),
                        "note": "position encoding fixed to the native "
                        f"{tuple(model.spec.native_grid)} grid",
                    }
                )
                continue
            # Same number of tokens per batch as the tiled run: attention memory grows with the
            # square of the tokens per image, so whole images go through in smaller batches.
            tile_px = inputs["tiles"].eval.tiles.shape[1] * inputs["tiles"].eval.tiles.shape[2]
            image_px = data.eval.tiles.shape[1] * data.eval.tiles.shape[2]
            batch = max(1, ctx.config.extract.batch_size * tile_px // image_px)
            support = common.patch_features(
                ctx, model, data.train.tiles, data.split_key("train"), batch_size=batch
            )
            queries = common.patch_features(
                ctx, model, data.eval.tiles, data.split_key("eval"), batch_size=batch
            )
            labels = data.train.patch_targets(grid, data_cfg.patch_label_rule)
            per_image = len(data.eval.infos) // max(data.eval.num_images, 1)
            for method in method_names:
                pred = common.predict(
                    method, ctx, model, support, labels, queries, data.num_classes
                )
                s = common.score(pred, data.eval, grid, data.num_classes, data_cfg, level="pixel")
                rows.append(
                    {
                        **common.model_row(model),
                        "input": name,
                        "model_input_hw": "x".join(str(v) for v in data.eval.tiles.shape[1:3]),
                        "inputs_per_image": per_image,
                        "patches_per_image": per_image * grid[0] * grid[1],
                        "method": method,
                        "miou": s["miou"],
                        "acc": s["acc"],
                    }
                )
    tiles = inputs["tiles"]
    return experiments.Result(
        tables={"scores": rows},
        text={
            "summary": f"Tiled vs whole-image input on {ctx.config.dataset}.",
            "scores": f"Tab. 5: pixel-level mIoU with tiles of {data_cfg.tile_size} px "
            f"resized to {data_cfg.tile_out} ({len(tiles.eval.infos) // tiles.eval.num_images} "
            f"per image) vs the whole image resized to {tuple(cfg.full_hw)}. The paper reads "
            "the gap as how much the models depend on the object scale they were trained at.",
        },
        scalars={"datasets": [ctx.config.dataset]},
    )


def defaults() -> ml_collections.ConfigDict:
    """The `tiling_vs_full` section (Tab. 5): tiled input vs the whole image."""
    c = ml_collections.ConfigDict()
    c.full_hw = (896, 1792)  # 1024x2048 at 224/256: the tiled patch grid of Cityscapes
    c.methods = ("knn", "linear")
    return c
