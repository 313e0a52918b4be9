"""Shared protocol of the segmentation-side experiments: data, patch features, k-NN, probe, scores.

The pipeline every experiment uses (docs/datasets.md §1 and §10; [R1] = the authors' research code):

1. `load_segmentation(config)` reads the few-shot train images and the evaluation images of
   `config.dataset` through its registered loader (`vitjax.data.registry`, kind "segmentation":
   Cityscapes, ADE20K, synthetic scenes, ...), optionally resizes them, and cuts
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
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from vitjax import canonical, corruptions, errors, experiments, extract, knn, metrics, probes
from vitjax.data import patch_labels, registry, tiling

# The ignore label of every label map and patch label: every reader emits 255 for void pixels
# (Cityscapes non-evaluated ids, ADE20K "other", tile padding), so it is not configurable.
IGNORE = 255


@dataclasses.dataclass
class SegSplit:
    """Tiles of one split of a segmentation dataset.

    Attributes:
      tiles: uint8 [T, oh, ow, 3], model input (after any resize); read-only, so that its
        content digest (a feature-store key) is computed once per run.
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
            _read_only(self.tiles[tile_rows]),
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


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


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
        _read_only(np.concatenate(tiles)),
        np.concatenate(label_tiles),
        infos,
        [np.asarray(m, np.uint8) for m in label_maps],
        np.asarray(groups, np.int64),
        list(image_ids),
    )


# ---------------------------------------------------------------------------------------------
# Datasets.


# The two splits every segmentation dataset is read as; only "train" depends on `per_group`.
SPLITS = ("train", "eval")


def _segmentation(dataset: str) -> registry.DatasetSpec:
    return registry.get_dataset(dataset, registry.SEGMENTATION, "config.dataset")


@functools.lru_cache(maxsize=8)
def _split_cached(
    cfg_json: str,
    dataset: str,
    seed: int,
    split: str,
    per_group: int,
    full_hw: tuple[int, int] | None,
) -> tuple[SegSplit, list[str]]:
    # Only the tiled split is cached: the raw images (full resolution) are dropped once tiled.
    data_cfg = ml_collections.ConfigDict(json.loads(cfg_json))
    raw, class_names = _segmentation(dataset).load(data_cfg, seed, split, per_group)
    tiled = make_split(
        raw.images, raw.label_maps, geometry(data_cfg, full_hw), raw.groups, raw.image_ids
    )
    return tiled, class_names


def clear_data_cache() -> None:
    """Forgets the tiled splits cached by `load_split` and what the loaders cached."""
    _split_cached.cache_clear()
    registry.clear_caches()


def _data_identity(data_cfg: dict[str, Any], dataset: str) -> dict[str, Any]:
    # Scoring settings do not change the images, nor do another dataset's selection settings:
    # leave them out so they share features.
    skip = {"score_level", "miou_convention", "patch_label_rule", "train_per_group", "other_roots"}
    for name in registry.list_datasets(registry.SEGMENTATION):
        prefix = _segmentation(name).private_prefix
        if name != dataset and prefix:
            skip |= {k for k in data_cfg if k.startswith(prefix)}
    return {k: v for k, v in data_cfg.items() if k not in skip}


@dataclasses.dataclass(frozen=True)
class _Request:
    """What one `load_split` / `load_segmentation` call reads, normalised for the cache."""

    cfg_json: str
    dataset: str
    seed: int
    per_group: int
    full_hw: tuple[int, int] | None

    def split(self, split: str) -> tuple[SegSplit, list[str]]:
        # The evaluation split does not depend on the few-shot size: one cache entry for all.
        per_group = self.per_group if split == "train" else 0
        return _split_cached(self.cfg_json, self.dataset, self.seed, split, per_group, self.full_hw)

    def key(self) -> dict[str, Any]:
        """The data part of every feature-store key (see `SegData.key`)."""
        data = _data_identity(json.loads(self.cfg_json), self.dataset)
        key = {"dataset": self.dataset, "seed": self.seed, "data": data}
        if self.full_hw is not None:
            key["full_hw"] = list(self.full_hw)
        return key


def _request(
    config: ml_collections.ConfigDict,
    per_group: int | None,
    dataset: str | None,
    full_hw: Sequence[int] | None,
) -> _Request:
    dataset = dataset or config.dataset
    _segmentation(dataset)  # an unknown name fails here, naming the known ones
    per_group = int(config.data.train_per_group if per_group is None else per_group)
    return _Request(
        canonical.canonical_json(config.data.to_dict(), errors.ConfigError),
        dataset,
        int(config.seed),
        per_group,
        None if full_hw is None else (int(full_hw[0]), int(full_hw[1])),
    )


def load_split(
    config: ml_collections.ConfigDict,
    split: str,
    per_group: int | None = None,
    dataset: str | None = None,
    full_hw: Sequence[int] | None = None,
) -> tuple[SegSplit, dict[str, Any]]:
    """Loads and tiles one split (cached in-process), without reading the other.

    Arguments as `load_segmentation`; split: "train" or "eval" (`per_group` only matters for
    "train").

    Returns:
      (the split, its feature-store key: the same as `SegData.split_key(split)`).
    """
    if split not in SPLITS:
        raise errors.ConfigError(f"split={split!r}: expected one of {SPLITS}")
    request = _request(config, per_group, dataset, full_hw)
    key = dict(request.key(), split=split)
    if split == "train":
        key["per_group"] = request.per_group
    return request.split(split)[0], key


def load_segmentation(
    config: ml_collections.ConfigDict,
    per_group: int | None = None,
    dataset: str | None = None,
    full_hw: Sequence[int] | None = None,
) -> SegData:
    """Loads and tiles the few-shot train and evaluation images (cached in-process).

    Each split is cached on its own: a sweep over `per_group` reads and tiles the evaluation
    images once. Only tiles and label maps are kept, never the raw images.

    Args:
      config: the run config (uses `dataset`, `seed`, `data`).
      per_group: train images per group (city / class); default `config.data.train_per_group`.
      dataset: override `config.dataset`.
      full_hw: instead of tiles, each whole image resized to (H, W) is one model input.
    """
    request = _request(config, per_group, dataset, full_hw)
    train, class_names = request.split("train")
    evals, _ = request.split("eval")
    return SegData(
        name=request.dataset,
        train=train,
        eval=evals,
        class_names=class_names,
        miou_convention=str(config.data.miou_convention),
        key=request.key(),
        per_group=request.per_group,
    )


def dataset_config(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
    """A copy of `config` set up to read `dataset` with its own protocol and root.

    A dataset with a protocol preset (`DatasetSpec.preset`, the real datasets) is read with it,
    from the root `config.data.other_roots` names for it (`config.data.other_roots.ade20k`).
    """
    if dataset == config.dataset:
        return config
    out = ml_collections.ConfigDict(config.to_dict())
    out.dataset = dataset
    preset = _segmentation(dataset).preset
    if preset is not None:
        out.data.update(preset)
        out.data.root = other_root(config, dataset)
    return out


def other_root(config: ml_collections.ConfigDict, dataset: str) -> str:
    """The root of `dataset` named in `config.data.other_roots` (a ConfigDict name -> root).

    Raises:
      ConfigError: if `other_roots` names no root for `dataset`.
    """
    roots = config.data.other_roots
    if dataset not in roots or not roots[dataset]:
        raise errors.ConfigError(
            f"config.data.other_roots has no root for {dataset!r}; set e.g. "
            f"--config.data.other_roots.{dataset}=/data/{dataset}"
        )
    return roots[dataset]


def load_images(config: ml_collections.ConfigDict, dataset: str) -> tuple[np.ndarray, dict]:
    """Model-input tiles of a dataset's few-shot train images (for statistics such as variance).

    `dataset` is a segmentation dataset (through `load_split`, with that dataset's protocol when
    it is not `config.dataset`; the evaluation split is not read), or an "images" dataset of
    `vitjax.data.registry` (e.g. `synthetic_aerial`: as many tiles as the main train split has,
    at `config.data.tile_out`).

    Returns:
      (uint8 [N, H, W, 3] tiles, store key naming them).
    """
    if dataset in registry.list_datasets(registry.IMAGES):
        n = len(load_split(config, "train")[0].tiles)
        out = int(config.data.tile_out)
        tiles = registry.get_dataset(dataset, registry.IMAGES).load(n, out, int(config.seed))
        return tiles, {"dataset": dataset, "n": n, "size": out}
    train, key = load_split(dataset_config(config, dataset), "train")
    return train.tiles, key


# ---------------------------------------------------------------------------------------------
# Features, predictions and scores.


def runs_at(model: experiments.ModelHandle, hw: Sequence[int]) -> bool:
    """Whether `model` takes inputs of size hw = (H, W).

    Both sides must be multiples of the patch size, and a model whose position encoding is fixed
    to its native grid (`spec.pos_interp == "native_only"`) runs only at that grid.
    """
    p = int(model.spec.patch_size)
    h, w = int(hw[0]), int(hw[1])
    if h % p or w % p:
        return False
    if model.spec.pos_interp == "native_only":
        return (h // p, w // p) == tuple(int(v) for v in model.spec.native_grid)
    return True


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
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """Patch features of `tiles` at block `layer`: [T * gh * gw, D] (row-major per tile).

    The result is a read-only `np.memmap` view of the FeatureStore entry in its stored dtype
    (`config.extract.store_dtype`, float32 by default): nothing is read into memory here.
    `knn_predict` and the probes stream it in chunks; take small selections with
    `np.asarray(features[rows], np.float32)`.

    `layers` (default: the context's extraction layers) is what is extracted in one pass and
    cached; `layer` must be one of them. `batch_size` (default: `config.extract.batch_size`)
    is the extraction's.
    """
    feats = ctx.features(model, tiles, key=key, layers=layers, batch_size=batch_size)
    index = ctx.layer_index(model, layer)
    if index not in feats.patch:
        raise errors.ConfigError(
            f"layer {layer} of {model.name} was not extracted (have {sorted(feats.patch)})"
        )
    array = feats.patch[index]
    return array.reshape(-1, array.shape[-1])


def knn_search(
    queries: Any,
    database: Any,
    k: int,
    knn_cfg: ml_collections.ConfigDict,
    mesh: Any = None,
    *,
    metric: str | None = None,
    drop_dims: np.ndarray | None = None,
    query_groups: np.ndarray | None = None,
    db_groups: np.ndarray | None = None,
    db_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`knn.search` with the run's engine settings: every experiment's k-NN goes through here.

    Args:
      queries: float [Q, D] array-like; database: float [N, D] array-like (np.memmaps stream).
      k: neighbours per query.
      knn_cfg: `config.knn`: query_block, db_block (the engine's defaults when absent),
        compute_dtype (checked, see `experiments.knn_compute_dtype`), metric.
      mesh: `ctx.mesh`: the database is sharded over its devices (None: one device).
      metric: overrides `knn_cfg.metric` (e.g. an experiment's own similarity).
      drop_dims: feature dims to ignore (None or empty: none).
      query_groups, db_groups: int [Q] and [N]; a database row of the query's own group is never
        returned (give both or neither).
      db_valid: bool [N]; rows marked False are never returned.

    Returns:
      (scores float32 [Q, k], idx int32 [Q, k]) as `knn.search`.
    """
    return knn.search(
        queries,
        database,
        k=int(k),
        metric=metric if metric is not None else knn_cfg.metric,
        drop_dims=None if drop_dims is None or len(drop_dims) == 0 else np.asarray(drop_dims),
        query_block=knn_cfg.query_block,
        db_block=knn_cfg.db_block,
        compute_dtype=experiments.knn_compute_dtype(knn_cfg),
        mesh=mesh,
        query_groups=query_groups,
        db_groups=db_groups,
        db_valid=db_valid,
    )


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
    class outside [0, C) that every score counts as an error. Rule "1nn" reads only the nearest
    neighbour, so it searches k = 1 whatever `knn_cfg.k` says (same predictions, less work);
    "majority" and "weighted" use `knn_cfg.k`.

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
    k = 1 if knn_cfg.rule == "1nn" else knn_cfg.k
    scores, idx = knn_search(
        queries,
        support,
        min(k, available),
        knn_cfg,
        mesh,
        metric=knn_cfg.metric,
        drop_dims=drop_dims,
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
    feature_mask: np.ndarray | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Trains a softmax probe on labelled support patches (ignore labels skipped).

    Args:
      support: float [N, D] array-like (an np.memmap is streamed, never loaded whole);
        support_labels: int [N]; num_classes: C.
      probe_cfg: `config.probe`: the sweep (learning_rates, weight_decays), epochs, batch_size,
        val_fraction, optimizer, schedule, warmup_epochs, momentum (see `probes.ProbeConfig`).
      batchnorm: non-affine BatchNorm before the linear layer (MAE; statistics of the labelled
        support patches, `probes.feature_normalizer`).
      seed: initialisation and shuffling seed.
      feature_mask: optional bool [D]; dims where it is False take no part (width stays D).

    Returns:
      predict(queries float32 [Q, D]) -> int32 [Q] classes.
    """
    config = probes.ProbeConfig(
        learning_rates=tuple(float(v) for v in probe_cfg.learning_rates),
        weight_decays=tuple(float(v) for v in probe_cfg.weight_decays),
        epochs=probe_cfg.epochs,
        batch_size=probe_cfg.batch_size,
        val_fraction=probe_cfg.val_fraction,
        optimizer=probe_cfg.optimizer,
        schedule=probe_cfg.schedule,
        warmup_epochs=probe_cfg.warmup_epochs,
        momentum=probe_cfg.momentum,
    )
    probe = probes.train_softmax_probe(
        support,
        np.asarray(support_labels),
        num_classes,
        ignore_label=IGNORE,
        batchnorm=batchnorm,
        seed=seed,
        config=config,
        feature_mask=feature_mask,
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
    feature_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Trains a softmax probe on labelled support patches; returns int32 [Q] query classes.

    Arguments as `fit_linear`; queries: float [Q, D] array-like (read in row chunks).
    """
    return fit_linear(
        support, support_labels, num_classes, probe_cfg, batchnorm, seed, feature_mask
    )(queries)


def uses_batchnorm(model: experiments.ModelHandle, probe_cfg: ml_collections.ConfigDict) -> bool:
    """Whether the linear probe of `model` gets a BatchNorm (MAE's protocol)."""
    return model.spec.family in probe_cfg.batchnorm_families


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C + 1] confusion matrix (rows = ground truth; last column = predictions outside
    [0, C), which count as errors), ignoring units whose gt is outside [0, C)."""
    return np.asarray(metrics.confusion_matrix(gt, pred, num_classes, ignore_label=IGNORE))


def scores_from_confusion(cm: np.ndarray, convention: str) -> dict[str, Any]:
    """{'miou', 'acc', 'iou': [C] (NaN for absent classes)} from a confusion matrix."""
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


def variance_order(features: np.ndarray, variance: np.ndarray | None = None) -> np.ndarray:
    """Feature dims sorted by variance over all rows, highest first: int64 [D].

    Args:
      features: float [N, D] array-like (streamed in chunks, see `probes.feature_moments`).
      variance: float [D] variance of `features` already computed (then `features` is not read).

    Raises:
      ConfigError: `features` is not 2-D or has no rows.
    """
    if variance is None:
        variance = probes.feature_moments(features)[1]
    return np.argsort(-np.asarray(variance, np.float64), kind="stable")


def standardize(
    features: np.ndarray,
    reference: np.ndarray | None = None,
    reference_labels: np.ndarray | None = None,
    eps: float | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """The linear probe's non-affine BatchNorm applied to features: (x - mean) / std.

    The same operation as `probes.train_softmax_probe(batchnorm=True)`: statistics from
    `probes.feature_normalizer` over the labelled rows of `reference` (ignore-labelled rows left
    out), eps 1e-6 (MAE's). Both arrays are read in row chunks (np.memmap welcome); only the
    float32 result is held whole, since the k-NN search reads it many times.

    Args:
      features: float [N, D] to normalise.
      reference: float [M, D] whose statistics are used (not read when `stats` is given).
      reference_labels: int [M] labels of `reference`; rows labelled 255 (ignore) are left out of
        the statistics. None: every row counts.
      eps: added to the variance (default `probes.BATCHNORM_EPS`).
      stats: (mean, std) float [D] already computed by `probes.feature_normalizer`.
      chunk_rows: rows per chunk (default `probes.STATS_CHUNK_ROWS`).

    Returns:
      float32 [N, D].

    Raises:
      ConfigError: an input is not 2-D / has no (labelled) rows, the dimensions disagree, or
        neither `reference` nor `stats` is given.
    """
    chunk_rows = probes.STATS_CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
    if stats is None:
        if reference is None:
            raise errors.ConfigError("standardize: give `reference` (features) or `stats`")
        rows = None
        if reference_labels is not None:
            labels = np.asarray(reference_labels)
            if labels.shape != (len(reference),):
                raise errors.ConfigError(
                    f"standardize: reference_labels must have shape ({len(reference)},), got "
                    f"{labels.shape}"
                )
            rows = np.flatnonzero(labels != IGNORE)
        eps = probes.BATCHNORM_EPS if eps is None else float(eps)
        stats = probes.feature_normalizer(reference, rows=rows, eps=eps, chunk_rows=chunk_rows)
    return probes.normalize_features(features, *stats, chunk_rows=chunk_rows)


def topn_overlap(order_a: np.ndarray, order_b: np.ndarray, n: int) -> float:
    """|top-n(a) ∩ top-n(b)| / n for two variance orders."""
    n = min(n, len(order_a), len(order_b))
    if n <= 0:
        return float("nan")
    return len(set(order_a[:n].tolist()) & set(order_b[:n].tolist())) / n


METHODS = ("knn", "linear")


def methods(names: Sequence[str], field: str = "methods") -> list[str]:
    """Checks a method list such as ("knn", "linear") and returns it as a list.

    Args:
      names: the methods, any of METHODS.
      field: the config field it comes from (e.g. "config.fewshot.methods"), for errors.

    Raises:
      ConfigError: an unknown or no method; the message names `field`.
    """
    out = list(names)
    bad = [m for m in out if m not in METHODS]
    if bad or not out:
        raise errors.ConfigError(
            f"{field}={tuple(out)!r}: expected a tuple of {' and/or '.join(METHODS)}, e.g. "
            f"{tuple(METHODS)!r}" + (f"; unknown {bad}" if bad else "")
        )
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
    """Predictions of `method` ('knn' or 'linear') with the run's k-NN / probe settings.

    Args:
      method: "knn" or "linear".
      ctx, model: the run context and the model (its family decides the probe's BatchNorm).
      support: float [N, D] array-like (np.memmap streamed); support_labels: int [N].
      queries: float [Q, D] array-like; num_classes: C.
      drop_dims: feature dims to ignore (k-NN: left out of the similarity; linear: masked to 0
        inside the probe, so the width and the compiled step stay the same).
      batchnorm: override the family's probe BatchNorm (None: `uses_batchnorm`).

    Returns:
      int32 [Q] predicted classes.
    """
    if method == "knn":
        return knn_predict(
            support, support_labels, queries, num_classes, ctx.config.knn, drop_dims, mesh=ctx.mesh
        )
    mask = None
    if drop_dims is not None and len(drop_dims):
        # A mask, not a column slice: slicing would copy the whole memmap and give the probe a new
        # width (a recompile) for every removal count.
        mask = np.ones(support.shape[1], bool)
        mask[np.asarray(drop_dims, np.int64)] = False
    bn = uses_batchnorm(model, ctx.config.probe) if batchnorm is None else batchnorm
    return linear_predict(
        support,
        support_labels,
        queries,
        num_classes,
        ctx.config.probe,
        bn,
        seed=ctx.seed,
        feature_mask=mask,
    )


def model_row(model: experiments.ModelHandle) -> dict[str, Any]:
    """The leading columns of a per-model table row."""
    return {"model": model.name, "family": model.spec.family}


def require_fields(
    cfg: ml_collections.ConfigDict, section: str, fields: Sequence[str], hint: str
) -> None:
    """Checks that `config.<section>` holds every one of `fields`.

    Args:
      cfg: the section.
      section: its name under `config`, e.g. "tracking".
      fields: required field names.
      hint: where a complete section comes from, e.g. "configs/bdd100k.py:tracking_defaults()".

    Raises:
      ConfigError: naming the section, the missing fields and `hint`.
    """
    missing = [f for f in fields if f not in cfg]
    if missing:
        raise errors.ConfigError(f"config.{section} lacks fields {missing}; start from {hint}")


# Tiles corrupted per device call: bounds memory on 1024x2048 datasets. Also part of the noise
# keys (each batch folds its start row into the seed), so changing it changes the noise.
CORRUPT_BATCH = 64
# Output bytes (float32) of one device call; levels of one corruption share a call up to this.
CORRUPT_CALL_BYTES = 1 << 30


def corrupt_levels(
    tiles: np.ndarray, name: str, levels: Sequence[float], options: dict[str, Any], seed: int
) -> list[np.ndarray]:
    """Corrupted copies of uint8 [T, H, W, 3] tiles at several levels of one corruption.

    The same result as `corrupt` at each level, but the levels go through
    `corruptions.apply_levels` together (one compile for all blur kernel sizes), and every batch
    is padded to `CORRUPT_BATCH` rows, so that the short last batch does not compile again. The
    padding is dropped: each tile's noise depends only on the seed and its row.

    Args:
      tiles: uint8 [T, H, W, 3].
      name: as `corruptions.apply_levels`.
      levels: L host-side levels.
      options: extra keyword arguments of `corruptions.apply_levels`.
      seed: noise seed (each batch of `CORRUPT_BATCH` tiles folds its start row into it).

    Returns:
      L arrays, uint8 [T, H, W, 3] each.
    """
    levels = [float(v) for v in levels]
    tiles = np.asarray(tiles)
    outs = [np.empty_like(tiles) for _ in levels]
    if not len(tiles) or not levels:
        return outs
    batch_rows = min(CORRUPT_BATCH, len(tiles))
    call_bytes = batch_rows * int(np.prod(tiles.shape[1:])) * 4
    per_call = max(1, min(len(levels), CORRUPT_CALL_BYTES // max(call_bytes, 1)))
    key = jax.random.key(seed)
    for start in range(0, len(tiles), CORRUPT_BATCH):
        rows = tiles[start : start + CORRUPT_BATCH]
        batch = np.zeros((batch_rows,) + tiles.shape[1:], np.float32)
        batch[: len(rows)] = rows
        batch_key = jax.random.fold_in(key, start)
        for first in range(0, len(levels), per_call):
            chunk = levels[first : first + per_call]
            result = corruptions.apply_levels(
                name, chunk, batch, batch_key, quantize=True, **options
            )
            result = np.asarray(result)[:, : len(rows)]
            for out, corrupted in zip(outs[first : first + per_call], result):
                out[start : start + len(rows)] = np.clip(corrupted, 0, 255).astype(np.uint8)
    return outs


def corrupt(
    tiles: np.ndarray, name: str, level: float, options: dict[str, Any], seed: int
) -> np.ndarray:
    """Corrupted copy of uint8 [T, H, W, 3] tiles, rounded back to uint8 (as if saved).

    Args:
      tiles: uint8 [T, H, W, 3].
      name, level: as `corruptions.apply` ('blur', 'box_blur', 'noise', 'freq_noise', 'shift',
        'rotate', 'scale').
      options: extra keyword arguments of `corruptions.apply`.
      seed: noise seed (each batch of `CORRUPT_BATCH` tiles folds its start row into it, so
        the result is reproducible from the seed).

    Returns:
      uint8 [T, H, W, 3].
    """
    return corrupt_levels(tiles, name, [level], options, seed)[0]


def extract_defaults() -> ml_collections.ConfigDict:
    """The shared `extract` section: final-norm patch tokens of the last block (CLS dropped).

    Batch size and dtypes are `extract.ExtractOptions`' own defaults (one source).
    """
    options = extract.ExtractOptions()
    c = ml_collections.ConfigDict()
    c.layers = (-1,)
    c.batch_size = options.batch_size
    c.compute_dtype = options.compute_dtype  # matmul dtype; bfloat16 in `accelerator` variants
    c.store_dtype = options.dtype  # dtype of the features on disk
    return c


# knn.search's keyword defaults, read once at import (tests may replace knn.search by a mock).
_KNN_SEARCH_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(knn.search).parameters.items()
    if p.default is not inspect.Parameter.empty
}


def knn_defaults() -> ml_collections.ConfigDict:
    """The shared `knn` section: top-10 by dot product, prediction = the single nearest label.

    `k`, `metric` and the block sizes are `knn.search`'s own defaults (one source).
    """
    search = _KNN_SEARCH_DEFAULTS
    c = ml_collections.ConfigDict()
    c.k = search["k"]  # neighbours scored; only `majority` / `weighted` vote over them
    c.rule = "1nn"  # 1nn | majority | weighted
    c.metric = search["metric"]
    # False as [R1]: the research code kept raw labelIds, so void patches stay in the support set
    # and a query whose nearest neighbour is void gets a non-evaluated label, i.e. an error. True
    # drops ignore-labelled patches from the support set (a cleaner but non-paper protocol).
    c.exclude_ignore = False
    c.compute_dtype = "float32"  # k-NN matmul input dtype; bfloat16 in `accelerator`
    # Queries x database rows scored per step: a 32 MiB float32 block.
    c.query_block = search["query_block"]
    c.db_block = search["db_block"]
    return c


# ProbeConfig fields that the config does not expose (implementation details of the trainer).
_PROBE_INTERNAL = ("retrain_on_all", "steps_per_call")


def probe_defaults() -> ml_collections.ConfigDict:
    """The shared `probe` section: `probes.ProbeConfig`'s defaults (one source), plus which
    families get a non-affine BatchNorm before the softmax (MAE's protocol)."""
    c = ml_collections.ConfigDict()
    for field in dataclasses.fields(probes.ProbeConfig):
        if field.name not in _PROBE_INTERNAL:
            c[field.name] = field.default
    c.batchnorm_families = ("mae",)
    return c
