"""Experiments: one module per experiment of the paper, looked up by name.

How to add an experiment (the whole framework in five points):

1. Write `vitjax/experiments/<name>.py` with one function registered under `<name>`::

       from vitjax import experiments

       @experiments.register("my_experiment")
       def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
           for model in ctx.models:                       # list of ModelHandle
               feats = ctx.features(model, images, key={"split": "train"})
               ...
           path = ctx.figure_path("curve")                # <workdir>/figures/my_experiment_curve.png
           plotting.line_plot(path, ...)
           return experiments.Result(
               tables={"scores": [{"model": m, "miou": 0.5}, ...]},   # rows of scalars -> one CSV each
               figures={"curve": path},
               text={"scores": "One sentence on what the table shows.",
                     "curve": "One sentence on what the figure shows."},
               scalars={"best_miou": 0.5})

   The module is found by its `@experiments.register("<name>")` decorator (read from the source,
   not imported) and imported on first use of the name (`get("my_experiment")`), so nothing else
   needs editing. Modules without a registered function are helpers, whatever their name. Its settings live in `config.<name>` (a sub-ConfigDict, given to `run` as `cfg`); shared
   settings (dataset, tiling, k-NN, probe) are read from `ctx.config`. Every k-NN search goes
   through `common.knn_search(queries, database, k, ctx.config.knn, ctx.mesh)`, which applies the
   run's block sizes, compute dtype and device mesh.
2. Put every protocol number in `cfg` with the paper's value as default (in `configs/common.py`).
3. Use `ctx.features` for all model forward passes: it goes through the FeatureStore under the
   workdir, so repeated runs and other experiments reuse extracted features. Always pass a `key`
   naming everything that shaped the images (dataset, split, transform, level).
4. `ctx.rng(*names)` gives a numpy Generator derived from the run seed and the names: results are
   reproducible from `config.seed`. `ctx.log(msg)` logs with the experiment's name;
   `ctx.progress(iterable, total, what)` logs items/s and ETA for long loops.
5. `vitjax.run.run(config, workdir)` runs the experiments named in `config.experiments`, caches each
   Result under `<workdir>/cache/` keyed by a hash of the experiment's config, the shared config and
   the models (a finished experiment is not recomputed), and writes `results.json`, one CSV per
   table under `tables/`, figures under `figures/` and `report.md`. Under
   `jax.distributed.initialize()` every process runs every experiment (extraction and sharded
   k-NN need all of them), but only process 0 writes: the others draw their figures into a
   scratch folder (`ctx.figure_path` points there) and wait for process 0 at the end.

Shared helpers live in `vitjax/experiments/common.py` (dataset loading and tiling, patch features,
k-NN / linear-probe predictions, mIoU scoring, variance order); `vitjax/plotting.py` draws line
plots and heatmaps. Run one experiment with `--config.experiments=<name>`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib
import os
import pkgutil
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from vitjax import canonical, errors, extract
from vitjax.progress import Progress

ExperimentFn = Callable[["Context", ml_collections.ConfigDict], "Result"]

# `Result.scalars` key: inputs the experiment skipped (e.g. a missing dataset root). A result with
# skipped inputs is reported but not cached, so a later run with the inputs present recomputes it.
SKIPPED_INPUTS = "skipped_inputs"

_REGISTRY: dict[str, ExperimentFn] = {}


def register(name: str) -> Callable[[ExperimentFn], ExperimentFn]:
    """Registers an experiment function under `name` (decorator)."""

    def decorator(fn: ExperimentFn) -> ExperimentFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise errors.ConfigError(f"experiment {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _is_register(node: ast.expr) -> bool:
    """Whether a decorator is `register("name")` or `experiments.register("name")`."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return False
    func = node.func
    named = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return named == "register" and isinstance(node.args[0].value, str)


def declared_experiments(folder: str, package: str) -> dict[str, str]:
    """Experiment name -> module, read from the `@register("name")` decorators in `folder`.

    The modules are parsed, not imported (importing every experiment would load every dataset
    and model dependency). A module without a registered function is a helper, whatever its
    name; a module may register several experiments.

    Args:
      folder: directory of the package's modules.
      package: the package's dotted name (prefix of the returned module names).
    """
    found: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules([folder]), key=lambda m: m.name):
        path = os.path.join(folder, f"{info.name}.py")
        if info.ispkg or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    if _is_register(decorator):
                        found.setdefault(decorator.args[0].value, f"{package}.{info.name}")
    return found


@functools.cache
def _declared() -> dict[str, str]:
    return declared_experiments(__path__[0], __name__)


def known() -> list[str]:
    """Names of every experiment: registered ones plus those declared in this package."""
    return sorted(set(_declared()) | set(_REGISTRY))


def get(name: str) -> ExperimentFn:
    """Returns the experiment function registered as `name`, importing its module if needed.

    Raises:
      ConfigError: if no experiment has that name; the message lists the known ones.
    """
    if name not in _REGISTRY and name in _declared():
        importlib.import_module(_declared()[name])
    if name not in _REGISTRY:
        raise errors.ConfigError(
            f"config.experiments names an unknown experiment {name!r}; known: {', '.join(known())}"
        )
    return _REGISTRY[name]


@dataclasses.dataclass
class ModelHandle:
    """One model under evaluation.

    Attributes:
      name: unique display name, e.g. `dino_vitb16` (suffixed `-2` on duplicates).
      module: the flax.linen VisionTransformer.
      params: its float32 parameters.
      spec: its `models.ModelSpec`.
      random_weights: True when no checkpoint was given and the weights are random.
      checkpoint: the checkpoint directory, or None for random weights.
    """

    name: str
    module: Any
    params: Any
    spec: Any
    random_weights: bool
    checkpoint: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the model (what the result cache and results.json record)."""
        spec = self.spec.to_dict() if hasattr(self.spec, "to_dict") else dict(vars(self.spec))
        return {
            "name": self.name,
            "family": spec.get("family"),
            "size": spec.get("size"),
            "patch_size": spec.get("patch_size"),
            "depth": spec.get("depth"),
            "width": spec.get("width"),
            "weights_hash": spec.get("weights_hash"),
            "random_weights": self.random_weights,
            "checkpoint": self.checkpoint,
            "spec": spec,
        }


@dataclasses.dataclass
class Result:
    """What an experiment returns.

    Attributes:
      tables: table name -> rows; each row a flat dict of str/int/float (written as one CSV).
      figures: figure name -> PNG path (absolute, or relative to the workdir).
      text: table or figure name -> one sentence saying what it shows (used as report caption);
        the key "summary" is printed under the experiment's heading.
      scalars: any other JSON-able numbers worth recording.
      warnings: one sentence per partly empty input or ignored setting (e.g. a level with no
        queries, a removal count at or above the feature width); logged and shown in the report.
        `Context.warn` collects them during the run, and the runner appends them here.
    """

    tables: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    figures: dict[str, str] = dataclasses.field(default_factory=dict)
    text: dict[str, str] = dataclasses.field(default_factory=dict)
    scalars: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        empty = {f.name: f.default_factory() for f in dataclasses.fields(cls)}
        return cls(**{name: d.get(name, value) for name, value in empty.items()})


# Kept under these names for the experiments that call them; the one implementation (and its NaN
# policy) is vitjax.canonical.
to_jsonable = canonical.to_jsonable
stable_hash = canonical.digest


KNN_COMPUTE_DTYPES = ("float32", "bfloat16")


def knn_compute_dtype(knn_cfg: ml_collections.ConfigDict) -> str:
    """`config.knn.compute_dtype` (matmul input dtype of the k-NN search), checked.

    Raises:
      ConfigError: on any other value than those of `KNN_COMPUTE_DTYPES`.
    """
    value = knn_cfg.compute_dtype
    if value not in KNN_COMPUTE_DTYPES:
        raise errors.ConfigError(
            f"config.knn.compute_dtype={value!r}: expected one of {KNN_COMPUTE_DTYPES}"
        )
    return value


def images_digest(images: np.ndarray) -> str:
    """sha256 hex digest of a uint8 [N, H, W, 3] array's shape and bytes (streamed in slices).

    The same digest `vitjax.extract` keys un-keyed arrays by, so one image array has one name.
    """
    return extract.images_digest(images)


def _is_frozen(array: np.ndarray) -> bool:
    """True when no array in `array`'s chain of bases is writeable and the chain ends in an
    array that owns its memory: its bytes cannot change behind our back (np.memmap and arrays
    over foreign buffers are not frozen, since the file or buffer may change)."""
    node: Any = array
    while isinstance(node, np.ndarray):
        if node.flags.writeable:
            return False
        node = node.base
    return node is None


class DigestMemo:
    """`images_digest` of image arrays, computed once per frozen array object.

    Hashing tens of GB of tiles again for every model and split costs more than the forward pass
    of a small model, so the digest of a frozen array (read-only, over memory it owns, see
    `_is_frozen`) is kept while the array lives, keyed by its identity. Any other array is hashed
    on every call: its content may have changed since. Thread-safe.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[weakref.ref, str]] = {}
        self.computed = 0  # digests computed (not served from the memo)

    def digest(self, images: np.ndarray) -> str:
        if not _is_frozen(images):
            self.computed += 1
            return images_digest(images)
        key = id(images)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0]() is images:
            return entry[1]
        digest = images_digest(images)
        self.computed += 1

        def forget(ref: weakref.ref, key: int = key) -> None:
            with self._lock:
                if self._entries.get(key, (None,))[0] is ref:
                    del self._entries[key]

        with self._lock:
            self._entries[key] = (weakref.ref(images, forget), digest)
        return digest


class Context:
    """What an experiment may use: models, feature store, workdir, seed, logging.

    Attributes:
      models: list of ModelHandle.
      store: the FeatureStore (under `<workdir>/features`).
      workdir: output folder (str).
      seed: run seed (config.seed).
      config: the whole (locked) run config, for shared sections such as `data`, `knn`, `probe`.
      name: the name of the experiment being run.
      mesh: `jax.sharding.Mesh` over every device of every process, shared by extraction and
        the k-NN searches; None on a single device.
      figure_dir: where `figure_path` puts figures (`<workdir>/figures`; a scratch folder on
        processes other than 0, which write nothing under the workdir).
      digests: the `DigestMemo` of image arrays, shared by every experiment of the run.
    """

    def __init__(
        self,
        models: Sequence[ModelHandle],
        store: Any,
        workdir: str,
        seed: int,
        config: ml_collections.ConfigDict,
        name: str = "",
        mesh: Any = None,
        figure_dir: str | None = None,
        digests: DigestMemo | None = None,
    ):
        self.models = list(models)
        self.store = store
        self.workdir = str(workdir)
        self.seed = int(seed)
        self.config = config
        self.name = name
        self.mesh = mesh
        self.figure_dir = figure_dir or os.path.join(self.workdir, "figures")
        self.feature_calls = 0
        self.digests = digests if digests is not None else DigestMemo()
        # Warnings of this experiment (`warn`); the runner copies them into its Result.
        self.warnings: list[str] = []

    def for_experiment(self, name: str) -> Context:
        """A copy of this context that logs and names figures for experiment `name`."""
        return Context(
            self.models,
            self.store,
            self.workdir,
            self.seed,
            self.config,
            name,
            mesh=self.mesh,
            figure_dir=self.figure_dir,
            digests=self.digests,
        )

    def log(self, msg: str) -> None:
        logging.info("[%s] %s", self.name or "run", msg)

    def warn(self, msg: str) -> None:
        """Logs `msg` as a WARNING and keeps it for the report (`Result.warnings`)."""
        logging.warning("[%s] %s", self.name or "run", msg)
        if msg not in self.warnings:
            self.warnings.append(msg)

    def removal_counts(
        self, counts: Iterable[Any], width: int, field: str, model: str
    ) -> list[int]:
        """The counts of `field` (dims removed) below the feature `width`; the others are dropped
        with a warning (removing all `width` dims or more leaves nothing to compare)."""
        counts = [int(n) for n in counts]
        dropped = [n for n in counts if n >= width]
        if dropped:
            self.warn(
                f"{field}: {dropped} not run for {model}: at or above its feature width {width}"
            )
        return [n for n in counts if n < width]

    def rng(self, *names: Any) -> np.random.Generator:
        """A numpy Generator seeded from the run seed, the experiment name and `names`."""
        digest = hashlib.sha256(repr((self.seed, self.name) + names).encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def figure_path(self, name: str) -> str:
        """Absolute path `<figure_dir>/<experiment>_<name>.png` (folder created); the figure
        folder is `<workdir>/figures` on process 0."""
        os.makedirs(self.figure_dir, exist_ok=True)
        return os.path.join(
            self.figure_dir, f"{self.name}_{name}.png" if self.name else f"{name}.png"
        )

    def progress(self, items: Iterable[Any], total: int, what: str = "items") -> Iterator[Any]:
        """Yields `items`, logging done/total, items/s and ETA about every 10 s."""
        bar = Progress(total, unit=what, name=self.name or "run")
        for item in items:
            yield item
            bar.update(1)
        bar.close()

    def features(
        self,
        model: ModelHandle,
        images: Any,
        key: dict[str, Any],
        layers: Sequence[int] | None = None,
        *,
        batch_size: int | None = None,
        with_cls: bool = False,
        gsd_ratio: float | None = None,
    ) -> Any:
        """Patch features of `images` through the FeatureStore (extracted once, then cached).

        Args:
          model: the model.
          images: uint8 [N, H, W, 3] numpy array (its content digest joins the key; memoised
            for read-only arrays, see `DigestMemo`), or an ImageSource (then `key` alone names
            the images: it must hold every field that shapes them).
          key: JSON-able dict naming what shaped the images (dataset, split, transform, level).
          layers: block indices; default `config.extract.layers` (all layers any experiment
            needs, extracted in one pass so that experiments share the cache).
          batch_size: images per batch; default `config.extract.batch_size`.
          with_cls: also return CLS and register tokens.
          gsd_ratio: Scale-MAE ground-sample-distance ratio (None for other models).

        The other `extract.ExtractOptions` come from the run: the stored and compute dtypes from
        `config.extract`, the log interval from `config.log_every_s`, the mesh from the context.

        Returns:
          `extract.FeatureSet`: `.patch[layer]` -> array-like [N, h, w, D].
        """
        self.feature_calls += 1
        extract_cfg = self.config.extract
        if layers is None:
            layers = extract_cfg.layers
        key = dict(key)
        if isinstance(images, np.ndarray):
            # The content digest makes a stale store entry impossible when a reader or generator
            # changes while the descriptive key stays the same.
            key["images_sha256"] = self.digests.digest(images)
        options = extract.ExtractOptions(
            batch_size=extract_cfg.batch_size if batch_size is None else batch_size,
            with_cls=with_cls,
            gsd_ratio=gsd_ratio,
            dtype=extract_cfg.store_dtype,
            compute_dtype=extract_cfg.compute_dtype,
            mesh=self.mesh,
            progress_interval_s=self.config.log_every_s,
        )
        return extract.extract(
            model.module,
            model.params,
            model.spec,
            images,
            layers=tuple(layers),
            store=self.store,
            key=key,
            options=options,
        )

    def layer_index(self, model: ModelHandle, layer: int) -> int:
        """Non-negative block index of `layer` (negatives count from the end) for `model`."""
        depth = int(model.spec.depth)
        idx = layer + depth if layer < 0 else layer
        if not 0 <= idx < depth:
            raise errors.ConfigError(f"layer {layer} is outside model {model.name} (depth {depth})")
        return idx
