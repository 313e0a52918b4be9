"""What the scene-classification readers (UC Merced, RESISC45) share: samples, the class-folder
lookup, the seeded k-per-class split, and image loading with a size policy."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from vitjax.data import fewshot, images
from vitjax.errors import ConfigError, DatasetError


@dataclasses.dataclass(frozen=True)
class SceneSample:
    """One image of a scene-classification dataset."""

    class_name: str
    label: int  # index in the dataset's CLASS_NAMES
    stem: str  # e.g. 'airplane07'
    path: str


# Entries that archive tools, notebooks and file browsers add beside the data: `.ipynb_checkpoints/`,
# `.DS_Store`, macOS `__MACOSX/` and its `._<name>` resource forks (which carry the image suffix
# but are not images). They are skipped (and logged) rather than read or refused as classes.
_SYSTEM_NAMES = ("__MACOSX",)


def is_hidden(name: str) -> bool:
    """True for a file or folder name that tools add beside the data (dot names, `__MACOSX`)."""
    return name.startswith(".") or name in _SYSTEM_NAMES


def visible_entries(folder: str) -> list[str]:
    """Sorted names in `folder` without hidden ones (see `is_hidden`); skipped names are logged."""
    names = sorted(os.listdir(folder))
    hidden = [n for n in names if is_hidden(n)]
    if hidden:
        logging.info("%s: skipping hidden entries %s", folder, ", ".join(hidden))
    return [n for n in names if not is_hidden(n)]


def find_class_root(root: str, candidates: tuple[str, ...], class_names: tuple[str, ...]) -> str:
    """First of root/<candidate> that holds at least one known class folder."""
    for candidate in candidates:
        folder = os.path.join(root, candidate)
        if os.path.isdir(folder) and any(
            os.path.isdir(os.path.join(folder, name)) for name in class_names
        ):
            return folder
    expected = " or ".join(os.path.join(root, c, "<class>") for c in candidates)
    raise DatasetError(f"{root}: no class folders found; expected {expected}")


def split_samples(
    samples: list[SceneSample], split: str, train_per_class: int | None, seed: int
) -> list[SceneSample]:
    """'all', or the 'train' / 'test' halves of a seeded k-per-class split."""
    if split == "all":
        return samples
    if split not in ("train", "test"):
        raise ConfigError(f"split {split!r}; expected 'all', 'train' or 'test'")
    if train_per_class is None:
        raise ConfigError(f"split {split!r} needs train_per_class (k images per class) to be set")
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.class_name] = counts.get(s.class_name, 0) + 1
    short = {name: n for name, n in counts.items() if n <= train_per_class}
    if short:
        # Every image of such a class goes to train, so the test split has none of it.
        logging.warning(
            "train_per_class=%d: classes with no more images than that (all go to train, none "
            "to test): %s",
            train_per_class,
            ", ".join(f"{name} ({n})" for name, n in short.items()),
        )
    train, test = fewshot.split_per_class(samples, train_per_class, seed)
    return train if split == "train" else test


class SceneClassReader:
    """Base of the readers of `<root>/<class>/<image>` datasets with a fixed class list.

    Subclasses set `CLASS_NAMES`, `ROOT_CANDIDATES` (folders under `root` that may hold the class
    folders) and `IMAGE_SIZE`, and implement `_list_images()`.

    Args:
      root: the dataset folder (any of `ROOT_CANDIDATES` below it is found).
      image_size: (H, W) that `load_image` returns ("default" = the class's IMAGE_SIZE, None = as
        stored).
      size_policy: 'resize' (bicubic), 'pad' (zeros at the bottom/right) or 'none'.
      train_per_class: k of the seeded train split ('train'/'test' samples need it).
      seed: seed of that split.
    """

    CLASS_NAMES: tuple[str, ...] = ()
    ROOT_CANDIDATES: tuple[str, ...] = (".",)
    IMAGE_SIZE: tuple[int, int] = (256, 256)

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: tuple[int, int] | None | str = "default",
        size_policy: str = "resize",
        train_per_class: int | None = None,
        seed: int = 0,
    ):
        if size_policy not in images.SIZE_POLICIES:
            raise ConfigError(f"size_policy={size_policy!r}; expected {images.SIZE_POLICIES}")
        self.image_root = find_class_root(os.fspath(root), self.ROOT_CANDIDATES, self.CLASS_NAMES)
        self.image_size = self.IMAGE_SIZE if image_size == "default" else image_size
        self.size_policy = size_policy
        self.train_per_class = train_per_class
        self.seed = seed

    def _list_images(self) -> list[SceneSample]:
        raise NotImplementedError

    def _class_folders(self, dataset: str):
        """Yields (folder name, path, class index) of the class folders; unknown folders raise,
        hidden ones (`is_hidden`) are skipped with a logged note."""
        for folder in visible_entries(self.image_root):
            path = os.path.join(self.image_root, folder)
            if not os.path.isdir(path):
                continue
            if folder not in self.CLASS_NAMES:
                raise DatasetError(
                    f"{path}: unknown class folder; expected one of the "
                    f"{len(self.CLASS_NAMES)} {dataset} classes {', '.join(self.CLASS_NAMES)}"
                )
            yield folder, path, self.CLASS_NAMES.index(folder)

    def samples(self, split: str = "all") -> list[SceneSample]:
        """Images sorted by class index, then image; split 'all', 'train' or 'test'."""
        return split_samples(self._list_images(), split, self.train_per_class, self.seed)

    def load_image(self, sample: SceneSample) -> np.ndarray:
        """Returns uint8 [H, W, 3] at `image_size` per `size_policy`."""
        image = images.read_image(sample.path)
        return images.apply_size_policy(image, self.image_size, self.size_policy)

    def load(self, sample: SceneSample) -> tuple[np.ndarray, int]:
        """Returns (image uint8 [H, W, 3], class index)."""
        return self.load_image(sample), sample.label
