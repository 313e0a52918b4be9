"""Seeded few-shot selection: k per group, the ADE20K greedy per-class rule, FAIR1M tile selection,
and the shipped Cityscapes image lists of the paper's draw.

All samplers are deterministic functions of their inputs and `seed`; inputs must be in a fixed
order (the readers return sorted lists).

Example:
    >>> idx = sample_per_group(["a", "a", "b", "b", "b"], k=1, seed=0)
    >>> len(idx)
    2
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from vitjax import fileio
from vitjax.data import tiling
from vitjax.errors import ConfigError, DatasetError

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
# The authors' research code ([R1], docs/datasets.md §1, §3): an ADE20K image qualifies for a class
# if the class survives nearest downsampling of its mask to the 42 x 28 (W x H) patch grid of the
# 672 x 448 resized image.
ADE20K_PRESENCE_GRID = (28, 42)
ADE20K_TRAIN_POOL = 2500
# The paper's appendix A.4 (docs/datasets.md §4): a FAIR1M tile shows a category if >= 1/3 of one
# of its instances lies in it.
TILE_AREA_THRESHOLD = 1.0 / 3.0


def _progress(items: Iterable, total: int | None, what: str, every_s: float = 10.0):
    """Yields items, logging count, items/s and ETA at most every `every_s` seconds."""
    start = last = time.monotonic()
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            rate = count / max(now - start, 1e-9)
            eta = f", ETA {(total - count) / rate:.0f} s" if total else ""
            logging.info(
                "%s: %d%s done, %.1f items/s%s",
                what,
                count,
                f"/{total}" if total else "",
                rate,
                eta,
            )
    if count:
        logging.info("%s: %d items in %.1f s", what, count, time.monotonic() - start)


# ----------------------------------------------------------------------------- k per group


def sample_per_group(
    groups: Sequence[Hashable], k: int, seed: int = 0, strict: bool = False
) -> np.ndarray:
    """Draws k members per group without replacement.

    Groups are visited in sorted order and share one `np.random.default_rng(seed)` stream, so the
    draw depends only on `groups` (in its given order), `k` and `seed`.

    Args:
      groups: group key of each item (e.g. Cityscapes city, class index).
      k: members per group.
      seed: random seed.
      strict: raise if a group has fewer than k members (otherwise take all and log a warning).

    Returns:
      int64 [sum_g min(k, n_g)] item indices in ascending order.
    """
    if k < 0:
        raise ConfigError(f"k={k}; expected k >= 0")
    members: dict[Hashable, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for group in sorted(members):
        items = members[group]
        if len(items) < k:
            if strict:
                raise ConfigError(f"group {group!r} has {len(items)} items; k={k} requested")
            logging.warning("group %r has only %d items (k=%d): taking all", group, len(items), k)
        chosen.extend(int(i) for i in rng.choice(items, size=min(k, len(items)), replace=False))
    return np.sort(np.array(chosen, dtype=np.int64))


def split_per_class(
    samples: Sequence[Any], k: int, seed: int = 0, key: Callable[[Any], Hashable] | None = None
) -> tuple[list[Any], list[Any]]:
    """Seeded k-per-class train split; the rest is the test split (both keep input order).

    Args:
      samples: items with a `.label` attribute (or use `key`).
      k: training items per class.
      seed: random seed.
      key: group of an item; defaults to `item.label`.

    Returns:
      (train items, remaining items).
    """
    key = key or (lambda s: s.label)
    picked = set(sample_per_group([key(s) for s in samples], k, seed).tolist())
    train = [s for i, s in enumerate(samples) if i in picked]
    rest = [s for i, s in enumerate(samples) if i not in picked]
    return train, rest


def per_city(samples: Sequence[Any], k: int = 4, seed: int = 0) -> list[Any]:
    """k Cityscapes samples per city (seeded), in input order (samples need a `.city`)."""
    return [samples[i] for i in sample_per_group([s.city for s in samples], k, seed, strict=True)]


# ----------------------------------------------------------------------------- shipped lists


@dataclasses.dataclass(frozen=True)
class SplitList:
    """A fixed list of images (stems) of one dataset split."""

    name: str
    dataset: str
    split: str
    stems: tuple[str, ...]
    description: str = ""


def list_splits() -> list[str]:
    """Names of the lists shipped in vitjax/data/splits/."""
    return sorted(p.stem for p in SPLITS_DIR.glob("*.json"))


def load_split(name_or_path: str | os.PathLike) -> SplitList:
    """Loads a shipped list by name (e.g. 'cityscapes_train_4_per_city') or a JSON file by path.

    Raises:
      ConfigError: unknown name (the message lists the shipped ones).
      DatasetError: malformed file.
    """
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = SPLITS_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise ConfigError(f"split list {name_or_path!r} unknown; shipped: {list_splits()}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read split list ({e})") from e
    for field, kind in (("dataset", str), ("split", str), ("stems", list)):
        if not isinstance(data.get(field), kind):
            raise DatasetError(f"{path}: field {field!r} missing or not a {kind.__name__}")
    if not all(isinstance(s, str) for s in data["stems"]):
        raise DatasetError(f"{path}: 'stems' must be a list of strings")
    return SplitList(
        path.stem, data["dataset"], data["split"], tuple(data["stems"]), data.get("description", "")
    )


def save_split(path: str | os.PathLike, split_list: SplitList) -> None:
    """Writes a SplitList as JSON atomically (temporary file, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "dataset": split_list.dataset,
        "split": split_list.split,
        "description": split_list.description,
        "stems": list(split_list.stems),
    }
    fileio.atomic_write_text(path, json.dumps(payload, indent=1) + "\n")


# ----------------------------------------------------------------------------- greedy per class


def class_presence(
    mask: np.ndarray, grid: tuple[int, int] = ADE20K_PRESENCE_GRID, num_classes: int = 150
) -> np.ndarray:
    """Classes present in a mask after nearest-exact downsampling to `grid`.

    Args:
      mask: integer [H, W] label map with values 0..num_classes (others ignored).
      grid: (rows, cols) of the downsampled mask.
      num_classes: highest class id.

    Returns:
      bool [num_classes + 1]; entry c is True if class c survives the downsampling.
    """
    small = tiling.resize_image(np.asarray(mask), grid, "nearest").ravel().astype(np.int64)
    small = small[(small >= 0) & (small <= num_classes)]
    return np.bincount(small, minlength=num_classes + 1)[: num_classes + 1] > 0


def greedy_per_class(
    presence: np.ndarray,
    k: int,
    class_order: Sequence[int] | None = None,
    seed: int | None = 0,
) -> dict[int, list[int]]:
    """Greedy k-per-class selection without reuse ([R1]'s ADE20K rule).

    Classes are visited in `class_order` (default: highest id first, down to 1; class 0 is
    background and skipped). For each class, candidates are taken in pool order (a seeded
    permutation of the pool, or the given order when seed is None): the first k items that show
    the class and were not taken by an earlier class.

    Args:
      presence: bool [N, C + 1]; presence[i, c] = item i qualifies for class c.
      k: items per class.
      class_order: class ids in visiting order.
      seed: permutation seed, or None for the pool's own order.

    Returns:
      {class id: [item indices]} in visiting order; a class with fewer than k candidates left
      gets fewer (logged).
    """
    presence = np.asarray(presence, dtype=bool)
    n, num_columns = presence.shape
    if class_order is None:
        class_order = range(num_columns - 1, 0, -1)
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    used = np.zeros(n, dtype=bool)
    selection: dict[int, list[int]] = {}
    short = []
    for cls in class_order:
        candidates = order[presence[order, cls] & ~used[order]][:k]
        used[candidates] = True
        selection[int(cls)] = [int(i) for i in candidates]
        if len(candidates) < k:
            short.append(f"{cls} ({len(candidates)})")
    if short:
        # One line for all of them: a small pool leaves most of 150 classes short.
        logging.warning(
            "%d of %d classes have fewer than k=%d items left (class (items)): %s",
            len(short),
            len(selection),
            k,
            ", ".join(short),
        )
    return selection


@dataclasses.dataclass(frozen=True)
class ADE20KFewShot:
    """Selected samples per class (highest class first); `train`/`eval` flatten them."""

    train_per_class: dict[int, list[Any]]
    eval_per_class: dict[int, list[Any]]

    @property
    def train(self) -> list[Any]:
        return [s for items in self.train_per_class.values() for s in items]

    @property
    def eval(self) -> list[Any]:
        return [s for items in self.eval_per_class.values() for s in items]


def ade20k_fewshot(
    reader,
    k_train: int = 4,
    k_eval: int = 2,
    train_pool_size: int | None = ADE20K_TRAIN_POOL,
    seed: int | None = 0,
    grid: tuple[int, int] = ADE20K_PRESENCE_GRID,
    num_classes: int = 150,
) -> ADE20KFewShot:
    """The paper's ADE20K few-shot sets: k_train per class from the train pool, k_eval per class
    from the validation pool, each by `greedy_per_class` (classes 150 -> 1, no reuse).

    Pools ([R1]): the last `train_pool_size` training images of the (sorted) listing, and all
    validation images. Reads every pool annotation once (progress is logged).

    Args:
      reader: an ADE20KReader.
      k_train, k_eval: images per class.
      train_pool_size: size of the training pool (None = all training images).
      seed: permutation seed of `greedy_per_class` (None = listing order).
      grid: (rows, cols) of the presence test.
      num_classes: 150.

    Returns:
      ADE20KFewShot of ADE20KSample lists.
    """
    train_pool = reader.samples("training")
    if train_pool_size is not None:
        train_pool = train_pool[-train_pool_size:]
    eval_pool = reader.samples("validation")
    selected = []
    for pool, k, what in ((train_pool, k_train, "train"), (eval_pool, k_eval, "eval")):
        presence = np.zeros((len(pool), num_classes + 1), dtype=bool)
        for i, sample in enumerate(_progress(pool, len(pool), f"ADE20K {what} class presence")):
            presence[i] = class_presence(reader.load_annotation(sample), grid, num_classes)
        chosen = greedy_per_class(presence, k, seed=seed)
        selected.append({c: [pool[i] for i in idx] for c, idx in chosen.items()})
    return ADE20KFewShot(*selected)


# ----------------------------------------------------------------------------- tiles (FAIR1M)


def tile_instance_fractions(
    instance_mask: np.ndarray, tile_size: int | tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Fraction of each instance's area inside each tile of a grid.

    The grid starts at (0, 0) with tiles at multiples of the tile size; the last row/column of
    tiles extends past the image (zero padding = background), as in [R1]'s tiling of crops.

    Args:
      instance_mask: integer [H, W]; 0 = background, k > 0 = instance k.
      tile_size: tile height and width (int or (th, tw)).

    Returns:
      (fractions float64 [T, I], instance_ids int64 [I] (the present ids, ascending),
       (grid_rows, grid_cols)) with T = grid_rows * grid_cols in row-major order; each column of
      `fractions` sums to 1.
    """
    th, tw = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    mask = np.asarray(instance_mask).astype(np.int64)
    height, width = mask.shape
    rows, cols = math.ceil(height / th), math.ceil(width / tw)
    ids, inverse = np.unique(mask, return_inverse=True)
    inverse = inverse.reshape(mask.shape)
    tile_of_pixel = (np.arange(height)[:, None] // th) * cols + np.arange(width)[None, :] // tw
    counts = np.bincount(
        (tile_of_pixel * len(ids) + inverse).ravel(), minlength=rows * cols * len(ids)
    ).reshape(rows * cols, len(ids))
    foreground = ids > 0
    counts, ids = counts[:, foreground], ids[foreground]
    return counts / counts.sum(axis=0, keepdims=True), ids, (rows, cols)


def tile_category_membership(
    fractions: np.ndarray,
    instance_categories: np.ndarray,
    num_categories: int,
    threshold: float = TILE_AREA_THRESHOLD,
) -> np.ndarray:
    """Which tiles count for which category.

    Args:
      fractions: float [T, I] share of each instance's area in each tile.
      instance_categories: int [I] category (1..num_categories) of each instance; others ignored.
      num_categories: number of categories (column 0 = background stays False).
      threshold: minimum share of some instance of the category (default 1/3).

    Returns:
      bool [T, num_categories + 1].
    """
    fractions = np.asarray(fractions, np.float64)
    categories = np.asarray(instance_categories, np.int64)
    # Tolerance so that exactly a third (e.g. 3 of 9 pixels) counts despite rounding.
    hits = fractions >= threshold - 1e-9
    membership = np.zeros((fractions.shape[0], num_categories + 1), dtype=bool)
    for category in np.unique(categories):
        if 1 <= category <= num_categories:
            membership[:, category] = hits[:, categories == category].any(axis=1)
    return membership


def tile_membership_from_masks(
    instance_mask: np.ndarray,
    category_mask: np.ndarray,
    tile_size: int | tuple[int, int],
    num_categories: int,
    threshold: float = TILE_AREA_THRESHOLD,
) -> np.ndarray:
    """`tile_category_membership` of one image from its instance and category masks.

    Works for FAIR1M crops (FAIR1MMasks.instance / .fine) and the synthetic aerial tiles
    (instance_mask / fine_mask). An instance's category is the category-mask value of its pixels.

    Returns:
      bool [T, num_categories + 1] over the row-major tile grid of `tile_instance_fractions`.
    """
    fractions, ids, _ = tile_instance_fractions(instance_mask, tile_size)
    instance = np.asarray(instance_mask).ravel()
    by_instance = np.argsort(instance, kind="stable")
    first_pixel = by_instance[np.searchsorted(instance[by_instance], ids)]
    categories = np.asarray(category_mask).ravel()[first_pixel]
    return tile_category_membership(fractions, categories, num_categories, threshold)


def select_tiles_per_category(
    membership: np.ndarray,
    k: int = 8,
    seed: int | None = 0,
    category_order: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """k tiles per category without reuse (appendix A.4's "8 tiles per fine category").

    Args:
      membership: bool [T, C + 1] from `tile_category_membership` (tiles of all crops stacked).
      k: tiles per category.
      seed: permutation seed (None = tile order).
      category_order: visiting order (default C -> 1, as `greedy_per_class`).

    Returns:
      (tile index, category) pairs, grouped by category in visiting order.
    """
    chosen = greedy_per_class(membership, k, category_order, seed)
    return [(tile, category) for category, tiles in chosen.items() for tile in tiles]
