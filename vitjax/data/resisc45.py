"""NWPU-RESISC45 reader (45 classes x 700 RGB JPEGs of 256 x 256).

Layout: `NWPU-RESISC45/<class>/<class>_<NNN>.jpg` with NNN = 001-700; re-uploads that drop the zero
padding (`airplane_1.jpg`) are accepted. Class index = position in the fixed `CLASS_NAMES` list
(alphabetical, as TFDS `resisc45`), not in whatever folders exist. No official split: `samples('train')`
/ `samples('test')` is a seeded k-per-class split.

Example:
    reader = RESISC45Reader("/data/NWPU-RESISC45", train_per_class=20)
    image, label = reader.load(reader.samples("train")[0])
"""

from __future__ import annotations

import os
import re

import numpy as np

from vitjax.data import images
from vitjax.data.ucmerced import SceneSample, find_class_root, split_samples
from vitjax.errors import ConfigError, DatasetError

CLASS_NAMES: tuple[str, ...] = (
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral",
    "church", "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert",
    "forest", "freeway", "golf_course", "ground_track_field", "harbor", "industrial_area",
    "intersection", "island", "lake", "meadow", "medium_residential", "mobile_home_park",
    "mountain", "overpass", "palace", "parking_lot", "railway", "railway_station",
    "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship", "snowberg",
    "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
    "thermal_power_station", "wetland",
)  # fmt: skip
IMAGE_SIZE = (256, 256)
_SUFFIXES = (".jpg", ".jpeg", ".png")


class RESISC45Reader:
    """Reads NWPU-RESISC45 images with the fixed 45-class index.

    Args:
      root: `NWPU-RESISC45/` or the folder holding it.
      image_size: (H, W) that `load_image` returns (None = as stored).
      size_policy: 'resize' (bicubic), 'pad' or 'none'.
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
        self.image_root = find_class_root(os.fspath(root), (".", "NWPU-RESISC45"), CLASS_NAMES)
        self.image_size = image_size
        self.size_policy = size_policy
        self.train_per_class = train_per_class
        self.seed = seed

    def samples(self, split: str = "all") -> list[SceneSample]:
        """Images sorted by (class index, image number); stems are zero-padded ('airplane_001').

        Raises:
          DatasetError: an unknown class folder, an image named other than `<class>_<number>`, or
            two files with the same number (e.g. `airplane_1.jpg` and `airplane_001.jpg`).
        """
        out = []
        for folder in sorted(os.listdir(self.image_root)):
            path = os.path.join(self.image_root, folder)
            if not os.path.isdir(path):
                continue
            if folder not in CLASS_NAMES:
                raise DatasetError(
                    f"{path}: unknown class folder; expected one of the 45 RESISC45 classes"
                )
            pattern = re.compile(rf"^{re.escape(folder)}_(\d+)$")
            numbered: dict[int, str] = {}
            for name in os.listdir(path):
                stem, suffix = os.path.splitext(name)
                if suffix.lower() not in _SUFFIXES:
                    continue
                match = pattern.match(stem)
                if match is None:
                    raise DatasetError(
                        f"{os.path.join(path, name)}: expected a file name '{folder}_<number>.jpg'"
                    )
                number = int(match.group(1))
                if number in numbered:
                    raise DatasetError(
                        f"{path}: {numbered[number]} and {name} are both image {number}"
                    )
                numbered[number] = name
            label = CLASS_NAMES.index(folder)
            out.extend(
                SceneSample(folder, label, f"{folder}_{n:03d}", os.path.join(path, numbered[n]))
                for n in sorted(numbered)
            )
        out.sort(key=lambda s: s.label)  # stable: keeps the numeric order within a class
        return split_samples(out, split, self.train_per_class, self.seed)

    def load_image(self, sample: SceneSample) -> np.ndarray:
        """Returns uint8 [H, W, 3] at `image_size` per `size_policy`."""
        image = images.read_image(sample.path)
        return images.apply_size_policy(image, self.image_size, self.size_policy)

    def load(self, sample: SceneSample) -> tuple[np.ndarray, int]:
        """Returns (image uint8 [H, W, 3], class index)."""
        return self.load_image(sample), sample.label
