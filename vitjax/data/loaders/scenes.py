"""Scene-classification datasets (kind "scenes"): synthetic scenes, UC Merced, NWPU-RESISC45.

Each loader returns the seeded train/test split of `dcfg` (`config.scalemae_knn.<name>`):
`train_per_class` train images per class, the rest test (capped at `test_per_class` per class
when > 0), every image resized to `load_size` when read. UC Merced and RESISC45 are read from
the raw files (`root`) or from a TFDS data_dir prepared as ArrayRecord (`tfds_data_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from vitjax import canonical, errors
from vitjax.data import (
    fewshot,
    images,
    registry,
    resisc45,
    scenes,
    synthetic,
    tfds_source,
    ucmerced,
)
from vitjax.data.registry import SCENES, register_dataset
from vitjax.data.types import SceneSplit

UCMERCED_LAYOUT = (
    "<root>/Images/<class>/<class><NN>.tif (or <root>/<class>/ or "
    "<root>/UCMerced_LandUse/Images/<class>/), one folder for each of the 21 classes"
)
RESISC45_LAYOUT = (
    "<root>/<class>/<class>_<NNN>.jpg (or <root>/NWPU-RESISC45/<class>/), one "
    "folder per each of the 45 classes"
)


def cap_per_class(items: Sequence[Any], labels: Sequence[int], cap: int) -> list[int]:
    """Indices of the first `cap` items of each class (all if cap <= 0)."""
    if cap <= 0:
        return list(range(len(items)))
    seen: dict[int, int] = {}
    keep = []
    for i, label in enumerate(labels):
        if seen.get(label, 0) < cap:
            keep.append(i)
            seen[label] = seen.get(label, 0) + 1
    return keep


@register_dataset("synthetic", kind=SCENES, display="synthetic scenes")
def load_synthetic(
    name: str, dcfg: ml_collections.ConfigDict, load_size: int, seed: int
) -> SceneSplit:
    """Synthetic scene classes (`synthetic.scene_classification`), generated at `image_size`."""
    del load_size  # generated at their own size
    side = int(dcfg.image_size)
    imgs, labels, class_names = synthetic.scene_classification(
        int(dcfg.n_per_class), size=(side, side), seed=seed
    )
    train_idx = fewshot.sample_per_group(labels.tolist(), int(dcfg.train_per_class), seed)
    test_idx = np.setdiff1d(np.arange(len(labels)), train_idx)
    test_idx = test_idx[cap_per_class(test_idx, labels[test_idx], int(dcfg.test_per_class))]
    # The generator's settings and the chosen indices (train/test_per_class) name the images.
    identity = {
        "n_per_class": int(dcfg.n_per_class),
        "image_size": side,
        "train": canonical.digest(np.asarray(train_idx).tolist()),
        "test": canonical.digest(np.asarray(test_idx).tolist()),
    }
    return SceneSplit(
        name,
        list(class_names),
        labels[train_idx].astype(np.int32),
        labels[test_idx].astype(np.int32),
        lambda i: imgs[train_idx[i]],
        lambda i: imgs[test_idx[i]],
        identity,
    )


def _raw_split(name: str, reader_cls, class_names, dcfg, size: int, seed: int) -> SceneSplit:
    """The split read from the raw files under `dcfg.root` (or from TFDS when configured)."""
    if "tfds_data_dir" in dcfg and dcfg.tfds_data_dir:
        return _tfds_split(name, class_names, dcfg, size, seed)
    spec = registry.get_dataset(name, SCENES)
    root = spec.check_root(dcfg.root, f"config.scalemae_knn.{name}.root")
    reader = reader_cls(
        root,
        image_size=(size, size),
        train_per_class=int(dcfg.train_per_class),
        seed=seed,
    )
    train = reader.samples("train")
    test = reader.samples("test")
    test = [test[i] for i in cap_per_class(test, [s.label for s in test], int(dcfg.test_per_class))]
    if not train or not test:
        raise errors.DatasetError(f"{dcfg.root}: {name} has no train or no test image")
    return SceneSplit(
        name,
        list(class_names),
        np.array([s.label for s in train], np.int32),
        np.array([s.label for s in test], np.int32),
        lambda i: reader.load_image(train[i]),
        lambda i: reader.load_image(test[i]),
        {
            "root": os.path.realpath(root),
            "train": canonical.digest([s.stem for s in train]),
            "test": canonical.digest([s.stem for s in test]),
        },
    )


def _tfds_split(
    name: str, class_names: Sequence[str], dcfg: ml_collections.ConfigDict, size: int, seed: int
) -> SceneSplit:
    """The split from a TFDS data_dir prepared as ArrayRecord (`dcfg.tfds_data_dir`).

    The examples are sorted by (label, file name), as the raw readers list them, so the seeded
    split and the images (resized to `size` the same way) are the raw-file route's.
    """
    spec = registry.get_dataset(name, SCENES)
    data_dir = os.path.expanduser(str(dcfg.tfds_data_dir))
    source = tfds_source.TFDSSource(spec.tfds_name, "train", data_dir=data_dir)
    labels, file_names = source.labels()
    bad = [int(v) for v in labels if not 0 <= v < len(class_names)]
    if bad:
        raise errors.DatasetError(
            f"{data_dir}: {spec.tfds_name} labels {sorted(set(bad))}; expected 0-"
            f"{len(class_names) - 1} ({name} has {len(class_names)} classes)"
        )
    # SceneSample.path holds the example's index in the TFDS source.
    samples = [
        scenes.SceneSample(class_names[label], int(label), os.path.splitext(file)[0], str(i))
        for i, (label, file) in enumerate(zip(labels, file_names))
    ]
    samples.sort(key=lambda s: (s.label, s.stem))
    k = int(dcfg.train_per_class)
    train = scenes.split_samples(samples, "train", k, seed)
    test = scenes.split_samples(samples, "test", k, seed)
    test = [test[i] for i in cap_per_class(test, [s.label for s in test], int(dcfg.test_per_class))]
    if not train or not test:
        raise errors.DatasetError(f"{data_dir}: {spec.tfds_name} has no train or no test image")

    def load(sample: scenes.SceneSample) -> np.ndarray:
        return images.apply_size_policy(source[int(sample.path)]["image"], (size, size), "resize")

    return SceneSplit(
        name,
        list(class_names),
        np.array([s.label for s in train], np.int32),
        np.array([s.label for s in test], np.int32),
        lambda i: load(train[i]),
        lambda i: load(test[i]),
        {
            "tfds": spec.tfds_name,
            "tfds_data_dir": os.path.realpath(data_dir),
            "train": canonical.digest([s.stem for s in train]),
            "test": canonical.digest([s.stem for s in test]),
        },
    )


_CLASS_NAMES = {"ucmerced": ucmerced.CLASS_NAMES, "resisc45": resisc45.CLASS_NAMES}


@register_dataset(
    "ucmerced", kind=SCENES, display="ucmerced", layout=UCMERCED_LAYOUT, tfds_name="uc_merced"
)
def load_ucmerced(name: str, dcfg: ml_collections.ConfigDict, load_size: int, seed: int):
    """UC Merced Land Use (21 classes, 100 images each)."""
    return _raw_split(name, ucmerced.UCMercedReader, _CLASS_NAMES[name], dcfg, load_size, seed)


@register_dataset(
    "resisc45", kind=SCENES, display="resisc45", layout=RESISC45_LAYOUT, tfds_name="resisc45"
)
def load_resisc45(name: str, dcfg: ml_collections.ConfigDict, load_size: int, seed: int):
    """NWPU-RESISC45 (45 classes, 700 images each)."""
    return _raw_split(name, resisc45.RESISC45Reader, _CLASS_NAMES[name], dcfg, load_size, seed)
