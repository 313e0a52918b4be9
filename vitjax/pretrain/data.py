"""Training images and the augmentations of MAE (random resized crop + flip) and DINO (multi-crop).

Images come from the embedded synthetic scenes, a folder of image files, or any ImageSource
(`len` and `source[i] -> uint8 [H, W, 3]`, sizes may differ). Batches are drawn on the host from a
numpy generator seeded with (seed, step), so step s gets the same images and crops whether or not
the run was interrupted and resumed before it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from vitjax import errors
from vitjax.data import images as images_lib
from vitjax.data import scenes, synthetic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class FolderSource:
    """Every image file under `root` (recursive, sorted), decoded by `images.read_image`."""

    def __init__(self, root: str):
        paths = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not scenes.is_hidden(d))
            paths += [
                os.path.join(folder, f)
                for f in sorted(files)
                if f.lower().endswith(IMAGE_SUFFIXES) and not scenes.is_hidden(f)
            ]
        if not paths:
            raise errors.DatasetError(
                f"data.root {root!r}: no image files ({', '.join(IMAGE_SUFFIXES)}) found; "
                "point it at a folder of images or use data.source=synthetic"
            )
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return images_lib.read_image(self.paths[index])


def check_data_config(data: Any) -> None:
    """Raises before any work when `data` (a config's data section) names no usable images."""
    if data.source not in ("synthetic", "folder"):
        raise errors.ConfigError(
            f"data.source: expected 'synthetic' or 'folder', got {data.source!r}"
        )
    if data.source == "folder" and (not data.root or not os.path.isdir(data.root)):
        raise errors.DatasetError(
            f"data.root {data.root!r}: not a folder; expected a folder of images "
            "(data.source=folder)"
        )
    if data.source == "synthetic" and int(data.num_images) < 1:
        raise errors.ConfigError(f"data.num_images: expected a positive int, got {data.num_images}")


def load_source(data: Any) -> Any:
    """The training images of a config's `data` section.

    Args:
      data: ConfigDict with `source` ('synthetic' | 'folder'), `root`, `num_images`,
        `synthetic_hw`, `seed` (of the synthetic scenes).

    Returns:
      uint8 [N, H, W, 3] (synthetic) or a FolderSource.
    """
    check_data_config(data)
    if data.source == "synthetic":
        return synthetic.semantic_scenes(
            int(data.num_images), size=tuple(data.synthetic_hw), seed=int(data.seed)
        ).images
    return FolderSource(data.root)


def check_source(images: Any) -> None:
    """Raises DatasetError unless `images` is a non-empty uint8 [N, H, W, 3] array or ImageSource
    whose first image is uint8 [H, W, 3] (the others are checked as they are drawn)."""
    if not (hasattr(images, "__len__") and hasattr(images, "__getitem__")):
        raise errors.DatasetError(
            f"images: expected a uint8 [N, H, W, 3] array or an ImageSource (len and "
            f"images[i] -> uint8 [H, W, 3]), got {type(images).__name__}"
        )
    if len(images) == 0:
        raise errors.DatasetError("images: no training images (length 0)")
    first = np.asarray(images[0])
    if first.dtype != np.uint8 or first.ndim != 3 or first.shape[-1] != 3:
        raise errors.DatasetError(
            f"images[0]: expected uint8 [H, W, 3], got {first.dtype} {first.shape}"
        )


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The host generator of one training step."""
    return np.random.default_rng([int(seed), 7, int(step)])


def random_resized_crop(
    rng: np.random.Generator,
    image: np.ndarray,
    out_size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """torchvision's RandomResizedCrop: area fraction in `scale`, log-uniform aspect in `ratio`
    (10 tries, then the centre crop), resized bicubically to out_size^2, then a random h-flip.

    Returns:
      uint8 [out_size, out_size, 3].
    """
    height, width = image.shape[:2]
    area = height * width
    box = None
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            box = (left, top, left + w, top + h)
            break
    if box is None:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        box = (left, top, left + side, top + side)
    crop = Image.fromarray(image).resize((out_size, out_size), Image.Resampling.BICUBIC, box=box)
    out = np.asarray(crop)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


# DINO's ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1): factor ranges.
JITTER_RANGES = ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1))
BLUR_RADIUS = (0.1, 2.0)


@dataclasses.dataclass(frozen=True)
class Photometric:
    """The photometric augmentation drawn for one view, in DINO's order: colour jitter (the four
    factors in `order`: 0 brightness, 1 contrast, 2 saturation, 3 hue), grayscale, Gaussian blur
    (PIL radius), solarisation (threshold 128). None / False = that step is skipped."""

    jitter: tuple[float, float, float, float] | None = None
    order: tuple[int, ...] = (0, 1, 2, 3)
    grayscale: bool = False
    blur_radius: float | None = None
    solarize: bool = False


def draw_photometric(
    rng: np.random.Generator,
    jitter_prob: float,
    grayscale_prob: float,
    blur_prob: float,
    solarize_prob: float,
) -> Photometric:
    """Draws one view's photometric augmentation (torchvision's ColorJitter.get_params ranges)."""
    jitter, order = None, (0, 1, 2, 3)
    if rng.random() < jitter_prob:
        order = tuple(int(i) for i in rng.permutation(4))
        jitter = tuple(float(rng.uniform(lo, hi)) for lo, hi in JITTER_RANGES)
    grayscale = bool(rng.random() < grayscale_prob)
    blur = float(rng.uniform(*BLUR_RADIUS)) if rng.random() < blur_prob else None
    solarize = bool(rng.random() < solarize_prob)
    return Photometric(jitter, order, grayscale, blur, solarize)


def _adjust_hue(image: Image.Image, shift: float) -> Image.Image:
    # PIL's HSV hue is a uint8 circle: shifting by a fraction of a turn wraps modulo 256.
    h, s, v = image.convert("HSV").split()
    hue = (np.asarray(h, np.int64) + int(shift * 255)) % 256
    return Image.merge("HSV", (Image.fromarray(hue.astype(np.uint8), "L"), s, v)).convert("RGB")


def apply_photometric(image: np.ndarray, aug: Photometric) -> np.ndarray:
    """Applies `aug` with PIL, as DINO's pipeline does on PIL images: uint8 [H, W, 3] -> same."""
    out = Image.fromarray(image)
    if aug.jitter is not None:
        enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
        for i in aug.order:
            if i == 3:
                out = _adjust_hue(out, aug.jitter[3])
            else:
                out = enhancers[i](out).enhance(aug.jitter[i])
    if aug.grayscale:
        out = out.convert("L").convert("RGB")
    if aug.blur_radius is not None:
        out = out.filter(ImageFilter.GaussianBlur(radius=aug.blur_radius))
    if aug.solarize:
        out = ImageOps.solarize(out, 128)
    return np.asarray(out)


def _pick(rng: np.random.Generator, source: Any, batch: int) -> list[np.ndarray]:
    indices = rng.integers(0, len(source), batch)
    out = []
    for i in indices:
        image = np.asarray(source[int(i)])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise errors.DatasetError(
                f"training image {int(i)}: expected uint8 [H, W, 3], got {image.dtype} "
                f"{image.shape}"
            )
        out.append(image)
    return out


def mae_batch(
    rng: np.random.Generator, source: Any, batch: int, size: int, scale=(0.2, 1.0)
) -> np.ndarray:
    """MAE's augmentation (random resized crop, scale 0.2-1, flip): uint8 [batch, size, size, 3]."""
    return np.stack([random_resized_crop(rng, im, size, scale) for im in _pick(rng, source, batch)])


def dino_batch(
    rng: np.random.Generator,
    source: Any,
    batch: int,
    global_size: int,
    local_size: int,
    num_local: int,
    global_scale=(0.4, 1.0),
    local_scale=(0.05, 0.4),
    jitter_prob: float = 0.8,
    grayscale_prob: float = 0.2,
    blur_probs=(1.0, 0.1, 0.5),
    solarize_prob: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """DINO's multi-crop: per view a random resized crop with flip, colour jitter (`jitter_prob`),
    grayscale (`grayscale_prob`), Gaussian blur with probability `blur_probs` = (first global
    view, second global view, local views), and solarisation (`solarize_prob`, second global view
    only); the defaults are DINO's.

    Returns:
      global: uint8 [batch, 2, global_size, global_size, 3].
      local: uint8 [batch, num_local, local_size, local_size, 3] (num_local may be 0).
    """
    colour = (jitter_prob, grayscale_prob)

    def view(image, size, scale, blur_prob, solarize_prob):
        crop = random_resized_crop(rng, image, size, scale)
        return apply_photometric(crop, draw_photometric(rng, *colour, blur_prob, solarize_prob))

    glob, loc = [], []
    for image in _pick(rng, source, batch):
        glob.append(
            [
                view(image, global_size, global_scale, blur_probs[0], 0.0),
                view(image, global_size, global_scale, blur_probs[1], solarize_prob),
            ]
        )
        loc.append(
            [view(image, local_size, local_scale, blur_probs[2], 0.0) for _ in range(num_local)]
        )
    glob = np.asarray(glob, np.uint8)
    loc = np.asarray(loc, np.uint8).reshape(batch, num_local, local_size, local_size, 3)
    return glob, loc
