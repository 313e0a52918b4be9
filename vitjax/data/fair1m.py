"""FAIR1M (v1.0 / v2.0) reader: oriented-box XML labels, category tables and polygon rasterisation.

Layout (root = the folder holding the split folders; names configurable via `split_dirs`):

    train/part1/{images,labelXml}/<n>.tif|.xml      v1.0 training release, part 1
    train/part2/{images,labelXml}/...                v1.0 training release, part 2
    validation/{images,labelXml}/...                 labelled validation split (v2.0 release)
    test/images/...                                  no labels
    {images,labelXmls}/...                           2021 release, flat (read as 'train')

The label folder is `labelXml` or `labelXmls` (the archives use both spellings).

Fine-grained ids: 0 = background, 1-37 in the order of `FINE_NAMES`; supercategories 1-5 in the order
of `SUPER_NAMES`. Object names are matched after trimming whitespace, case-insensitively; a name not
in the table is kept (fine_id -1) and reported, never silently dropped.

Rasterisation rule: coordinates are continuous pixel coordinates with (0, 0) the top-left corner of
the image, so pixel (row r, col c) covers [c, c+1) x [r, r+1). A pixel is painted when its centre
(c + 0.5, r + 0.5) lies inside the polygon (even-odd rule; a centre exactly on an edge belongs to the
polygon on its right/below side, so two polygons sharing an edge never both paint a pixel). An
axis-aligned box (x1, y1, x2, y2) with integer corners paints exactly (x2 - x1) * (y2 - y1) pixels.
Objects are painted in file order; later objects overwrite earlier ones. (The authors' research code
[R1], docs/datasets.md §4, used OpenCV's fillPoly on rounded corners, which also paints the pixels
the boundary touches.)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
from absl import logging

from vitjax.data import images
from vitjax.errors import DatasetError

SUPER_NAMES: tuple[str, ...] = ("Airplane", "Ship", "Vehicle", "Court", "Road")

# `fmt: skip` below: one row per coarse class with its fine classes, as in the paper's table.
_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Airplane",
        (
            "Boeing737", "Boeing747", "Boeing777", "Boeing787", "C919", "A220", "A321", "A330",
            "A350", "ARJ21", "other-airplane",
        ),
    ),
    (
        "Ship",
        (
            "Passenger Ship", "Motorboat", "Fishing Boat", "Tugboat", "Engineering Ship",
            "Liquid Cargo Ship", "Dry Cargo Ship", "Warship", "other-ship",
        ),
    ),
    (
        "Vehicle",
        (
            "Small Car", "Bus", "Cargo Truck", "Dump Truck", "Van", "Trailer", "Tractor",
            "Excavator", "Truck Tractor", "other-vehicle",
        ),
    ),
    ("Court", ("Basketball Court", "Tennis Court", "Football Field", "Baseball Field")),
    ("Road", ("Intersection", "Roundabout", "Bridge")),
)  # fmt: skip

# Index i holds the name of fine id i (0 = background).
FINE_NAMES: tuple[str, ...] = ("background",) + tuple(n for _, names in _TABLE for n in names)
NUM_FINE = len(FINE_NAMES) - 1  # 37
NUM_SUPER = len(SUPER_NAMES)  # 5
# fine id -> supercategory id (1-5); index 0 (background) -> 0.
FINE_TO_SUPER: np.ndarray = np.array(
    [0] + [SUPER_NAMES.index(sup) + 1 for sup, names in _TABLE for _ in names], dtype=np.int32
)
FINE_TO_SUPER.setflags(write=False)
_FINE_BY_KEY = {name.casefold(): i for i, name in enumerate(FINE_NAMES) if i > 0}

DEFAULT_SPLIT_DIRS: dict[str, tuple[str, ...]] = {
    # "." = the flat layout of the 2021 release (`images/`, `labelXmls/` at the root, as TorchGeo
    # first mirrored it): its images are training images.
    "train": ("train/part1", "train/part2", "train", "."),
    "validation": ("validation", "val"),
    "test": ("test",),
}
LABEL_DIR_NAMES = ("labelXml", "labelXmls")
_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg")
# The default layout, as named in error messages.
EXPECTED_LAYOUT = "<root>/{train/part1,train/part2,validation}/{images,labelXml|labelXmls}"


def fine_id(name: str) -> int:
    """Fine-grained id (1-37) of a category name (trimmed, case-insensitive); -1 if unknown."""
    return _FINE_BY_KEY.get(name.strip().casefold(), -1)


@dataclasses.dataclass(frozen=True)
class FAIR1MObject:
    name: str  # as written in the XML (trimmed)
    fine_id: int  # 1-37, or -1 for a name not in FINE_NAMES
    super_id: int  # 1-5, or -1
    points: np.ndarray  # float64 [4, 2] corners (x, y), closing point removed


@dataclasses.dataclass(frozen=True)
class FAIR1MAnnotation:
    path: str  # the XML file
    filename: str | None  # source/filename, e.g. '0.tif'
    width: int | None
    height: int | None
    objects: tuple[FAIR1MObject, ...]

    @property
    def unknown_names(self) -> list[str]:
        return [obj.name for obj in self.objects if obj.fine_id < 0]


def _text(element: ET.Element | None) -> str | None:
    return None if element is None or element.text is None else element.text.strip()


def _parse_int(path: str, root: ET.Element, field: str) -> int | None:
    value = _text(root.find(field))
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError as e:
        raise DatasetError(f"{path}: {field} is {value!r}; expected an integer") from e


def _parse_points(path: str, index: int, obj: ET.Element) -> np.ndarray:
    texts = [_text(p) for p in obj.findall("points/point")]
    try:
        points = np.array([[float(v) for v in t.split(",")] for t in texts], dtype=np.float64)
    except (AttributeError, ValueError) as e:
        raise DatasetError(
            f"{path}: object {index}: points {texts}; expected text 'x,y' with float x and y"
        ) from e
    if points.ndim != 2 or points.shape[1] != 2:
        raise DatasetError(f"{path}: object {index}: each point must be 'x,y'; got {texts}")
    if len(points) > 1 and np.allclose(points[0], points[-1]):
        points = points[:-1]
    if len(points) != 4 or not np.all(np.isfinite(points)):
        raise DatasetError(
            f"{path}: object {index} has {len(texts)} points; expected 4 corners followed by the "
            "first corner again (5 points)"
        )
    return points


def parse_xml(path: str | os.PathLike) -> FAIR1MAnnotation:
    """Parses one FAIR1M label XML.

    Returns:
      FAIR1MAnnotation with one FAIR1MObject per `objects/object`, in file order.

    Raises:
      DatasetError: missing/malformed XML, missing name, or points that are not 4 corners (+ the
        closing repeat of the first).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: label XML not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DatasetError(f"{path}: malformed XML ({e})") from e
    if root.tag != "annotation":
        raise DatasetError(f"{path}: root element is <{root.tag}>; expected <annotation>")
    objects = []
    for index, obj in enumerate(root.findall("objects/object")):
        name = _text(obj.find("possibleresult/name"))
        if not name:
            raise DatasetError(f"{path}: object {index} has no possibleresult/name")
        fid = fine_id(name)
        sid = int(FINE_TO_SUPER[fid]) if fid > 0 else -1
        objects.append(FAIR1MObject(name, fid, sid, _parse_points(path, index, obj)))
    return FAIR1MAnnotation(
        path=path,
        filename=_text(root.find("source/filename")),
        width=_parse_int(path, root, "size/width"),
        height=_parse_int(path, root, "size/height"),
        objects=tuple(objects),
    )


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside a polygon (the module docstring's rule).

    Args:
      points: float [N, 2] vertices (x, y) in pixel coordinates, N >= 3, not closed.
      shape: (H, W) of the canvas.

    Returns:
      bool [H, W].
    """
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    points = np.asarray(points, dtype=np.float64)
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    row_lo = max(0, math.ceil(y0.min() - 0.5))
    row_hi = min(height, math.ceil(y0.max() - 0.5))
    col_lo = max(0, math.floor(x0.min()))
    col_hi = min(width, math.ceil(x0.max()))
    if row_lo >= row_hi or col_lo >= col_hi:
        return mask
    centres_y = np.arange(row_lo, row_hi)[:, None] + 0.5  # [R, 1]
    # Half-open in y: an edge crosses the scanline if one end is at or below it and the other above.
    active = (np.minimum(y0, y1) <= centres_y) & (centres_y < np.maximum(y0, y1))  # [R, E]
    with np.errstate(divide="ignore", invalid="ignore"):
        crossings = x0 + (centres_y - y0) * (x1 - x0) / (y1 - y0)
    crossings = np.sort(np.where(active, crossings, np.inf), axis=1)
    counts = active.sum(axis=1)
    centres_x = np.arange(col_lo, col_hi)[None, :] + 0.5  # [1, C]
    inside = np.zeros((row_hi - row_lo, col_hi - col_lo), dtype=bool)
    for pair in range(int(counts.max()) // 2):
        valid = (2 * pair + 1 < counts)[:, None]
        left = crossings[:, 2 * pair, None]
        right = crossings[:, 2 * pair + 1, None]
        inside |= valid & (left <= centres_x) & (centres_x < right)
    mask[row_lo:row_hi, col_lo:col_hi] = inside
    return mask


@dataclasses.dataclass(frozen=True)
class FAIR1MMasks:
    fine: np.ndarray  # uint8 [H, W], 0 = background, 1-37
    super: np.ndarray  # uint8 [H, W], 0 = background, 1-5
    instance: np.ndarray  # int32 [H, W], 0 = background, k = the k-th object of the XML (1-based)


def rasterize(
    objects: tuple[FAIR1MObject, ...] | list[FAIR1MObject], shape: tuple[int, int]
) -> FAIR1MMasks:
    """Paints objects (in order, later over earlier) into fine, supercategory and instance masks.

    Objects with unknown names (fine_id -1) are not painted; their instance number is still used,
    so instance k is always the k-th object of the file.

    Args:
      objects: parsed objects.
      shape: (H, W) of the image.

    Returns:
      FAIR1MMasks.
    """
    fine = np.zeros(shape, dtype=np.uint8)
    instance = np.zeros(shape, dtype=np.int32)
    for number, obj in enumerate(objects, start=1):
        if obj.fine_id <= 0:
            continue
        inside = polygon_mask(obj.points, shape)
        fine[inside] = obj.fine_id
        instance[inside] = number
    return FAIR1MMasks(fine, FINE_TO_SUPER[fine].astype(np.uint8), instance)


@dataclasses.dataclass(frozen=True)
class FAIR1MSample:
    split: str
    part: str  # split folder relative to the root, e.g. 'train/part1'
    stem: str  # e.g. '0'
    image_path: str
    label_path: str | None  # None for unlabelled splits


def _stem_order(stem: str) -> tuple[int, int, str]:
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


class FAIR1MReader:
    """Reads FAIR1M images, oriented-box labels and rasterised masks.

    Args:
      root: folder holding the split folders.
      split_dirs: split name -> candidate folders (relative to root) holding `images/`; the ones
        that exist are that split's parts. Defaults to `DEFAULT_SPLIT_DIRS`.
      strict: raise on object names not in `FINE_NAMES` instead of reporting them.

    Attributes:
      unknown_names: (XML path, name) of every unknown object name met so far (also logged).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split_dirs: dict[str, tuple[str, ...]] | None = None,
        strict: bool = False,
    ):
        self.root = os.fspath(root)
        self.split_dirs = dict(DEFAULT_SPLIT_DIRS if split_dirs is None else split_dirs)
        self.strict = strict
        self.unknown_names: list[tuple[str, str]] = []
        if not os.path.isdir(self.root):
            raise DatasetError(
                f"{self.root}: FAIR1M root folder not found; expected the layout "
                f"{EXPECTED_LAYOUT} (test/images optional)"
            )

    def parts(self, split: str) -> list[str]:
        """Existing folders (relative to root) of a split, each holding `images/`."""
        if split not in self.split_dirs:
            raise DatasetError(
                f"FAIR1M split {split!r}; expected one of {sorted(self.split_dirs)} (see split_dirs)"
            )
        return [
            d for d in self.split_dirs[split] if os.path.isdir(os.path.join(self.root, d, "images"))
        ]

    def splits(self) -> list[str]:
        """Splits with at least one existing part."""
        return [split for split in self.split_dirs if self.parts(split)]

    @property
    def version(self) -> str:
        """'v2.0' when a labelled validation split exists (only the v2.0 release has one), else
        'v1.0'."""
        for part in self.parts("validation") if "validation" in self.split_dirs else []:
            if any(os.path.isdir(os.path.join(self.root, part, d)) for d in LABEL_DIR_NAMES):
                return "v2.0"
        return "v1.0"

    def samples(self, split: str) -> list[FAIR1MSample]:
        """Lists a split's images (numeric file-name order within each part).

        Raises:
          DatasetError: no folder of the split exists (the message lists the layout expected).
        """
        parts = self.parts(split)
        if not parts:
            expected = ", ".join(f"{self.root}/{d}/images" for d in self.split_dirs[split])
            raise DatasetError(
                f"{self.root}: no FAIR1M {split!r} folder found; expected one of {expected} "
                f"(with labels in a sibling {' or '.join(LABEL_DIR_NAMES)} folder)"
            )
        out = []
        for part in parts:
            # normpath: the flat layout's part "." must not show up in the paths.
            image_dir = os.path.normpath(os.path.join(self.root, part, "images"))
            label_dirs = [
                os.path.normpath(os.path.join(self.root, part, d)) for d in LABEL_DIR_NAMES
            ]
            names = [n for n in os.listdir(image_dir) if n.lower().endswith(_IMAGE_SUFFIXES)]
            for name in sorted(names, key=lambda n: _stem_order(os.path.splitext(n)[0])):
                stem = os.path.splitext(name)[0]
                label = next(
                    (
                        os.path.join(d, stem + ".xml")
                        for d in label_dirs
                        if os.path.isfile(os.path.join(d, stem + ".xml"))
                    ),
                    None,
                )
                out.append(FAIR1MSample(split, part, stem, os.path.join(image_dir, name), label))
        return out

    def load_image(self, sample: FAIR1MSample) -> np.ndarray:
        """Returns uint8 [H, W, 3]."""
        return images.read_image(sample.image_path)

    def load_annotation(self, sample: FAIR1MSample) -> FAIR1MAnnotation:
        """Parses the sample's XML; unknown names are recorded in `unknown_names` and logged.

        Raises:
          DatasetError: no label file, malformed XML, size differing from the image, or (strict)
            unknown names.
        """
        if sample.label_path is None:
            raise DatasetError(
                f"{os.path.join(self.root, sample.part)}: no {sample.stem}.xml in "
                f"{' or '.join(LABEL_DIR_NAMES)} for image {sample.image_path}"
            )
        annotation = parse_xml(sample.label_path)
        unknown = annotation.unknown_names
        if unknown:
            if self.strict:
                raise DatasetError(
                    f"{sample.label_path}: unknown category names {unknown}; expected names of "
                    "vitjax.data.fair1m.FINE_NAMES"
                )
            logging.warning("%s: unknown FAIR1M category names %s", sample.label_path, unknown)
            self.unknown_names.extend((sample.label_path, name) for name in unknown)
        if annotation.width is not None and annotation.height is not None:
            shape = images.image_size(sample.image_path)
            if shape != (annotation.height, annotation.width):
                raise DatasetError(
                    f"{sample.label_path}: size is {annotation.height}x{annotation.width} (HxW) "
                    f"but image {sample.image_path} is {shape[0]}x{shape[1]}"
                )
        return annotation

    def load_masks(self, sample: FAIR1MSample) -> FAIR1MMasks:
        """Rasterises the sample's objects at the image size (see `rasterize`)."""
        annotation = self.load_annotation(sample)
        return rasterize(annotation.objects, images.image_size(sample.image_path))


def crop_windows(height: int, width: int, size: int = 1000, stride: int | None = None):
    """Top-left corners of DOTA-style crops covering an image.

    Windows start at multiples of `stride` (default `size`, i.e. no overlap); when the last one
    would end short of the border, a final window flush with the border is added.

    Returns:
      list of (left, top) int pairs, row-major.
    """
    stride = size if stride is None else stride

    def starts(length: int) -> list[int]:
        out = list(range(0, max(length - size, 0) + 1, stride))
        if out[-1] + size < length:
            out.append(length - size)
        return out

    return [(left, top) for top in starts(height) for left in starts(width)]


_CROP_NAME = re.compile(r"^(?P<stem>.+)__(?P<rate>[0-9.]+)__(?P<left>\d+)___(?P<top>\d+)$")


def crop_name(image_stem: str, left: int, top: int, rate: float = 1) -> str:
    """DOTA-devkit crop name, e.g. crop_name('5239', 0, 0) == '5239__1__0___0'."""
    return f"{image_stem}__{rate:g}__{left}___{top}"


def parse_crop_name(name: str) -> tuple[str, float, int, int]:
    """Inverse of `crop_name` (a '.png' suffix is allowed): (image stem, rate, left, top)."""
    base = name[:-4] if name.lower().endswith(".png") else name
    match = _CROP_NAME.match(base)
    if match is None:
        raise DatasetError(f"{name}: expected a DOTA crop name '<image>__<rate>__<left>___<top>'")
    return match["stem"], float(match["rate"]), int(match["left"]), int(match["top"])
