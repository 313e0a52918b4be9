"""Cutting images into tiles for a ViT, and stitching per-tile predictions back together.

Geometry. An image of H x W pixels cut into tiles of th x tw gets a grid of
rows = ceil(H / th) by cols = ceil(W / tw) tiles, in row-major order; the last row/column is padded
at the bottom/right ("edge" repeats the border pixel, "constant" writes `pad_value`). Each tile is
then optionally resized to `out_size` (Pillow bicubic for images, exact nearest for label maps).
Per-tile predictions on a [gh, gw] patch grid stitch to a [rows * gh, cols * gw] map that covers the
padded image; `upsample_to` / `stitch_to_pixels` bring it back to pixels and crop the padding.

Nearest rule ("nearest-exact", PyTorch's `F.interpolate(mode="nearest-exact")`): output index i of
an axis resized from `n_in` to `n_out` reads input index floor((i + 0.5) * n_in / n_out), computed
in exact integer arithmetic as ((2 i + 1) * n_in) // (2 n_out). That is the pixel under the centre
of output cell i. PyTorch evaluates the product in floating point and may land one pixel lower
when it is exactly an integer (a centre on a pixel boundary, e.g. 2 -> 41); on every geometry
below both agree. The legacy rule ("nearest", PyTorch's default) is floor(i * n_in / n_out).

The paper's geometries are in `GEOMETRIES` (see `get_geometry`):

| name | pre-resize (H x W) | tile | out | grid |
|---|---|---|---|---|
| cityscapes | - | 256 | 224 | 4 x 8 on 1024 x 2048 (32 tiles) |
| ade20k | 448 x 672 | 224 | - | 2 x 3 (6 tiles), 28 x 42 patches at /16 |
| fair1m | - | 224 (edge pad) | - | 5 x 5 on a 1000 x 1000 crop |
| fair1m_cls | - | 250 | 224 | 4 x 4 on a 1000 x 1000 crop |
| tracking_tiles | 672 x 1120 | 224 | - | 3 x 5 (15 tiles) |
| tracking_{224,448,672} | s x s | whole | - | 1 x 1 |
| tracking_full | 672 x 1120 | whole | - | 1 x 1 (42 x 70 patches at /16) |

Examples:
    >>> image = np.zeros((1024, 2048, 3), np.uint8)
    >>> tiles, infos = tile_image(image, tile_size=(256, 256), out_size=(224, 224))
    >>> tiles.shape, (infos[9].row, infos[9].col, infos[9].y0, infos[9].x0)
    ((32, 224, 224, 3), (1, 1, 256, 256))
    >>> full = stitch(np.zeros((32, 14, 14)), infos)                      # [56, 112]
    >>> pixels = stitch_to_pixels(np.zeros((32, 14, 14)), infos)          # [1024, 2048]
"""

from __future__ import annotations

import dataclasses
import fractions
from collections.abc import Sequence

import numpy as np
from PIL import Image

from vitjax import errors


@dataclasses.dataclass(frozen=True)
class TileInfo:
    """Where a tile came from, enough to put its predictions back.

    Attributes:
      image_index: index of the source image in the batch that was tiled.
      row, col: grid position of the tile (row-major).
      y0, x0: top-left pixel of the tile in the tiled image (after any pre-resize).
      h, w: valid (unpadded) height/width of the tile in the tiled image; the rest is padding.
      scale: (out_h / tile_h, out_w / tile_w), 1.0 when the tile was not resized.
      grid_rows, grid_cols: the tile grid of the image.
      tile_h, tile_w: tile size in the tiled image.
      image_h, image_w: size of the tiled image (after any pre-resize).
      orig_h, orig_w: size of the image before the pre-resize (= image_h/w when there was none).
    """

    image_index: int
    row: int
    col: int
    y0: int
    x0: int
    h: int
    w: int
    scale: tuple[float, float]
    grid_rows: int = 1
    grid_cols: int = 1
    tile_h: int = 0
    tile_w: int = 0
    image_h: int = 0
    image_w: int = 0
    orig_h: int = 0
    orig_w: int = 0


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How an image is prepared for a ViT: optional whole-image resize, then tiling.

    Attributes:
      name: short name.
      resize_to: (H, W) the whole image is resized to first, or None.
      tile_size: (th, tw), or None for the whole (resized) image as one tile.
      out_size: (oh, ow) every tile is resized to, or None to keep tile_size.
      pad: "edge" or "constant" padding of the last tile row/column.
      pad_value: value for pad="constant" on images.
      label_pad_value: value used when padding label maps (the ignore label).
    """

    name: str
    resize_to: tuple[int, int] | None = None
    tile_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None
    pad: str = "edge"
    pad_value: int = 0
    label_pad_value: int = 255


GEOMETRIES = {
    g.name: g
    for g in (
        Geometry("cityscapes", tile_size=(256, 256), out_size=(224, 224)),
        Geometry("ade20k", resize_to=(448, 672), tile_size=(224, 224)),
        Geometry("fair1m", tile_size=(224, 224), pad="edge"),
        Geometry("fair1m_cls", tile_size=(250, 250), out_size=(224, 224)),
        Geometry("tracking_tiles", resize_to=(672, 1120), tile_size=(224, 224)),
        Geometry("tracking_224", resize_to=(224, 224)),
        Geometry("tracking_448", resize_to=(448, 448)),
        Geometry("tracking_672", resize_to=(672, 672)),
        Geometry("tracking_full", resize_to=(672, 1120)),
    )
}


def get_geometry(name: str) -> Geometry:
    """The named paper geometry; unknown names raise ConfigError listing the known ones."""
    if name not in GEOMETRIES:
        raise errors.ConfigError(f"tiling geometry {name!r}: expected one of {sorted(GEOMETRIES)}")
    return GEOMETRIES[name]


def _pair(value, field: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        value = (value, value)
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"{field}={value!r}: expected an int or a pair of ints") from None
    if a <= 0 or b <= 0:
        raise errors.ConfigError(f"{field}={value!r}: expected positive sizes")
    return a, b


def grid_shape(image_size: tuple[int, int], tile_size) -> tuple[int, int]:
    """Tile grid (rows, cols) = (ceil(H / th), ceil(W / tw)) for an image of size (H, W)."""
    h, w = _pair(image_size, "image_size")
    th, tw = _pair(tile_size, "tile_size")
    return -(-h // th), -(-w // tw)


def nearest_indices(n_in: int, n_out: int, rule: str = "exact") -> np.ndarray:
    """Source index of every output index for a nearest resize of one axis.

    Args:
      n_in: input length.
      n_out: output length.
      rule: "exact": floor((i + 0.5) * n_in / n_out) (PyTorch "nearest-exact", the pixel under the
        output cell's centre); "legacy": PyTorch "nearest", floor(i * n_in / n_out) evaluated in
        float32 as PyTorch does (it can read one cell earlier where the product is an integer).

    Returns:
      int64 [n_out], values in [0, n_in).
    """
    i = np.arange(n_out, dtype=np.int64)
    if rule == "exact":
        src = ((2 * i + 1) * n_in) // (2 * n_out)
    elif rule == "legacy":
        src = _torch_nearest(i, n_in, n_out)
    else:
        raise errors.ConfigError(f"nearest rule {rule!r}: expected 'exact' or 'legacy'")
    return np.minimum(src, n_in - 1)


def resize_image(image: np.ndarray, size, method: str = "auto") -> np.ndarray:
    """Resize an image or label map to size = (height, width).

    Args:
      image: [H, W] or [H, W, C]; uint8 or float32 for "bicubic", any dtype for "nearest".
      size: (height, width) of the result.
      method: "bicubic" (Pillow BICUBIC, antialiased when shrinking, as torchvision's PIL resize;
        uint8 results are rounded and clipped by Pillow), "nearest" (exact nearest rule of the
        module docstring; never mixes labels), or "auto": "nearest" for 2-D arrays (label maps),
        "bicubic" otherwise.

    Returns:
      Array of the input's dtype, [height, width] or [height, width, C].
    """
    oh, ow = _pair(size, "size")
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise errors.DatasetError(f"image of shape {image.shape}: expected [H, W] or [H, W, C]")
    if method == "auto":
        method = "nearest" if image.ndim == 2 else "bicubic"
    h, w = image.shape[:2]
    if (h, w) == (oh, ow):
        return image.copy()
    if method == "nearest":
        return image[nearest_indices(h, oh)[:, None], nearest_indices(w, ow)[None, :]]
    if method != "bicubic":
        raise errors.ConfigError(f"resize method {method!r}: expected 'bicubic', 'nearest', 'auto'")
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4):
        pil = Image.fromarray(image).resize((ow, oh), Image.Resampling.BICUBIC)
        return np.asarray(pil)
    if image.dtype not in (np.uint8, np.float32):
        raise errors.DatasetError(
            f"bicubic resize of dtype {image.dtype}: expected uint8 or float32 (use 'nearest' for "
            "label maps)"
        )
    planes = image[..., None] if image.ndim == 2 else image
    out = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(planes[..., c])).resize(
                    (ow, oh), Image.Resampling.BICUBIC
                )
            )
            for c in range(planes.shape[2])
        ],
        axis=-1,
    )
    return out[..., 0] if image.ndim == 2 else out


def tile_image(
    image: np.ndarray,
    tile_size=(224, 224),
    out_size=None,
    pad: str = "edge",
    pad_value=0,
    resize: str = "auto",
    image_index: int = 0,
    orig_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[TileInfo]]:
    """Cut one image (or label map) into a row-major grid of tiles.

    Args:
      image: uint8/float image [H, W, C] or integer label map [H, W] (or [H, W, C]).
      tile_size: (th, tw) in pixels of `image` (an int means square).
      out_size: (oh, ow) each tile is resized to, or None to keep tile_size.
      pad: "edge" (repeat the last row/column) or "constant" (`pad_value`) for the bottom/right
        padding of a grid that overhangs the image. Use "constant" with the ignore label for
        label maps whose padding must not be scored.
      pad_value: fill value for pad="constant".
      resize: "bicubic", "nearest" or "auto" (see `resize_image`); used only when out_size
        differs from tile_size.
      image_index: recorded in every TileInfo (for batches of images).
      orig_size: (H, W) of the image before a pre-resize, recorded for `stitch_to_pixels`.

    Returns:
      tiles: [T, oh, ow] or [T, oh, ow, C] with T = rows * cols, same dtype as `image`.
      infos: list of T TileInfo, row-major.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise errors.DatasetError(f"image of shape {image.shape}: expected [H, W] or [H, W, C]")
    th, tw = _pair(tile_size, "tile_size")
    oh, ow = (th, tw) if out_size is None else _pair(out_size, "out_size")
    h, w = image.shape[:2]
    rows, cols = grid_shape((h, w), (th, tw))
    pad_width = [(0, rows * th - h), (0, cols * tw - w)] + [(0, 0)] * (image.ndim - 2)
    if pad == "edge":
        padded = np.pad(image, pad_width, mode="edge")
    elif pad == "constant":
        padded = np.pad(image, pad_width, mode="constant", constant_values=pad_value)
    else:
        raise errors.ConfigError(f"pad={pad!r}: expected 'edge' or 'constant'")
    trailing = image.shape[2:]
    # [rows*th, cols*tw, ...] -> [rows, th, cols, tw, ...] -> [rows, cols, th, tw, ...]: a view
    # reshuffle, so tiling costs one copy whatever the grid.
    blocks = padded.reshape(rows, th, cols, tw, *trailing).swapaxes(1, 2)
    tiles = blocks.reshape(rows * cols, th, tw, *trailing)
    if (oh, ow) != (th, tw):
        tiles = np.stack([resize_image(t, (oh, ow), resize) for t in tiles])
    else:
        tiles = np.ascontiguousarray(tiles)
    oh0, ow0 = (h, w) if orig_size is None else _pair(orig_size, "orig_size")
    infos = [
        TileInfo(
            image_index=image_index,
            row=r,
            col=c,
            y0=r * th,
            x0=c * tw,
            h=min(th, h - r * th),
            w=min(tw, w - c * tw),
            scale=(oh / th, ow / tw),
            grid_rows=rows,
            grid_cols=cols,
            tile_h=th,
            tile_w=tw,
            image_h=h,
            image_w=w,
            orig_h=oh0,
            orig_w=ow0,
        )
        for r in range(rows)
        for c in range(cols)
    ]
    return tiles, infos


def tile_images(
    images: Sequence[np.ndarray] | np.ndarray, tile_size=(224, 224), out_size=None, **kwargs
) -> tuple[np.ndarray, list[TileInfo]]:
    """`tile_image` over many images (sizes may differ); image_index = position in `images`.

    Returns:
      tiles: all tiles concatenated, image by image, [sum_i T_i, oh, ow(, C)].
      infos: the matching TileInfo list.
    """
    all_tiles, all_infos = [], []
    for i, image in enumerate(images):
        tiles, infos = tile_image(image, tile_size, out_size, image_index=i, **kwargs)
        all_tiles.append(tiles)
        all_infos.extend(infos)
    if not all_tiles:
        raise errors.DatasetError("tile_images: got no images")
    return np.concatenate(all_tiles), all_infos


def apply_geometry(
    image: np.ndarray,
    geometry: Geometry | str,
    is_label: bool = False,
    image_index: int = 0,
) -> tuple[np.ndarray, list[TileInfo]]:
    """Prepare an image (or its label map) with a paper geometry.

    Args:
      image: uint8 image [H, W, 3] or label map [H, W].
      geometry: a Geometry or its name in GEOMETRIES.
      is_label: label map: nearest resizing, and padding with the constant
        `geometry.label_pad_value` (255 = ignore) whatever the image padding is.
      image_index: recorded in the TileInfos.

    Returns:
      (tiles, infos) as `tile_image`; a geometry without tiles gives one tile.
    """
    geo = get_geometry(geometry) if isinstance(geometry, str) else geometry
    image = np.asarray(image)
    method = "nearest" if is_label else "bicubic"
    orig = image.shape[:2]
    if geo.resize_to is not None:
        image = resize_image(image, geo.resize_to, method)
    tile = image.shape[:2] if geo.tile_size is None else geo.tile_size
    if is_label:
        # Padding pixels are not real pixels: label maps are always padded with the ignore value.
        pad, value = "constant", geo.label_pad_value
    else:
        pad, value = geo.pad, geo.pad_value
    return tile_image(
        image,
        tile,
        geo.out_size,
        pad=pad,
        pad_value=value,
        resize=method,
        image_index=image_index,
        orig_size=orig,
    )


def _check_one_image(infos: Sequence[TileInfo]) -> TileInfo:
    if not infos:
        raise errors.DatasetError("stitch: got no TileInfo")
    first = infos[0]
    if any(i.image_index != first.image_index for i in infos):
        raise errors.DatasetError(
            "stitch: infos span several image_index values; use stitch_all for batches"
        )
    return first


def stitch(
    tile_preds: np.ndarray,
    infos: Sequence[TileInfo],
    grid_rows: int | None = None,
    grid_cols: int | None = None,
) -> np.ndarray:
    """Put per-tile maps of one image back on the tile grid.

    Args:
      tile_preds: [T, gh, gw, ...] (patch predictions, features, or the tiles themselves).
      infos: the T TileInfos of those tiles (any order; their row/col place them).
      grid_rows, grid_cols: the grid; default from the infos.

    Returns:
      [grid_rows * gh, grid_cols * gw, ...], same dtype. It covers the padded image; crop with
      `upsample_to(..., covered=...)` or `stitch_to_pixels`.
    """
    tile_preds = np.asarray(tile_preds)
    first = _check_one_image(infos)
    rows = first.grid_rows if grid_rows is None else grid_rows
    cols = first.grid_cols if grid_cols is None else grid_cols
    if len(infos) != tile_preds.shape[0] or len(infos) != rows * cols:
        raise errors.DatasetError(
            f"stitch: {tile_preds.shape[0]} tile predictions and {len(infos)} infos for a "
            f"{rows} x {cols} grid: expected {rows * cols} of each"
        )
    seen = {(i.row, i.col) for i in infos}
    if len(seen) != rows * cols or not all(0 <= r < rows and 0 <= c < cols for r, c in seen):
        raise errors.DatasetError(f"stitch: infos do not cover the {rows} x {cols} grid once each")
    gh, gw = tile_preds.shape[1:3]
    out = np.empty((rows * gh, cols * gw, *tile_preds.shape[3:]), tile_preds.dtype)
    for pred, info in zip(tile_preds, infos):
        out[info.row * gh : (info.row + 1) * gh, info.col * gw : (info.col + 1) * gw] = pred
    return out


def stitch_all(tile_preds: np.ndarray, infos: Sequence[TileInfo]) -> list[np.ndarray]:
    """`stitch` for a batch of images, grouped by image_index (sorted); one map per image."""
    tile_preds = np.asarray(tile_preds)
    if len(infos) != tile_preds.shape[0]:
        raise errors.DatasetError(
            f"stitch_all: {tile_preds.shape[0]} tile predictions but {len(infos)} infos"
        )
    groups: dict[int, list[int]] = {}
    for k, info in enumerate(infos):
        groups.setdefault(info.image_index, []).append(k)
    return [stitch(tile_preds[groups[i]], [infos[k] for k in groups[i]]) for i in sorted(groups)]


def _torch_nearest(i: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """PyTorch's "nearest" source index: floor(i * scale) with scale = n_in / n_out in float32.

    PyTorch computes the scale and the product in float32, so where i * n_in / n_out is an exact
    integer the product can round just below it and read the cell before (14 -> 46: output 23
    reads 6, not 7). The legacy rule exists to repeat PyTorch's results, so it repeats that too.
    """
    scale = np.float32(n_in) / np.float32(n_out)
    return np.floor(i.astype(np.float32) * scale).astype(np.int64)


def _scaled_indices(n_out: int, n_map: int, covered: fractions.Fraction, rule: str) -> np.ndarray:
    """Map index for every output pixel when the map's n_map cells span `covered` output pixels."""
    i = np.arange(n_out, dtype=np.int64)
    num, den = (n_map * covered.denominator), covered.numerator  # cells per output pixel
    if rule == "exact":
        src = ((2 * i + 1) * num) // (2 * den)
    elif rule == "legacy":
        if covered.denominator == 1:
            # An integer span is PyTorch's "nearest" resize of the map to that many pixels.
            src = _torch_nearest(i, n_map, covered.numerator)
        else:
            src = (i * num) // den
    else:
        raise errors.ConfigError(f"nearest rule {rule!r}: expected 'exact' or 'legacy'")
    return np.minimum(src, n_map - 1)


def upsample_to(pred: np.ndarray, size, covered=None, rule: str = "exact") -> np.ndarray:
    """Nearest-upsample a patch map to pixels, cropping the padding.

    Args:
      pred: [P, Q, ...] patch map (e.g. from `stitch`).
      size: (H, W) of the result.
      covered: (Hc, Wc) >= (H, W): how many result pixels the whole map spans (the padded image
        size); default (H, W), i.e. no padding. Fractions are accepted (via `fractions.Fraction`).
      rule: "exact" (pixel y reads cell floor((y + 0.5) * P / Hc)) or "legacy" (floor(y * P / Hc)).

    Returns:
      [H, W, ...], dtype of `pred`.
    """
    pred = np.asarray(pred)
    h, w = _pair(size, "size")
    hc, wc = (h, w) if covered is None else covered
    hc, wc = fractions.Fraction(hc), fractions.Fraction(wc)
    if hc < h or wc < w:
        raise errors.ConfigError(f"upsample_to: covered={covered} is smaller than size={size}")
    rows = _scaled_indices(h, pred.shape[0], hc, rule)
    cols = _scaled_indices(w, pred.shape[1], wc, rule)
    return pred[rows[:, None], cols[None, :]]


def stitch_to_pixels(
    tile_preds: np.ndarray, infos: Sequence[TileInfo], original: bool = True, rule: str = "exact"
) -> np.ndarray:
    """Stitch one image's tile predictions and upsample them to its pixels (padding cropped).

    Args:
      tile_preds: [T, gh, gw, ...].
      infos: the T TileInfos (one image).
      original: True: the size before any pre-resize (orig_h, orig_w), as the research code [R1]
        scored ADE20K against the original masks (docs/datasets.md §3); False: the tiled image's
        size.
      rule: nearest rule, see `upsample_to`.

    Returns:
      [H, W, ...] label (or feature) per pixel.
    """
    first = _check_one_image(infos)
    full = stitch(tile_preds, infos)
    h, w = (first.orig_h, first.orig_w) if original else (first.image_h, first.image_w)
    # The stitched map spans rows * tile_h tiled-image pixels; in output pixels that is
    # rows * tile_h * (h / image_h).
    hc = fractions.Fraction(first.grid_rows * first.tile_h * h, first.image_h)
    wc = fractions.Fraction(first.grid_cols * first.tile_w * w, first.image_w)
    return upsample_to(full, (h, w), covered=(hc, wc), rule=rule)
