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

import os

from vitjax.data.scenes import SceneClassReader, SceneSample, visible_entries

# `fmt: skip` below: 21 names in rows, in the dataset's (alphabetical) class order.
CLASS_NAMES: tuple[str, ...] = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
    "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
    "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
    "sparseresidential", "storagetanks", "tenniscourt",
)  # fmt: skip
IMAGE_SIZE = (256, 256)
_SUFFIXES = (".tif", ".tiff")


class UCMercedReader(SceneClassReader):
    """Reads UC Merced images with fixed class indices.

    Args:
      root: `UCMerced_LandUse/`, its `Images/` folder, or the folder holding `UCMerced_LandUse/`.
      image_size, size_policy, train_per_class, seed: see `scenes.SceneClassReader`.
    """

    CLASS_NAMES = CLASS_NAMES
    ROOT_CANDIDATES = ("Images", ".", os.path.join("UCMerced_LandUse", "Images"))
    IMAGE_SIZE = IMAGE_SIZE

    def _list_images(self) -> list[SceneSample]:
        """Images sorted by (class index, file name).

        Raises:
          DatasetError: a folder that is not one of the 21 classes.
        """
        out = []
        for folder, path, label in self._class_folders("UC Merced"):
            for name in visible_entries(path):
                stem, suffix = os.path.splitext(name)
                if suffix.lower() in _SUFFIXES:
                    out.append(SceneSample(folder, label, stem, os.path.join(path, name)))
        out.sort(key=lambda s: (s.label, s.stem))
        return out
