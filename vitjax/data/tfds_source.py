"""Optional input route: a user's already-prepared TFDS dataset read through `tfds.data_source`.

`tfds.data_source` gives random access to ArrayRecord files with NumPy decoding, so no TensorFlow
is needed once the files exist (preparing them is not TensorFlow-free; do it elsewhere with
`tfds.builder(name, file_format='array_record').download_and_prepare()`). Needs the `tfds` extra
(`tensorflow-datasets`, `array-record`), imported only when a source is opened. The raw-file
readers are the default and need neither.

Supported: `cityscapes` (semantic_segmentation configs; labelIds mapped to trainIds), `uc_merced`,
`resisc45`. Refused with an explanation: `scene_parse150` (its annotations are the instance-task
masks, not the 0-150 semantic maps of ADEChallengeData2016) and the datasets without a builder.

Example:
    source = TFDSSource("uc_merced", "train", data_dir="~/tensorflow_datasets")
    example = source[0]          # {'image': uint8 [H, W, 3], 'label': int, 'filename': str}
    images = source.images       # len() / [i] -> uint8 [H, W, 3], an ImageSource for extraction
    labels, names = source.labels()  # without decoding the images

TFDS stores the examples in its own (hashed) order: sort by file name for a stable listing.
Nothing is ever downloaded or prepared here: a dataset missing from `data_dir` is an error, so the
user's folder is left as it was.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vitjax.data import cityscapes
from vitjax.errors import ConfigError, DatasetError

SUPPORTED: tuple[str, ...] = ("cityscapes", "uc_merced", "resisc45")
_REFUSED: dict[str, str] = {
    "scene_parse150": (
        "TFDS 'scene_parse150' stores the 2017 instance-task masks (R = instance category, "
        "G = instance id), not the 0-150 semantic maps of ADEChallengeData2016; use ADE20KReader "
        "on the extracted ADEChallengeData2016 folder"
    ),
    "fair1m": "FAIR1M has no TFDS builder; use FAIR1MReader",
    "bdd100k": "BDD100K MOT has no TFDS builder; use BDD100KReader",
    "mot17": "MOT17 has no TFDS builder; use MOT17Reader",
}
_REFUSED["ade20k"] = _REFUSED["scene_parse150"]


def _import_tfds():
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415 - optional dependency, imported lazily
    except ImportError as e:
        raise ConfigError(
            "reading a TFDS directory needs tensorflow_datasets and array_record "
            "(pip install 'vitjax[tfds]'); the raw-file readers need neither"
        ) from e
    return tfds


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _rgb(value: Any, where: str) -> np.ndarray:
    image = np.asarray(value)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise DatasetError(f"{where}: image {image.dtype} {image.shape}; expected uint8 [H, W, 3]")
    return image


class TFDSSource:
    """Random-access TFDS examples in the raw readers' conventions.

    Args:
      name: builder name, optionally with config/version ('cityscapes/semantic_segmentation').
      split: TFDS split ('train', 'validation', 'test').
      data_dir: TFDS data directory holding the prepared ArrayRecord files.

    Raises:
      ConfigError: a refused or unsupported builder, or tensorflow_datasets not installed.
      DatasetError: the dataset is not prepared in ArrayRecord format under data_dir.
    """

    def __init__(self, name: str, split: str, data_dir: str | os.PathLike | None = None):
        self.builder = name.split("/")[0].split(":")[0]
        if self.builder in _REFUSED:
            raise ConfigError(f"TFDS dataset {name!r} refused: {_REFUSED[self.builder]}")
        if self.builder not in SUPPORTED:
            raise ConfigError(f"TFDS dataset {name!r} unsupported; expected one of {SUPPORTED}")
        if self.builder == "cityscapes" and "stereo" in name:
            raise ConfigError(f"TFDS dataset {name!r}: only semantic_segmentation configs are read")
        tfds = _import_tfds()
        self.name = name
        self.split = split
        data_dir = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
        self.data_dir = data_dir
        self._tfds = tfds
        self._source = self._open()

    def _open(self, decoders: dict[str, Any] | None = None):
        # download=False: tfds.data_source would otherwise download and prepare a missing
        # dataset into the user's data_dir (and preparing needs TensorFlow).
        try:
            return self._tfds.data_source(
                self.name,
                split=self.split,
                data_dir=self.data_dir,
                download=False,
                decoders=decoders,
            )
        except Exception as e:  # noqa: BLE001 - tfds raises several types for a missing dataset
            raise DatasetError(
                f"{self.data_dir or '(default TFDS dir)'}: cannot open {self.name!r} split "
                f"{self.split!r} as an ArrayRecord data source; prepare it with "
                f"file_format='array_record' first ({e})"
            ) from e

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Returns one example.

        cityscapes: {'image': uint8 [H, W, 3], 'labels': uint8 [H, W] trainIds, 'image_id': str};
        uc_merced / resisc45: {'image': uint8 [H, W, 3], 'label': int, 'filename': str}.
        """
        example = self._source[index]
        where = f"{self.name} {self.split}[{index}]"
        try:
            if self.builder == "cityscapes":
                labels = np.asarray(example["segmentation_label"])
                labels = labels[..., 0] if labels.ndim == 3 else labels
                return {
                    "image": _rgb(example["image_left"], where),
                    "labels": cityscapes.label_ids_to_train_ids(labels),
                    "image_id": _text(example["image_id"]),
                }
            return {
                "image": _rgb(example["image"], where),
                "label": int(example["label"]),
                "filename": _text(example["filename"]),
            }
        except KeyError as e:
            raise DatasetError(f"{where}: example lacks feature {e}") from e

    def labels(self) -> tuple[np.ndarray, list[str]]:
        """(int64 [N] class indices, N file names) of uc_merced / resisc45, images not decoded.

        Raises:
          ConfigError: a builder without labels (cityscapes).
        """
        if self.builder == "cityscapes":
            raise ConfigError(f"TFDS dataset {self.name!r} has no image-level labels")
        skip = self._open(decoders={"image": self._tfds.decode.SkipDecoding()})
        labels, names = [], []
        for index in range(len(skip)):
            example = skip[index]
            try:
                labels.append(int(example["label"]))
                names.append(_text(example["filename"]))
            except KeyError as e:
                raise DatasetError(
                    f"{self.name} {self.split}[{index}]: example lacks feature {e}"
                ) from e
        return np.asarray(labels, np.int64), names

    @property
    def images(self) -> _Images:
        """The images alone: len() and [i] -> uint8 [H, W, 3]."""
        return _Images(self)


class _Images:
    def __init__(self, source: TFDSSource):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._source[index]["image"]
