"""Decoding of images and label maps shared by the dataset readers, and a size policy.

Every reader decodes through `read_image` (RGB `uint8 [H, W, 3]`) and `read_label_map`
(single-channel `[H, W]`), so every format quirk (gray, palette, RGBA, 16-bit, multi-page TIFF) is
handled in one place and a broken file always raises `DatasetError` naming the file.
"""

from __future__ import annotations

import os

import numpy as np
import tifffile
from PIL import Image

from vitjax.data import tiling
from vitjax.errors import DatasetError

# Decompression-bomb guard off: FAIR1M images reach 10,000 x 10,000 px and the files are the user's.
Image.MAX_IMAGE_PIXELS = None

_TIFF_SUFFIXES = (".tif", ".tiff")


def _to_uint8(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Maps an integer/float/bool array to uint8 (16-bit data is divided by 257, 65535 -> 255)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # 32-bit containers (Pillow mode "I") usually hold 8- or 16-bit samples.
        peak = int(array.max(initial=0))
        scale = 1.0 if peak <= 255 else 257.0
        return np.clip(np.round(array.astype(np.float64) / scale), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        finite = array[np.isfinite(array)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        return np.clip(np.round(np.nan_to_num(array) * scale), 0, 255).astype(np.uint8)
    raise DatasetError(f"{path}: unsupported pixel type {array.dtype}; expected an RGB/gray image")


def _to_rgb(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Gray [H, W] / [H, W, 1], gray+alpha [H, W, 2], RGB, RGBA -> [H, W, 3] (alpha dropped)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise DatasetError(f"{path}: image has shape {array.shape}; expected [H, W] or [H, W, C]")
    channels = array.shape[-1]
    if channels in (1, 2):
        array = np.repeat(array[:, :, :1], 3, axis=-1)
    elif channels in (3, 4):
        array = array[:, :, :3]
    else:
        raise DatasetError(
            f"{path}: image has {channels} channels; expected 1 (gray), 3 or 4 (RGB/A)"
        )
    return np.ascontiguousarray(_to_uint8(array, path))


def _read_tiff(path: str | os.PathLike) -> np.ndarray:
    array = tifffile.imread(path, key=0)
    # Planar-configured TIFFs come back channel-first.
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        array = np.moveaxis(array, 0, -1)
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file to RGB.

    PNG/JPEG go through Pillow; TIFF goes through tifffile (any bit depth, planar layouts), with
    Pillow as a fallback for compressions tifffile cannot decode without extra codecs. Gray images
    are replicated to three channels, alpha is dropped, palette images are expanded, 16-bit samples
    are divided by 257.

    Args:
      path: image file.

    Returns:
      uint8 [H, W, 3] RGB array.

    Raises:
      DatasetError: the file is missing or cannot be decoded (message names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: image file not found")
    errors = []
    if path.lower().endswith(_TIFF_SUFFIXES):
        try:
            return _to_rgb(_read_tiff(path), path)
        except Exception as e:  # noqa: BLE001 - any decoder failure falls back to Pillow
            errors.append(f"tifffile: {e}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB", "L", "I;16", "I;16B", "I;16L", "I", "F"):
                array = np.asarray(img)
            else:  # P, PA, RGBA, LA, CMYK, YCbCr, 1: let Pillow resolve palettes and colour spaces
                array = np.asarray(img.convert("RGBA" if "A" in img.mode else "RGB"))
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError, ...
        errors.append(f"Pillow: {e}")
        raise DatasetError(f"{path}: cannot decode image ({'; '.join(errors)})") from e
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return _to_rgb(array, path)


def read_label_map(
    path: str | os.PathLike, expected_shape: tuple[int, int] | None = None, image_path=None
) -> np.ndarray:
    """Decodes a single-channel label PNG (8-bit gray, palette indices, or 16-bit).

    Args:
      path: label image file.
      expected_shape: (H, W) the map must have (its image's size), or None.
      image_path: the image `expected_shape` comes from, named in the error message.

    Returns:
      uint8 [H, W] array, or int32 [H, W] when some value exceeds 255.

    Raises:
      DatasetError: missing/undecodable file, a colour (multi-channel) image, or a size mismatch.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: label map file not found")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            # For palette images np.asarray gives the indices, which are the labels.
            array = np.asarray(img)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot decode label map ({e})") from e
    if array.ndim != 2:
        raise DatasetError(
            f"{path}: label map has mode {mode} and shape {array.shape}; expected a single-channel "
            "(gray or palette) PNG of class ids"
        )
    if array.dtype != np.uint8:
        if array.min(initial=0) < 0:
            raise DatasetError(f"{path}: label map has negative values; expected class ids >= 0")
        array = array.astype(np.uint8 if array.max(initial=0) <= 255 else np.int32)
    if expected_shape is not None and tuple(array.shape) != tuple(expected_shape):
        source = f" of image {os.fspath(image_path)}" if image_path is not None else ""
        raise DatasetError(
            f"{path}: label map is {array.shape[0]}x{array.shape[1]} (HxW) but the size{source} "
            f"is {expected_shape[0]}x{expected_shape[1]}"
        )
    return np.ascontiguousarray(array)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Returns (H, W) of an image file from its header, without decoding the pixels.

    Raises:
      DatasetError: missing or unreadable file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            width, height = img.size
            return int(height), int(width)
    except Exception as pil_error:  # noqa: BLE001
        if path.lower().endswith(_TIFF_SUFFIXES):
            try:
                with tifffile.TiffFile(path) as tif:
                    page = tif.pages[0]
                    return int(page.imagelength), int(page.imagewidth)
            except Exception:  # noqa: BLE001, S110 - report Pillow's error below
                pass
        raise DatasetError(f"{path}: cannot read image header ({pil_error})") from pil_error


def pad_or_crop(image: np.ndarray, size: tuple[int, int], fill: int = 0) -> np.ndarray:
    """Pads (bottom/right, with `fill`) or crops (centred) an image to exactly `size`.

    Args:
      image: [H, W, ...] array.
      size: output (height, width).
      fill: value of padded pixels.

    Returns:
      [height, width, ...] array of the same dtype; the original pixels keep their positions
      (offset by the centred crop where the image was larger).
    """
    out = image
    for axis, target in enumerate(size):
        current = out.shape[axis]
        if current > target:
            start = (current - target) // 2
            out = np.take(out, np.arange(start, start + target), axis=axis)
        elif current < target:
            pad = [(0, 0)] * out.ndim
            pad[axis] = (0, target - current)
            out = np.pad(out, pad, constant_values=fill)
    return out


SIZE_POLICIES = ("resize", "pad", "none")


def apply_size_policy(
    image: np.ndarray, size: tuple[int, int] | None, policy: str = "resize"
) -> np.ndarray:
    """Brings an image of irregular size to `size`.

    Args:
      image: uint8 [H, W, 3].
      size: target (height, width), or None to keep the image as is.
      policy: 'resize' (bicubic), 'pad' (zero-pad bottom/right, centre-crop if larger) or 'none'.

    Returns:
      uint8 [height, width, 3] (unchanged for policy 'none' or size None).
    """
    if policy not in SIZE_POLICIES:
        raise ValueError(f"policy={policy!r}; expected one of {SIZE_POLICIES}")
    if size is None or policy == "none" or image.shape[:2] == tuple(size):
        return image
    if policy == "resize":
        return tiling.resize_image(image, size, "bicubic")
    return pad_or_crop(image, size)
