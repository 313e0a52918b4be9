"""Object-tile datasets (kind "object_tiles"): FAIR1M and synthetic aerial tiles.

Each loader returns `per_category` tiles per fine category with dense fine-class and instance
masks (`ObjectTiles`), chosen as docs/datasets.md §4 describes for FAIR1M: DOTA-style crops cut
into a grid of tiles; a tile shows a category when at least `area_threshold` of one of its
instances (its area inside the crop) lies in the tile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import logging

from vitjax import errors
from vitjax.data import fair1m, fewshot, registry, synthetic, tiling
from vitjax.data import images as image_io
from vitjax.data.registry import OBJECT_TILES, register_dataset
from vitjax.data.types import ObjectTiles
from vitjax.progress import Progress

ROOT_FIELD = "config.fair1m_retrieval.root"


def _objects_in_window(
    objects: Sequence[fair1m.FAIR1MObject], left: int, top: int, height: int, width: int
) -> list[fair1m.FAIR1MObject]:
    """All objects shifted into a window's coordinates; those outside it become unknown (not
    painted), so instance k stays the k-th object of the XML."""
    out = []
    for obj in objects:
        pts = obj.points - np.array([left, top], np.float64)
        inside = (
            pts[:, 0].max() > 0
            and pts[:, 1].max() > 0
            and pts[:, 0].min() < width
            and pts[:, 1].min() < height
        )
        fid = obj.fine_id if inside else -1
        out.append(dataclasses.replace(obj, points=pts, fine_id=fid))
    return out


def _tile_grid(array: np.ndarray, tile: int, pad: str, pad_value: int = 0) -> np.ndarray:
    """[rows * cols, tile, tile, ...] tiles of `array`, row-major, padded at the bottom/right."""
    tiles, _ = tiling.tile_image(array, (tile, tile), pad=pad, pad_value=pad_value)
    return tiles


def select_fair1m_tiles(
    reader: fair1m.FAIR1MReader,
    split: str = "validation",
    crop_size: int = 1000,
    tile_size: int = 224,
    per_category: int = 8,
    threshold: float = fewshot.TILE_AREA_THRESHOLD,
    seed: int = 0,
    pad: str = "constant",
    max_images: int = 0,
    log_every_s: float = 10.0,
) -> ObjectTiles:
    """FAIR1M split -> crops -> tiles -> category membership -> `per_category` tiles per category.

    Two passes over the split: the first reads only the label XMLs (rasterising each crop) to find
    which tiles show which categories; the second decodes only the images that hold a chosen tile.

    Args:
      reader: a FAIR1MReader.
      split: split name of the reader.
      crop_size: side of the DOTA-style crops (windows from `fair1m.crop_windows`).
      tile_size: tile side S; tiles are cut from a crop on a grid at multiples of S.
      per_category: tiles drawn per fine category (fewer when a category has fewer tiles).
      threshold: minimum share of an instance's area (inside the crop) that makes a tile show the
        instance's category.
      seed: seed of the draw.
      pad: image padding of the last tile row/column, 'constant' (zeros) or 'edge'; masks are
        always padded with background.
      max_images: > 0: only the first N images of the split.
      log_every_s: seconds between progress lines.

    Returns:
      ObjectTiles, grouped by category in visiting order (37 -> 1).

    Raises:
      DatasetError: no labelled image in the split, or no tile showing any category.
    """
    samples = [s for s in reader.samples(split) if s.label_path is not None]
    if max_images > 0:
        samples = samples[:max_images]
    if not samples:
        raise errors.DatasetError(f"{reader.root}: FAIR1M split {split!r} has no labelled image")
    # Pass 1: membership of every tile of every crop.
    membership, where = [], []  # where[t] = (sample index, left, top, crop h, crop w, tile index)
    annotations = []
    progress = Progress(
        len(samples), "images", name="FAIR1M tile membership", interval_s=log_every_s
    )
    for i, sample in enumerate(samples):
        annotation = reader.load_annotation(sample)
        annotations.append(annotation)
        if annotation.height is not None and annotation.width is not None:
            height, width = annotation.height, annotation.width
        else:
            height, width = image_io.image_size(sample.image_path)
        for left, top in fair1m.crop_windows(height, width, crop_size):
            ch, cw = min(crop_size, height - top), min(crop_size, width - left)
            shifted = _objects_in_window(annotation.objects, left, top, ch, cw)
            if all(obj.fine_id <= 0 for obj in shifted):
                continue
            masks = fair1m.rasterize(shifted, (ch, cw))
            if not masks.instance.any():
                continue
            rows = fewshot.tile_membership_from_masks(
                masks.instance, masks.fine, tile_size, fair1m.NUM_FINE, threshold
            )
            membership.append(rows)
            where.extend((i, left, top, ch, cw, t) for t in range(rows.shape[0]))
        progress.update()
    progress.close()
    if not membership:
        raise errors.DatasetError(
            f"{reader.root}: no tile of split {split!r} shows any FAIR1M category"
        )
    chosen = fewshot.select_tiles_per_category(np.concatenate(membership), per_category, seed)
    logging.info(
        "FAIR1M: %d tiles chosen (%d per category) from %d candidate tiles of %d images",
        len(chosen),
        per_category,
        len(where),
        len(samples),
    )

    # Pass 2: decode the images that hold a chosen tile, cut crops and tiles.
    by_sample: dict[int, list[int]] = {}
    for position, (tile_row, _) in enumerate(chosen):
        by_sample.setdefault(where[tile_row][0], []).append(position)
    count = len(chosen)
    out_images = np.zeros((count, tile_size, tile_size, 3), np.uint8)
    out_fine = np.zeros((count, tile_size, tile_size), np.uint8)
    out_instance = np.zeros((count, tile_size, tile_size), np.int32)
    names = [""] * count
    for i, positions in by_sample.items():
        image = reader.load_image(samples[i])
        crops: dict[tuple[int, int], tuple] = {}
        for position in positions:
            _, left, top, ch, cw, t = where[chosen[position][0]]
            if (left, top) not in crops:
                shifted = _objects_in_window(annotations[i].objects, left, top, ch, cw)
                masks = fair1m.rasterize(shifted, (ch, cw))
                crop = image[top : top + ch, left : left + cw]
                crops[(left, top)] = (
                    _tile_grid(crop, tile_size, pad),
                    _tile_grid(masks.fine, tile_size, "constant"),
                    _tile_grid(masks.instance, tile_size, "constant"),
                )
            tiles, fine_tiles, instance_tiles = crops[(left, top)]
            out_images[position] = tiles[t]
            out_fine[position] = fine_tiles[t]
            out_instance[position] = instance_tiles[t]
            cols = -(-cw // tile_size)
            crop = fair1m.crop_name(samples[i].stem, left, top)
            names[position] = f"{crop}.{t}_{t // cols}_{t % cols}"
    return ObjectTiles(
        images=out_images,
        fine_mask=out_fine,
        instance_mask=out_instance,
        category=np.array([c for _, c in chosen], np.int32),
        source=np.array([where[row][0] for row, _ in chosen], np.int64),
        names=names,
        fine_to_super=np.asarray(fair1m.FINE_TO_SUPER, np.int32),
        fine_names=list(fair1m.FINE_NAMES),
        super_names=list(fair1m.SUPER_NAMES),
    )


def select_synthetic_tiles(
    candidates: int,
    tile_size: int = 224,
    per_category: int = 8,
    threshold: float = fewshot.TILE_AREA_THRESHOLD,
    seed: int = 0,
) -> ObjectTiles:
    """The same selection on `synthetic.aerial_tiles` (each candidate image is one tile)."""
    aerial = synthetic.aerial_tiles(candidates, size=(tile_size, tile_size), seed=seed)
    num_fine = len(aerial.fine_names)
    membership = np.concatenate(
        [
            fewshot.tile_membership_from_masks(inst, fine, tile_size, num_fine, threshold)
            for inst, fine in zip(aerial.instance_mask, aerial.fine_mask)
        ]
    )
    chosen = fewshot.select_tiles_per_category(membership, per_category, seed)
    rows = np.array([t for t, _ in chosen], np.int64)
    return ObjectTiles(
        images=aerial.images[rows],
        fine_mask=aerial.fine_mask[rows].astype(np.uint8),
        instance_mask=aerial.instance_mask[rows].astype(np.int32),
        category=np.array([c for _, c in chosen], np.int32),
        source=rows,
        names=[f"synthetic_{t}" for t in rows],
        fine_to_super=np.asarray(aerial.fine_to_super, np.int32),
        fine_names=["background", *aerial.fine_names],
        super_names=list(aerial.super_names),
    )


@register_dataset("fair1m", kind=OBJECT_TILES, display="FAIR1M", layout=fair1m.EXPECTED_LAYOUT)
def load_fair1m(cfg: ml_collections.ConfigDict, seed: int) -> ObjectTiles:
    """The tiles of FAIR1M split `cfg.split` under `cfg.root` (`select_fair1m_tiles`)."""
    root = registry.get_dataset("fair1m", OBJECT_TILES).check_root(cfg.root, ROOT_FIELD)
    return select_fair1m_tiles(
        fair1m.FAIR1MReader(root),
        cfg.split,
        int(cfg.crop_size),
        int(cfg.tile_size),
        int(cfg.per_category),
        float(cfg.area_threshold),
        seed,
        cfg.tile_pad,
        int(cfg.max_images),
    )


@register_dataset("synthetic", kind=OBJECT_TILES, display="synthetic aerial tiles")
def load_synthetic(cfg: ml_collections.ConfigDict, seed: int) -> ObjectTiles:
    """The tiles chosen from `cfg.synthetic_candidates` synthetic aerial tiles."""
    return select_synthetic_tiles(
        int(cfg.synthetic_candidates),
        int(cfg.tile_size),
        int(cfg.per_category),
        float(cfg.area_threshold),
        seed,
    )
