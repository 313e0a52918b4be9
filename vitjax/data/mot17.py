"""MOT17 reader: sequence info, ground-truth boxes, and the official pedestrian/distractor filters.

Layout (root = the `MOT17/` folder or the folder holding it):

    {train,test}/MOT17-<NN>-<DET>/seqinfo.ini, img1/<frame:06d>.jpg, det/det.txt, gt/gt.txt (train)

`gt.txt` rows: frame, id, bb_left, bb_top, bb_width, bb_height, consider flag, class, visibility,
with frames, ids and box corners 1-based. This reader converts all three to 0-based: frame f -> f - 1,
id i -> i - 1, and the box to continuous 0-based corners x1 = bb_left - 1, y1 = bb_top - 1,
x2 = x1 + bb_width, y2 = y1 + bb_height (pixel column c covers [c, c + 1)). The shift does not change
IoU, so scores match the official (1-based) evaluation.

Official evaluation: only class 1 (pedestrian) with consider flag 1 is scored; predictions matched
to classes 2, 7, 8 or 12 (`DISTRACTOR_CLASSES`) are discarded; everything else is left out.
"""

from __future__ import annotations

import configparser
import dataclasses
import os

import numpy as np
from absl import logging

from vitjax.data import images
from vitjax.data.bdd100k import FrameTracks
from vitjax.errors import DatasetError

CLASS_NAMES: dict[int, str] = {
    1: "pedestrian",
    2: "person on vehicle",
    3: "car",
    4: "bicycle",
    5: "motorbike",
    6: "non-motorized vehicle",
    7: "static person",
    8: "distractor",
    9: "occluder",
    10: "occluder on the ground",
    11: "occluder full",
    12: "reflection",
}
PEDESTRIAN = 1
DISTRACTOR_CLASSES: tuple[int, ...] = (2, 7, 8, 12)
DETECTORS: tuple[str, ...] = ("DPM", "FRCNN", "SDP")
_SEQINFO_KEYS = ("name", "imDir", "frameRate", "seqLength", "imWidth", "imHeight", "imExt")


@dataclasses.dataclass(frozen=True)
class MOT17Sequence:
    split: str
    name: str  # folder name, e.g. 'MOT17-02-FRCNN'
    path: str
    frame_rate: float
    length: int  # number of frames
    width: int
    height: int
    image_dir: str  # 'img1'
    image_ext: str  # '.jpg'

    @property
    def detector(self) -> str:
        return self.name.rsplit("-", 1)[-1]


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """All rows of a gt.txt, 0-based (see the module docstring)."""

    frames: np.ndarray  # int32 [N]
    track_ids: np.ndarray  # int64 [N]
    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2
    consider: np.ndarray  # bool [N]
    classes: np.ndarray  # int32 [N]
    visibility: np.ndarray  # float32 [N] in [0, 1]

    def select(self, keep: np.ndarray) -> GroundTruth:
        return GroundTruth(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))


def parse_seqinfo(path: str | os.PathLike, split: str = "") -> MOT17Sequence:
    """Parses a `seqinfo.ini` ([Sequence] section).

    Raises:
      DatasetError: missing file, section or key, or a non-numeric number field.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: seqinfo.ini not found")
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keys are camelCase
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as e:
        raise DatasetError(f"{path}: malformed ini ({e})") from e
    if "Sequence" not in parser:
        raise DatasetError(f"{path}: no [Sequence] section")
    section = parser["Sequence"]
    missing = [k for k in _SEQINFO_KEYS if k not in section]
    if missing:
        raise DatasetError(
            f"{path}: [Sequence] lacks keys {missing}; expected {list(_SEQINFO_KEYS)}"
        )
    try:
        numbers = {
            "frame_rate": float(section["frameRate"]),
            "length": int(section["seqLength"]),
            "width": int(section["imWidth"]),
            "height": int(section["imHeight"]),
        }
    except ValueError as e:
        raise DatasetError(f"{path}: frameRate/seqLength/imWidth/imHeight not numeric ({e})") from e
    folder = os.path.dirname(path)
    if section["name"] != os.path.basename(folder):
        logging.warning("%s: name %r differs from its folder name", path, section["name"])
    return MOT17Sequence(
        split=split,
        name=os.path.basename(folder),
        path=folder,
        image_dir=section["imDir"],
        image_ext=section["imExt"],
        **numbers,
    )


def parse_gt(path: str | os.PathLike, num_frames: int | None = None) -> GroundTruth:
    """Parses a MOT gt.txt (9 comma-separated values per line) into 0-based arrays.

    Args:
      path: gt.txt.
      num_frames: the sequence length; frames outside 1..num_frames are an error.

    Raises:
      DatasetError: a line without 9 numeric values, frame/id < 1, negative size, visibility
        outside [0, 1], flag not 0/1, frame beyond the sequence, or an id repeated in a frame.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: gt.txt not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.strip().split(",")
            try:
                values = [float(v) for v in fields]
            except ValueError as e:
                raise DatasetError(f"{path}: line {line_number}: non-numeric value ({e})") from e
            if len(values) != 9:
                hint = (
                    "; 10 values is the MOT15 ground-truth / det.txt / tracker-output layout "
                    "(frame, id, x, y, w, h, conf, x, y, z), which has no class or visibility"
                    if len(values) == 10
                    else ""
                )
                raise DatasetError(
                    f"{path}: line {line_number} has {len(values)} values; expected 9 (frame, id, "
                    f"bb_left, bb_top, bb_width, bb_height, consider, class, visibility){hint}"
                )
            frame, track, _, _, w, h, flag, _, vis = values
            if frame < 1 or track < 1 or w < 0 or h < 0 or flag not in (0, 1) or not 0 <= vis <= 1:
                raise DatasetError(
                    f"{path}: line {line_number}: {line.strip()!r}; expected frame and id >= 1, "
                    "width/height >= 0, consider flag 0/1 and visibility in [0, 1]"
                )
            if num_frames is not None and frame > num_frames:
                raise DatasetError(
                    f"{path}: line {line_number}: frame {int(frame)} beyond seqLength {num_frames}"
                )
            rows.append(values)
    table = np.array(rows, np.float64).reshape(-1, 9)
    frames = table[:, 0].astype(np.int32) - 1
    track_ids = table[:, 1].astype(np.int64) - 1
    keys = frames.astype(np.int64) * (int(track_ids.max(initial=0)) + 1) + track_ids
    if len(np.unique(keys)) != len(keys):
        raise DatasetError(f"{path}: some id appears twice in the same frame")
    x1, y1 = table[:, 2] - 1, table[:, 3] - 1
    boxes = np.stack([x1, y1, x1 + table[:, 4], y1 + table[:, 5]], axis=1).astype(np.float32)
    return GroundTruth(
        frames=frames,
        track_ids=track_ids,
        boxes=boxes,
        consider=table[:, 6] == 1,
        classes=table[:, 7].astype(np.int32),
        visibility=table[:, 8].astype(np.float32),
    )


def pedestrian_mask(gt: GroundTruth, min_visibility: float = 0.0) -> np.ndarray:
    """Rows the official evaluation scores (class 1, consider 1) with visibility >= min_visibility."""
    return (gt.classes == PEDESTRIAN) & gt.consider & (gt.visibility >= min_visibility)


def distractor_mask(gt: GroundTruth) -> np.ndarray:
    """Rows whose class makes matched predictions be discarded (2, 7, 8, 12)."""
    return np.isin(gt.classes, DISTRACTOR_CLASSES)


class MOT17Reader:
    """Reads MOT17 sequences.

    Args:
      root: the `MOT17/` folder or a folder holding it.
      detector: keep only the copies of this detector ('DPM', 'FRCNN', 'SDP'); None keeps all
        three copies (same images and gt) of each sequence.
    """

    def __init__(self, root: str | os.PathLike, detector: str | None = "FRCNN"):
        root = os.fspath(root)
        if not os.path.isdir(os.path.join(root, "train")) and os.path.isdir(
            os.path.join(root, "MOT17")
        ):
            root = os.path.join(root, "MOT17")
        if detector is not None and detector not in DETECTORS:
            raise ValueError(f"detector={detector!r}; expected one of {DETECTORS} or None")
        self.root = root
        self.detector = detector

    def samples(self, split: str) -> list[MOT17Sequence]:
        """Sequences of 'train' or 'test' in name order.

        Raises:
          DatasetError: missing split folder or malformed seqinfo.ini.
        """
        split_dir = os.path.join(self.root, split)
        if split not in ("train", "test") or not os.path.isdir(split_dir):
            raise DatasetError(
                f"{split_dir}: folder not found; expected the MOT17 layout "
                "<root>/{train,test}/MOT17-<NN>-<DET>/{seqinfo.ini,img1/,gt/gt.txt}"
            )
        out = []
        for name in sorted(os.listdir(split_dir)):
            folder = os.path.join(split_dir, name)
            if not name.startswith("MOT17-") or not os.path.isdir(folder):
                continue
            if self.detector is not None and not name.endswith("-" + self.detector):
                continue
            out.append(parse_seqinfo(os.path.join(folder, "seqinfo.ini"), split))
        return out

    def load_gt(self, sequence: MOT17Sequence) -> GroundTruth:
        """All ground-truth rows of a (train) sequence, 0-based."""
        return parse_gt(os.path.join(sequence.path, "gt", "gt.txt"), sequence.length)

    def load_tracks(
        self, sequence: MOT17Sequence, min_visibility: float = 0.0, include_distractors: bool = True
    ) -> list[FrameTracks]:
        """Per-frame tracks (length = seqLength, list position = 0-based frame).

        Scored pedestrians (class 1, flag 1) are kept with ignore False, or ignore True when their
        visibility is below `min_visibility`; distractor classes are kept with ignore True (unless
        include_distractors is False); all other rows are left out. Category ids are MOT classes.
        """
        gt = self.load_gt(sequence)
        pedestrians = (gt.classes == PEDESTRIAN) & gt.consider
        keep = pedestrians | (distractor_mask(gt) if include_distractors else False)
        gt = gt.select(keep)
        ignore = ~pedestrian_mask(gt, min_visibility)
        tracks = []
        for frame in range(sequence.length):
            rows = np.flatnonzero(gt.frames == frame)
            tracks.append(
                FrameTracks(gt.boxes[rows], gt.track_ids[rows], gt.classes[rows], ignore[rows])
            )
        return tracks

    def image_path(self, sequence: MOT17Sequence, frame: int) -> str:
        """Path of 0-based `frame` (file names are 1-based: frame 0 -> img1/000001.jpg)."""
        return os.path.join(
            sequence.path, sequence.image_dir, f"{frame + 1:06d}{sequence.image_ext}"
        )

    def load_image(self, sequence: MOT17Sequence, frame: int) -> np.ndarray:
        """Returns 0-based `frame` as uint8 [H, W, 3], checked against seqinfo's size."""
        image = images.read_image(self.image_path(sequence, frame))
        if image.shape[:2] != (sequence.height, sequence.width):
            raise DatasetError(
                f"{self.image_path(sequence, frame)}: image is {image.shape[0]}x{image.shape[1]} "
                f"but seqinfo.ini says imHeight={sequence.height}, imWidth={sequence.width}"
            )
        return image
