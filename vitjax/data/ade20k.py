"""ADE20K SceneParsing (ADEChallengeData2016) reader: images, 0-150 annotations, class names.

Layout (root = `ADEChallengeData2016/` or the folder holding it):

    images/{training,validation}/ADE_{train,val}_<8 digits>.jpg
    annotations/{training,validation}/<same stem>.png     single-channel, values 0-150
    objectInfo150.txt                                     Idx Ratio Train Val Name (tab-separated)

Two label views: 'raw' keeps 0-150 (0 = "other objects", not evaluated); 'reduced' is the common
toolkit convention label - 1 with 0 -> 255 (0-149 plus ignore).

Example:
    reader = ADE20KReader("/data/ADEChallengeData2016")
    sample = reader.samples("validation")[0]
    image, mask = reader.load(sample, view="raw")   # uint8 [H, W, 3], uint8 [H, W] in 0-150
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from vitjax.data import images
from vitjax.errors import DatasetError

NUM_CLASSES = 150
IGNORE_LABEL = 255

_SPLITS = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
}
_PREFIX = {"training": "ADE_train_", "validation": "ADE_val_"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One row of objectInfo150.txt."""

    index: int  # 1-150, the value in the annotation PNGs
    ratio: float  # fraction of annotated pixels
    train: int  # number of training images containing the class
    val: int
    names: tuple[str, ...]  # synonyms; names[0] is the usual short name

    @property
    def name(self) -> str:
        return self.names[0]


def parse_object_info(path: str | os.PathLike) -> list[ObjectInfo]:
    """Parses objectInfo150.txt (header `Idx Ratio Train Val Name`, tab-separated rows).

    Synonyms are separated by ',' (the challenge file) or ';' (some re-exports).

    Returns:
      Rows in file order; their indices are 1, 2, ... consecutively.

    Raises:
      DatasetError: missing file, wrong header, malformed row or non-consecutive index.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: objectInfo150.txt not found")
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    lines = [line for line in lines if line.strip()]
    if not lines or lines[0].split() != ["Idx", "Ratio", "Train", "Val", "Name"]:
        raise DatasetError(f"{path}: line 1 should be the header 'Idx Ratio Train Val Name'")
    rows = []
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) < 5:  # fall back to whitespace: the first four fields are numbers
            fields = line.split(None, 4)
        if len(fields) != 5:
            raise DatasetError(f"{path}: line {line_number} has {len(fields)} fields; expected 5")
        try:
            index, ratio = int(fields[0]), float(fields[1])
            train, val = int(fields[2]), int(fields[3])
        except ValueError as e:
            raise DatasetError(
                f"{path}: line {line_number}: expected integer Idx/Train/Val and float Ratio ({e})"
            ) from e
        if index != len(rows) + 1:
            raise DatasetError(
                f"{path}: line {line_number} has Idx {index}; expected {len(rows) + 1}"
            )
        separator = ";" if ";" in fields[4] else ","
        names = tuple(n.strip() for n in fields[4].split(separator) if n.strip())
        if not names:
            raise DatasetError(f"{path}: line {line_number} has an empty Name")
        rows.append(ObjectInfo(index, ratio, train, val, names))
    return rows


def reduce_zero_label(mask: np.ndarray) -> np.ndarray:
    """Raw 0-150 map -> 0-149 with 0 ("other objects") -> 255.

    Args:
      mask: integer [H, W] with values 0-150.

    Returns:
      uint8 [H, W].
    """
    mask = np.asarray(mask).astype(np.int32)
    return np.where(mask == 0, IGNORE_LABEL, mask - 1).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class ADE20KSample:
    split: str  # 'training' or 'validation'
    stem: str  # e.g. 'ADE_val_00000001'
    image_path: str
    annotation_path: str


class ADE20KReader:
    """Reads ADEChallengeData2016 images and 0-150 semantic annotations.

    Args:
      root: the `ADEChallengeData2016` folder, or a folder containing it.
    """

    def __init__(self, root: str | os.PathLike):
        root = os.fspath(root)
        nested = os.path.join(root, "ADEChallengeData2016")
        if not os.path.isdir(os.path.join(root, "images")) and os.path.isdir(nested):
            root = nested
        self.root = root

    def class_names(self) -> list[str]:
        """Short names from objectInfo150.txt; entry i is the name of label value i + 1."""
        return [row.name for row in self.object_info()]

    def object_info(self) -> list[ObjectInfo]:
        return parse_object_info(os.path.join(self.root, "objectInfo150.txt"))

    def samples(self, split: str) -> list[ADE20KSample]:
        """Lists a split ('training'/'train' or 'validation'/'val') in file-name order.

        Raises:
          DatasetError: missing folders, or an image without its annotation PNG.
        """
        if split not in _SPLITS:
            raise DatasetError(f"ADE20K split {split!r}; expected 'training' or 'validation'")
        split = _SPLITS[split]
        image_dir = os.path.join(self.root, "images", split)
        annotation_dir = os.path.join(self.root, "annotations", split)
        for folder in (image_dir, annotation_dir):
            if not os.path.isdir(folder):
                raise DatasetError(
                    f"{folder}: folder not found; expected the ADEChallengeData2016 layout "
                    f"images/{split}/{_PREFIX[split]}<8 digits>.jpg and "
                    f"annotations/{split}/<same stem>.png"
                )
        pattern = re.compile(re.escape(_PREFIX[split]) + r"\d+$")
        out = []
        for file_name in sorted(os.listdir(image_dir)):
            stem, suffix = os.path.splitext(file_name)
            if suffix.lower() not in _IMAGE_SUFFIXES or not pattern.match(stem):
                continue
            annotation = os.path.join(annotation_dir, stem + ".png")
            if not os.path.isfile(annotation):
                raise DatasetError(
                    f"{annotation}: annotation not found for image "
                    f"{os.path.join(image_dir, file_name)}"
                )
            out.append(ADE20KSample(split, stem, os.path.join(image_dir, file_name), annotation))
        return out

    def load_image(self, sample: ADE20KSample) -> np.ndarray:
        """Returns uint8 [H, W, 3]."""
        return images.read_image(sample.image_path)

    def load_annotation(self, sample: ADE20KSample, view: str = "raw") -> np.ndarray:
        """Returns the annotation, uint8 [H, W]: 'raw' 0-150, or 'reduced' 0-149 / 255.

        Raises:
          DatasetError: size differs from the image, values above 150, or not single-channel.
        """
        if view not in ("raw", "reduced"):
            raise ValueError(f"view={view!r}; expected 'raw' or 'reduced'")
        shape = images.image_size(sample.image_path)
        mask = images.read_label_map(sample.annotation_path, shape, sample.image_path)
        if mask.max(initial=0) > NUM_CLASSES:
            raise DatasetError(
                f"{sample.annotation_path}: values up to {int(mask.max())}; expected 0-{NUM_CLASSES}"
                " (the 2016 semantic annotations, not the instance-task masks)"
            )
        mask = mask.astype(np.uint8)
        return reduce_zero_label(mask) if view == "reduced" else mask

    def load(self, sample: ADE20KSample, view: str = "raw") -> tuple[np.ndarray, np.ndarray]:
        """Returns (image uint8 [H, W, 3], annotation uint8 [H, W])."""
        return self.load_image(sample), self.load_annotation(sample, view)
