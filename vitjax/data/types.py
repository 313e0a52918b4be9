"""The split types the dataset loaders of `vitjax.data.registry` return, one per kind."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from vitjax.data.bdd100k import FrameTracks


@dataclasses.dataclass
class RawSplit:
    """Images and label maps of one segmentation split before tiling (dropped once tiled).

    Attributes:
      images: uint8 [H, W, 3] per image.
      label_maps: uint8 [H, W] per image (255 = not evaluated).
      groups: group (city / class) of each image.
      image_ids: str per image.
    """

    images: list[np.ndarray]
    label_maps: list[np.ndarray]
    groups: list[int]
    image_ids: list[str]


@dataclasses.dataclass
class Video:
    """One annotated video.

    Attributes:
      name: video / sequence name.
      frame_rate: frames per second (gaps in seconds = gap / frame_rate).
      frame_hw: (H, W) of the frames.
      tracks: FrameTracks per frame (list position = frame index).
      load_frame: frame index -> uint8 [H, W, 3].
    """

    name: str
    frame_rate: float
    frame_hw: tuple[int, int]
    tracks: list[FrameTracks]
    load_frame: Callable[[int], np.ndarray]


@dataclasses.dataclass
class SceneSplit:
    """Train and test images of a scene-classification dataset (loaded lazily).

    Attributes:
      name: dataset name.
      class_names: C names.
      train_labels, test_labels: int32 [N_train], [N_test].
      load_train, load_test: index -> uint8 [H, W, 3].
      identity: JSON-able description of the images (store key).
    """

    name: str
    class_names: list[str]
    train_labels: np.ndarray
    test_labels: np.ndarray
    load_train: Any
    load_test: Any
    identity: dict[str, Any]


@dataclasses.dataclass
class ObjectTiles:
    """Tiles with dense object masks, chosen k per fine category.

    Attributes:
      images: uint8 [T, S, S, 3].
      fine_mask: uint8 [T, S, S]; 0 = background, 1..F fine ids.
      instance_mask: int32 [T, S, S]; 0 = background, instance ids unique within a tile.
      category: int32 [T] the fine category each tile was drawn for.
      source: int64 [T] index of the source image (tiles of one image share it).
      names: T tile names (`<crop>.<tile>_<row>_<col>`, DOTA-devkit style for FAIR1M).
      fine_to_super: int32 [F + 1] fine id -> supercategory id (index 0 = background -> 0).
      fine_names: F + 1 names (index 0 = background).
      super_names: S supercategory names (id s at index s - 1).
    """

    images: np.ndarray
    fine_mask: np.ndarray
    instance_mask: np.ndarray
    category: np.ndarray
    source: np.ndarray
    names: list[str]
    fine_to_super: np.ndarray
    fine_names: list[str]
    super_names: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])
