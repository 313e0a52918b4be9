"""Segmentation datasets (kind "segmentation"): synthetic scenes, Cityscapes, ADE20K.

Each loader reads one split ("train": the few-shot images, `per_group` per group; "eval": the
evaluation images) and returns (RawSplit, class names); `experiments.common` tiles it. Also the
"images"-kind synthetic aerial tiles (statistics only, no labels).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from absl import logging

from vitjax import errors, progress
from vitjax.data import ade20k, cityscapes, fewshot, registry, synthetic
from vitjax.data.registry import IMAGES, SEGMENTATION, register_dataset
from vitjax.data.types import RawSplit

# Where the real datasets take their root from.
DATA_ROOT_FIELD = "config.data.root"
_OTHER_ROOT_NOTE = (
    " (a dataset other than config.dataset is read from its config.data.other_roots entry)"
)
SPLIT_SOURCES = ("paper", "seeded")
# The evaluation scenes are drawn with this offset on the seed (the train scenes with the seed).
SYNTHETIC_EVAL_SEED_OFFSET = 1_000_003

CITYSCAPES_LAYOUT = (
    "<root>/leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png and "
    "<root>/gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png"
)
ADE20K_LAYOUT = (
    "<root>/images/{training,validation}/ADE_*.jpg, <root>/annotations/{training,validation}/"
    "ADE_*.png and <root>/objectInfo150.txt (root = ADEChallengeData2016 or its parent)"
)


@register_dataset("synthetic", kind=SEGMENTATION, display="synthetic scenes")
def load_synthetic(data_cfg, seed: int, split: str, per_group: int) -> tuple[RawSplit, list[str]]:
    """Synthetic semantic scenes (`synthetic.semantic_scenes`); groups cycle over the images."""
    size = tuple(int(v) for v in data_cfg.synthetic_hw)
    if split == "train":
        groups = int(data_cfg.synthetic_groups)
        n = groups * per_group
        scenes = synthetic.semantic_scenes(n, size=size, seed=seed)
        group_of = [i % groups for i in range(n)]
    else:
        n = int(data_cfg.synthetic_eval_images)
        scenes = synthetic.semantic_scenes(n, size=size, seed=seed + SYNTHETIC_EVAL_SEED_OFFSET)
        group_of = [0] * n
    raw = RawSplit(
        list(scenes.images),
        list(scenes.labels),
        group_of,
        [f"synthetic_{split}_{i}" for i in range(n)],
    )
    return raw, list(scenes.class_names)


@register_dataset("synthetic_aerial", kind=IMAGES, display="synthetic aerial tiles")
def load_synthetic_aerial(n: int, size: int, seed: int) -> np.ndarray:
    """`n` synthetic aerial tiles, uint8 [n, size, size, 3]."""
    return np.asarray(synthetic.aerial_tiles(n, size=(size, size), seed=seed).images)


@register_dataset(
    "cityscapes",
    kind=SEGMENTATION,
    display="Cityscapes",
    layout=CITYSCAPES_LAYOUT,
    subfolders=(("leftImg8bit", "gtFine"),),
    group_unit="city",
    preset=dict(
        resize_hw=(0, 0),
        tile_size=256,
        tile_out=224,
        train_per_group=4,
        eval_per_group=10,
        miou_convention="present",
    ),
)
def load_cityscapes(data_cfg, seed: int, split: str, per_group: int) -> tuple[RawSplit, list[str]]:
    """Cityscapes train (few-shot, per city) or val images with their labelIds maps."""
    root = registry.get_dataset("cityscapes", SEGMENTATION).check_root(
        data_cfg.root, DATA_ROOT_FIELD, _OTHER_ROOT_NOTE
    )
    # labelIds are the official ground truth (and what the evaluation and [R1] use); a derived
    # `_labelTrainIds.png` beside them may come from another pipeline (e.g. resized separately).
    reader = cityscapes.CityscapesReader(root, label_source="label_ids")
    if split == "train":
        source, n, field = (
            "train",
            per_group,
            "config.data.train_per_group (or the experiment's shots)",
        )
    else:
        source, n, field = "val", int(data_cfg.eval_per_group), "config.data.eval_per_group"
    samples = _cityscapes_samples(reader, source, n, data_cfg.splits, seed, field)
    cities = sorted({s.city for s in samples})
    images, labels = zip(*(reader.load(s) for s in samples))
    raw = RawSplit(
        list(images),
        list(labels),
        [cities.index(s.city) for s in samples],
        [s.stem for s in samples],
    )
    return raw, list(cityscapes.CLASS_NAMES)


def _cityscapes_samples(reader, split: str, n: int, source: str, seed: int, field: str):
    """The research code's image lists when `source == 'paper'` (if shipped), else `n` per city.

    `field` names the config field `n` comes from (for the error when a city has fewer images).
    """
    if source not in SPLIT_SOURCES:
        raise errors.ConfigError(f"config.data.splits={source!r}: expected 'paper' or 'seeded'")
    if source == "paper":
        name = f"cityscapes_{split}_{n}_per_city"
        if name in fewshot.list_splits():
            return reader.find(list(fewshot.load_split(name).stems), split)
        logging.warning(
            "no shipped list %s: drawing %d images per city with seed %d", name, n, seed
        )
    try:
        return fewshot.per_city(reader.samples(split), n, seed)
    except errors.ConfigError as e:
        raise errors.ConfigError(
            f"{field}={n}: {e} in the Cityscapes {split} split under {reader.root}; expected at "
            "most as many images per city as every city has"
        ) from e


@functools.lru_cache(maxsize=4)
def ade20k_presence(
    root: str, source: str, pool_size: int | None, grid: tuple[int, int]
) -> tuple[tuple[Any, ...], np.ndarray]:
    """The ADE20K pool of `source` and its class-presence table (`fewshot.class_presence`).

    Cached apart from the few-shot size: every size of a sweep picks from the same table, and
    reading it decodes every pool annotation.

    Returns:
      (pool samples in listing order, read-only bool [N, 151]).
    """
    reader = ade20k.ADE20KReader(root)
    pool = reader.samples(source)
    if pool_size is not None:
        pool = pool[-pool_size:]
    presence = np.zeros((len(pool), ade20k.NUM_CLASSES + 1), dtype=bool)
    bar = progress.Progress(len(pool), "annotations", name=f"ADE20K {source} class presence")
    for i, sample in enumerate(pool):
        presence[i] = fewshot.class_presence(
            reader.load_annotation(sample), grid, ade20k.NUM_CLASSES
        )
        bar.update(1)
    bar.close()
    presence.flags.writeable = False
    return tuple(pool), presence


def _ade20k_seed(source: str, seed: int) -> int | None:
    """Permutation seed of the ADE20K greedy pick: None (listing order, as [R1]) for 'paper'."""
    if source not in SPLIT_SOURCES:
        raise errors.ConfigError(f"config.data.splits={source!r}: expected 'paper' or 'seeded'")
    return None if source == "paper" else seed


@register_dataset(
    "ade20k",
    kind=SEGMENTATION,
    display="ADE20K",
    layout=ADE20K_LAYOUT,
    subfolders=(
        ("images", "annotations"),
        ("ADEChallengeData2016/images", "ADEChallengeData2016/annotations"),
    ),
    group_unit="class",
    private_prefix="ade20k_",
    clear_cache=ade20k_presence.cache_clear,
    preset=dict(
        resize_hw=(448, 672),
        tile_size=224,
        tile_out=224,
        train_per_group=4,
        eval_per_group=2,
        miou_convention="all",
    ),
)
def load_ade20k(data_cfg, seed: int, split: str, per_group: int) -> tuple[RawSplit, list[str]]:
    """ADE20K images picked greedily per class ([R1]); labels 0-149, 255 = not evaluated."""
    root = registry.get_dataset("ade20k", SEGMENTATION).check_root(
        data_cfg.root, DATA_ROOT_FIELD, _OTHER_ROOT_NOTE
    )
    reader = ade20k.ADE20KReader(root)
    pool = data_cfg.ade20k_train_pool
    grid = tuple(data_cfg.ade20k_presence_grid)
    if len(grid) != 2 or min(grid) <= 0:
        raise errors.ConfigError(
            f"config.data.ade20k_presence_grid={grid}: expected (rows, cols), e.g. (28, 42)"
        )
    pick_seed = _ade20k_seed(data_cfg.splits, seed)
    # [R1]'s pools: the last `pool` training images, all validation images.
    if split == "train":
        source, k, pool_size = "training", per_group, (pool if pool > 0 else None)
    else:
        source, k, pool_size = "validation", int(data_cfg.eval_per_group), None
    pool_samples, presence = ade20k_presence(reader.root, source, pool_size, grid)
    chosen = fewshot.greedy_per_class(presence, k, seed=pick_seed)
    samples = [(pool_samples[i], c) for c, items in chosen.items() for i in items]
    images, labels = [], []
    for sample, _ in samples:
        image, mask = reader.load(sample, view="reduced")  # 0-149, 0 -> 255 (not evaluated)
        images.append(image)
        labels.append(mask)
    raw = RawSplit(images, labels, [c for _, c in samples], [s.stem for s, _ in samples])
    return raw, reader.class_names()
