"""Cityscapes fine-annotation reader: leftImg8bit images with gtFine labels mapped to 19 trainIds.

Layout (root = the folder holding `leftImg8bit/` and `gtFine/`):

    leftImg8bit/{train,val,test}/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<same stem>_gtFine_labelIds.png
    gtFine/.../<same stem>_gtFine_labelTrainIds.png   (only if createTrainIdLabelImgs.py was run)

The labelId -> trainId table is the official one of `cityscapesscripts.helpers.labels` (copied here
because cityscapesscripts is only a test dependency; a test asserts the two are identical).

Example:
    reader = CityscapesReader("/data/cityscapes")
    sample = reader.samples("val")[0]
    image, labels = reader.load(sample)   # uint8 [1024, 2048, 3], uint8 [1024, 2048] in 0-18 / 255
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from vitjax.data import images
from vitjax.errors import DatasetError

IGNORE_LABEL = 255
NUM_CLASSES = 19


@dataclasses.dataclass(frozen=True)
class CityscapesLabel:
    """One row of the official label table (`id` -1 is never written to labelIds PNGs)."""

    name: str
    id: int
    train_id: int
    category: str
    ignore_in_eval: bool


# (name, labelId, trainId, category, ignoreInEval), in the order of cityscapesscripts' labels.py.
LABELS: tuple[CityscapesLabel, ...] = tuple(
    CityscapesLabel(*row)
    for row in (
        ("unlabeled", 0, 255, "void", True),
        ("ego vehicle", 1, 255, "void", True),
        ("rectification border", 2, 255, "void", True),
        ("out of roi", 3, 255, "void", True),
        ("static", 4, 255, "void", True),
        ("dynamic", 5, 255, "void", True),
        ("ground", 6, 255, "void", True),
        ("road", 7, 0, "flat", False),
        ("sidewalk", 8, 1, "flat", False),
        ("parking", 9, 255, "flat", True),
        ("rail track", 10, 255, "flat", True),
        ("building", 11, 2, "construction", False),
        ("wall", 12, 3, "construction", False),
        ("fence", 13, 4, "construction", False),
        ("guard rail", 14, 255, "construction", True),
        ("bridge", 15, 255, "construction", True),
        ("tunnel", 16, 255, "construction", True),
        ("pole", 17, 5, "object", False),
        ("polegroup", 18, 255, "object", True),
        ("traffic light", 19, 6, "object", False),
        ("traffic sign", 20, 7, "object", False),
        ("vegetation", 21, 8, "nature", False),
        ("terrain", 22, 9, "nature", False),
        ("sky", 23, 10, "sky", False),
        ("person", 24, 11, "human", False),
        ("rider", 25, 12, "human", False),
        ("car", 26, 13, "vehicle", False),
        ("truck", 27, 14, "vehicle", False),
        ("bus", 28, 15, "vehicle", False),
        ("caravan", 29, 255, "vehicle", True),
        ("trailer", 30, 255, "vehicle", True),
        ("train", 31, 16, "vehicle", False),
        ("motorcycle", 32, 17, "vehicle", False),
        ("bicycle", 33, 18, "vehicle", False),
        ("license plate", -1, -1, "vehicle", True),
    )
)

CLASS_NAMES: tuple[str, ...] = tuple(
    label.name
    for label in sorted(LABELS, key=lambda row: row.train_id)
    if 0 <= label.train_id < 255
)


def _train_id_lookup() -> np.ndarray:
    lookup = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for label in LABELS:
        if label.id >= 0 and 0 <= label.train_id < 255:
            lookup[label.id] = label.train_id
    return lookup


# labelId (0-255) -> trainId; ids outside the table (none in real data) are ignored too.
LABEL_ID_TO_TRAIN_ID: np.ndarray = _train_id_lookup()
LABEL_ID_TO_TRAIN_ID.setflags(write=False)

# `fmt: skip` below: a table of cities per split; one city per line would hide its shape.
SPLIT_CITIES: dict[str, tuple[str, ...]] = {
    "train": (
        "aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg",
        "hanover", "jena", "krefeld", "monchengladbach", "strasbourg", "stuttgart", "tubingen",
        "ulm", "weimar", "zurich",
    ),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn", "leverkusen", "mainz", "munich"),
}  # fmt: skip

_SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_IMAGE_SUFFIX = "_leftImg8bit.png"
_STEM_PATTERN = re.compile(r"^(?P<city>[a-z_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Maps a labelIds map to trainIds (0-18, 255 = ignore).

    Args:
      label_ids: integer [H, W] map of official labelIds.

    Returns:
      uint8 [H, W] trainIds.
    """
    label_ids = np.asarray(label_ids)
    if label_ids.dtype != np.uint8:
        out_of_range = (label_ids < 0) | (label_ids > 255)
        label_ids = np.where(out_of_range, 0, label_ids).astype(np.uint8)
    return LABEL_ID_TO_TRAIN_ID[label_ids]


@dataclasses.dataclass(frozen=True)
class CityscapesSample:
    """One image of a split; label paths are None when the file does not exist."""

    split: str
    city: str
    stem: str  # "<city>_<seq>_<frame>", e.g. "aachen_000000_000019"
    image_path: str
    label_ids_path: str | None
    train_ids_path: str | None


class CityscapesReader:
    """Reads Cityscapes images and fine labels as trainIds.

    Args:
      root: folder holding `leftImg8bit/` and `gtFine/`.
      label_source: 'auto' (use `_gtFine_labelTrainIds.png` when present, else map labelIds),
        'label_ids' (always map labelIds), or 'train_ids' (require the trainIds file).
      cross_check: when both label files exist, check that the trainIds file equals the mapped
        labelIds (costs one extra PNG decode) and raise DatasetError if not.
    """

    def __init__(
        self, root: str | os.PathLike, label_source: str = "auto", cross_check: bool = True
    ):
        if label_source not in ("auto", "label_ids", "train_ids"):
            raise ValueError(
                f"label_source={label_source!r}; expected 'auto', 'label_ids' or 'train_ids'"
            )
        self.root = os.fspath(root)
        self.label_source = label_source
        self.cross_check = cross_check

    def _split_dir(self, split: str, kind: str) -> str:
        if split not in _SPLIT_ALIASES:
            raise DatasetError(f"Cityscapes split {split!r}; expected one of train, val, test")
        return os.path.join(self.root, kind, _SPLIT_ALIASES[split])

    def cities(self, split: str) -> list[str]:
        """Sorted city folders present under `leftImg8bit/<split>/`."""
        image_dir = self._split_dir(split, "leftImg8bit")
        if not os.path.isdir(image_dir):
            raise DatasetError(
                f"{image_dir}: folder not found; expected the Cityscapes layout "
                "<root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png"
            )
        return sorted(
            name for name in os.listdir(image_dir) if os.path.isdir(os.path.join(image_dir, name))
        )

    def samples(self, split: str) -> list[CityscapesSample]:
        """Lists the images of a split, sorted by stem.

        Raises:
          DatasetError: missing split folder, or an image whose name does not match its city folder.
        """
        name = _SPLIT_ALIASES.get(split, split)
        image_dir = self._split_dir(split, "leftImg8bit")
        label_dir = self._split_dir(split, "gtFine")
        out = []
        for city in self.cities(split):
            for file_name in sorted(os.listdir(os.path.join(image_dir, city))):
                if not file_name.endswith(_IMAGE_SUFFIX):
                    continue
                stem = file_name[: -len(_IMAGE_SUFFIX)]
                match = _STEM_PATTERN.match(stem)
                if match is None or match["city"] != city:
                    raise DatasetError(
                        f"{os.path.join(image_dir, city, file_name)}: expected a name "
                        f"'{city}_<seq:06d>_<frame:06d>{_IMAGE_SUFFIX}' inside city folder {city!r}"
                    )
                label_base = os.path.join(label_dir, city, stem + "_gtFine_")
                label_ids = label_base + "labelIds.png"
                train_ids = label_base + "labelTrainIds.png"
                out.append(
                    CityscapesSample(
                        split=name,
                        city=city,
                        stem=stem,
                        image_path=os.path.join(image_dir, city, file_name),
                        label_ids_path=label_ids if os.path.isfile(label_ids) else None,
                        train_ids_path=train_ids if os.path.isfile(train_ids) else None,
                    )
                )
        return out

    def find(self, stems: list[str], split: str) -> list[CityscapesSample]:
        """Returns the samples with the given stems, in the given order.

        Raises:
          DatasetError: some stems are not in the split (all of them are listed).
        """
        by_stem = {s.stem: s for s in self.samples(split)}
        missing = [stem for stem in stems if stem not in by_stem]
        if missing:
            raise DatasetError(
                f"{self._split_dir(split, 'leftImg8bit')}: {len(missing)} listed images not found "
                f"(expected <city>/<stem>{_IMAGE_SUFFIX}): {', '.join(missing[:10])}"
            )
        return [by_stem[stem] for stem in stems]

    def load_image(self, sample: CityscapesSample) -> np.ndarray:
        """Returns the image as uint8 [H, W, 3] (1024 x 2048 in the real data)."""
        return images.read_image(sample.image_path)

    def load_label_ids(self, sample: CityscapesSample) -> np.ndarray:
        """Returns the raw labelIds map, uint8 [H, W], checked against the image size."""
        if sample.label_ids_path is None:
            raise DatasetError(
                f"{os.path.join(self._split_dir(sample.split, 'gtFine'), sample.city)}: no "
                f"{sample.stem}_gtFine_labelIds.png for image {sample.image_path}"
            )
        shape = images.image_size(sample.image_path)
        return images.read_label_map(sample.label_ids_path, shape, sample.image_path)

    def load_train_ids(self, sample: CityscapesSample) -> np.ndarray:
        """Returns trainIds, uint8 [H, W] with 0-18 and 255 = ignore.

        Raises:
          DatasetError: missing label file, size mismatch with the image, or (cross_check) a
            `_labelTrainIds.png` that disagrees with the mapped `_labelIds.png`.
        """
        use_train_ids = self.label_source == "train_ids" or (
            self.label_source == "auto" and sample.train_ids_path is not None
        )
        if not use_train_ids:
            return label_ids_to_train_ids(self.load_label_ids(sample))
        if sample.train_ids_path is None:
            raise DatasetError(
                f"{os.path.join(self._split_dir(sample.split, 'gtFine'), sample.city)}: no "
                f"{sample.stem}_gtFine_labelTrainIds.png (run createTrainIdLabelImgs.py or use "
                "label_source='auto')"
            )
        shape = images.image_size(sample.image_path)
        train_ids = images.read_label_map(sample.train_ids_path, shape, sample.image_path)
        invalid = (train_ids >= NUM_CLASSES) & (train_ids != IGNORE_LABEL)
        if invalid.any():
            raise DatasetError(
                f"{sample.train_ids_path}: values {np.unique(train_ids[invalid]).tolist()}; "
                f"expected trainIds 0-{NUM_CLASSES - 1} or {IGNORE_LABEL}"
            )
        if self.cross_check and sample.label_ids_path is not None:
            mapped = label_ids_to_train_ids(self.load_label_ids(sample))
            disagree = int(np.count_nonzero(mapped != train_ids))
            if disagree:
                raise DatasetError(
                    f"{sample.train_ids_path}: {disagree} of {mapped.size} pixels differ from the "
                    f"official trainId mapping of {sample.label_ids_path} (the trainIds file was "
                    "not made from it by createTrainIdLabelImgs.py, e.g. the two were resized "
                    "separately); read the official labelIds with label_source='label_ids', or "
                    "trust the trainIds file with cross_check=False"
                )
        return train_ids.astype(np.uint8)

    def load(self, sample: CityscapesSample) -> tuple[np.ndarray, np.ndarray]:
        """Returns (image uint8 [H, W, 3], trainIds uint8 [H, W])."""
        return self.load_image(sample), self.load_train_ids(sample)
