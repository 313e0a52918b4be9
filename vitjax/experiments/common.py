"""Shared protocol of the segmentation-side experiments: data, patch features, k-NN, probe, scores.

The pipeline every experiment uses (datasets.md §1 and §10):

1. `load_segmentation(config)` reads the few-shot train images and the evaluation images of
   `config.dataset` (Cityscapes, ADE20K, or synthetic scenes), optionally resizes them, and cuts
   them into tiles (`SegSplit`): image tiles at the model's input size and label tiles at source
   resolution (padding = ignore).
2. `patch_features(ctx, model, split, key)` extracts the final-norm patch tokens of every tile
   through the FeatureStore: float32 [T * gh * gw, D], row-major per tile.
3. `SegSplit.patch_targets(grid)`: one label per patch (the pixel under the patch centre by default).
4. `knn_predict` (top-k by dot product, 1-NN label) or `linear_predict` (softmax probe) give one
   class per evaluation patch.
5. `score` turns patch predictions into mIoU and accuracy, per patch or per pixel (stitched tiles,
   nearest-upsampled to the original label map).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from vitjax import errors, experiments
from vitjax.data import patch_labels, tiling

IGNORE = 255


@dataclasses.dataclass
class SegSplit:
    """Tiles of one split of a segmentation dataset.

    Attributes:
      tiles: uint8 [T, oh, ow, 3], model input (after any resize).
      label_tiles: uint8 [T, th, tw] label tiles at source resolution (padding = ignore).
      infos: T TileInfos (image_index = position in `label_maps`).
      label_maps: the original label maps, uint8 [H, W] each (for pixel-level scores).
      groups: int [num_images] group (city / class) of each image.
      image_ids: str per image.
    """

    tiles: np.ndarray
    label_tiles: np.ndarray
    infos: list[tiling.TileInfo]
    label_maps: list[np.ndarray]
    groups: np.ndarray
    image_ids: list[str]
    _targets: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def num_images(self) -> int:
        return len(self.label_maps)

    def patch_targets(self, grid: tuple[int, int], rule: str = "centre") -> np.ndarray:
        """One label per patch of every tile, int32 [T * gh * gw] (row-major per tile)."""
        key = (tuple(grid), rule)
        if key not in self._targets:
            labels = patch_labels.patch_labels_batch(self.label_tiles, grid, rule, IGNORE)
            self._targets[key] = labels.reshape(-1).astype(np.int32)
        return self._targets[key]

    def select_images(self, keep: np.ndarray) -> SegSplit:
        """The split restricted to images `keep` (bool [num_images] or indices), renumbered."""
        keep = np.flatnonzero(np.asarray(keep)) if np.asarray(keep).dtype == bool else keep
        keep = [int(i) for i in keep]
        new_index = {old: new for new, old in enumerate(keep)}
        tile_rows = [k for k, info in enumerate(self.infos) if info.image_index in new_index]
        infos = [
            dataclasses.replace(self.infos[k], image_index=new_index[self.infos[k].image_index])
            for k in tile_rows
        ]
        return SegSplit(
            self.tiles[tile_rows],
            self.label_tiles[tile_rows],
            infos,
            [self.label_maps[i] for i in keep],
            self.groups[keep],
            [self.image_ids[i] for i in keep],
        )


@dataclasses.dataclass
class SegData:
    """Few-shot train split and evaluation split of one dataset.

    Attributes:
      name: dataset name.
      train, eval: the splits.
      class_names: evaluated class names; class ids are their indices.
      miou_convention: "present" (Cityscapes) or "all" (ADE20K).
      key: JSON-able identity of the data (part of every feature-store key).
      per_group: train images per group.
    """

    name: str
    train: SegSplit
    eval: SegSplit
    class_names: list[str]
    miou_convention: str
    key: dict[str, Any]
    per_group: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_key(self, split: str) -> dict[str, Any]:
        """Feature-store key of a split ('train' or 'eval'); eval does not depend on shots."""
        if split == "train":
            return dict(self.key, split=split, per_group=self.per_group)
        return dict(self.key, split=split)


def geometry(data_cfg: ml_collections.ConfigDict, full_hw: Sequence[int] | None = None):
    """The tiling geometry of `config.data` (or one whole image resized to `full_hw`)."""
    if full_hw is not None:
        return tiling.Geometry("full", resize_to=tuple(int(v) for v in full_hw))
    resize = tuple(int(v) for v in data_cfg.resize_hw)
    ts, to = int(data_cfg.tile_size), int(data_cfg.tile_out)
    return tiling.Geometry(
        "tiles",
        resize_to=resize if all(resize) else None,
        tile_size=(ts, ts),
        out_size=None if to == ts else (to, to),
    )


def make_split(
    images: Sequence[np.ndarray],
    label_maps: Sequence[np.ndarray],
    geo: tiling.Geometry,
    groups: Sequence[int],
    image_ids: Sequence[str],
) -> SegSplit:
    """Tiles images (bicubic) and label maps (nearest, padded with ignore) with `geo`."""
    tiles, label_tiles, infos = [], [], []
    for i, (image, labels) in enumerate(zip(images, label_maps)):
        t, info = tiling.apply_geometry(image, geo, image_index=i)
        # Label tiles stay at source resolution: patch labels read the pixel under each patch centre
        # of the original tile, as the research code did.
        label_geo = dataclasses.replace(geo, out_size=None)
        lt, _ = tiling.apply_geometry(labels, label_geo, is_label=True, image_index=i)
        tiles.append(t)
        label_tiles.append(lt.astype(np.uint8))
        infos.extend(info)
    return SegSplit(
        np.concatenate(tiles),
        np.concatenate(label_tiles),
        infos,
        [np.asarray(m, np.uint8) for m in label_maps],
        np.asarray(groups, np.int64),
        list(image_ids),
    )


# ---------------------------------------------------------------------------------------------
# Datasets.


@dataclasses.dataclass
class RawSplit:
    """Images and label maps of one split before tiling."""

    images: list[np.ndarray]
    label_maps: list[np.ndarray]
    groups: list[int]
    image_ids: list[str]


def _synthetic(data_cfg, seed: int, per_group: int) -> tuple[RawSplit, RawSplit, list[str]]:
    from vitjax.data import synthetic

    size = tuple(int(v) for v in data_cfg.synthetic_hw)
    groups = int(data_cfg.synthetic_groups)
    n_eval = int(data_cfg.synthetic_eval_images)
    train = synthetic.semantic_scenes(groups * per_group, size=size, seed=seed)
    evals = synthetic.semantic_scenes(n_eval, size=size, seed=seed + 1_000_003)
    train_split = RawSplit(
        list(train.images),
        list(train.labels),
        [i % groups for i in range(groups * per_group)],
        [f"synthetic_train_{i}" for i in range(groups * per_group)],
    )
    eval_split = RawSplit(
        list(evals.images),
        list(evals.labels),
        [0] * n_eval,
        [f"synthetic_eval_{i}" for i in range(n_eval)],
    )
    return train_split, eval_split, list(train.class_names)


def _cityscapes(data_cfg, seed: int, per_group: int) -> tuple[RawSplit, RawSplit, list[str]]:
    from vitjax.data import cityscapes

    reader = cityscapes.CityscapesReader(data_cfg.root)
    out = []
    for split, n in (("train", per_group), ("val", int(data_cfg.eval_per_group))):
        samples = _cityscapes_samples(reader, split, n, data_cfg.splits, seed)
        cities = sorted({s.city for s in samples})
        images, labels = zip(*(reader.load(s) for s in samples))
        out.append(
            RawSplit(
                list(images),
                list(labels),
                [cities.index(s.city) for s in samples],
                [s.stem for s in samples],
            )
        )
    return out[0], out[1], list(cityscapes.CLASS_NAMES)


def _cityscapes_samples(reader, split: str, n: int, source: str, seed: int):
    """The research code's image lists when `source == 'paper'` (if shipped), else `n` per city."""
    from vitjax.data import fewshot

    if source not in ("paper", "seeded"):
        raise errors.ConfigError(f"config.data.splits={source!r}: expected 'paper' or 'seeded'")
    if source == "paper":
        name = f"cityscapes_{split}_{n}_per_city"
        if name in fewshot.list_splits():
            return reader.find(list(fewshot.load_split(name).stems), split)
        logging.warning(
            "no shipped list %s: drawing %d images per city with seed %d", name, n, seed
        )
    return fewshot.per_city(reader.samples(split), n, seed)


def _ade20k(data_cfg, seed: int, per_group: int) -> tuple[RawSplit, RawSplit, list[str]]:
    from vitjax.data import ade20k, fewshot

    reader = ade20k.ADE20KReader(data_cfg.root)
    pool = int(data_cfg.get("ade20k_train_pool", fewshot.ADE20K_TRAIN_POOL))
    grid = tuple(int(v) for v in data_cfg.get("ade20k_presence_grid", fewshot.ADE20K_PRESENCE_GRID))
    if len(grid) != 2 or min(grid) <= 0:
        raise errors.ConfigError(
            f"config.data.ade20k_presence_grid={grid}: expected (rows, cols), e.g. (28, 42)"
        )
    chosen = fewshot.ade20k_fewshot(
        reader,
        k_train=per_group,
        k_eval=int(data_cfg.eval_per_group),
        train_pool_size=pool if pool > 0 else None,
        seed=_ade20k_seed(data_cfg.splits, seed),
        grid=grid,
    )
    out = []
    for per_class in (chosen.train_per_class, chosen.eval_per_class):
        samples = [(s, c) for c, items in per_class.items() for s in items]
        images, labels = [], []
        for sample, _ in samples:
            image, mask = reader.load(sample, view="reduced")  # 0-149, 0 -> 255 (not evaluated)
            images.append(image)
            labels.append(mask)
        out.append(RawSplit(images, labels, [c for _, c in samples], [s.stem for s, _ in samples]))
    return out[0], out[1], reader.class_names()


def _ade20k_seed(source: str, seed: int) -> int | None:
    """Permutation seed of the ADE20K greedy pick: None (listing order, as [R1]) for 'paper'."""
    if source not in ("paper", "seeded"):
        raise errors.ConfigError(f"config.data.splits={source!r}: expected 'paper' or 'seeded'")
    return None if source == "paper" else seed


_LOADERS = {"synthetic": _synthetic, "cityscapes": _cityscapes, "ade20k": _ade20k}


@functools.lru_cache(maxsize=4)
def _raw_cached(
    cfg_json: str, dataset: str, seed: int, per_group: int
) -> tuple[RawSplit, RawSplit, list[str]]:
    if dataset not in _LOADERS:
        raise errors.ConfigError(
            f"config.dataset={dataset!r}: expected one of {', '.join(sorted(_LOADERS))}"
        )
    data_cfg = ml_collections.ConfigDict(json.loads(cfg_json))
    return _LOADERS[dataset](data_cfg, seed, per_group)


@functools.lru_cache(maxsize=8)
def _load_cached(
    cfg_json: str, dataset: str, seed: int, per_group: int, full_hw: tuple[int, int] | None
) -> SegData:
    data_cfg = ml_collections.ConfigDict(json.loads(cfg_json))
    train, evals, class_names = _raw_cached(cfg_json, dataset, seed, per_group)
    geo = geometry(data_cfg, full_hw)
    key = {"dataset": dataset, "seed": seed, "data": _data_identity(json.loads(cfg_json), dataset)}
    if full_hw is not None:
        key["full_hw"] = list(full_hw)
    return SegData(
        name=dataset,
        train=make_split(train.images, train.label_maps, geo, train.groups, train.image_ids),
        eval=make_split(evals.images, evals.label_maps, geo, evals.groups, evals.image_ids),
        class_names=class_names,
        miou_convention=str(data_cfg.miou_convention),
        key=key,
        per_group=per_group,
    )


def _data_identity(data_cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    # Scoring settings do not change the images, nor do another dataset's selection settings:
    # leave them out so they share features.
    skip = {"score_level", "miou_convention", "patch_label_rule", "train_per_group", "other_roots"}
    if dataset != "ade20k":
        skip |= {k for k in data_cfg if k.startswith("ade20k_")}
    return {k: v for k, v in data_cfg.items() if k not in skip}


def load_segmentation(
    config: ml_collections.ConfigDict,
    per_group: int | None = None,
    dataset: str | None = None,
    full_hw: Sequence[int] | None = None,
) -> SegData:
    """Loads and tiles the few-shot train and evaluation images (cached in-process).

    Args:
      config: the run config (uses `dataset`, `seed`, `data`).
      per_group: train images per group (city / class); default `config.data.train_per_group`.
      dataset: override `config.dataset`.
      full_hw: instead of tiles, each whole image resized to (H, W) is one model input.
    """
    data_cfg = config.data.to_dict()
    per_group = int(config.data.train_per_group if per_group is None else per_group)
    return _load_cached(
        json.dumps(experiments.to_jsonable(data_cfg), sort_keys=True),
        dataset or config.dataset,
        int(config.seed),
        per_group,
        None if full_hw is None else (int(full_hw[0]), int(full_hw[1])),
    )


# Protocol geometry and few-shot sizes of each real dataset (datasets.md §1), used when a dataset
# other than `config.dataset` is read (e.g. for the cross-dataset variance overlap).
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "cityscapes": dict(
        resize_hw=(0, 0), tile_size=256, tile_out=224, train_per_group=4, eval_per_group=10,
        miou_convention="present",
    ),
    "ade20k": dict(
        resize_hw=(448, 672), tile_size=224, tile_out=224, train_per_group=4, eval_per_group=2,
        miou_convention="all",
    ),
}  # fmt: skip


def dataset_config(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
    """A copy of `config` set up to read `dataset` with its own protocol and root.

    The root of a dataset other than `config.dataset` comes from `config.data.other_roots`
    ("ade20k=/data/ADE,cityscapes=/data/cs").
    """
    if dataset == config.dataset:
        return config
    out = ml_collections.ConfigDict(config.to_dict())
    out.dataset = dataset
    if dataset in DATASET_PRESETS:
        out.data.update(DATASET_PRESETS[dataset])
        out.data.root = other_root(config, dataset)
    return out


def other_root(config: ml_collections.ConfigDict, dataset: str) -> str:
    """The root of `dataset` named in `config.data.other_roots` ("ade20k=/data/ADE,...").

    Raises:
      ConfigError: if `other_roots` names no root for `dataset`.
    """
    text = str(config.data.get("other_roots", ""))
    roots = {}
    for item in text.split(","):
        name, _, root = item.partition("=")
        if name.strip():
            roots[name.strip()] = root.strip()
    if not roots.get(dataset):
        raise errors.ConfigError(
            f"config.data.other_roots={text!r}: no root for {dataset!r}; expected e.g. "
            f"'{dataset}=/data/{dataset}'"
        )
    return roots[dataset]


def load_images(config: ml_collections.ConfigDict, dataset: str) -> tuple[np.ndarray, dict]:
    """Model-input tiles of a dataset's few-shot train images (for statistics such as variance).

    `dataset` is `synthetic`, `cityscapes`, `ade20k` (through `load_segmentation`, with that
    dataset's protocol when it is not `config.dataset`), or `synthetic_aerial` (synthetic aerial
    tiles, as many as the main train split has tiles).

    Returns:
      (uint8 [N, H, W, 3] tiles, store key naming them).
    """
    if dataset == "synthetic_aerial":
        from vitjax.data import synthetic

        n = len(load_segmentation(config).train.tiles)
        out = int(config.data.tile_out)
        aerial = synthetic.aerial_tiles(n, size=(out, out), seed=int(config.seed))
        return np.asarray(aerial.images), {"dataset": dataset, "n": n, "size": out}
    data = load_segmentation(dataset_config(config, dataset))
    return data.train.tiles, data.split_key("train")


# ---------------------------------------------------------------------------------------------
# Features, predictions and scores.


def grid_of(model: experiments.ModelHandle, tile_hw: Sequence[int]) -> tuple[int, int]:
    """Patch grid of a tile for `model` (tile sides must be multiples of the patch size)."""
    p = int(model.spec.patch_size)
    h, w = int(tile_hw[0]), int(tile_hw[1])
    if h % p or w % p:
        raise errors.ConfigError(
            f"model {model.name}: tile {h}x{w} is not a multiple of its patch size {p} "
            "(set config.data.tile_out)"
        )
    return h // p, w // p


def patch_features(
    ctx: experiments.Context,
    model: experiments.ModelHandle,
    tiles: np.ndarray,
    key: dict[str, Any],
    layer: int = -1,
    layers: Sequence[int] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Patch features of `tiles` at block `layer`: [T * gh * gw, D] (row-major per tile).

    The result is a read-only `np.memmap` view of the FeatureStore entry in its stored dtype
    (`config.extract.store_dtype`, float32 by default): nothing is read into memory here.
    `knn_predict` and the probes stream it in chunks; take small selections with
    `np.asarray(features[rows], np.float32)`.

    `layers` (default: the context's extraction layers) is what is extracted in one pass and
    cached; `layer` must be one of them. `kwargs` go to `ctx.features` (e.g. batch_size).
    """
    feats = ctx.features(model, tiles, key=key, layers=layers, **kwargs)
    index = ctx.layer_index(model, layer)
    if index not in feats.patch:
        raise errors.ConfigError(
            f"layer {layer} of {model.name} was not extracted (have {sorted(feats.patch)})"
        )
    array = feats.patch[index]
    return array.reshape(-1, array.shape[-1])


def knn_predict(
    support: np.ndarray,
    support_labels: np.ndarray,
    queries: np.ndarray,
    num_classes: int,
    knn_cfg: ml_collections.ConfigDict,
    drop_dims: np.ndarray | None = None,
    mesh: Any = None,
) -> np.ndarray:
    """k-NN class of every query.

    With `knn_cfg.exclude_ignore` ignore-labelled support patches are left out of the search;
    without it (the default, as [R1]) they stay in and a void winner predicts `num_classes`, a
    class outside [0, C) that every score counts as an error.

    Args:
      support: float [N, D] array-like (an np.memmap is streamed, never loaded whole);
        support_labels: int [N]; queries: float [Q, D] array-like.
      num_classes: C.
      knn_cfg: `config.knn` (k, rule, metric, exclude_ignore, blocks, compute_dtype).
      drop_dims: feature dims to ignore.
      mesh: `ctx.mesh`: the search is sharded over its devices (None: one device).

    Returns:
      int32 [Q] predicted classes in [0, C], C meaning "a void patch was retrieved".
    """
    from vitjax import knn

    support_labels = np.asarray(support_labels)
    if knn_cfg.exclude_ignore:
        valid = support_labels != IGNORE
        votes, vote_classes = support_labels, num_classes
    else:
        # [R1] kept raw labelIds: a void neighbour votes with its own (non-evaluated) label, and
        # when that label wins the prediction is an error. Void votes as an extra class C here,
        # which the confusion matrix counts as a prediction outside [0, C), i.e. an error.
        valid = None
        in_range = (support_labels >= 0) & (support_labels < num_classes)
        votes, vote_classes = np.where(in_range, support_labels, num_classes), num_classes + 1
    available = int(valid.sum()) if valid is not None else len(support_labels)
    if available == 0:
        raise errors.DatasetError("k-NN: the support set has no labelled patch")
    scores, idx = knn.search(
        queries,
        support,
        k=min(int(knn_cfg.k), available),
        metric=knn_cfg.metric,
        drop_dims=None if drop_dims is None or len(drop_dims) == 0 else np.asarray(drop_dims),
        query_block=int(knn_cfg.query_block),
        db_block=int(knn_cfg.db_block),
        compute_dtype=experiments.knn_compute_dtype(knn_cfg),
        mesh=mesh,
        db_valid=valid,
    )
    return np.asarray(knn.classify(idx, scores, votes, vote_classes, rule=knn_cfg.rule), np.int32)


def fit_linear(
    support: np.ndarray,
    support_labels: np.ndarray,
    num_classes: int,
    probe_cfg: ml_collections.ConfigDict,
    batchnorm: bool = False,
    seed: int = 0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Trains a softmax probe on labelled support patches (ignore labels skipped).

    Args:
      support: float [N, D]; support_labels: int [N]; num_classes: C.
      probe_cfg: `config.probe`: the sweep (learning_rates, weight_decays), epochs, batch_size,
        val_fraction, optimizer, schedule, warmup_epochs, momentum (see `probes.ProbeConfig`).
      batchnorm: non-affine BatchNorm before the linear layer (MAE).
      seed: initialisation and shuffling seed.

    Returns:
      predict(queries float32 [Q, D]) -> int32 [Q] classes.
    """
    from vitjax import probes

    defaults = probes.ProbeConfig()
    config = probes.ProbeConfig(
        learning_rates=tuple(float(v) for v in probe_cfg.learning_rates),
        weight_decays=tuple(float(v) for v in probe_cfg.weight_decays),
        epochs=int(probe_cfg.epochs),
        batch_size=int(probe_cfg.batch_size),
        val_fraction=float(probe_cfg.val_fraction),
        # Older configs lack these fields: ProbeConfig's defaults apply.
        optimizer=str(probe_cfg.get("optimizer", defaults.optimizer)),
        schedule=str(probe_cfg.get("schedule", defaults.schedule)),
        warmup_epochs=float(probe_cfg.get("warmup_epochs", defaults.warmup_epochs)),
        momentum=float(probe_cfg.get("momentum", defaults.momentum)),
    )
    probe = probes.train_softmax_probe(
        support,
        np.asarray(support_labels),
        num_classes,
        ignore_label=IGNORE,
        batchnorm=batchnorm,
        seed=seed,
        config=config,
    )

    def predict(queries: np.ndarray) -> np.ndarray:
        return np.asarray(np.argmax(np.asarray(probe.predict(queries)), axis=-1), np.int32)

    return predict


def linear_predict(
    support: np.ndarray,
    support_labels: np.ndarray,
    queries: np.ndarray,
    num_classes: int,
    probe_cfg: ml_collections.ConfigDict,
    batchnorm: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Trains a softmax probe on labelled support patches; returns int32 [Q] query classes."""
    return fit_linear(support, support_labels, num_classes, probe_cfg, batchnorm, seed)(queries)


def uses_batchnorm(model: experiments.ModelHandle, probe_cfg: ml_collections.ConfigDict) -> bool:
    """Whether the linear probe of `model` gets a BatchNorm (MAE's protocol)."""
    families = {f.strip() for f in str(probe_cfg.batchnorm_families).split(",") if f.strip()}
    return model.spec.family in families


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C + 1] confusion matrix (rows = ground truth; last column = predictions outside
    [0, C), which count as errors), ignoring units whose gt is outside [0, C)."""
    from vitjax import metrics

    return np.asarray(metrics.confusion_matrix(gt, pred, num_classes, ignore_label=IGNORE))


def scores_from_confusion(cm: np.ndarray, convention: str) -> dict[str, Any]:
    """{'miou', 'acc', 'iou': [C] (NaN for absent classes)} from a confusion matrix."""
    from vitjax import metrics

    return {
        "miou": float(metrics.mean_iou(cm, convention=convention)),
        "acc": float(metrics.accuracy(cm)),
        "iou": np.asarray(metrics.iou_per_class(cm), np.float64),
    }


def score(
    pred: np.ndarray,
    split: SegSplit,
    grid: tuple[int, int],
    num_classes: int,
    data_cfg: ml_collections.ConfigDict,
    convention: str | None = None,
    level: str | None = None,
) -> dict[str, Any]:
    """mIoU / accuracy / per-class IoU of patch predictions on `split`.

    Args:
      pred: int [T * gh * gw] predicted class per patch (row-major per tile).
      split: the evaluation split.
      grid: (gh, gw) per tile.
      num_classes: C.
      data_cfg: `config.data` (score_level, patch_label_rule, miou_convention).
      convention: mIoU convention override; level: "pixel" or "patch" override.
    """
    level = level or data_cfg.score_level
    convention = convention or data_cfg.miou_convention
    pred = np.asarray(pred).reshape(len(split.infos), *grid)
    cm = np.zeros((num_classes, num_classes + 1), np.int64)
    if level == "patch":
        targets = split.patch_targets(grid, data_cfg.patch_label_rule)
        cm += confusion(targets, pred.reshape(-1), num_classes)
    elif level == "pixel":
        by_image: dict[int, list[int]] = {}
        for k, info in enumerate(split.infos):
            by_image.setdefault(info.image_index, []).append(k)
        for i, rows in by_image.items():
            pixels = tiling.stitch_to_pixels(pred[rows], [split.infos[k] for k in rows])
            cm += confusion(split.label_maps[i], pixels, num_classes)
    else:
        raise errors.ConfigError(f"config.data.score_level={level!r}: expected 'pixel' or 'patch'")
    return scores_from_confusion(cm, convention)


# Rows per chunk of the streamed feature statistics: the float64 working copy of one chunk is
# ~100 MB at D = 768, however many rows the feature store holds.
STATS_CHUNK_ROWS = 16_384


def _feature_rows(features: np.ndarray, name: str = "features") -> np.ndarray:
    """`features` as a 2-D array without copying (a memmap stays a memmap)."""
    array = features if isinstance(features, np.ndarray) else np.asarray(features)
    if array.ndim != 2 or array.shape[0] == 0:
        raise errors.DatasetError(f"{name}: expected float [N, D] with N >= 1, got {array.shape}")
    return array


def feature_moments(
    features: np.ndarray, chunk_rows: int = STATS_CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and (population) variance over the rows, streamed in row chunks.

    Two passes with float64 accumulators: the mean first, then the squared deviations from it
    (with the sum of deviations as a rounding correction), so a large common offset does not
    cancel as in E[x^2] - E[x]^2. Only one chunk is ever converted to float64, so an np.memmap
    of the feature store is never loaded whole.

    Args:
      features: float [N, D] array-like (float16 / float32 / float64; np.memmap welcome).
      chunk_rows: rows per chunk.

    Returns:
      (mean, var): float64 [D] each; var equals `np.var(features.astype(np.float64), axis=0)`.

    Raises:
      DatasetError: `features` is not 2-D or has no rows.
    """
    features = _feature_rows(features)
    n, dim = features.shape
    chunk_rows = max(1, int(chunk_rows))
    total = np.zeros(dim, np.float64)
    for start in range(0, n, chunk_rows):
        # dtype=float64 accumulates without a float64 copy of the chunk.
        total += np.add.reduce(features[start : start + chunk_rows], axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(dim, np.float64)
    deviations = np.zeros(dim, np.float64)
    for start in range(0, n, chunk_rows):
        dev = np.asarray(features[start : start + chunk_rows], np.float64) - mean
        deviations += dev.sum(axis=0)
        squares += np.einsum("ij,ij->j", dev, dev)
    var = (squares - deviations**2 / n) / n
    return mean, np.maximum(var, 0.0)


def variance_order(features: np.ndarray, variance: np.ndarray | None = None) -> np.ndarray:
    """Feature dims sorted by variance over the rows, highest first: int64 [D].

    Args:
      features: float [N, D] array-like (streamed in chunks, see `feature_moments`).
      variance: float [D] variance of `features` already computed (then `features` is not read).
    """
    if variance is None:
        variance = feature_moments(features)[1]
    return np.argsort(-np.asarray(variance, np.float64), kind="stable")


def standardize(
    features: np.ndarray,
    reference: np.ndarray,
    eps: float = 1e-5,
    moments: tuple[np.ndarray, np.ndarray] | None = None,
    chunk_rows: int = STATS_CHUNK_ROWS,
) -> np.ndarray:
    """Non-affine BatchNorm at evaluation: (x - mean) / sqrt(var + eps), statistics of `reference`.

    Both arrays are read in row chunks (np.memmap welcome); only the float32 result is held whole,
    since the k-NN search and the probe read it many times.

    Args:
      features: float [N, D] to normalise; reference: float [M, D] whose statistics are used.
      eps: added to the variance.
      moments: (mean, var) float [D] of `reference` already computed by `feature_moments` (then
        `reference` is not read).
      chunk_rows: rows per chunk.

    Returns:
      float32 [N, D].

    Raises:
      DatasetError: an input is not 2-D / has no rows, or the dimensions disagree.
    """
    features = _feature_rows(features)
    mean, var = feature_moments(reference, chunk_rows) if moments is None else moments
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    if mean.shape != (features.shape[1],) or var.shape != mean.shape:
        raise errors.DatasetError(
            f"standardize: features have {features.shape[1]} dims but the reference statistics "
            f"have shapes {mean.shape} and {var.shape}"
        )
    inv_std = 1.0 / np.sqrt(var + eps)
    out = np.empty(features.shape, np.float32)
    chunk_rows = max(1, int(chunk_rows))
    for start in range(0, len(features), chunk_rows):
        chunk = np.asarray(features[start : start + chunk_rows], np.float64)
        out[start : start + chunk_rows] = (chunk - mean) * inv_std
    return out


def topn_overlap(order_a: np.ndarray, order_b: np.ndarray, n: int) -> float:
    """|top-n(a) ∩ top-n(b)| / n for two variance orders."""
    n = min(n, len(order_a), len(order_b))
    if n <= 0:
        return float("nan")
    return len(set(order_a[:n].tolist()) & set(order_b[:n].tolist())) / n


def methods(text: str) -> list[str]:
    """Parses a comma-separated method list ('knn,linear'), checking the names."""
    out = [m.strip() for m in str(text).split(",") if m.strip()]
    bad = [m for m in out if m not in ("knn", "linear")]
    if bad:
        raise errors.ConfigError(f"methods {bad}: expected 'knn' and/or 'linear'")
    return out


def predict(
    method: str,
    ctx: experiments.Context,
    model: experiments.ModelHandle,
    support: np.ndarray,
    support_labels: np.ndarray,
    queries: np.ndarray,
    num_classes: int,
    drop_dims: np.ndarray | None = None,
    batchnorm: bool | None = None,
) -> np.ndarray:
    """Predictions of `method` ('knn' or 'linear') with the run's k-NN / probe settings."""
    if method == "knn":
        return knn_predict(
            support, support_labels, queries, num_classes, ctx.config.knn, drop_dims, mesh=ctx.mesh
        )
    if drop_dims is not None and len(drop_dims):
        keep = np.setdiff1d(np.arange(support.shape[1]), drop_dims)
        support, queries = support[:, keep], queries[:, keep]
    bn = uses_batchnorm(model, ctx.config.probe) if batchnorm is None else batchnorm
    return linear_predict(
        support, support_labels, queries, num_classes, ctx.config.probe, bn, seed=ctx.seed
    )


def model_row(model: experiments.ModelHandle) -> dict[str, Any]:
    """The leading columns of a per-model table row."""
    return {"model": model.name, "family": model.spec.family}


def paper_comparable(
    config: ml_collections.ConfigDict, model: experiments.ModelHandle, method: str
) -> bool:
    """Whether a Cityscapes score of `model` and `method` may stand beside the paper's number.

    That needs real weights of the paper's backbone (ViT-B/16; DINOv2 ViT-B/14), Cityscapes with
    the research code's image lists (`data.splits == 'paper'`) and, for k-NN, [R1]'s classifier:
    1-NN label, dot-product similarity, void patches kept in the support set.
    """
    from vitjax import paper_numbers

    spec = model.spec
    if model.random_weights or config.dataset != "cityscapes" or config.data.splits != "paper":
        return False
    if not paper_numbers.is_paper_backbone(spec.family, spec.size, spec.patch_size):
        return False
    if method == "knn":
        knn_cfg = config.knn
        return knn_cfg.rule == "1nn" and knn_cfg.metric == "dot" and not knn_cfg.exclude_ignore
    return method == "linear"
