"""Texture sources for the synthetic data: real photographs of surfaces plus procedural patterns.

The real textures are the grey-level surface photographs that scikit-image ships inside its wheel
(`skimage.data.brick`, `grass`, `gravel`, `moon`; no download). When scikit-image is not installed,
deterministic procedural stand-ins of the same size are used instead and a warning is logged once;
`texture_source()` says which one is active so experiments can record it.

Every texture is a float32 array normalised to zero mean and unit standard deviation, so callers
choose contrast and colour themselves:  pixel = colour * (1 + contrast * texture).

Examples:
    >>> rng = np.random.default_rng(0)
    >>> patch = random_crop(real_texture("grass"), (224, 224), rng)       # float32 [224, 224]
    >>> waves = stripes((64, 64), period=8.0, angle=0.3)                    # float32 [64, 64]
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
from absl import logging

from vitjax import errors

REAL_TEXTURES = ("brick", "grass", "gravel", "moon")
_TEXTURE_SIZE = 512


def texture_source() -> str:
    """'skimage' if the real photographs are available, else 'procedural'."""
    return "skimage" if importlib.util.find_spec("skimage") is not None else "procedural"


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    x -= x.mean()
    std = x.std()
    return x / std if std > 0 else x


@functools.cache
def real_texture(name: str, scale: float = 1) -> np.ndarray:
    """A normalised surface texture, optionally rescaled.

    Args:
      name: one of `REAL_TEXTURES`.
      scale: an integer k >= 1 magnifies by pixel repetition (each texel k x k pixels); 1/k
        (0.5, 0.25, ...) shrinks by k x k block means. Both cost no interpolation.

    Returns:
      float32 [512 * scale, 512 * scale], mean 0, std 1. Read-only (cached and shared).
    """
    if name not in REAL_TEXTURES:
        raise errors.ConfigError(f"texture name {name!r}: expected one of {REAL_TEXTURES}")
    if scale >= 1 and float(scale).is_integer():
        zoom, shrink = int(scale), 1
    elif 0 < scale < 1 and float(1 / scale).is_integer():
        zoom, shrink = 1, int(round(1 / scale))
    else:
        raise errors.ConfigError(f"texture scale {scale}: expected an integer k >= 1 or 1/k")
    if zoom > 1:
        base = real_texture(name, 1)
        out = np.repeat(np.repeat(base, zoom, axis=0), zoom, axis=1)
    elif shrink > 1:
        base = real_texture(name, 1)
        n = base.shape[0] // shrink
        out = _normalise(
            base[: n * shrink, : n * shrink].reshape(n, shrink, n, shrink).mean((1, 3))
        )
    elif texture_source() == "skimage":
        from skimage import data  # lazy: scikit-image is optional

        out = _normalise(getattr(data, name)()[:_TEXTURE_SIZE, :_TEXTURE_SIZE])
    else:
        logging.log_first_n(
            logging.WARNING,
            "scikit-image is not installed: synthetic data uses procedural textures instead of "
            "its shipped surface photographs (results differ from runs with scikit-image).",
            1,
        )
        out = _procedural_stand_in(name)
    out.setflags(write=False)
    return out


def _procedural_stand_in(name: str) -> np.ndarray:
    """Deterministic procedural textures with roughly the character of the real ones."""
    size = (_TEXTURE_SIZE, _TEXTURE_SIZE)
    rng = np.random.default_rng(REAL_TEXTURES.index(name) + 1000)
    if name == "brick":
        yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
        row = yy // 24
        mortar = (yy % 24 < 3) | ((xx + 32 * (row % 2)) % 64 < 3)
        tone = rng.normal(0, 0.5, size=(size[0] // 24 + 1, size[1] // 64 + 2))
        out = tone[row, (xx + 32 * (row % 2)) // 64] - 2.0 * mortar
        out = out + 0.5 * band_noise(size, rng, 0.1, 0.5)
    elif name == "grass":
        out = band_noise(size, rng, 0.05, 0.4, anisotropy=(4.0, 1.0))
    elif name == "gravel":
        out = band_noise(size, rng, 0.08, 0.3) + 0.5 * band_noise(size, rng, 0.3, 0.5)
    else:
        out = fractal_noise(size, rng, cell=64, octaves=5)
    return _normalise(out)


def random_crop(texture: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A crop of `size` at a random offset, under a random flip/transpose (8 symmetries).

    Crops larger than the texture wrap around (periodic tiling).

    Args:
      texture: float32 [h, w].
      size: (height, width) of the crop.
      rng: numpy Generator.

    Returns:
      float32 [height, width] (a new array).
    """
    t = texture.T if rng.integers(2) else texture
    t = t[:: 1 - 2 * int(rng.integers(2)), :: 1 - 2 * int(rng.integers(2))]
    h, w = size
    th, tw = t.shape
    y0, x0 = int(rng.integers(th)), int(rng.integers(tw))
    if y0 + h <= th and x0 + w <= tw:
        return np.array(t[y0 : y0 + h, x0 : x0 + w], dtype=np.float32)
    rows = (y0 + np.arange(h)) % th
    cols = (x0 + np.arange(w)) % tw
    return t[rows[:, None], cols[None, :]].astype(np.float32)


def stripes(
    size: tuple[int, int], period: float, angle: float, phase: float = 0.0, offset=(0.0, 0.0)
) -> np.ndarray:
    """Oriented sinusoidal stripes: sin(2 pi (x cos a + y sin a) / period + phase).

    Args:
      size: (height, width).
      period: wavelength in pixels.
      angle: direction of variation in radians (0 = varies along x, i.e. vertical stripes).
      phase: phase offset in radians.
      offset: (y, x) of the top-left pixel in the pattern's coordinates.

    Returns:
      float32 [height, width] in [-1, 1].
    """
    h, w = size
    y = (np.arange(h, dtype=np.float32) + offset[0]) * np.float32(np.sin(angle))
    x = (np.arange(w, dtype=np.float32) + offset[1]) * np.float32(np.cos(angle))
    k = np.float32(2 * np.pi / period)
    return np.sin(k * (y[:, None] + x[None, :]) + np.float32(phase)).astype(np.float32)


def _smooth_axis(coarse: np.ndarray, n: int, cell: float, axis: int) -> np.ndarray:
    pos = (np.arange(n, dtype=np.float32) + 0.5) / cell
    i0 = np.floor(pos).astype(np.int64)
    f = pos - i0
    f = f * f * (3 - 2 * f)  # smoothstep: C1-continuous value noise, no visible grid lines
    a = np.take(coarse, i0, axis=axis)
    b = np.take(coarse, i0 + 1, axis=axis)
    shape = [1, 1]
    shape[axis] = n
    f = f.reshape(shape)
    return a * (1 - f) + b * f


def value_noise(size: tuple[int, int], rng: np.random.Generator, cell: float) -> np.ndarray:
    """Smooth random field: a random grid every `cell` pixels, smoothstep-interpolated.

    Args:
      size: (height, width).
      rng: numpy Generator.
      cell: grid spacing in pixels (feature size), > 0.

    Returns:
      float32 [height, width], values roughly in [-1, 1].
    """
    h, w = size
    coarse = rng.uniform(-1, 1, size=(int(h / cell) + 2, int(w / cell) + 2)).astype(np.float32)
    return _smooth_axis(_smooth_axis(coarse, h, cell, 0), w, cell, 1)


def fractal_noise(
    size: tuple[int, int], rng: np.random.Generator, cell: float, octaves: int = 3
) -> np.ndarray:
    """Sum of `octaves` value-noise layers, each half the cell size and half the amplitude.

    Returns:
      float32 [height, width].
    """
    out = np.zeros(size, np.float32)
    amp = 1.0
    for _ in range(octaves):
        out += np.float32(amp) * value_noise(size, rng, max(cell, 1.0))
        cell /= 2
        amp /= 2
    return out


def band_noise(
    size: tuple[int, int],
    rng: np.random.Generator,
    low: float,
    high: float,
    anisotropy: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """White noise band-pass filtered in the Fourier domain, normalised to unit std.

    Args:
      size: (height, width).
      rng: numpy Generator.
      low, high: pass band in cycles per pixel (0 < low < high <= 0.5 for a non-empty band).
      anisotropy: (fy, fx) multipliers applied to the frequency axes before the band test; (4, 1)
        keeps mostly low vertical frequencies, i.e. vertical streaks like blades of grass.

    Returns:
      float32 [height, width], mean 0, std 1.
    """
    h, w = size
    spectrum = np.fft.rfft2(rng.standard_normal((h, w)).astype(np.float32))
    fy = np.fft.fftfreq(h)[:, None] * anisotropy[0]
    fx = np.fft.rfftfreq(w)[None, :] * anisotropy[1]
    radius = np.sqrt(fy * fy + fx * fx)
    spectrum *= (radius >= low) & (radius <= high)
    return _normalise(np.fft.irfft2(spectrum, s=(h, w)))
