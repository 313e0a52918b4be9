"""Photometric corruptions and geometric transforms of image batches, with patch correspondences.

Every op takes float images ``[B, H, W, C]`` on the 0-255 scale (any real or integer dtype; computed in
float32), runs jit-compiled on the default device and returns float32 ``[B, H, W, C]`` clipped to
``[0, 255]``. Nothing is rounded unless ``apply(..., quantize=True)`` asks for it (round half to even,
as if the image were saved as uint8).

Border modes use ``numpy.pad`` names (the same names as ``skimage.transform.warp``):

========== ====================== ======================= ===================
mode       extends ``a b c d`` as scipy.ndimage name      OpenCV border
========== ====================== ======================= ===================
constant   ``v v | a b c d``      grid-constant           BORDER_CONSTANT
edge       ``a a | a b c d``      nearest                 BORDER_REPLICATE
reflect    ``c b | a b c d``      mirror                  BORDER_REFLECT_101
symmetric  ``b a | a b c d``      reflect                 BORDER_REFLECT
wrap       ``c d | a b c d``      grid-wrap               BORDER_WRAP
========== ====================== ======================= ===================

Geometric conventions. Pixel ``(row, col)`` covers the square ``[row, row + 1) x [col, col + 1)``;
in index coordinates its centre is ``(row, col)`` and the image centre is ``((H - 1) / 2, (W - 1) / 2)``.
Each transform is defined by its inverse map (output pixel -> source position), sampled bilinearly:

* ``shift(dx, dy)``: ``out[y, x] = in[y - dy, x - dx]`` (positive dx moves content right, dy down);
  integers only, so no interpolation happens.
* ``rotate(degrees)``: about the image centre, positive = counter-clockwise as displayed (the
  convention of ``skimage.transform.rotate``, ``scipy.ndimage.rotate`` and torchvision).
* ``scale(factor)``: about the image centre, output of the input's size; ``factor > 1`` zooms in
  (the centre is magnified, borders are cropped), ``factor < 1`` zooms out (the border is filled).
  No anti-aliasing before down-scaling.

``correspondence_map`` maps each patch centre of a transformed image through the same inverse map,
so it is by construction the ground truth that same-patch retrieval can at best recover.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vitjax import errors

MODES = ("constant", "edge", "reflect", "symmetric", "wrap")
PHOTOMETRIC = ("blur", "box_blur", "noise", "freq_noise")
GEOMETRIC = ("shift", "rotate", "scale")
NAMES = PHOTOMETRIC + GEOMETRIC
_RANDOM = ("noise", "freq_noise")
_KERNEL_BASED = ("blur", "box_blur")
# Options `apply` accepts per corruption name (all are keyword-only and static under jit).
_OPTIONS = {
    "blur": ("sigma", "mode"),
    "box_blur": ("mode",),
    "noise": (),
    "freq_noise": ("num_bands", "sigma"),
    "shift": ("direction", "mode", "cval"),
    "rotate": ("mode", "cval"),
    "scale": ("mode", "cval"),
}


# ----------------------------------------------------------------------------------------------------
# Validation helpers.


def _as_images(images: Any, where: str) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise errors.VitjaxError(
            f"{where}: images must be [B, H, W, C] on the 0-255 scale, got shape {images.shape}"
        )
    return images.astype(jnp.float32)


def _check_mode(mode: str, where: str) -> None:
    if mode not in MODES:
        raise errors.ConfigError(f"{where}: mode={mode!r} is not one of {MODES}")


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _kernel_bound(kernel_size: Any, max_kernel_size: int | None, where: str, odd: bool) -> int:
    """Static upper bound on the kernel size, and validation of a concrete kernel size."""
    if _is_concrete(kernel_size) and np.ndim(kernel_size) == 0:
        k = float(np.asarray(kernel_size))
        if k != int(k) or k < 1 or (odd and int(k) % 2 == 0):
            kind = "a positive odd integer" if odd else "a positive integer"
            raise errors.ConfigError(f"{where}: kernel_size must be {kind}, got {kernel_size!r}")
        bound = int(k) if max_kernel_size is None else int(max_kernel_size)
        if bound < int(k):
            raise errors.ConfigError(
                f"{where}: max_kernel_size={max_kernel_size} is below kernel_size={int(k)}"
            )
    elif max_kernel_size is None:
        raise errors.ConfigError(
            f"{where}: kernel_size is traced (inside jit/vmap); pass a static max_kernel_size"
        )
    else:
        bound = int(max_kernel_size)
    if odd and bound % 2 == 0:
        raise errors.ConfigError(f"{where}: max_kernel_size must be odd, got {bound}")
    return bound


# ----------------------------------------------------------------------------------------------------
# Index arithmetic shared by filtering, shifting and warping.


def _map_index(index: jax.Array, n: int, mode: str) -> tuple[jax.Array, jax.Array | None]:
    """Maps integer indices (possibly outside [0, n)) into [0, n) following `mode`.

    Returns the mapped int32 indices and, for mode 'constant', a bool mask of in-range indices
    (None otherwise).
    """
    index = index.astype(jnp.int32)
    if mode == "constant":
        inside = (index >= 0) & (index < n)
        return jnp.clip(index, 0, n - 1), inside
    if mode == "edge" or n == 1:
        return jnp.clip(index, 0, n - 1), None
    if mode == "wrap":
        return jnp.mod(index, n), None
    if mode == "reflect":
        period = 2 * (n - 1)
        folded = jnp.mod(index, period)
        return jnp.where(folded >= n, period - folded, folded), None
    if mode == "symmetric":
        period = 2 * n
        folded = jnp.mod(index, period)
        return jnp.where(folded >= n, period - 1 - folded, folded), None
    raise errors.ConfigError(f"mode={mode!r} is not one of {MODES}")


def _take_axis(images: jax.Array, index: jax.Array, axis: int, mode: str, cval: Any) -> jax.Array:
    """`images` gathered at integer positions `index` [M] along `axis`, borders filled by `mode`."""
    mapped, inside = _map_index(index, images.shape[axis], mode)
    out = jnp.take(images, mapped, axis=axis)
    if inside is not None:
        shape = [1] * images.ndim
        shape[axis] = index.shape[0]
        out = jnp.where(inside.reshape(shape), out, jnp.asarray(cval, out.dtype))
    return out


def _correlate_axis(images: jax.Array, taps: jax.Array, axis: int, mode: str) -> jax.Array:
    """1-D correlation along `axis`: out[i] = sum_o taps[o + R] * in[i + o], o in [-R, R]."""
    radius = (taps.shape[0] - 1) // 2
    n = images.shape[axis]
    padded = _take_axis(images, jnp.arange(-radius, n + radius), axis, mode, 0.0)
    out = jnp.zeros_like(images)
    # Taps are few (the kernel sizes in use are <= ~31), so shifted slices beat a general conv
    # and keep the taps traceable (kernel size can be a vmapped level).
    for offset in range(2 * radius + 1):
        window = jax.lax.slice_in_dim(padded, offset, offset + n, axis=axis)
        out = out + taps[offset] * window
    return out


def _separable(images: jax.Array, taps: jax.Array, mode: str) -> jax.Array:
    """The same 1-D correlation along H, then along W, of [B, H, W, C] images."""
    return _correlate_axis(_correlate_axis(images, taps, 1, mode), taps, 2, mode)


def _finish(images: jax.Array) -> jax.Array:
    return jnp.clip(images, 0.0, 255.0)


# ----------------------------------------------------------------------------------------------------
# Blur.


def default_gaussian_sigma(kernel_size: Any) -> Any:
    """Sigma that OpenCV (``getGaussianKernel`` with sigma <= 0) and torchvision derive from k.

    ``sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8``; works on Python numbers and JAX arrays.
    """
    return 0.3 * ((kernel_size - 1) * 0.5 - 1.0) + 0.8


def gaussian_taps(kernel_size: Any, sigma: Any, max_kernel_size: int) -> jax.Array:
    """Normalised Gaussian taps on offsets -R..R (R = max_kernel_size // 2), zero beyond (k-1)/2.

    Args:
      kernel_size: odd int (or traced int) k <= max_kernel_size.
      sigma: standard deviation in pixels.
      max_kernel_size: static odd bound; the returned array has this length.

    Returns:
      float32 [max_kernel_size].
    """
    radius = max_kernel_size // 2
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    half = (jnp.asarray(kernel_size, jnp.float32) - 1.0) / 2.0
    sigma = jnp.asarray(sigma, jnp.float32)
    weights = jnp.where(jnp.abs(offsets) <= half, jnp.exp(-0.5 * (offsets / sigma) ** 2), 0.0)
    return weights / jnp.sum(weights)


def box_taps(kernel_size: Any, max_kernel_size: int) -> jax.Array:
    """Box taps of width k on offsets -R..R (R = max_kernel_size // 2), anchored like cv2.blur.

    The window of kernel size k covers offsets ``-(k // 2) .. k - 1 - k // 2`` (OpenCV's default
    anchor ``k // 2``; the same window as ``scipy.ndimage.uniform_filter(size=k)``). For even k this
    reaches one pixel further back than forward: k = 2 averages pixels i - 1 and i.

    Returns:
      float32 [2 * (max_kernel_size // 2) + 1].
    """
    radius = max_kernel_size // 2
    offsets = jnp.arange(-radius, radius + 1)
    k = jnp.asarray(kernel_size, jnp.int32)
    first = -(k // 2)
    inside = (offsets >= first) & (offsets <= first + k - 1)
    return jnp.where(inside, 1.0 / k.astype(jnp.float32), 0.0).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("max_kernel_size", "mode"))
def _gaussian_blur(images, kernel_size, sigma, max_kernel_size, mode):
    if sigma is None:
        sigma = default_gaussian_sigma(jnp.asarray(kernel_size, jnp.float32))
    taps = gaussian_taps(kernel_size, sigma, max_kernel_size)
    return _finish(_separable(images, taps, mode))


def gaussian_blur(
    images: Any,
    kernel_size: Any,
    sigma: Any = None,
    *,
    mode: str = "reflect",
    max_kernel_size: int | None = None,
) -> jax.Array:
    """Separable Gaussian blur with a k x k kernel, as ``torchvision``'s / OpenCV's Gaussian blur.

    Args:
      images: [B, H, W, C] on the 0-255 scale.
      kernel_size: odd kernel size k (may be traced if `max_kernel_size` is given).
      sigma: standard deviation in pixels; None -> ``default_gaussian_sigma(k)`` (OpenCV/torchvision).
      mode: border mode (default 'reflect' = OpenCV BORDER_REFLECT_101 = torchvision's padding).
      max_kernel_size: static odd bound on k, needed when k is traced (e.g. vmapped levels).

    Returns:
      float32 [B, H, W, C] in [0, 255]. Identical to ``scipy.ndimage.gaussian_filter(..., sigma,
      mode='mirror', radius=(k - 1) // 2)`` over the two spatial axes.

    Examples:
      >>> x = jnp.full((1, 8, 8, 3), 100.0)
      >>> bool(jnp.allclose(gaussian_blur(x, 5), 100.0))
      True
    """
    _check_mode(mode, "gaussian_blur")
    bound = _kernel_bound(kernel_size, max_kernel_size, "gaussian_blur", odd=True)
    return _gaussian_blur(_as_images(images, "gaussian_blur"), kernel_size, sigma, bound, mode)


@functools.partial(jax.jit, static_argnames=("max_kernel_size", "mode"))
def _box_blur(images, kernel_size, max_kernel_size, mode):
    taps = box_taps(kernel_size, max_kernel_size)
    return _finish(_separable(images, taps, mode))


def box_blur(
    images: Any, kernel_size: Any, *, mode: str = "reflect", max_kernel_size: int | None = None
) -> jax.Array:
    """Mean over a k x k window (``cv2.blur`` with its default anchor and border).

    Args:
      images: [B, H, W, C] on the 0-255 scale.
      kernel_size: window side k >= 1, even allowed (the paper uses 2, 4, 6, 8); for even k the window
        covers offsets ``-(k // 2) .. k // 2 - 1`` in each axis (see `box_taps`).
      mode: border mode (default 'reflect' = OpenCV's BORDER_DEFAULT, BORDER_REFLECT_101).
      max_kernel_size: static bound on k, needed when k is traced.

    Returns:
      float32 [B, H, W, C], equal to ``scipy.ndimage.uniform_filter(size=(1, k, k, 1))`` with the
      scipy name of `mode` (see the module table).
    """
    _check_mode(mode, "box_blur")
    bound = _kernel_bound(kernel_size, max_kernel_size, "box_blur", odd=False)
    return _box_blur(_as_images(images, "box_blur"), kernel_size, bound, mode)


# ----------------------------------------------------------------------------------------------------
# Noise.


def _per_image_keys(key: jax.Array, batch: int) -> jax.Array:
    # fold_in by position keeps image i's noise independent of the batch size.
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))


@jax.jit
def _gaussian_noise(key, images, sigma):
    def one(image_key, image):
        return image + sigma * jax.random.normal(image_key, image.shape, jnp.float32)

    return _finish(jax.vmap(one)(_per_image_keys(key, images.shape[0]), images))


def gaussian_noise(key: jax.Array, images: Any, sigma: Any) -> jax.Array:
    """Adds i.i.d. Gaussian noise of standard deviation `sigma` (0-255 scale), then clips.

    Image i of the batch uses ``jax.random.fold_in(key, i)``, so its noise depends only on the key
    and its position (not on the batch size). Clipping to [0, 255] lowers the effective std near
    the bounds.

    Args:
      key: a JAX PRNG key.
      images: [B, H, W, C] on the 0-255 scale.
      sigma: noise std on the 0-255 scale (the paper uses 10, 20, 30, 40).

    Returns:
      float32 [B, H, W, C] in [0, 255].
    """
    return _gaussian_noise(key, _as_images(images, "gaussian_noise"), sigma)


def frequency_band_mask(height: int, width: int, band: Any, num_bands: int) -> jax.Array:
    """Indicator of one radial ring of normalised frequency, on the ``rfft2`` grid.

    The normalised radial frequency is ``r = sqrt(fy^2 + fx^2) / r_max`` with ``fy, fx`` in cycles
    per pixel (``fftfreq``) and ``r_max`` the largest radius on the grid (the corner, 1/sqrt(2) for
    even sizes), so r lies in [0, 1]. Band b of n covers ``b / n <= r < (b + 1) / n`` (the last band
    includes r = 1; a frequency on a boundary, up to float rounding, goes to the upper band). The DC
    term (r = 0) belongs to no band, so band noise has zero mean.

    Args:
      height, width: static image size.
      band: ring index in [0, num_bands) (may be traced).
      num_bands: static number of equal-width rings.

    Returns:
      float32 [height, width // 2 + 1] of 0/1.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    radius = radius / radius.max()
    # Ring index per frequency on the host in float64; the slack puts frequencies that lie on a
    # ring boundary up to rounding (e.g. r = 0.75 exactly) into the upper ring deterministically.
    ring = np.minimum(np.floor(radius * num_bands + 1e-9), num_bands - 1).astype(np.int32)
    ring = np.where(radius > 0, ring, -1)
    inside = jnp.asarray(ring) == jnp.asarray(band).astype(jnp.int32)
    return inside.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("num_bands",))
def _frequency_band_noise(key, images, band, num_bands, sigma):
    _, height, width, _ = images.shape
    mask = frequency_band_mask(height, width, band, num_bands)[:, :, None]

    def one(image_key, image):
        white = jax.random.normal(image_key, image.shape, jnp.float32)
        spectrum = jnp.fft.rfft2(white, axes=(0, 1))
        noise = jnp.fft.irfft2(spectrum * mask, s=(height, width), axes=(0, 1))
        # Standardise per image so every band carries the same energy (std = sigma).
        scale = sigma / jnp.maximum(jnp.std(noise), 1e-12)
        return image + noise * scale

    return _finish(jax.vmap(one)(_per_image_keys(key, images.shape[0]), images))


def frequency_band_noise(
    key: jax.Array, images: Any, band: Any, num_bands: int = 4, sigma: Any = 20.0
) -> jax.Array:
    """Adds Gaussian noise restricted to one radial frequency ring (paper, appendix A.6).

    White Gaussian noise is transformed with a 2-D FFT per image and channel, multiplied by the
    indicator of ring `band` (see `frequency_band_mask`), transformed back, and rescaled so that its
    empirical std over the image (all pixels and channels) equals `sigma`; then it is added and the
    result clipped. Image i uses ``jax.random.fold_in(key, i)``.

    Args:
      key: a JAX PRNG key.
      images: [B, H, W, C] on the 0-255 scale.
      band: ring index in [0, num_bands), 0 = lowest frequencies (may be traced).
      num_bands: static number of equal-width rings of the normalised radial frequency.
      sigma: target std of the added noise on the 0-255 scale.

    Returns:
      float32 [B, H, W, C] in [0, 255].
    """
    if _is_concrete(band) and np.ndim(band) == 0:
        if int(band) != band or not 0 <= int(band) < num_bands:
            raise errors.ConfigError(
                f"frequency_band_noise: band must be an integer in [0, {num_bands}), got {band!r}"
            )
    images = _as_images(images, "frequency_band_noise")
    return _frequency_band_noise(key, images, band, int(num_bands), sigma)


# ----------------------------------------------------------------------------------------------------
# Geometric transforms.


def _source_points(kind: str, amount: Any, ys: Any, xs: Any, image_size: tuple[int, int], xp):
    """Inverse map of a geometric transform: output index coordinates -> source index coordinates.

    Shared by the image ops (xp = jnp) and `correspondence_map` (xp = np), so that both agree.
    For 'shift', `amount` is (dx, dy); for 'rotate', degrees; for 'scale', the factor.
    """
    height, width = image_size
    if kind == "shift":
        dx, dy = amount
        return ys - dy, xs - dx
    centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
    off_y, off_x = ys - centre_y, xs - centre_x
    if kind == "rotate":
        theta = xp.deg2rad(amount)
        cos, sin = xp.cos(theta), xp.sin(theta)
        return sin * off_x + cos * off_y + centre_y, cos * off_x - sin * off_y + centre_x
    if kind == "scale":
        return off_y / amount + centre_y, off_x / amount + centre_x
    raise errors.ConfigError(f"unknown geometric transform {kind!r}; known: {GEOMETRIC}")


def _bilinear(images: jax.Array, ys: jax.Array, xs: jax.Array, mode: str, cval: Any) -> jax.Array:
    """Samples [B, H, W, C] at float index positions ys, xs [h, w]; corners outside follow `mode`."""
    _, height, width, _ = images.shape
    y0 = jnp.floor(ys)
    x0 = jnp.floor(xs)
    wy = (ys - y0)[None, :, :, None]
    wx = (xs - x0)[None, :, :, None]
    y0 = y0.astype(jnp.int32)
    x0 = x0.astype(jnp.int32)

    def corner(yi, xi):
        # Each corner is mapped on its own (like skimage's get_pixel2d), so with mode 'constant'
        # the fill value blends into the border instead of cutting it off.
        ym, y_in = _map_index(yi, height, mode)
        xm, x_in = _map_index(xi, width, mode)
        values = images[:, ym, xm, :]
        if y_in is not None:
            values = jnp.where((y_in & x_in)[None, :, :, None], values, cval)
        return values

    top = (1.0 - wx) * corner(y0, x0) + wx * corner(y0, x0 + 1)
    bottom = (1.0 - wx) * corner(y0 + 1, x0) + wx * corner(y0 + 1, x0 + 1)
    return (1.0 - wy) * top + wy * bottom


@functools.partial(jax.jit, static_argnames=("kind", "mode"))
def _warp(images, amount, kind, mode, cval):
    _, height, width, _ = images.shape
    ys, xs = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    amount = jnp.asarray(amount, jnp.float32)
    src_y, src_x = _source_points(kind, amount, ys, xs, (height, width), jnp)
    return _finish(_bilinear(images, src_y, src_x, mode, jnp.asarray(cval, jnp.float32)))


@functools.partial(jax.jit, static_argnames=("mode",))
def _shift(images, dx, dy, mode, cval):
    _, height, width, _ = images.shape
    dx = jnp.asarray(dx).astype(jnp.int32)
    dy = jnp.asarray(dy).astype(jnp.int32)
    rows = _take_axis(images, jnp.arange(height) - dy, 1, mode, cval)
    return _finish(_take_axis(rows, jnp.arange(width) - dx, 2, mode, cval))


def _check_integer_shift(value: Any, name: str) -> Any:
    if _is_concrete(value):
        if np.ndim(value) != 0 or float(np.asarray(value)) != int(np.asarray(value)):
            raise errors.ConfigError(
                f"shift: {name} must be an integer number of pixels, got {value}"
            )
        return int(np.asarray(value))
    return jnp.round(value)


def shift(images: Any, dx: Any, dy: Any, *, mode: str = "constant", cval: float = 0.0) -> jax.Array:
    """Translates by whole pixels: ``out[y, x] = in[y - dy, x - dx]``.

    Args:
      images: [B, H, W, C] on the 0-255 scale.
      dx, dy: integer shifts in pixels (positive = right / down); may be traced.
      mode: fill of the uncovered border: 'constant' (cval), 'edge', 'reflect', 'symmetric', 'wrap'.
      cval: fill value for mode 'constant'.

    Returns:
      float32 [B, H, W, C]; equals ``scipy.ndimage.shift(images, (0, dy, dx, 0), order=0)`` with the
      scipy name of `mode`.
    """
    _check_mode(mode, "shift")
    dx = _check_integer_shift(dx, "dx")
    dy = _check_integer_shift(dy, "dy")
    return _shift(_as_images(images, "shift"), dx, dy, mode, cval)


def rotate(images: Any, degrees: Any, *, mode: str = "constant", cval: float = 0.0) -> jax.Array:
    """Rotates about the image centre by `degrees` (counter-clockwise), bilinear, same size.

    Args:
      images: [B, H, W, C] on the 0-255 scale.
      degrees: angle (may be traced).
      mode: how source positions outside the image are filled (see module table).
      cval: fill value for mode 'constant'.

    Returns:
      float32 [B, H, W, C]; equals ``skimage.transform.rotate(image, degrees, order=1, mode=mode,
      cval=cval, preserve_range=True)`` per image.
    """
    _check_mode(mode, "rotate")
    return _warp(_as_images(images, "rotate"), degrees, "rotate", mode, cval)


def scale(images: Any, factor: Any, *, mode: str = "constant", cval: float = 0.0) -> jax.Array:
    """Zooms about the image centre by `factor` (> 1 magnifies), bilinear, output of the same size.

    Args:
      images: [B, H, W, C] on the 0-255 scale.
      factor: positive zoom factor (may be traced); the paper uses 0.8, 0.9, 1.1, 1.2.
      mode: how source positions outside the image are filled (see module table).
      cval: fill value for mode 'constant'.

    Returns:
      float32 [B, H, W, C]: ``out[p] = in(c + (p - c) / factor)``, c the image centre; equals
      ``scipy.ndimage.affine_transform`` with matrix ``I / factor`` and offset ``c - c / factor``.
    """
    _check_mode(mode, "scale")
    if _is_concrete(factor) and np.ndim(factor) == 0 and not float(factor) > 0:
        raise errors.ConfigError(f"scale: factor must be positive, got {factor!r}")
    return _warp(_as_images(images, "scale"), factor, "scale", mode, cval)


def _shift_amount(amount: Any, direction: Sequence[int]) -> tuple[Any, Any]:
    """(dx, dy) from a scalar level along `direction`, or from an explicit (dx, dy) pair."""
    if np.ndim(amount) == 0:
        return amount * direction[0], amount * direction[1]
    if np.shape(amount) != (2,):
        raise errors.ConfigError(f"shift amount must be a scalar or (dx, dy), got {amount!r}")
    return amount[0], amount[1]


def correspondence_map(
    kind: str,
    amount: Any,
    image_size: tuple[int, int] = (224, 224),
    patch_size: int = 16,
    *,
    direction: Sequence[int] = (1, 0),
) -> np.ndarray:
    """For each patch of a transformed image, the original patch that contains its centre.

    The centre of patch (i, j) of the transformed image, ``(i * P + P / 2, j * P + P / 2)`` in pixel
    edge coordinates, is mapped back through the transform's inverse (the same map the image op
    samples with); the original patch is the one whose half-open square ``[r P, (r + 1) P) x
    [c P, (c + 1) P)`` contains that point, reported as ``r * w + c``, or -1 if the point lies
    outside the image. Photometric corruptions ('blur', 'box_blur', 'noise', 'freq_noise') leave
    the geometry unchanged and give the identity map.

    Args:
      kind: a name of `NAMES`.
      amount: the level: shift in pixels (scalar along `direction`, or (dx, dy)), rotation in
        degrees, or scale factor; ignored for photometric corruptions.
      image_size: (H, W) in pixels, multiples of `patch_size`.
      patch_size: patch side P.
      direction: (dx, dy) per unit of a scalar shift amount (as in `apply`).

    Returns:
      int32 [H // P, W // P] of flat original patch indices, -1 where there is none.

    Examples:
      >>> correspondence_map("shift", 16, (64, 64), 16)[0].tolist()
      [-1, 0, 1, 2]
    """
    height, width = (int(s) for s in image_size)
    if patch_size <= 0 or height % patch_size or width % patch_size:
        raise errors.ConfigError(
            f"correspondence_map: image_size={image_size} must be positive multiples of "
            f"patch_size={patch_size}"
        )
    grid_h, grid_w = height // patch_size, width // patch_size
    if kind in PHOTOMETRIC:
        return np.arange(grid_h * grid_w, dtype=np.int32).reshape(grid_h, grid_w)
    if kind not in GEOMETRIC:
        raise errors.ConfigError(f"correspondence_map: unknown kind {kind!r}; known: {NAMES}")
    if kind == "shift":
        amount = tuple(float(a) for a in _shift_amount(amount, direction))
    else:
        amount = float(amount)
    # Patch centres in index coordinates (pixel centres at integers): i * P + P / 2 - 0.5.
    centres_y = np.arange(grid_h, dtype=np.float64) * patch_size + patch_size / 2.0 - 0.5
    centres_x = np.arange(grid_w, dtype=np.float64) * patch_size + patch_size / 2.0 - 0.5
    ys, xs = np.meshgrid(centres_y, centres_x, indexing="ij")
    src_y, src_x = _source_points(kind, amount, ys, xs, (height, width), np)
    # Back to pixel edge coordinates, where pixel r covers [r, r + 1).
    src_y, src_x = src_y + 0.5, src_x + 0.5
    inside = (src_y >= 0) & (src_y < height) & (src_x >= 0) & (src_x < width)
    rows = np.floor(src_y / patch_size).astype(np.int64)
    cols = np.floor(src_x / patch_size).astype(np.int64)
    return np.where(inside, rows * grid_w + cols, -1).astype(np.int32)


# ----------------------------------------------------------------------------------------------------
# Dispatch by name.


def _check_options(name: str, options: dict[str, Any]) -> None:
    if name not in NAMES:
        raise errors.ConfigError(f"unknown corruption {name!r}; known: {NAMES}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise errors.ConfigError(
            f"corruption {name!r} takes options {_OPTIONS[name]}, got unknown {unknown}"
        )
    if "mode" in options:
        _check_mode(options["mode"], name)


def _dispatch(
    name: str, level: Any, images: jax.Array, key: Any, options: dict[str, Any], bound: int
) -> jax.Array:
    """One corruption at a (possibly traced) level; `bound` is the static max kernel size."""
    if name == "blur":
        sigma = options.get("sigma")
        taps = gaussian_taps(
            level, default_gaussian_sigma(level) if sigma is None else sigma, bound
        )
        mode = options.get("mode", "reflect")
        return _finish(_separable(images, taps, mode))
    if name == "box_blur":
        taps = box_taps(level, bound)
        mode = options.get("mode", "reflect")
        return _finish(_separable(images, taps, mode))
    if name == "noise":
        return _gaussian_noise(key, images, level)
    if name == "freq_noise":
        num_bands = options.get("num_bands", 4)
        return _frequency_band_noise(key, images, level, num_bands, options.get("sigma", 20.0))
    mode = options.get("mode", "constant")
    cval = options.get("cval", 0.0)
    if name == "shift":
        dx, dy = _shift_amount(level, options.get("direction", (1, 0)))
        return _shift(images, jnp.round(dx), jnp.round(dy), mode, cval)
    return _warp(images, level, name, mode, cval)


@functools.partial(jax.jit, static_argnames=("name", "option_items", "bound", "quantize"))
def _apply_levels(name, levels, images, key, option_items, bound, quantize):
    options = dict(option_items)
    out = jax.vmap(lambda level: _dispatch(name, level, images, key, options, bound))(levels)
    return jnp.round(out) if quantize else out


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list | tuple) else value


def apply_levels(
    name: str,
    levels: Sequence[float],
    images: Any,
    key: jax.Array | None = None,
    *,
    quantize: bool = False,
    **options: Any,
) -> jax.Array:
    """Applies corruption `name` at each of `levels`, vmapped over levels in one compiled call.

    Levels by name: 'blur' Gaussian kernel size (odd; sigma from the kernel size unless
    ``sigma=`` is given), 'box_blur' box kernel size, 'noise' std on 0-255, 'freq_noise' band index
    (options ``num_bands=4, sigma=20.0``), 'shift' pixels along ``direction=(1, 0)`` (dx, dy per
    unit), 'rotate' degrees, 'scale' factor. Geometric ops take ``mode`` / ``cval``, blurs ``mode``.
    Random ops use the same key at every level (common random numbers: for 'noise' the levels
    differ only in scale).

    Args:
      name: one of `NAMES`.
      levels: host sequence of L levels.
      images: [B, H, W, C] on the 0-255 scale.
      key: JAX PRNG key, required by 'noise' and 'freq_noise'.
      quantize: round the result to integers (as if saved as uint8).
      **options: per-name options listed above (static).

    Returns:
      float32 [L, B, H, W, C] in [0, 255].
    """
    _check_options(name, options)
    levels = np.asarray(levels, dtype=np.float64).reshape(-1)
    if levels.size == 0:
        raise errors.ConfigError(f"apply_levels({name!r}): levels is empty")
    if name in _RANDOM and key is None:
        raise errors.ConfigError(f"corruption {name!r} is random: pass a PRNG key")
    bound = 1
    if name in _KERNEL_BASED:
        odd = name == "blur"
        for level in levels:
            _kernel_bound(level, None, name, odd=odd)
        bound = int(levels.max())
    elif name == "freq_noise":
        num_bands = options.get("num_bands", 4)
        if np.any(levels != np.round(levels)) or levels.min() < 0 or levels.max() >= num_bands:
            raise errors.ConfigError(
                f"freq_noise: band levels must be integers in [0, {num_bands}), got {levels}"
            )
    elif name == "shift" and np.any(levels != np.round(levels)):
        raise errors.ConfigError(f"shift: levels must be whole pixels, got {levels}")
    elif name == "scale" and levels.min() <= 0:
        raise errors.ConfigError(f"scale: factors must be positive, got {levels}")
    if key is None:
        key = jax.random.key(0)  # unused by deterministic ops; keeps one traced signature
    images = _as_images(images, f"apply_levels({name!r})")
    option_items = tuple(sorted((k, _freeze(v)) for k, v in options.items()))
    return _apply_levels(
        name, jnp.asarray(levels, jnp.float32), images, key, option_items, bound, quantize
    )


def apply(
    name: str,
    level: float,
    images: Any,
    key: jax.Array | None = None,
    *,
    quantize: bool = False,
    **options: Any,
) -> jax.Array:
    """Applies corruption `name` at one host-side `level` (see `apply_levels` for names, options).

    Returns:
      float32 [B, H, W, C] in [0, 255].

    Examples:
      >>> x = jnp.zeros((2, 32, 32, 3))
      >>> apply("rotate", 10.0, x).shape
      (2, 32, 32, 3)
    """
    return apply_levels(name, [level], images, key, quantize=quantize, **options)[0]


__all__ = [
    "GEOMETRIC",
    "MODES",
    "NAMES",
    "PHOTOMETRIC",
    "apply",
    "apply_levels",
    "box_blur",
    "box_taps",
    "correspondence_map",
    "default_gaussian_sigma",
    "frequency_band_mask",
    "frequency_band_noise",
    "gaussian_blur",
    "gaussian_noise",
    "gaussian_taps",
    "rotate",
    "scale",
    "shift",
]
