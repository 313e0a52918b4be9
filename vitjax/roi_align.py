"""RoIAlign on channels-last patch-feature maps, with torchvision's exact semantics.

For box k with batch index b, bin (p, q) of the output averages ``gh * gw`` bilinear samples of
``feature_map[b]`` taken on a regular grid inside the bin (torchvision ``ops.roi_align``):

* box corners are scaled by `spatial_scale` and, when ``aligned=True``, shifted by -0.5 so that
  pixel centres line up; with ``aligned=False`` boxes smaller than one cell are grown to 1 x 1;
* ``gh = sampling_ratio`` if positive, else ``ceil(roi_height / out_height)`` (adaptive), likewise gw;
* a sample outside ``[-1, H] x [-1, W]`` contributes 0; inside, it is clamped to the map and
  interpolated bilinearly; the bin value is the sum divided by ``max(gh * gw, 1)``.

Bilinear interpolation is separable and the out-of-range rule is a product of a row test and a column
test, so every bin is ``Wy[p] @ F @ Wx[q]^T`` with per-box row/column weight matrices. The op is
therefore two dense contractions (MXU/tensor-core friendly) instead of a gather per sample.

Adaptive sampling counts depend on the box sizes. They are computed on the host from concrete boxes
(float32 arithmetic, as torchvision's kernel), and the largest one becomes the static number of
sample slots per bin; boxes that need fewer mask the extra slots. Under `jax.jit` (traced boxes) pass
``max_samples_per_bin``; a box needing more samples than that is then sampled with only that many.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vitjax import errors, metrics


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _roi_geometry(boxes, spatial_scale, aligned, xp):
    """Start corner and size of each RoI in feature-map cells: 4 arrays [K] (y0, x0, h, w)."""
    offset = 0.5 if aligned else 0.0
    x0 = boxes[:, 0] * spatial_scale - offset
    y0 = boxes[:, 1] * spatial_scale - offset
    width = boxes[:, 2] * spatial_scale - offset - x0
    height = boxes[:, 3] * spatial_scale - offset - y0
    if not aligned:
        # torchvision forces malformed RoIs to 1 x 1 in the legacy (non-aligned) mode.
        width = xp.maximum(width, 1.0)
        height = xp.maximum(height, 1.0)
    return y0, x0, height, width


def adaptive_samples(
    boxes: Any,
    output_size: tuple[int, int] = (7, 7),
    spatial_scale: float = 1 / 16,
    aligned: bool = True,
) -> np.ndarray:
    """Samples per bin that torchvision uses with ``sampling_ratio <= 0``: ``ceil(roi / out)``.

    Args:
      boxes: [K, 4] float boxes x1, y1, x2, y2 in image pixels (concrete, not traced).
      output_size: (out_height, out_width).
      spatial_scale: feature cells per image pixel (1 / patch size for ViT patch grids).
      aligned: torchvision's `aligned` flag.

    Returns:
      int64 [K, 2]: (samples along y, samples along x) per box; 0 or negative for empty boxes.
    """
    boxes = np.asarray(boxes, np.float32)
    _, _, height, width = _roi_geometry(boxes, np.float32(spatial_scale), aligned, np)
    out_h, out_w = output_size
    # float32 division, as in torchvision's kernel, so ties at integers round the same way.
    grid_h = np.ceil(height.astype(np.float32) / np.float32(out_h))
    grid_w = np.ceil(width.astype(np.float32) / np.float32(out_w))
    return np.stack([grid_h, grid_w], axis=-1).astype(np.int64)


def _axis_weights(start, size, grid, out_bins, slots, length):
    """Summed bilinear weights of the samples of each bin over one feature axis.

    Args:
      start, size: [K] RoI start and size in cells (float32).
      grid: [K] int32 number of samples per bin along this axis.
      out_bins: number of output bins along this axis (static).
      slots: static number of sample slots per bin (>= grid where sampled exactly).
      length: feature-map length along this axis (static).

    Returns:
      float32 [K, out_bins, length].
    """
    bin_size = size / out_bins
    bins = jnp.arange(out_bins, dtype=jnp.float32)
    slot = jnp.arange(slots, dtype=jnp.float32)
    grid_f = jnp.maximum(grid, 1).astype(jnp.float32)
    # Sample positions, in the order of operations of torchvision's kernel:
    # start + p * bin_size + (i + 0.5) * bin_size / grid.
    pos = (
        start[:, None, None]
        + bins[None, :, None] * bin_size[:, None, None]
        + (slot[None, None, :] + 0.5) * bin_size[:, None, None] / grid_f[:, None, None]
    )
    used = (slot[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= length)
    clamped = jnp.clip(pos, 0.0, length - 1)
    cells = jnp.arange(length, dtype=jnp.float32)
    # The hat function max(0, 1 - |y - r|) on the clamped position is exactly torchvision's pair of
    # weights (1 - ly, ly) on rows floor(y), floor(y) + 1, including its clamping at the last row.
    hat = jnp.maximum(0.0, 1.0 - jnp.abs(clamped[..., None] - cells))
    return jnp.sum(jnp.where(used[..., None], hat, 0.0), axis=2)


@functools.partial(
    jax.jit, static_argnames=("output_size", "aligned", "slots_y", "slots_x", "fixed_grid")
)
def _roi_align(
    feature_map, boxes, box_batch, spatial_scale, output_size, aligned, slots_y, slots_x, fixed_grid
):
    batch, height, width, _ = feature_map.shape
    out_h, out_w = output_size
    y0, x0, roi_h, roi_w = _roi_geometry(boxes, spatial_scale, aligned, jnp)
    if fixed_grid:
        grid_h = jnp.full(boxes.shape[:1], slots_y, jnp.int32)
        grid_w = jnp.full(boxes.shape[:1], slots_x, jnp.int32)
    else:
        # Boxes needing more samples than there are slots (only possible with a caller-given
        # max_samples_per_bin) are sampled on a coarser grid rather than averaged wrongly.
        grid_h = jnp.minimum(jnp.ceil(roi_h / out_h).astype(jnp.int32), slots_y)
        grid_w = jnp.minimum(jnp.ceil(roi_w / out_w).astype(jnp.int32), slots_x)
    weights_y = _axis_weights(y0, roi_h, grid_h, out_h, slots_y, height)  # [K, oh, H]
    weights_x = _axis_weights(x0, roi_w, grid_w, out_w, slots_x, width)  # [K, ow, W]
    count = jnp.maximum(jnp.maximum(grid_h, 0) * jnp.maximum(grid_w, 0), 1).astype(jnp.float32)
    # Route each box to its image with a one-hot over the batch rather than gathering a [K, H, W, D]
    # copy of the maps: the batch of frames is small, the feature maps are not.
    one_hot = jax.nn.one_hot(box_batch, batch, dtype=feature_map.dtype)  # [K, B]
    hi = jax.lax.Precision.HIGHEST
    rows = jnp.einsum("kb,kph,bhwd->kpwd", one_hot, weights_y, feature_map, precision=hi)
    pooled = jnp.einsum("kqw,kpwd->kpqd", weights_x, rows, precision=hi)
    # Map cells holding NaN or inf, counted in the same compiled call (one pass over the maps).
    bad_cells = jnp.sum(jnp.any(~jnp.isfinite(feature_map), axis=-1), dtype=jnp.int32)
    return pooled / count[:, None, None, None], bad_cells


def _sample_slots(
    boxes: Any,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    max_samples_per_bin: int | None,
) -> int:
    """Static number of sample slots per bin and axis (see `roi_align`'s arguments)."""
    if sampling_ratio > 0:
        return int(sampling_ratio)
    if max_samples_per_bin is not None:
        return max(int(max_samples_per_bin), 1)
    if _is_traced(boxes):
        raise errors.ConfigError(
            "roi_align: boxes are traced and sampling_ratio <= 0 (adaptive); pass a static "
            "max_samples_per_bin (e.g. ceil(largest box side * spatial_scale / output size))"
        )
    needed = adaptive_samples(boxes, output_size, spatial_scale, aligned)
    # Round up to a power of two so that batches of similar boxes share one compilation.
    most = max(int(needed.max()), 1)
    return 1 << math.ceil(math.log2(most))


def roi_align(
    feature_map: Any,
    boxes: Any,
    box_batch: Any,
    output_size: tuple[int, int] | int = (7, 7),
    spatial_scale: float = 1 / 16,
    sampling_ratio: int = -1,
    aligned: bool = True,
    *,
    max_samples_per_bin: int | None = None,
) -> jax.Array:
    """RoIAlign of channels-last feature maps (``torchvision.ops.roi_align`` semantics).

    Args:
      feature_map: float [B, h, w, D] feature maps (e.g. ViT patch features on a 14 x 14 grid).
      boxes: float [K, 4] boxes x1, y1, x2, y2 in image pixels.
      box_batch: int [K] index into B of each box's image.
      output_size: (out_height, out_width), or an int for a square output.
      spatial_scale: feature cells per image pixel (1 / patch size).
      sampling_ratio: samples per bin along each axis; <= 0 -> adaptive ``ceil(roi / out)``.
      aligned: shift box corners by -0.5 cell (torchvision's ``aligned=True``, Detectron2 RoIAlignV2).
      max_samples_per_bin: static bound on the adaptive count, required when boxes are traced;
        with concrete boxes it defaults to the largest count any box needs (exact).

    Returns:
      float32 [K, out_height, out_width, D].

    Raises:
      errors.InputError: the feature map or the boxes hold NaN or inf, or box_batch is not
        integer (checked on concrete inputs; a traced feature map is not checked).

    Examples:
      >>> fmap = jnp.ones((1, 14, 14, 8))
      >>> roi_align(fmap, jnp.array([[0.0, 0.0, 64.0, 32.0]]), jnp.array([0])).shape
      (1, 7, 7, 8)
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    output_size = tuple(int(s) for s in output_size)
    feature_map = jnp.asarray(feature_map, jnp.float32)
    if feature_map.ndim != 4:
        raise errors.VitjaxError(
            f"roi_align: feature_map must be [B, h, w, D], got shape {feature_map.shape}"
        )
    if np.ndim(boxes) != 2 or np.shape(boxes)[1] != 4:
        raise errors.VitjaxError(f"roi_align: boxes must be [K, 4], got shape {np.shape(boxes)}")
    if np.shape(box_batch) != np.shape(boxes)[:1]:
        raise errors.VitjaxError(
            f"roi_align: box_batch must be [K] = {np.shape(boxes)[:1]}, got {np.shape(box_batch)}"
        )
    if len(output_size) != 2 or min(output_size) < 1:
        raise errors.ConfigError(
            f"roi_align: output_size must be two positive ints, got {output_size}"
        )
    if not _is_traced(boxes):
        metrics.check_finite("roi_align", "boxes", np.asarray(boxes, np.float64))
    if not _is_traced(box_batch):
        metrics.check_labels("roi_align", "box_batch", box_batch)
    num_boxes = np.shape(boxes)[0]
    if num_boxes == 0:
        return jnp.zeros((0, *output_size, feature_map.shape[-1]), jnp.float32)
    if not _is_traced(box_batch):
        batch_index = np.asarray(box_batch)
        if batch_index.min() < 0 or batch_index.max() >= feature_map.shape[0]:
            raise errors.VitjaxError(
                f"roi_align: box_batch values must lie in [0, {feature_map.shape[0]}), got "
                f"[{batch_index.min()}, {batch_index.max()}]"
            )
    fixed_grid = sampling_ratio > 0
    slots_y = slots_x = _sample_slots(
        boxes, output_size, spatial_scale, sampling_ratio, aligned, max_samples_per_bin
    )
    pooled, bad_cells = _roi_align(
        feature_map,
        jnp.asarray(boxes, jnp.float32),
        jnp.asarray(box_batch, jnp.int32),
        jnp.float32(spatial_scale),
        output_size,
        bool(aligned),
        slots_y,
        slots_x,
        fixed_grid,
    )
    if not _is_traced(bad_cells) and int(bad_cells):
        metrics.check_finite("roi_align", "feature_map", np.asarray(feature_map))
    return pooled


def roi_pool_mean(feature_map: Any, boxes: Any, box_batch: Any, **kwargs: Any) -> jax.Array:
    """One vector per box: `roi_align` then the mean over its output grid.

    Args:
      feature_map, boxes, box_batch: as `roi_align`.
      **kwargs: any further `roi_align` argument (output_size, spatial_scale, ...).

    Returns:
      float32 [K, D].
    """
    return jnp.mean(roi_align(feature_map, boxes, box_batch, **kwargs), axis=(1, 2))


__all__ = ["adaptive_samples", "roi_align", "roi_pool_mean"]
