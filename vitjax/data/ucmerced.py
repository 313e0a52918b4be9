"""UC Merced Land Use reader (21 classes x 100 RGB TIFFs, 0.3 m pixels).

Layout: `UCMerced_LandUse/Images/<class>/<class><NN>.tif`, NN = 00-99. Most images are 256 x 256 but
44 have other shapes; `size_policy` brings them to `image_size` ('resize', bicubic, as TorchGeo
resizes to 256 x 256; 'pad', zero padding at the bottom/right; or 'none').

Class index = position in `CLASS_NAMES` (alphabetical, as TFDS `uc_merced` labels), whatever folders
exist. There is no official split: `samples('train')` / `samples('test')` is a seeded k-per-class split.

Example:
    reader = UCMercedReader("/data/UCMerced_LandUse", train_per_class=10, seed=0)
    train = reader.samples("train")           # 10 per class
    image = reader.load_image(train[0])       # uint8 [256, 256, 3]
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from vitjax.data import fewshot, images
from vitjax.errors import ConfigError, DatasetError

CLASS_NAMES: tuple[str, ...] = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
    "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
    "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
    "sparseresidential", "storagetanks", "tenniscourt",
)  # fmt: skip
IMAGE_SIZE = (256, 256)
_SUFFIXES = (".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class SceneSample:
    """One image of a scene-classification dataset."""

    class_name: str
    label: int  # index in the dataset's CLASS_NAMES
    stem: str  # e.g. 'airplane07'
    path: str


def find_class_root(root: str, candidates: tuple[str, ...], class_names: tuple[str, ...]) -> str:
    """First of root/<candidate> that holds at least one known class folder."""
    for candidate in candidates:
        folder = os.path.join(root, candidate)
        if os.path.isdir(folder) and any(
            os.path.isdir(os.path.join(folder, name)) for name in class_names
        ):
            return folder
    expected = " or ".join(os.path.join(root, c, "<class>") for c in candidates)
    raise DatasetError(f"{root}: no class folders found; expected {expected}")


def split_samples(
    samples: list[SceneSample], split: str, train_per_class: int | None, seed: int
) -> list[SceneSample]:
    """'all', or the 'train' / 'test' halves of a seeded k-per-class split."""
    if split == "all":
        return samples
    if split not in ("train", "test"):
        raise ConfigError(f"split {split!r}; expected 'all', 'train' or 'test'")
    if train_per_class is None:
        raise ConfigError(f"split {split!r} needs train_per_class (k images per class) to be set")
    train, test = fewshot.split_per_class(samples, train_per_class, seed)
    return train if split == "train" else test


class UCMercedReader:
    """Reads UC Merced images with fixed class indices.

    Args:
      root: `UCMerced_LandUse/`, its `Images/` folder, or the folder holding `UCMerced_LandUse/`.
      image_size: (H, W) that `load_image` returns (None = as stored).
      size_policy: 'resize', 'pad' or 'none' (see module docstring).
      train_per_class: k of the seeded train split ('train'/'test' samples need it).
      seed: seed of that split.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: tuple[int, int] | None = IMAGE_SIZE,
        size_policy: str = "resize",
        train_per_class: int | None = None,
        seed: int = 0,
    ):
        if size_policy not in images.SIZE_POLICIES:
            raise ConfigError(f"size_policy={size_policy!r}; expected {images.SIZE_POLICIES}")
        root = os.fspath(root)
        self.image_root = find_class_root(
            root, ("Images", ".", os.path.join("UCMerced_LandUse", "Images")), CLASS_NAMES
        )
        self.image_size = image_size
        self.size_policy = size_policy
        self.train_per_class = train_per_class
        self.seed = seed

    def samples(self, split: str = "all") -> list[SceneSample]:
        """Images sorted by (class index, file name); split 'all', 'train' or 'test'.

        Raises:
          DatasetError: a folder that is not one of the 21 classes.
        """
        out = []
        for folder in sorted(os.listdir(self.image_root)):
            path = os.path.join(self.image_root, folder)
            if not os.path.isdir(path):
                continue
            if folder not in CLASS_NAMES:
                raise DatasetError(
                    f"{path}: unknown class folder; expected one of the 21 UC Merced classes "
                    f"{', '.join(CLASS_NAMES)}"
                )
            for name in sorted(os.listdir(path)):
                stem, suffix = os.path.splitext(name)
                if suffix.lower() in _SUFFIXES:
                    out.append(
                        SceneSample(
                            folder, CLASS_NAMES.index(folder), stem, os.path.join(path, name)
                        )
                    )
        out.sort(key=lambda s: (s.label, s.stem))
        return split_samples(out, split, self.train_per_class, self.seed)

    def load_image(self, sample: SceneSample) -> np.ndarray:
        """Returns uint8 [H, W, 3] at `image_size` per `size_policy`."""
        image = images.read_image(sample.path)
        return images.apply_size_policy(image, self.image_size, self.size_policy)

    def load(self, sample: SceneSample) -> tuple[np.ndarray, int]:
        """Returns (image uint8 [H, W, 3], class index)."""
        return self.load_image(sample), sample.label
