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

from vitjax.data.scenes import SceneClassReader, SceneSample, visible_entries
from vitjax.errors import DatasetError

# `fmt: skip` below: 45 names in rows; one name per line would take a screen and a half.
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


class RESISC45Reader(SceneClassReader):
    """Reads NWPU-RESISC45 images with the fixed 45-class index.

    Args:
      root: `NWPU-RESISC45/` or the folder holding it.
      image_size, size_policy, train_per_class, seed: see `scenes.SceneClassReader`.
    """

    CLASS_NAMES = CLASS_NAMES
    ROOT_CANDIDATES = (".", "NWPU-RESISC45")
    IMAGE_SIZE = IMAGE_SIZE

    def _list_images(self) -> list[SceneSample]:
        """Images sorted by (class index, image number); stems are zero-padded ('airplane_001').

        Raises:
          DatasetError: an unknown class folder, an image named other than `<class>_<number>`, or
            two files with the same number (e.g. `airplane_1.jpg` and `airplane_001.jpg`).
        """
        out = []
        for folder, path, label in self._class_folders("RESISC45"):
            pattern = re.compile(rf"^{re.escape(folder)}_(\d+)$")
            numbered: dict[int, str] = {}
            for name in visible_entries(path):
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
            out.extend(
                SceneSample(folder, label, f"{folder}_{n:03d}", os.path.join(path, numbered[n]))
                for n in sorted(numbered)
            )
        out.sort(key=lambda s: s.label)  # stable: keeps the numeric order within a class
        return out
