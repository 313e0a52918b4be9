"""Global context in a single patch (Tab. 6): ridge regression from the central patch token of each
tile to the fractions of chosen classes (road, building, vegetation) in the image.

`cfg.target` says which image: "image" (default; the image's class fractions): the whole source
image the tile was cut from, so a patch must know about content far outside its own tile; "tile":
only the input tile the model saw. Fractions are over labelled pixels (ignore excluded).

Feature variants: all dimensions; the top-N variance dimensions removed; only the top-N; N random
dimensions (the control for "only the top-N"). The variance order comes from all train patches.
The ridge strength is chosen on a seeded held-out part of the train tiles, the model refitted on
all of them, and R^2 reported on the evaluation tiles.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from vitjax import errors, experiments, metrics, probes
from vitjax.experiments import common

TARGETS = ("image", "tile")  # what the fractions are computed over (config.global_context.target)


def class_fractions(
    label_tiles: np.ndarray, class_ids: list[int], ignore: int = common.IGNORE
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each class among the labelled pixels of every tile.

    Args:
      label_tiles: int [T, H, W] (ignore = `ignore`).
      class_ids: the C classes.

    Returns:
      (float64 [T, C] fractions, bool [T] tiles with at least one labelled pixel).
    """
    labels = np.asarray(label_tiles).reshape(len(label_tiles), -1)
    labelled = (labels != ignore).sum(axis=1)
    counts = np.stack([(labels == c).sum(axis=1) for c in class_ids], axis=1)
    valid = labelled > 0
    return counts / np.maximum(labelled, 1)[:, None], valid


def image_class_fractions(
    split: common.SegSplit, class_ids: list[int], ignore: int = common.IGNORE
) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of each class in the whole source image of every tile of `split`.

    Args:
      split: tiles with their infos and the original label maps.
      class_ids: the C classes.

    Returns:
      (float64 [T, C] fractions of the tile's source image, bool [T] images with at least one
      labelled pixel), one row per tile in tile order.
    """
    per_image = [class_fractions(np.asarray(m)[None], class_ids, ignore) for m in split.label_maps]
    fractions = (
        np.stack([f[0] for f, _ in per_image]) if per_image else np.zeros((0, len(class_ids)))
    )
    valid = np.array([v[0] for _, v in per_image], bool)
    image_of_tile = np.array([info.image_index for info in split.infos], np.int64)
    return fractions[image_of_tile], valid[image_of_tile]


def targets(
    split: common.SegSplit, class_ids: list[int], target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Regression targets of every tile: class fractions of its source image or of the tile itself.

    Returns:
      (float64 [T, C] fractions, bool [T] rows with a labelled pixel to compute them from).

    Raises:
      ConfigError: `target` is not "image" or "tile".
    """
    if target == "image":
        return image_class_fractions(split, class_ids)
    if target == "tile":
        return class_fractions(split.label_tiles, class_ids)
    raise errors.ConfigError(
        f"config.global_context.target={target!r}: expected one of {', '.join(TARGETS)}"
    )


def central_patches(features: np.ndarray, num_tiles: int, grid: tuple[int, int]) -> np.ndarray:
    """Feature of the central patch (row gh // 2, col gw // 2) of every tile: [T, D]."""
    gh, gw = grid
    return features.reshape(num_tiles, gh, gw, -1)[:, gh // 2, gw // 2]


def feature_variants(
    order: np.ndarray, top_n: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Kept dimensions of each variant: full, top-N removed, top-N only, random N."""
    dim = len(order)
    n = min(top_n, dim - 1)
    return {
        "full": np.arange(dim),
        f"top{top_n}_removed": np.sort(order[n:]),
        f"top{top_n}_only": np.sort(order[:n]),
        f"random{top_n}": np.sort(rng.choice(dim, size=n, replace=False)),
    }


def fit_and_score(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    l2s: list[float],
    val_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """Chooses the ridge strength on a held-out part of the train rows, refits, scores R^2.

    Returns:
      {"l2": chosen strength, "r2": mean R^2 on eval, "r2_per_target": [T] R^2 per target}.
    """
    if len(x_train) < 4 or len(x_eval) < 2:
        raise errors.ConfigError(
            f"global_context: {len(x_train)} train / {len(x_eval)} evaluation tiles with labels; "
            "expected at least 4 / 2 (more images in config.data)"
        )
    selection = probes.ridge_select(
        x_train, y_train, l2s=tuple(l2s), val_fraction=val_fraction, seed=seed, score="r2"
    )
    pred = np.asarray(selection.model.predict(x_eval, selection.l2)).reshape(y_eval.shape)
    per_target = [metrics.r2_score(y_eval[:, t], pred[:, t]) for t in range(y_eval.shape[1])]
    return {
        "l2": float(selection.l2),
        "r2": metrics.r2_score(y_eval, pred),
        "r2_per_target": per_target,
    }


@experiments.register("global_context")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    per_group = cfg.train_per_group or None
    data = common.load_segmentation(ctx.config, per_group=per_group)
    names = list(cfg.classes)
    missing = [c for c in names if c not in data.class_names]
    if missing:
        raise errors.ConfigError(
            f"config.global_context.classes: {missing} not among the classes of "
            f"{ctx.config.dataset}: {data.class_names}"
        )
    class_ids = [data.class_names.index(c) for c in names]
    target = cfg.target
    y_train, ok_train = targets(data.train, class_ids, target)
    y_eval, ok_eval = targets(data.eval, class_ids, target)
    rows = []
    for model in ctx.models:
        grid = common.grid_of(model, data.train.tiles.shape[1:3])
        support = common.patch_features(ctx, model, data.train.tiles, data.split_key("train"))
        queries = common.patch_features(ctx, model, data.eval.tiles, data.split_key("eval"))
        order = common.variance_order(support)
        if cfg.top_n >= len(order):
            ctx.warn(
                f"global_context.top_n={cfg.top_n} is at or above {model.name}'s feature width "
                f"{len(order)}: {len(order) - 1} dimensions are removed/kept/drawn instead "
                "(one must remain)"
            )
        x_train = central_patches(support, len(data.train.tiles), grid)[ok_train]
        x_eval = central_patches(queries, len(data.eval.tiles), grid)[ok_eval]
        variants = feature_variants(order, cfg.top_n, ctx.rng(model.name))
        for variant, dims in variants.items():
            s = fit_and_score(
                x_train[:, dims],
                y_train[ok_train],
                x_eval[:, dims],
                y_eval[ok_eval],
                list(cfg.l2s),
                cfg.val_fraction,
                ctx.seed,
            )
            row = {**common.model_row(model), "features": variant, "dims": len(dims)}
            row.update({f"r2_{c}": v for c, v in zip(names, s["r2_per_target"])})
            row.update({"r2_mean": s["r2"], "l2": s["l2"]})
            rows.append(row)
            ctx.log(f"{model.name} {variant}: R2 {s['r2']:.3f}")
    where = "the whole source image" if target == "image" else "the input tile"
    return experiments.Result(
        tables={"r2": rows},
        text={
            "summary": "How much global context one patch token carries: ridge regression from "
            f"the central patch of each tile to the fractions of {', '.join(names)} in "
            f"{where} ({int(ok_train.sum())} train / {int(ok_eval.sum())} evaluation tiles).",
            "r2": f"Tab. 6: R^2 on the evaluation tiles with all dimensions, the top-{cfg.top_n} "
            f"variance dimensions removed, only the top-{cfg.top_n}, or {cfg.top_n} random ones; "
            "higher = more image-level information.",
        },
        scalars={"datasets": [ctx.config.dataset]},
    )


def defaults() -> ml_collections.ConfigDict:
    """The `global_context` section (Tab. 6): ridge regression central patch -> class fractions."""
    c = ml_collections.ConfigDict()
    c.classes = ("road", "building", "vegetation")
    # image: fractions over the whole source image (labelled pixels); tile: over the input tile.
    c.target = "image"
    c.top_n = 200
    c.train_per_group = 0  # train images per group; 0 = data.train_per_group
    c.l2s = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0, 1e4)
    c.val_fraction = 0.25
    return c
