"""Position encodings of the ViT families: resampling, sin-cos tables, GSD tables, relative bias.

Each family changes resolution its own way (see `resample_pos_embed`). PyTorch's bicubic
`F.interpolate` is not what `jax.image.resize` computes (A = -0.75 cubic convolution with clamped
taps, PIL-style antialiasing with Keys a = -0.5, and the `scale_factor` sampling positions), so the
1-D resampling matrices are built here in numpy float64 from aten's formulas and applied with one
einsum. They depend only on static sizes, so they are built once per (native, target) grid at trace
time and cached. SimMIM's relative-position-bias table is resized the same way (one cached 1-D
matrix per axis, one einsum), with timm's BEiT scheme instead of bicubic (`resample_rel_pos_bias`).

Examples:
  >>> table = sincos_2d(768, (14, 14))                      # float64 [196, 768]
  >>> m = resample_matrix(37, 16, POS_INTERP_SCALE_OFFSET)   # float64 [16, 37]
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from vitjax import errors

# How each family maps its stored grid of position embeddings to another patch grid.
POS_INTERP_SCALE_OFFSET = "scale_offset"  # dino, ibot, dinov2: bicubic scale_factor (n + 0.1) / g
POS_INTERP_SIZE_ANTIALIAS = "size_antialias"  # dinov2_reg (and timm dynamic_img_size)
POS_INTERP_SIZE = "size"  # mae: bicubic size=, no antialias (MAE's interpolate_pos_embed)
POS_INTERP_ALIGN_CORNERS = "size_align_corners"  # torchvision's interpolate_embeddings
# simmim: the shared relative-position-bias table is resized like timm's
# `resize_rel_pos_bias_table` (BEiT's geometric nodes, linear interpolation; see
# `resample_rel_pos_bias`).
POS_INTERP_REL_BIAS_GEOMETRIC = "rel_bias_geometric"
POS_INTERP_NATIVE_ONLY = "native_only"  # refuse every grid but the native one
POS_INTERP_GSD = "gsd"  # scalemae: the table is recomputed for every grid, nothing to resample
# big_vision `vit.resample_posemb` (SigLIP .npz): scipy.ndimage.zoom(order=1), i.e. linear
# interpolation with the corners aligned (output i samples input i * (n - 1) / (m - 1)).
POS_INTERP_BILINEAR_ZOOM = "bilinear_zoom"
# SigLIP 2 NaFlex (HF Siglip2 `resize_positional_embeddings`, big_vision naflex_vit): bilinear,
# align_corners=False, antialias=True (triangle filter widened by the scale when shrinking).
POS_INTERP_BILINEAR_ANTIALIAS = "bilinear_antialias"
POS_INTERP_ROPE = "rope"  # dinov3: rotary encoding computed for every grid, no table
POS_INTERP_MODES = (
    POS_INTERP_SCALE_OFFSET,
    POS_INTERP_SIZE_ANTIALIAS,
    POS_INTERP_SIZE,
    POS_INTERP_ALIGN_CORNERS,
    POS_INTERP_REL_BIAS_GEOMETRIC,
    POS_INTERP_NATIVE_ONLY,
    POS_INTERP_GSD,
    POS_INTERP_BILINEAR_ZOOM,
    POS_INTERP_BILINEAR_ANTIALIAS,
    POS_INTERP_ROPE,
)
_RESAMPLING_MODES = (
    POS_INTERP_SCALE_OFFSET,
    POS_INTERP_SIZE_ANTIALIAS,
    POS_INTERP_SIZE,
    POS_INTERP_ALIGN_CORNERS,
    POS_INTERP_BILINEAR_ZOOM,
    POS_INTERP_BILINEAR_ANTIALIAS,
)

# DINO and DINOv2 add 0.1 patches to the target size "to avoid floating point error in the
# interpolation" (dino#8); it moves the sampling positions too, so it is part of the numerics.
DINO_INTERP_OFFSET = 0.1

_CUBIC_A = -0.75  # PyTorch's bicubic (antialias=False) cubic-convolution coefficient
_KEYS_A = -0.5  # PIL / PyTorch antialias=True filter coefficient


def _cubic_kernel(x: np.ndarray, a: float) -> np.ndarray:
    """Cubic convolution kernel with coefficient `a` (Keys 1981), evaluated at float64 `x`."""
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x <= 1.0, near, np.where(x < 2.0, far, 0.0))


def bicubic_matrix(
    in_size: int,
    out_size: int,
    *,
    scale_factor: float | None = None,
    align_corners: bool = False,
) -> np.ndarray:
    """1-D weights of PyTorch `F.interpolate(mode='bicubic', antialias=False)`.

    Args:
      in_size: source length.
      out_size: target length.
      scale_factor: the `scale_factor` passed to PyTorch (sampling step 1 / scale_factor); None
        means `size=` was passed (step in_size / out_size).
      align_corners: PyTorch's `align_corners` (step (in - 1) / (out - 1), ends aligned).

    Returns:
      float64 [out_size, in_size]; row i holds the weights of output sample i (rows sum to 1).
    """
    i = np.arange(out_size, dtype=np.float64)
    if align_corners:
        step = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = step * i
    else:
        step = 1.0 / scale_factor if scale_factor else in_size / out_size
        # No clamp at 0 for cubic (aten's area_pixel_compute_source_index with cubic=True).
        src = step * (i + 0.5) - 0.5
    # aten's guard_index_and_lambda: base tap clamped to the last sample, fraction to [0, 1].
    base = np.minimum(np.floor(src), in_size - 1)
    frac = np.clip(src - base, 0.0, 1.0)
    weights = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    for tap in range(-1, 3):
        # Out-of-range taps read the edge sample (aten clamps the index, it does not renormalise).
        idx = np.clip(base + tap, 0, in_size - 1).astype(np.int64)
        np.add.at(weights, (rows, idx), _cubic_kernel(frac - tap, _CUBIC_A))
    return weights


def antialiased_bicubic_matrix(
    in_size: int, out_size: int, *, scale_factor: float | None = None
) -> np.ndarray:
    """1-D weights of PyTorch `F.interpolate(mode='bicubic', antialias=True, align_corners=False)`.

    PIL-style separable filter: Keys a = -0.5, widened by the step when downsampling, taps cut at
    the borders and the row renormalised to sum 1. A dimension whose length does not change is
    copied (identity), as aten does even when a `scale_factor` is given.

    Args:
      in_size: source length.
      out_size: target length.
      scale_factor: as in `bicubic_matrix`; None means `size=` was passed.

    Returns:
      float64 [out_size, in_size].
    """
    if in_size == out_size:
        # aten's separable antialias kernel skips a dimension whose length does not change.
        return np.eye(out_size, dtype=np.float64)
    step = 1.0 / scale_factor if scale_factor else in_size / out_size
    support = 2.0 * max(step, 1.0)
    inv_width = 1.0 / step if step >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = step * (i + 0.5)
        # int() truncates toward zero exactly like aten's static_cast<int64_t>.
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi, dtype=np.float64)
        row = _cubic_kernel((j - center + 0.5) * inv_width, _KEYS_A)
        total = row.sum()
        weights[i, lo:hi] = row / total if total != 0.0 else row
    return weights


def zoom_linear_matrix(native: int, target: int) -> np.ndarray:
    """scipy.ndimage.zoom(order=1) along one axis (big_vision `resample_posemb`), float64.

    Output i samples input position `i * (native - 1) / (target - 1)` (position 0 when the
    output has one entry, as scipy does), linearly between its two neighbours.

    Returns:
      float64 [target, native].
    """
    matrix = np.zeros((target, native))
    step = (native - 1) / (target - 1) if target > 1 else 0.0
    for i in range(target):
        x = i * step
        lo = min(int(np.floor(x)), native - 1)
        hi = min(lo + 1, native - 1)
        frac = x - lo
        matrix[i, lo] += 1.0 - frac
        matrix[i, hi] += frac
    return matrix


def antialiased_bilinear_matrix(native: int, target: int) -> np.ndarray:
    """Bilinear `size=` resampling, align_corners=False, antialias=True (PyTorch/PIL), float64.

    The triangle filter is widened by the scale when shrinking: support = max(native/target, 1),
    centre of output i at (i + 0.5) * native / target - 0.5; weights normalised to sum to one
    (as HF Siglip2's `resize_positional_embeddings` writes them out).

    Returns:
      float64 [target, native].
    """
    scale = native / target
    support = max(scale, 1.0)
    centre = (np.arange(target, dtype=np.float64) + 0.5) * scale - 0.5
    source = np.arange(native, dtype=np.float64)
    weights = np.clip(1.0 - np.abs(source[None, :] - centre[:, None]) / support, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def offset_scale_factor(native: int, target: int) -> float:
    """DINO/DINOv2's `scale_factor` for a `native` -> `target` patch grid: (target + 0.1) / native."""
    return float(target + DINO_INTERP_OFFSET) / native


@functools.lru_cache(maxsize=256)
def resample_matrix(native: int, target: int, mode: str) -> np.ndarray:
    """The cached 1-D resampling matrix of a family's position-embedding interpolation.

    Args:
      native: length of the stored grid side.
      target: length of the wanted grid side.
      mode: one of the resampling `POS_INTERP_*` modes (scale_offset, size_antialias, size,
        size_align_corners, bilinear_zoom, bilinear_antialias).

    Returns:
      float64 [target, native], read-only.

    Raises:
      ConfigError: `mode` is not a resampling mode, or the offset rounding does not give `target`.
    """
    if mode == POS_INTERP_SCALE_OFFSET:
        scale = offset_scale_factor(native, target)
        # F.interpolate's output length for scale_factor (float64 product, then floor).
        out = math.floor(float(native) * scale)
        if out != target:
            raise errors.ConfigError(
                f"pos_interp {mode!r}: scale_factor {scale} maps {native} to {out}, not {target}"
            )
        matrix = bicubic_matrix(native, target, scale_factor=scale)
    elif mode == POS_INTERP_SIZE_ANTIALIAS:
        matrix = antialiased_bicubic_matrix(native, target)
    elif mode == POS_INTERP_SIZE:
        matrix = bicubic_matrix(native, target)
    elif mode == POS_INTERP_ALIGN_CORNERS:
        matrix = bicubic_matrix(native, target, align_corners=True)
    elif mode == POS_INTERP_BILINEAR_ZOOM:
        matrix = zoom_linear_matrix(native, target)
    elif mode == POS_INTERP_BILINEAR_ANTIALIAS:
        matrix = antialiased_bilinear_matrix(native, target)
    else:
        raise errors.ConfigError(
            f"pos_interp {mode!r} cannot resample a table; expected one of {list(_RESAMPLING_MODES)}"
        )
    matrix.setflags(write=False)
    return matrix


def resample_grid(table: jnp.ndarray, target: tuple[int, int], mode: str) -> jnp.ndarray:
    """Resamples a grid of embeddings like the family's PyTorch code.

    Args:
      table: float [gh, gw, D] (row-major patch grid).
      target: (h, w) wanted grid.
      mode: a resampling `POS_INTERP_*` mode.

    Returns:
      [h, w, D], same dtype as `table` (the weights are applied in float32).
    """
    gh, gw, _ = table.shape
    rows = jnp.asarray(resample_matrix(gh, target[0], mode), jnp.float32)
    cols = jnp.asarray(resample_matrix(gw, target[1], mode), jnp.float32)
    # HIGHEST: accelerators may otherwise run float32 matmuls at reduced (TF32/bf16) precision.
    out = jnp.einsum(
        "ih,jw,hwd->ijd", rows, cols, table.astype(jnp.float32), precision=lax.Precision.HIGHEST
    )
    return out.astype(table.dtype)


def resample_pos_embed(
    pos_embed: jnp.ndarray,
    native_grid: tuple[int, int],
    target_grid: tuple[int, int],
    mode: str,
) -> jnp.ndarray:
    """Maps a stored `[1, 1 + gh*gw, D]` table (cls entry first) to another patch grid.

    Per mode (PyTorch behaviour reproduced; see docs/checkpoints.md section 6):
      * scale_offset (DINO, iBOT, DINOv2): bicubic A=-0.75, `scale_factor=((h+0.1)/gh, (w+0.1)/gw)`.
      * size_antialias (DINOv2-reg): bicubic `size=(h, w)`, antialias (Keys a=-0.5).
      * size (MAE `interpolate_pos_embed`): bicubic `size=(h, w)`, no antialias.
      * size_align_corners (torchvision `interpolate_embeddings`): bicubic `size=`,
        `align_corners=True`.
      * bilinear_zoom (big_vision `resample_posemb`, SigLIP .npz): scipy zoom, order 1.
      * bilinear_antialias (SigLIP 2 NaFlex): bilinear `size=`, antialias.
      * native_only: only the native grid is accepted.
    (SimMIM has no absolute table; its relative bias goes through `resample_rel_pos_bias`.)
    The cls entry is never resampled; the native grid returns the table unchanged (as the
    originals skip interpolation there).

    Args:
      pos_embed: float [1, 1 + gh*gw, D].
      native_grid: (gh, gw) of the stored table.
      target_grid: (h, w) wanted.
      mode: a `POS_INTERP_*` mode.

    Returns:
      [1, 1 + h*w, D], dtype of `pos_embed`.

    Raises:
      ConfigError: a native-only table at another grid, or an unknown mode.
    """
    native_grid, target_grid = tuple(native_grid), tuple(target_grid)
    if target_grid == native_grid:
        return pos_embed
    if mode == POS_INTERP_NATIVE_ONLY:
        raise errors.ConfigError(
            f"pos_interp {mode!r}: this model only runs on its native {native_grid} patch grid, "
            f"got {target_grid}"
        )
    gh, gw = native_grid
    dim = pos_embed.shape[-1]
    grid = pos_embed[0, 1:].reshape(gh, gw, dim)
    patches = resample_grid(grid, target_grid, mode).reshape(1, -1, dim)
    return jnp.concatenate([pos_embed[:, :1], patches], axis=1)


def _sincos_omega(dim: int) -> np.ndarray:
    """Frequencies 10000^(-k / (dim / 4)), k = 0 .. dim/4 - 1, float64."""
    if dim % 4:
        raise errors.ConfigError(
            f"width: sin-cos position encoding needs a multiple of 4, got {dim}"
        )
    quarter = dim // 4
    return 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)


def sincos_2d(dim: int, grid: tuple[int, int], ratio: float = 1.0) -> np.ndarray:
    """MAE's fixed 2-D sin-cos table (no cls row).

    Layout per patch (row i, column j): `[sin(X w), cos(X w), sin(Y w), cos(Y w)]` with X = j * ratio
    (the column comes first, from MAE's `meshgrid(grid_w, grid_h)`), Y = i * ratio.

    Args:
      dim: embedding width D (multiple of 4).
      grid: (h, w) patch grid.
      ratio: position scale (1 for MAE; Scale-MAE's GSD ratio).

    Returns:
      float64 [h*w, D], rows in row-major patch order.
    """
    omega = _sincos_omega(dim)
    h, w = grid
    cols = np.tile(np.arange(w, dtype=np.float64), h) * ratio
    rows = np.repeat(np.arange(h, dtype=np.float64), w) * ratio
    x = cols[:, None] * omega[None]
    y = rows[:, None] * omega[None]
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)


def sincos_pos_embed(dim: int, grid: tuple[int, int]) -> np.ndarray:
    """MAE's stored `pos_embed`: zero cls row then `sincos_2d`; float32 [1, 1 + h*w, D]."""
    table = np.concatenate([np.zeros((1, dim)), sincos_2d(dim, grid)], axis=0)
    return table[None].astype(np.float32)


def gsd_sincos_pos_embed(dim: int, grid: tuple[int, int], ratio) -> jnp.ndarray:
    """Scale-MAE's GSD position encoding, computed in float32 like the original.

    Args:
      dim: embedding width D (multiple of 4).
      grid: (h, w) patch grid (rectangular grids use X = j * r, Y = i * r).
      ratio: scalar or float [B] per-image ground-sample-distance ratio r (may be traced).

    Returns:
      float32 [B, 1 + h*w, D] ([1, ...] for a scalar); the cls row is zero.
    """
    ratio = jnp.asarray(ratio, jnp.float32).reshape(-1)
    omega = jnp.asarray(_sincos_omega(dim), jnp.float32)
    h, w = grid
    cols = jnp.tile(jnp.arange(w, dtype=jnp.float32), h)
    rows = jnp.repeat(jnp.arange(h, dtype=jnp.float32), w)
    x = (ratio[:, None] * cols[None])[..., None] * omega
    y = (ratio[:, None] * rows[None])[..., None] * omega
    table = jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=-1)
    cls = jnp.zeros((ratio.shape[0], 1, dim), jnp.float32)
    return jnp.concatenate([cls, table], axis=1)


@functools.lru_cache(maxsize=16)
def relative_position_index(grid: tuple[int, int]) -> np.ndarray:
    """BEiT/SimMIM index into the shared relative-position-bias table.

    For patches a = (r1, c1), b = (r2, c2): `(r1 - r2 + gh - 1) * (2 gw - 1) + (c1 - c2 + gw - 1)`;
    with T = (2 gh - 1)(2 gw - 1): cls -> token uses T, token -> cls T + 1, cls -> cls T + 2.

    Args:
      grid: (gh, gw) patch grid.

    Returns:
      int32 [1 + gh*gw, 1 + gh*gw], read-only.
    """
    gh, gw = grid
    rows = np.repeat(np.arange(gh), gw)
    cols = np.tile(np.arange(gw), gh)
    d_row = rows[:, None] - rows[None, :] + gh - 1
    d_col = cols[:, None] - cols[None, :] + gw - 1
    num_relative = (2 * gh - 1) * (2 * gw - 1)
    index = np.empty((gh * gw + 1,) * 2, np.int32)
    index[1:, 1:] = d_row * (2 * gw - 1) + d_col
    index[0, :] = num_relative
    index[:, 0] = num_relative + 1
    index[0, 0] = num_relative + 2
    index.setflags(write=False)
    return index


def relative_table_size(grid: tuple[int, int]) -> int:
    """Rows of the relative-position-bias table for `grid`: (2 gh - 1)(2 gw - 1) + 3."""
    return (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3


# BEiT's search interval for the ratio q of the geometric node spacing, and its stopping width.
_GEOMETRIC_Q_RANGE = (1.01, 1.5)
_GEOMETRIC_Q_TOL = 1e-6


def geometric_nodes(src: int, dst: int) -> np.ndarray:
    """Where BEiT places the `src` samples of one axis of a relative-bias table resized to `dst`.

    The offsets 1, 2, .. of the source table are stretched into 1, 1 + q, 1 + q + q^2, ... (and
    mirrored for negative offsets, 0 staying at 0), with q found by bisection in [1.01, 1.5] so
    that the outermost node 1 + q + .. + q^(src//2 - 1) reaches about dst // 2. The bisection is
    timm's (`resize_rel_pos_bias_table`, from microsoft/unilm): it stops once the interval is
    below 1e-6 and keeps its last midpoint. q never drops below 1.01, so even `src == dst` moves
    the nodes (only a table whose two axes are both unchanged is left alone).

    Args:
      src: source length 2 g - 1 (odd).
      dst: target length 2 t - 1 (odd).

    Returns:
      float64 [src], increasing, symmetric about 0.
    """
    half = src // 2

    def reach(q: float) -> float:
        return (1.0 - q**half) / (1.0 - q)

    left, right = _GEOMETRIC_Q_RANGE
    q = left
    while right - left > _GEOMETRIC_Q_TOL:
        q = (left + right) / 2.0
        if reach(q) > dst // 2:
            right = q
        else:
            left = q
    positive = np.cumsum(np.concatenate([[1.0], q ** np.arange(1.0, half)]))[:half]
    return np.concatenate([-positive[::-1], [0.0], positive])


@functools.lru_cache(maxsize=64)
def rel_bias_matrix(src: int, dst: int) -> np.ndarray:
    """1-D weights resampling one axis of a relative-bias table, as timm does it by default.

    Piecewise-linear interpolation of the `geometric_nodes(src, dst)` samples at the integer
    offsets -(dst // 2) .. dst // 2, held constant beyond the outermost nodes (timm's
    `RegularGridInterpolator`; BEiT's original used scipy's cubic `interp2d` on the same nodes).

    Args:
      src: source length (odd).
      dst: target length (odd).

    Returns:
      float64 [dst, src], read-only; rows sum to 1.
    """
    nodes = geometric_nodes(src, dst)
    targets = np.arange(dst, dtype=np.float64) - dst // 2
    weights = np.zeros((dst, src), np.float64)
    for row, t in enumerate(targets):
        if t <= nodes[0]:
            weights[row, 0] = 1.0
        elif t >= nodes[-1]:
            weights[row, -1] = 1.0
        else:
            right = int(np.searchsorted(nodes, t, side="left"))
            span = nodes[right] - nodes[right - 1]
            weights[row, right - 1] = (nodes[right] - t) / span
            weights[row, right] = (t - nodes[right - 1]) / span
    weights.setflags(write=False)
    return weights


def resample_rel_pos_bias(
    table: jnp.ndarray,
    native_grid: tuple[int, int],
    target_grid: tuple[int, int],
    mode: str = POS_INTERP_REL_BIAS_GEOMETRIC,
) -> jnp.ndarray:
    """Maps a BEiT/SimMIM relative-position-bias table to another patch grid.

    The (2 gh - 1)(2 gw - 1) offset rows, a row-major grid of (row offset, column offset), are
    resampled per head to (2 h - 1) x (2 w - 1) with `rel_bias_matrix` on each axis; the 3 cls rows
    (cls -> token, token -> cls, cls -> cls) are kept. Index the result with
    `relative_position_index(target_grid)`. Same numbers as timm's `resize_rel_pos_bias_table`
    with `old_window_size=native_grid` (what timm's BEiT `set_input_size` does).

    Args:
      table: float [(2 gh - 1)(2 gw - 1) + 3, H].
      native_grid: (gh, gw) the table belongs to.
      target_grid: (h, w) wanted (rectangular allowed).
      mode: `POS_INTERP_REL_BIAS_GEOMETRIC`, or `POS_INTERP_NATIVE_ONLY` to refuse other grids.

    Returns:
      [(2 h - 1)(2 w - 1) + 3, H], dtype of `table`; `table` itself at the native grid.

    Raises:
      ConfigError: another grid under native_only, an unknown mode, or a table of the wrong size.
    """
    native_grid, target_grid = tuple(native_grid), tuple(target_grid)
    rows = relative_table_size(native_grid)
    if table.ndim != 2 or table.shape[0] != rows:
        raise errors.ConfigError(
            f"rel_pos_bias/table: expected [{rows}, H] for the native {native_grid} grid, "
            f"got shape {tuple(table.shape)}"
        )
    if target_grid == native_grid:
        return table
    if mode == POS_INTERP_NATIVE_ONLY:
        raise errors.ConfigError(
            f"pos_interp {mode!r}: the shared relative position bias only covers the "
            f"native {native_grid} patch grid, got {target_grid}"
        )
    if mode != POS_INTERP_REL_BIAS_GEOMETRIC:
        raise errors.ConfigError(
            f"pos_interp {mode!r} cannot resize a relative position bias table; expected "
            f"{POS_INTERP_REL_BIAS_GEOMETRIC!r} or {POS_INTERP_NATIVE_ONLY!r}"
        )
    src = (2 * native_grid[0] - 1, 2 * native_grid[1] - 1)
    dst = (2 * target_grid[0] - 1, 2 * target_grid[1] - 1)
    heads = table.shape[1]
    offsets = table[: src[0] * src[1]].astype(jnp.float32).reshape(src[0], src[1], heads)
    row_weights = jnp.asarray(rel_bias_matrix(src[0], dst[0]), jnp.float32)
    col_weights = jnp.asarray(rel_bias_matrix(src[1], dst[1]), jnp.float32)
    resized = jnp.einsum(
        "ih,jw,hwn->ijn", row_weights, col_weights, offsets, precision=lax.Precision.HIGHEST
    )
    resized = resized.reshape(dst[0] * dst[1], heads).astype(table.dtype)
    return jnp.concatenate([resized, table[src[0] * src[1] :]], axis=0)
