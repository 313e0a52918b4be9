"""One `name -> loader` registry of every dataset the experiments read.

A dataset is registered once, by the module that reads it (`vitjax/data/loaders/<name>.py`: every
module there is imported on the first lookup), under a name and a *kind*; the kind fixes the
loader's signature and the split type it returns (`vitjax/data/types.py`):

  kind            loader signature                               returns
  segmentation    load(data_cfg, seed, split, per_group)         (RawSplit, class names)
  images          load(n, size, seed)                            uint8 [n, size, size, 3]
  tracking        load(cfg, seed)                                list[Video]
  scenes          load(name, dcfg, load_size, seed)              SceneSplit
  object_tiles    load(cfg, seed)                                ObjectTiles

The spec also owns what the experiments would otherwise branch on: the folder layout and the
root check (`DatasetSpec.check_root`), the protocol preset used when the dataset is read next to
another one, the group unit of its few-shot splits, and the fields that name its data in
feature-store keys. Experiments look a dataset up here and never test its name.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any

from vitjax import errors

SEGMENTATION = "segmentation"
IMAGES = "images"
TRACKING = "tracking"
SCENES = "scenes"
OBJECT_TILES = "object_tiles"
KINDS = (SEGMENTATION, IMAGES, TRACKING, SCENES, OBJECT_TILES)

# The package whose every module registers datasets (all imported on the first lookup): a new
# dataset is one module dropped there.
_BUILTIN = "vitjax.data.loaders"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    Attributes:
      name: the name configs use (`config.dataset`, `config.tracking.dataset`, ...).
      kind: one of `KINDS`.
      load: the loader (signature: see the module docstring).
      display: name in messages (e.g. "Cityscapes").
      layout: the folder layout the reader expects ("" for generated data, which has no root).
      subfolders: alternatives, each a sequence of folders under the root that must all exist.
      preset: `config.data` overrides giving the dataset's own protocol when it is read beside
        `config.dataset` (segmentation only; None: read with the main config's settings).
      group_unit: what a few-shot group is ("city", "class"; axis labels).
      private_prefix: `config.data` fields starting with this belong to this dataset only and
        are left out of other datasets' feature-store keys.
      identity: (cfg, seed) -> JSON-able dict naming where the data comes from (tracking keys).
      tfds_name: TFDS builder name of the dataset (scenes), "" if none.
      clear_cache: forgets what `load` cached in-process (None: nothing cached).
    """

    name: str
    kind: str
    load: Callable[..., Any]
    display: str = ""
    layout: str = ""
    subfolders: tuple[tuple[str, ...], ...] = ()
    preset: dict[str, Any] | None = None
    group_unit: str = "group"
    private_prefix: str = ""
    identity: Callable[..., dict[str, Any]] | None = None
    tfds_name: str = ""
    clear_cache: Callable[[], None] | None = None

    @property
    def needs_root(self) -> bool:
        """Whether the dataset is read from a folder (generated data is not)."""
        return bool(self.layout)

    def check_root(self, root: Any, field: str, note: str = "") -> str:
        """`check_root` with this dataset's name, layout and subfolders."""
        return check_root(
            root, field, self.display or self.name, self.layout, self.subfolders, note
        )


_REGISTRY: dict[tuple[str, str], DatasetSpec] = {}
_loaded_builtin = False


def register_dataset(
    name: str, kind: str, **spec: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering `load` as dataset `name` of `kind` (other fields: `DatasetSpec`).

    Example:
      @register_dataset("toy", kind="scenes", display="Toy")
      def load(name, dcfg, load_size, seed): ...

    Raises:
      ValueError: unknown kind, or `name` already registered for `kind` by another loader.
    """
    if kind not in KINDS:
        raise ValueError(f"register_dataset({name!r}): kind={kind!r}; expected one of {KINDS}")

    def decorate(load: Callable[..., Any]) -> Callable[..., Any]:
        old = _REGISTRY.get((kind, name))
        if old is not None and old.load is not load:
            raise ValueError(f"dataset {name!r} of kind {kind!r} is already registered")
        _REGISTRY[(kind, name)] = DatasetSpec(name, kind, load, **spec)
        return load

    return decorate


def unregister_dataset(name: str, kind: str) -> None:
    """Removes a registration (tests that register toy datasets clean up with it)."""
    _REGISTRY.pop((kind, name), None)


def _ensure_builtin() -> None:
    # Imported on first use rather than at module import: the loader modules import this one.
    global _loaded_builtin
    if not _loaded_builtin:
        _loaded_builtin = True
        package = importlib.import_module(_BUILTIN)
        for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
            importlib.import_module(f"{_BUILTIN}.{module}")


def list_datasets(kind: str | None = None) -> list[str]:
    """Sorted names of the registered datasets (of `kind`, or of every kind)."""
    _ensure_builtin()
    return sorted({n for k, n in _REGISTRY if kind is None or k == kind})


def get_dataset(name: str, kind: str, field: str = "dataset") -> DatasetSpec:
    """The spec of dataset `name` of `kind`.

    Args:
      field: the config field `name` comes from (for the message).

    Raises:
      ConfigError: no dataset `name` of `kind`; the message lists the known names.
    """
    _ensure_builtin()
    spec = _REGISTRY.get((kind, str(name)))
    if spec is None:
        known = ", ".join(list_datasets(kind))
        raise errors.ConfigError(
            f"{field}={name!r}: unknown {kind} dataset; expected one of {known} (a new dataset "
            "is registered with vitjax.data.registry.register_dataset, docs/extending.md)"
        )
    return spec


def clear_caches() -> None:
    """Forgets what every registered loader cached in-process."""
    _ensure_builtin()
    for spec in _REGISTRY.values():
        if spec.clear_cache is not None:
            spec.clear_cache()


def check_root(
    root: Any,
    field: str,
    dataset: str,
    layout: str,
    subfolders: Sequence[Sequence[str]] = (),
    note: str = "",
) -> str:
    """The dataset root named by config field `field`, checked to exist.

    Args:
      root: the configured root (str or path; "" when unset).
      field: the config field it comes from, e.g. "config.tracking.root".
      dataset: the dataset's display name.
      layout: the folder layout the reader expects (for the message).
      subfolders: alternatives, each a sequence of paths relative to the root that must all exist
        as folders; one complete alternative is required (none given: only the root is checked).
      note: appended to the message.

    Returns:
      the root as a str.

    Raises:
      ConfigError: the root is unset, not a folder, or holds none of the alternatives; the message
        names `--<field>=...` and the layout.
    """
    text = os.fspath(root) if root is not None else ""
    problem = None
    if not text:
        problem = "is not set"
    elif not os.path.isdir(text):
        problem = "is not a folder"
    elif subfolders and not any(
        all(os.path.isdir(os.path.join(text, sub)) for sub in option) for option in subfolders
    ):
        problem = "does not hold the " + dataset + " folders"
    if problem is not None:
        flag = field.removeprefix("config.")
        raise errors.ConfigError(
            f"{field}={text!r} {problem}: set --config.{flag}=<folder> to the {dataset} root; "
            f"expected the layout {layout}{note}"
        )
    return text
