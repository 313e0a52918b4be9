"""BDD100K MOT 2020 box-tracking reader, per-frame track arrays and frame-gap pairs.

Layout (root = the `bdd100k/` folder):

    images/track/{train,val,test}/<video>/<video>-<frame:07d>.jpg    frame numbers start at 1
    labels/box_track_20/{train,val}/<video>.json                     current release
    labels-20/box-track/{train,val}/<video>.json                     2020 challenge release

Each JSON is a list of frames: `name`, `videoName`, `frameIndex` (0-based; `index` in 2020 files),
`labels`: [{`id`, `category`, `attributes` {occluded, truncated, crowd} (capitalised in 2020 files),
`box2d` {x1, y1, x2, y2}}]. Missing `labels` / `attributes` mean none / false.

Categories: the 8 evaluated classes get ids 1-8 in the order of `CATEGORIES`; the distractors
(`other person`, `trailer`, `other vehicle`) keep the id of the class the toolkit maps them to and are
flagged `ignore`, as are `crowd` boxes (false positives over them are not penalised).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence

import numpy as np
from absl import logging

from vitjax.data import images
from vitjax.errors import DatasetError

# `fmt: skip` below: the eight names read as one row, in the order of the official list.
CATEGORIES: tuple[str, ...] = (
    "pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
DISTRACTORS: tuple[str, ...] = ("other person", "trailer", "other vehicle")
# Toolkit aliases (detection-style names) -> tracking names.
NAME_MAPPING: dict[str, str] = {
    "bike": "bicycle",
    "caravan": "car",
    "motor": "motorcycle",
    "person": "pedestrian",
    "van": "car",
}
IGNORED_MAPPING: dict[str, str] = {
    "other person": "pedestrian",
    "other vehicle": "car",
    "trailer": "truck",
}
SUPER_CATEGORIES: dict[str, tuple[str, ...]] = {
    "human": ("pedestrian", "rider"),
    "vehicle": ("car", "bus", "truck", "train"),
    "bike": ("motorcycle", "bicycle"),
}
DEFAULT_LABEL_DIRS: tuple[str, ...] = ("labels/box_track_20", "labels-20/box-track")
_FRAME_NUMBER = re.compile(r"-(\d+)\.[A-Za-z]+$")


@dataclasses.dataclass(frozen=True)
class FrameTracks:
    """The annotated instances of one frame."""

    boxes: np.ndarray  # float32 [K, 4] x1, y1, x2, y2 in pixels
    track_ids: np.ndarray  # int64 [K], unique within the frame, stable across a video
    category_ids: np.ndarray  # int32 [K]
    ignore: np.ndarray  # bool [K], True for distractors / crowd regions / filtered-out boxes

    @staticmethod
    def empty() -> FrameTracks:
        return FrameTracks(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.int64),
            np.zeros((0,), np.int32),
            np.zeros((0,), bool),
        )


def as_frame_tracks(frame) -> FrameTracks:
    """Accepts FrameTracks or a tuple (boxes, track_ids, category_ids[, ignore]) (the synthetic
    videos' format) and returns FrameTracks."""
    if isinstance(frame, FrameTracks):
        return frame
    boxes, track_ids, category_ids, *rest = frame
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ignore = np.asarray(rest[0], bool) if rest else np.zeros(len(boxes), bool)
    return FrameTracks(
        boxes, np.asarray(track_ids, np.int64), np.asarray(category_ids, np.int32), ignore
    )


@dataclasses.dataclass(frozen=True)
class TrackingPair:
    """Instances present in both frame_a and frame_b = frame_a + gap, in frame_a's order."""

    video: int
    gap: int
    frame_a: int
    frame_b: int
    track_ids: np.ndarray  # int64 [M]
    boxes_a: np.ndarray  # float32 [M, 4]
    boxes_b: np.ndarray  # float32 [M, 4]
    category_ids: np.ndarray  # int32 [M], from frame_a
    ignore_a: np.ndarray  # bool [M]
    ignore_b: np.ndarray  # bool [M]


def tracking_pairs(
    tracks: Sequence[Sequence[FrameTracks | tuple]], gaps: Sequence[int], keep_empty: bool = False
) -> list[TrackingPair]:
    """Enumerates (frame t, frame t + gap) pairs with the instances present in both.

    Args:
      tracks: per video, per frame (list position = frame index), FrameTracks or a tuple
        (boxes [K, 4], track_ids [K], category_ids [K][, ignore [K]]).
      gaps: positive frame gaps.
      keep_empty: also return pairs without a common instance.

    Returns:
      TrackingPairs ordered by video, then gap (in the order given), then frame.

    Raises:
      DatasetError: a track id repeated within one frame.

    Example:
      >>> f = lambda ids: (np.zeros((len(ids), 4)), ids, [1] * len(ids))
      >>> [(p.frame_a, p.frame_b, p.track_ids.tolist())
      ...  for p in tracking_pairs([[f([1, 2]), f([2]), f([1, 2])]], gaps=[2])]
      [(0, 2, [1, 2])]
    """
    if any(int(g) < 1 for g in gaps):
        raise ValueError(f"gaps={list(gaps)}; expected positive integers")
    out = []
    for video, frames in enumerate(tracks):
        frames = [as_frame_tracks(f) for f in frames]
        for t, frame in enumerate(frames):
            if len(np.unique(frame.track_ids)) != len(frame.track_ids):
                raise DatasetError(
                    f"video {video}, frame {t}: track ids {frame.track_ids.tolist()} are not unique"
                )
        for gap in gaps:
            gap = int(gap)
            for t in range(len(frames) - gap):
                a, b = frames[t], frames[t + gap]
                in_b = np.isin(a.track_ids, b.track_ids)
                if not in_b.any() and not keep_empty:
                    continue
                ia = np.flatnonzero(in_b)
                order_b = np.argsort(b.track_ids, kind="stable")
                ib = order_b[np.searchsorted(b.track_ids[order_b], a.track_ids[ia])]
                out.append(
                    TrackingPair(
                        video=video,
                        gap=gap,
                        frame_a=t,
                        frame_b=t + gap,
                        track_ids=a.track_ids[ia],
                        boxes_a=a.boxes[ia],
                        boxes_b=b.boxes[ib],
                        category_ids=a.category_ids[ia],
                        ignore_a=a.ignore[ia],
                        ignore_b=b.ignore[ib],
                    )
                )
    return out


def category_info(name: str) -> tuple[str, int, bool] | None:
    """(canonical name, class id 1-8, is_distractor) of a category name; None if unknown."""
    key = name.strip().lower()
    key = NAME_MAPPING.get(key, key)
    if key in CATEGORIES:
        return key, CATEGORIES.index(key) + 1, False
    if key in DISTRACTORS:
        return key, CATEGORIES.index(IGNORED_MAPPING[key]) + 1, True
    return None


@dataclasses.dataclass(frozen=True)
class BDDLabel:
    track_id: str  # as in the file, e.g. '00122062'
    category: str  # canonical name (after NAME_MAPPING), or the raw name if unknown
    category_id: int  # 1-8; distractors carry their mapped class; -1 if unknown
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    occluded: bool
    truncated: bool
    crowd: bool
    distractor: bool

    @property
    def ignore(self) -> bool:
        return self.distractor or self.crowd


@dataclasses.dataclass(frozen=True)
class BDDFrame:
    video: str
    frame_index: int  # 0-based
    name: str  # image file name
    image_path: str
    labels: tuple[BDDLabel, ...]


@dataclasses.dataclass(frozen=True)
class BDDVideo:
    split: str
    name: str
    label_path: str
    image_dir: str


def _flag(attributes: dict, key: str, path: str, where: str) -> bool:
    value = attributes.get(key, attributes.get(key.capitalize(), False))
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "0", "1"):
            raise DatasetError(f"{path}: {where}: attribute {key}={value!r}; expected a boolean")
        return value.lower() in ("true", "1")
    return bool(value)


def _parse_label(raw, path: str, where: str) -> BDDLabel:
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: {where}: label is {type(raw).__name__}; expected an object")
    if "id" not in raw or "category" not in raw:
        raise DatasetError(f"{path}: {where}: label lacks 'id' or 'category'")
    box = raw.get("box2d")
    if box is None and raw.get("poly2d") is not None:
        raise DatasetError(
            f"{path}: {where}: label {raw['id']!r} has poly2d but no box2d; expected the "
            "box-tracking labels (box_track_20, box2d {x1, y1, x2, y2}), not a segmentation or "
            "polygon label file"
        )
    try:
        coords = tuple(float(box[k]) for k in ("x1", "y1", "x2", "y2"))
    except (TypeError, KeyError, ValueError) as e:
        raise DatasetError(
            f"{path}: {where}: label {raw['id']!r} has box2d {box!r}; expected {{x1, y1, x2, y2}}"
        ) from e
    if coords[2] < coords[0] or coords[3] < coords[1]:
        raise DatasetError(f"{path}: {where}: label {raw['id']!r} has x2 < x1 or y2 < y1: {coords}")
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise DatasetError(f"{path}: {where}: attributes must be an object")
    info = category_info(str(raw["category"]))
    category, category_id, distractor = info if info else (str(raw["category"]), -1, False)
    return BDDLabel(
        track_id=str(raw["id"]),
        category=category,
        category_id=category_id,
        box=coords,
        occluded=_flag(attributes, "occluded", path, where),
        truncated=_flag(attributes, "truncated", path, where),
        crowd=_flag(attributes, "crowd", path, where),
        distractor=distractor,
    )


def parse_video_json(path: str | os.PathLike, image_dir: str | os.PathLike) -> list[BDDFrame]:
    """Parses one per-video label file (current or 2020 spelling).

    Args:
      path: `<video>.json`.
      image_dir: folder of the video's frames (`images/track/<split>/<video>`).

    Returns:
      Frames sorted by frame index.

    Raises:
      DatasetError: unreadable/malformed JSON, missing fields, duplicate frame indices, or a
        `videoName` other than the file's stem.
    """
    path, image_dir = os.fspath(path), os.fspath(image_dir)
    video = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: label file not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: malformed JSON ({e})") from e
    if isinstance(data, dict) and "frames" in data:  # scalabel 'Dataset' wrapper
        data = data["frames"]
    if not isinstance(data, list):
        raise DatasetError(f"{path}: top level is {type(data).__name__}; expected a list of frames")
    frames = []
    for position, raw in enumerate(data):
        where = f"frame {position}"
        if not isinstance(raw, dict):
            raise DatasetError(f"{path}: {where} is {type(raw).__name__}; expected an object")
        name = raw.get("name")
        index = raw.get("frameIndex", raw.get("index"))
        if index is None and name:
            match = _FRAME_NUMBER.search(str(name))
            index = int(match.group(1)) - 1 if match else None
        if index is None or not isinstance(index, int | str) or not str(index).isdigit():
            raise DatasetError(f"{path}: {where} has no valid 'frameIndex' (or 'index'): {index!r}")
        index = int(index)
        video_name = raw.get("videoName", video)
        if video_name != video:
            raise DatasetError(f"{path}: {where} has videoName {video_name!r}; expected {video!r}")
        name = str(name) if name else f"{video}-{index + 1:07d}.jpg"
        labels = raw.get("labels") or []
        if not isinstance(labels, list):
            raise DatasetError(f"{path}: {where}: 'labels' must be a list")
        parsed = tuple(
            _parse_label(lab, path, f"{where} label {i}") for i, lab in enumerate(labels)
        )
        ids = [lab.track_id for lab in parsed]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            # One track cannot hold two boxes in a frame; the pairs would be ambiguous.
            raise DatasetError(f"{path}: {where}: ids {repeated} appear twice in the same frame")
        frames.append(BDDFrame(video, index, name, os.path.join(image_dir, name), parsed))
    frames.sort(key=lambda fr: fr.frame_index)
    indices = [fr.frame_index for fr in frames]
    if len(set(indices)) != len(indices):
        raise DatasetError(f"{path}: duplicate frame indices in {indices}")
    return frames


class BDD100KReader:
    """Reads BDD100K MOT 2020 box-tracking labels and frames.

    Args:
      root: the `bdd100k/` folder (holding `images/` and `labels/` or `labels-20/`).
      label_dirs: candidate label folders relative to root, tried in order.

    Attributes:
      unknown_categories: (JSON path, category) of every label whose category is neither one of
        the 8 classes nor a distractor (such labels are left out of `load_tracks`, and logged).
    """

    def __init__(self, root: str | os.PathLike, label_dirs: Sequence[str] = DEFAULT_LABEL_DIRS):
        self.root = os.fspath(root)
        self.label_dirs = tuple(label_dirs)
        self.unknown_categories: list[tuple[str, str]] = []

    def label_dir(self, split: str) -> str:
        """The first existing `<label dir>/<split>` folder."""
        for d in self.label_dirs:
            folder = os.path.join(self.root, d, split)
            if os.path.isdir(folder):
                return folder
        expected = " or ".join(f"{self.root}/{d}/{split}/<video>.json" for d in self.label_dirs)
        raise DatasetError(f"{self.root}: no BDD100K box-tracking labels; expected {expected}")

    def samples(self, split: str) -> list[BDDVideo]:
        """Videos of a split ('train' or 'val') in sorted order."""
        label_dir = self.label_dir(split)
        image_root = os.path.join(self.root, "images", "track", split)
        return [
            BDDVideo(split, stem, os.path.join(label_dir, name), os.path.join(image_root, stem))
            for name in sorted(os.listdir(label_dir))
            if name.endswith(".json")
            for stem in [name[: -len(".json")]]
        ]

    def load_frames(self, video: BDDVideo) -> list[BDDFrame]:
        """Parses the video's labels (see `parse_video_json`)."""
        frames = parse_video_json(video.label_path, video.image_dir)
        for frame in frames:
            for label in frame.labels:
                if label.category_id < 0:
                    self.unknown_categories.append((video.label_path, label.category))
                    logging.warning(
                        "%s: frame %d: unknown category %r left out",
                        video.label_path,
                        frame.frame_index,
                        label.category,
                    )
        return frames

    def load_tracks(self, video: BDDVideo) -> tuple[list[FrameTracks], list[str]]:
        """Per-frame track arrays of a video.

        Returns:
          (tracks, track_names): tracks[t] is the FrameTracks of frame index t (empty for frames
          absent from the file); track id k is the k-th distinct `id` string met, track_names[k].
        """
        frames = self.load_frames(video)
        names: dict[str, int] = {}
        num_frames = frames[-1].frame_index + 1 if frames else 0
        tracks = [FrameTracks.empty()] * num_frames
        for frame in frames:
            labels = [lab for lab in frame.labels if lab.category_id > 0]
            if not labels:
                continue
            tracks[frame.frame_index] = FrameTracks(
                boxes=np.array([lab.box for lab in labels], np.float32),
                track_ids=np.array(
                    [names.setdefault(lab.track_id, len(names)) for lab in labels], np.int64
                ),
                category_ids=np.array([lab.category_id for lab in labels], np.int32),
                ignore=np.array([lab.ignore for lab in labels], bool),
            )
        return tracks, list(names)

    def load_image(self, frame: BDDFrame) -> np.ndarray:
        """Returns the frame as uint8 [H, W, 3] (720 x 1280 in the real data)."""
        return images.read_image(frame.image_path)
