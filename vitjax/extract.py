"""Compiled, sharded feature extraction from uint8 images into a resumable `FeatureStore`.

One `jax.jit` over a device mesh runs the whole forward pass: uint8 in, normalisation (and an
optional resize) inside the compiled function, every requested layer (patch tokens, CLS, register
tokens) out of a single pass, cast to the storage dtype on the device. The batch axis is sharded
over every device of the mesh (all local devices by default; under `jax.distributed.initialize()`
all devices of all processes). Each process reads only its own rows of every batch, builds the
global batch with `jax.make_array_from_process_local_data`, and copies back only the output shards
its devices hold, which it writes to the store. Batches have one fixed shape (the last one is
padded and its padding rows are never written), so a run traces and compiles once per input shape.

Host side: images are read/decoded on a `ThreadPoolExecutor` that stays a bounded number of
batches ahead of the device (decoders such as PIL release the GIL). This is the whole input
pipeline; grain would give the same read-ahead with multiprocessing workers, but it is not
installed, adds a dependency, and its per-record transforms buy nothing here: the only host work
is decoding, and everything else (normalisation, resize, dtype casts) happens on the device.
Device work is dispatched ahead of the writes: while the device computes batch b, a writer thread
copies batch b - 1 back and writes it (at most two batches wait for the writer).

Examples:
  >>> from vitjax import models, extract, store as store_lib
  >>> module, params, spec = models.random_model("dino", "ti", depth=2)
  >>> images = np.zeros((10, 32, 32, 3), np.uint8)
  >>> feats = extract.extract(module, params, spec, images, layers=(0, -1), batch_size=4,
  ...                         store=store_lib.FeatureStore("/tmp/fs"), key={"split": "demo"})
  >>> feats.patch[-1].shape
  (10, 2, 2, 192)
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import difflib
import hashlib
import inspect
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from vitjax import models, provenance
from vitjax import progress as progress_lib
from vitjax import sharding as sharding_lib
from vitjax import store as store_lib
from vitjax.errors import ConfigError, DatasetError
from vitjax.models import zoo
from vitjax.models.vit import resolve_layers

STORE_DTYPES = tuple(store_lib.STORAGE_DTYPES)
_JNP_DTYPES = {"float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}
_COMPUTE_DTYPES = {None: None, "float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Compiled forwards kept per process (code only: the weights are an argument). A run cycles all
# its models through each perturbation or layer set, so the cache must hold more programs than a
# run has models, or every call recompiles (the 16-model demo compiled 176 times for FAIR1M alone).
_COMPILED_CACHE_SIZE = 128
_compiled_cache: collections.OrderedDict = collections.OrderedDict()


# ---------------------------------------------------------------------------------------------
# Image sources


@runtime_checkable
class ImageSource(Protocol):
    """Anything with a length and `source[i] -> uint8 [H, W, 3]` (all images the same size)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


def _default_decode(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class FileImageSource:
    """Images decoded from files on the prefetch threads.

    Args:
      paths: image files, in row order of the features.
      decode_fn: `path -> uint8 [H, W, 3]`; PIL (any format it reads, converted to RGB) if None.
      resize_to: (height, width) to resize every decoded image to on the host (bicubic, PIL),
        for datasets of mixed sizes; None keeps the decoded size (then all must match).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        decode_fn: Callable[[str], np.ndarray] | None = None,
        resize_to: tuple[int, int] | None = None,
    ):
        self.paths = [str(p) for p in paths]
        self.decode_fn = decode_fn or _default_decode
        self.resize_to = tuple(resize_to) if resize_to is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(H, W, 3) when fixed by `resize_to`, else None (known after decoding one image)."""
        return (*self.resize_to, 3) if self.resize_to else None

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            image = np.asarray(self.decode_fn(path))
        except (OSError, ValueError) as err:
            raise DatasetError(f"image {path}: cannot decode ({err})") from err
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise DatasetError(
                f"image {path}: decoded to {image.dtype} {image.shape}, expected uint8 [H, W, 3]"
            )
        if self.resize_to is not None and image.shape[:2] != self.resize_to:
            height, width = self.resize_to
            resized = Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
            image = np.asarray(resized)
        return image


class _ArraySource:
    """A uint8 [N, H, W, 3] array as an ImageSource, with a fast batch path."""

    def __init__(self, images: np.ndarray):
        self.images = images
        self.image_shape = tuple(images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index]


def _as_source(images: Any) -> _ArraySource | ImageSource:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DatasetError(
                f"images: expected a uint8 array [N, H, W, 3], got {images.dtype} {images.shape}"
            )
        return _ArraySource(images)
    if isinstance(images, jax.Array):
        raise DatasetError("images: pass a host numpy array or an ImageSource, not a jax.Array")
    if not isinstance(images, ImageSource):
        raise DatasetError(
            f"images: expected a uint8 numpy array [N, H, W, 3] or an ImageSource (len and "
            f"__getitem__), got {type(images).__name__}"
        )
    return images


def _source_image_shape(source: Any) -> tuple[int, int, int]:
    shape = getattr(source, "image_shape", None)
    if shape is None:
        first = np.asarray(source[0])
        if first.dtype != np.uint8 or first.ndim != 3 or first.shape[-1] != 3:
            raise DatasetError(
                f"images[0]: expected uint8 [H, W, 3], got {first.dtype} {first.shape}"
            )
        shape = first.shape
    return tuple(int(s) for s in shape)


class _Prefetcher:
    """Reads padded host batches on worker threads, at most `depth` batches ahead of the consumer.

    Yields uint8 [rows_per_batch, H, W, 3]; rows past the end of the source are zeros.
    """

    def __init__(
        self,
        source: Any,
        row_ranges: Sequence[tuple[int, int]],
        rows_per_batch: int,
        image_shape: tuple[int, int, int],
        num_workers: int,
        depth: int,
    ):
        self.source = source
        self.row_ranges = list(row_ranges)
        self.rows_per_batch = rows_per_batch
        self.image_shape = image_shape
        self.depth = max(1, depth)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, num_workers), thread_name_prefix="vitjax-read"
        )

    def _read_array_batch(self, start: int, stop: int) -> np.ndarray:
        batch = np.zeros((self.rows_per_batch, *self.image_shape), np.uint8)
        batch[: stop - start] = self.source.images[start:stop]
        return batch

    def _read_image(self, index: int) -> np.ndarray:
        image = np.asarray(self.source[index])
        if image.shape != self.image_shape or image.dtype != np.uint8:
            raise DatasetError(
                f"images[{index}]: got {image.dtype} {image.shape}, expected uint8 "
                f"{self.image_shape} like images[0] (use FileImageSource(resize_to=...) for "
                "mixed sizes)"
            )
        return image

    def _submit(self, start: int, stop: int) -> Any:
        if isinstance(self.source, _ArraySource):
            return self.pool.submit(self._read_array_batch, start, stop)
        return [self.pool.submit(self._read_image, i) for i in range(start, stop)]

    def _collect(self, pending: Any) -> np.ndarray:
        if isinstance(pending, concurrent.futures.Future):
            return pending.result()
        batch = np.zeros((self.rows_per_batch, *self.image_shape), np.uint8)
        for row, future in enumerate(pending):
            batch[row] = future.result()
        return batch

    def __iter__(self) -> Iterator[np.ndarray]:
        queue: collections.deque = collections.deque()
        ranges = iter(self.row_ranges)
        try:
            for start, stop in ranges:
                queue.append(self._submit(start, stop))
                if len(queue) >= self.depth:
                    break
            while queue:
                batch = self._collect(queue.popleft())
                nxt = next(ranges, None)
                if nxt is not None:
                    queue.append(self._submit(*nxt))
                yield batch
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Results


class LayerDict(dict):
    """{layer: array} that also answers negative layer indices (-1 = last block)."""

    def __init__(self, items: Mapping[int, Any], depth: int):
        super().__init__(items)
        self.depth = depth

    def __getitem__(self, layer: int) -> Any:
        return super().__getitem__(layer + self.depth if layer < 0 else layer)

    def __contains__(self, layer: object) -> bool:
        if isinstance(layer, int) and layer < 0:
            layer += self.depth
        return super().__contains__(layer)


@dataclasses.dataclass
class FeatureSet:
    """Features of N images from one model.

    Attributes:
      patch: {layer: array [N, h, w, D]} (np.memmap when stored; negative layers accepted).
      cls: {layer: [N, D]} when asked for with `with_cls`, else empty.
      registers: {layer: [N, R, D]} for models with register tokens when `with_cls`, else empty.
      meta: per-image arrays [N, ...]; always holds "image_id" (arange(N) unless given).
      key: the full group key (model spec, geometry, dtypes, user key); None in memory.
      key_hash: sha256 of the canonical JSON of `key`.
      entry_dir: the group directory in the store (one `layer_<i>/` entry per layer); None in memory.
      grid: patch grid (h, w).
    """

    patch: LayerDict
    cls: LayerDict
    registers: LayerDict
    meta: dict[str, np.ndarray]
    key: dict | None
    key_hash: str | None
    entry_dir: Path | None
    grid: tuple[int, int]

    @property
    def num_images(self) -> int:
        return int(self.meta["image_id"].shape[0])

    def flat_patches(self, layer: int) -> np.ndarray:
        """[N * h * w, D] view of a layer's patches, row-major (image, row, col); no copy."""
        array = self.patch[layer]
        return array.reshape(-1, array.shape[-1])

    def patch_coords(self) -> dict[str, np.ndarray]:
        """int32 [N * h * w] image index, patch row and patch col of each flattened patch."""
        h, w = self.grid
        image, row, col = np.meshgrid(
            np.arange(self.num_images), np.arange(h), np.arange(w), indexing="ij"
        )
        return {
            "image": image.reshape(-1).astype(np.int32),
            "row": row.reshape(-1).astype(np.int32),
            "col": col.reshape(-1).astype(np.int32),
        }

    def patch_meta(self, name: str) -> np.ndarray:
        """Metadata `name` per flattened patch: per-image [N, ...] arrays are repeated h*w times,
        per-patch [N, h, w, ...] arrays are flattened to [N * h * w, ...]."""
        if name not in self.meta:
            raise KeyError(f"metadata {name!r}: not stored; have {sorted(self.meta)}")
        value = self.meta[name]
        h, w = self.grid
        if value.ndim >= 3 and value.shape[1:3] == (h, w):
            return value.reshape(-1, *value.shape[3:])
        return np.repeat(value, h * w, axis=0)


# ---------------------------------------------------------------------------------------------
# Plan


@dataclasses.dataclass
class Plan:
    """What an extraction will do, computed before any work (see `plan`)."""

    num_images: int
    image_size: tuple[int, int]
    input_size: tuple[int, int]
    grid: tuple[int, int]
    layers: tuple[int, ...]
    pending_layers: tuple[int, ...]
    batch_size: int
    num_batches: int
    num_batches_todo: int
    num_patches: int
    bytes_on_disk: int
    peak_device_bytes: int
    memory_source: str
    num_devices: int
    num_processes: int
    cached: bool

    def __str__(self) -> str:
        mib = 1 << 20
        status = (
            "all cached: no model call"
            if self.cached
            else f"{self.num_batches_todo}/{self.num_batches} batches to run"
        )
        return (
            f"{self.num_images} images {self.image_size[0]}x{self.image_size[1]} -> model input "
            f"{self.input_size[0]}x{self.input_size[1]}, grid {self.grid[0]}x{self.grid[1]}, "
            f"{self.num_patches} patches per layer; layers {list(self.layers)}; batch "
            f"{self.batch_size} over {self.num_devices} device(s) in {self.num_processes} "
            f"process(es); {status}; {self.bytes_on_disk / mib:.1f} MiB on disk; peak device "
            f"memory {self.peak_device_bytes / mib:.1f} MiB per device ({self.memory_source})"
        )


# ---------------------------------------------------------------------------------------------
# Preparation shared by plan() and extract()


def _callable_name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _with_params_digest(spec: Any, params: Any) -> Any:
    """`spec` with `params_sha256` filled in from `params` when it has none yet.

    Specs from `models.load`, `models.save` and `models.random_model` carry the digest of their
    parameters; a spec built by hand does not, and keying its features on the spec alone would
    serve one set of weights' features to another.
    """
    if dataclasses.is_dataclass(spec) and getattr(spec, "params_sha256", None) == "":
        return dataclasses.replace(spec, params_sha256=zoo.params_digest(params))
    return spec


def _spec_dict(spec: Any) -> dict:
    return spec.to_dict() if hasattr(spec, "to_dict") else dataclasses.asdict(spec)


def _default_preprocess(spec: Any, images: jax.Array) -> jax.Array:
    return models.preprocess(spec, images)


def images_digest(images: np.ndarray) -> str:
    """sha256 (hex) of an image array's shape and bytes, streamed 256 images at a time.

    Args:
      images: [N, H, W, C] array (or memmap) of any dtype.
    """
    digest = hashlib.sha256()
    digest.update(str(images.shape).encode())
    for start in range(0, images.shape[0], 256):
        digest.update(np.ascontiguousarray(images[start : start + 256]).data)
    return digest.hexdigest()


def _batch_partition(mesh: Mesh) -> P:
    # Shard the batch over every mesh axis but the model axis (parameters are split over that
    # one, `sharding.param_shardings`), so any mesh shape uses all of its devices.
    axes = tuple(a for a in mesh.axis_names if a != sharding_lib.MODEL_AXIS)
    return P(axes) if axes else P()


def _data_parallel_size(mesh: Mesh) -> int:
    """Devices the batch is split over (the mesh size over its model-axis size)."""
    return mesh.size // sharding_lib.model_axis_size(mesh)


def default_mesh() -> Mesh:
    """The extraction mesh: every device (of every process) on one "data" axis."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a leading batch axis over every axis of `mesh` (as extraction shards it)."""
    return NamedSharding(mesh, _batch_partition(mesh))


def _local_rows(sharding: NamedSharding, global_shape: tuple[int, ...]) -> tuple[int, int]:
    """The contiguous row range [lo, hi) of a global batch held by this process's devices."""
    spans = set()
    for index in sharding.addressable_devices_indices_map(global_shape).values():
        rows = index[0]
        spans.add((rows.start or 0, global_shape[0] if rows.stop is None else rows.stop))
    spans = sorted(spans)
    lo, hi = spans[0][0], spans[-1][1]
    covered = sum(b - a for a, b in spans)
    if covered != hi - lo:
        raise ConfigError(
            "mesh: this process's devices hold non-contiguous rows of the batch "
            f"({spans}); order the mesh devices by process"
        )
    return lo, hi


@dataclasses.dataclass(frozen=True)
class _ForwardOptions:
    """The arguments of `extract` that change the compiled forward (besides model and shapes)."""

    gsd_ratio: float | None
    dtype: str
    compute_dtype: str | None
    resize_to: tuple[int, int] | None
    norm: bool
    preprocess_fn: Callable[[Any, jax.Array], jax.Array]

    @classmethod
    def of(cls, gsd_ratio, dtype, compute_dtype, resize_to, norm, preprocess_fn) -> _ForwardOptions:
        """The options of an `extract`/`plan` call (defaults filled in)."""
        return cls(
            gsd_ratio,
            dtype,
            compute_dtype,
            _size_or_none(resize_to),
            norm,
            preprocess_fn or _default_preprocess,
        )


@dataclasses.dataclass(frozen=True)
class ExtractOptions:
    """How `extract` and `plan` run: the same options for both, with `extract`'s defaults.

    Pass one as `options=`, or give any field as a keyword of `extract`/`plan` (a keyword
    overrides that field of `options`).

    Attributes:
      batch_size: images per global batch (rounded up to a multiple of the device count).
      with_cls: also return CLS and register tokens (they are stored either way).
      gsd_ratio: scalar ground-sample-distance ratio for Scale-MAE (passed to the module).
      dtype: stored dtype, "float32", "float16" or "bfloat16".
      compute_dtype: None/"float32" or "bfloat16" matmuls.
      mesh: device mesh whose every axis shards the batch; all devices on one axis if None.
      resize_to: (height, width) to resize to on the device (bilinear) before the model.
      norm: pass returned layers through the final LayerNorm (the paper does).
      preprocess_fn: `(spec, uint8 images) -> float32` traced inside the jit;
        `vitjax.models.preprocess` by default.
      num_workers: host threads decoding images (min(8, cpu count) if None).
      prefetch: batches read ahead of the device.
      progress_interval_s: seconds between progress log lines.
    """

    batch_size: int = 32
    with_cls: bool = False
    gsd_ratio: float | None = None
    dtype: str = "float32"
    compute_dtype: str = "float32"
    mesh: Mesh | None = None
    resize_to: tuple[int, int] | None = None
    norm: bool = True
    preprocess_fn: Callable[[Any, jax.Array], jax.Array] | None = None
    num_workers: int | None = None
    prefetch: int = 2
    progress_interval_s: float = 10.0

    @classmethod
    def of(
        cls, options: ExtractOptions | None, overrides: Mapping[str, Any], caller: str
    ) -> ExtractOptions:
        """`options` (default: all defaults) with the fields named in `overrides` replaced.

        Raises:
          ConfigError: `options` is not an ExtractOptions, or `overrides` names no field of it.
        """
        if options is None:
            options = cls()
        elif not isinstance(options, cls):
            raise ConfigError(
                f"{caller}: options={options!r}, expected an extract.ExtractOptions "
                "(or pass its fields as keywords)"
            )
        fields = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, fields, 1)]
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(
                f"{caller}: unexpected keyword(s) {unknown}; expected a field of "
                f"extract.ExtractOptions {fields} (or layers, store, key, metadata){hint}"
            )
        return dataclasses.replace(options, **overrides)

    def forward(self) -> _ForwardOptions:
        """The options that change the compiled forward (checked, defaults filled in)."""
        return _ForwardOptions.of(
            self.gsd_ratio,
            self.dtype,
            self.compute_dtype,
            self.resize_to,
            self.norm,
            self.preprocess_fn,
        )


def _accepts_options(fn: Callable) -> Callable:
    """Lists the fields of ExtractOptions as keyword-only parameters in `fn`'s signature.

    `fn` takes them through `**overrides`; the generated signature lets `help()`, IDEs and
    `inspect` show every option with its default without a second copy of the list.
    """
    signature = inspect.signature(fn)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    fields = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
        )
        for f in dataclasses.fields(ExtractOptions)
    ]
    fn.__signature__ = signature.replace(parameters=kept + fields)
    return fn


@dataclasses.dataclass
class _Job:
    """Everything an extraction needs, computed without touching the store or the model."""

    source: Any
    num_images: int
    image_shape: tuple[int, int, int]
    input_size: tuple[int, int]
    grid: tuple[int, int]
    layers: tuple[int, ...]
    depth: int
    width: int
    num_registers: int
    batch_size: int
    mesh: Mesh
    options: _ForwardOptions
    group_key: dict
    array_shapes: dict[str, tuple[tuple[int, ...], str]]

    @property
    def num_batches(self) -> int:
        return math.ceil(self.num_images / self.batch_size)

    def valid_rows(self, batch_index: int) -> int:
        """Rows of batch `batch_index` that are real images (the rest is padding)."""
        return min(self.batch_size, self.num_images - batch_index * self.batch_size)


def _make_job(
    spec: Any,
    images: Any,
    layers: Sequence[int],
    key: Mapping[str, Any] | None,
    batch_size: int,
    mesh: Mesh | None,
    store: store_lib.FeatureStore | None,
    options: _ForwardOptions,
) -> _Job:
    if options.dtype not in STORE_DTYPES:
        raise ConfigError(f"dtype: {options.dtype!r}, expected one of {list(STORE_DTYPES)}")
    if options.compute_dtype not in _COMPUTE_DTYPES:
        raise ConfigError(
            f"compute_dtype: {options.compute_dtype!r}, expected one of {list(_COMPUTE_DTYPES)}"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: {batch_size!r}, expected a positive int")
    source = _as_source(images)
    num_images = len(source)
    if num_images == 0:
        raise DatasetError("images: expected at least one image, got 0")
    image_shape = _source_image_shape(source)
    resize_to = options.resize_to
    input_size = tuple(int(s) for s in resize_to) if resize_to is not None else image_shape[:2]
    patch = int(spec.patch_size)
    if input_size[0] % patch or input_size[1] % patch:
        raise ConfigError(
            f"model input size {input_size}: expected multiples of the patch size {patch} "
            "(resize_to=... or tile the images)"
        )
    grid = (input_size[0] // patch, input_size[1] // patch)
    depth = int(spec.depth)
    layers = resolve_layers(layers, depth)
    mesh = mesh if mesh is not None else default_mesh()
    if jax.process_count() > 1 and store is None:
        raise ConfigError(
            "store: multi-process extraction writes each process's rows to a shared "
            "FeatureStore; store=None is only supported in a single process"
        )
    # Round the batch up so every device gets the same number of rows.
    data_devices = _data_parallel_size(mesh)
    global_batch = math.ceil(batch_size / data_devices) * data_devices
    if global_batch != batch_size:
        logging.info(
            "batch_size %d rounded up to %d (a multiple of %d devices)",
            batch_size,
            global_batch,
            data_devices,
        )
    if key is not None:
        user_key = dict(key)
    elif isinstance(source, _ArraySource):
        user_key = {"images_sha256": images_digest(source.images)}
    elif store is not None:
        raise ConfigError(
            "key: required when extracting an ImageSource into a store (name the dataset, "
            "split, tiling and transform that produced the images)"
        )
    else:
        user_key = {}
    preprocess = _callable_name(options.preprocess_fn)
    if options.preprocess_fn is not _default_preprocess and store is not None:
        if "preprocess" not in user_key:
            raise ConfigError(
                f"key: a custom preprocess_fn ({preprocess}) changes the features; name it in "
                "key['preprocess'] so its features never share a store entry with others"
            )
    width, num_registers = int(spec.width), int(getattr(spec, "num_registers", 0) or 0)
    group_key = {
        "model": str(spec.name),
        "weights_hash": str(spec.weights_hash),
        "spec": _spec_dict(spec),
        "num_images": num_images,
        "image_size": list(image_shape[:2]),
        "input_size": list(input_size),
        "norm": bool(options.norm),
        "gsd_ratio": options.gsd_ratio,
        "dtype": options.dtype,
        # None and "float32" compute the same numbers, so they share entries.
        "compute_dtype": options.compute_dtype or "float32",
        "preprocess": preprocess,
        # A change to the model or extraction code must not serve features made by the old code.
        "code": provenance.source_digest(*provenance.FEATURE_CODE),
        "user": user_key,
    }
    store_lib.canonical_json(group_key)  # raises StoreError naming a field JSON cannot hold
    arrays = {
        "patch": ((num_images, *grid, width), options.dtype),
        "cls": ((num_images, width), options.dtype),
    }
    if num_registers:
        arrays["registers"] = ((num_images, num_registers, width), options.dtype)
    return _Job(
        source=source,
        num_images=num_images,
        image_shape=image_shape,
        input_size=input_size,
        grid=grid,
        layers=layers,
        depth=depth,
        width=width,
        num_registers=num_registers,
        batch_size=global_batch,
        mesh=mesh,
        options=options,
        group_key=group_key,
        array_shapes=arrays,
    )


def _params_signature(params: Any) -> tuple:
    leaves, treedef = jax.tree.flatten(params)
    return (treedef, tuple((tuple(x.shape), str(x.dtype)) for x in leaves))


@dataclasses.dataclass
class _Executable:
    """A compiled forward with its device-placed parameters and input sharding."""

    compiled: Any
    params: Any
    sharding: NamedSharding

    def __call__(self, images: jax.Array) -> Any:
        return self.compiled(self.params, images)


def _compile(
    module: Any, params: Any, spec: Any, job: _Job, layers: tuple[int, ...]
) -> _Executable:
    """Compiles (or fetches from a small cache) the forward of `layers` for the job's shapes."""
    if isinstance(params, Mapping) and "decoder" in params:
        # An MAE checkpoint loaded with its decoder: the encoder never reads it, so don't copy it
        # to every device.
        params = {k: v for k, v in params.items() if k != "decoder"}
    opts = job.options
    mesh = job.mesh
    _check_memory(params, spec, job)
    batch_sharding = NamedSharding(mesh, _batch_partition(mesh))
    # Replicated, or split over a 'model' mesh axis (models too big for one device).
    param_sharding = sharding_lib.param_shardings(params, mesh)
    compute = _COMPUTE_DTYPES[opts.compute_dtype]
    apply_module = module
    if compute is not None and "dtype" in getattr(module, "__dataclass_fields__", {}):
        # Matmuls in the compute dtype while parameters stay float32 (as big_vision does).
        apply_module = module.clone(dtype=compute)
    elif compute is not None:
        params = jax.tree.map(
            lambda x: x.astype(compute) if jnp.issubdtype(x.dtype, jnp.floating) else x, params
        )
    out_dtype = _JNP_DTYPES[opts.dtype]
    with_registers = job.num_registers > 0

    def forward(params, images_u8):
        x = opts.preprocess_fn(spec, images_u8)
        if opts.resize_to is not None:
            # Normalisation is per-channel affine and resize weights sum to one, so resizing
            # after normalising equals resizing the raw pixels.
            size = (x.shape[0], *opts.resize_to, x.shape[-1])
            x = jax.image.resize(x, size, method="bilinear")
        if compute is not None:
            x = x.astype(compute)
        out = apply_module.apply(
            {"params": params}, x, layers=layers, norm=opts.norm, gsd_ratio=opts.gsd_ratio
        )
        result = {}
        for layer in layers:
            result[layer] = {
                "patch": out["patch"][layer].astype(out_dtype),
                "cls": out["cls"][layer].astype(out_dtype),
            }
            if with_registers:
                result[layer]["registers"] = out["registers"][layer].astype(out_dtype)
        return result

    if jax.process_count() == 1:
        # No host round trip for device params.
        params_dev = jax.device_put(params, param_sharding)
    else:
        # Every process holds the same weights; each places them on its own devices.
        params_dev = jax.tree.map(
            lambda x, sh: jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx]),
            jax.tree.map(np.asarray, params),
            param_sharding,
        )
    global_shape = (job.batch_size, *job.image_shape)
    try:
        cache_key = (
            module,
            # The weights' digest does not change the program (the params are an argument).
            store_lib.canonical_json(
                {k: v for k, v in _spec_dict(spec).items() if k != "params_sha256"}
            ),
            layers,
            opts,
            mesh,
            global_shape,
            _params_signature(params_dev),
            # Context settings that change the compiled program.
            str(jax.config.jax_default_matmul_precision),
            bool(jax.config.jax_enable_x64),
        )
        hash(cache_key)
    except TypeError:  # an unhashable module field: compile without caching
        cache_key = None
    if cache_key is not None and cache_key in _compiled_cache:
        _compiled_cache.move_to_end(cache_key)
        return _Executable(_compiled_cache[cache_key], params_dev, batch_sharding)
    jitted = jax.jit(
        forward, in_shardings=(param_sharding, batch_sharding), out_shardings=batch_sharding
    )
    abstract_images = jax.ShapeDtypeStruct(global_shape, jnp.uint8, sharding=batch_sharding)
    compiled = jitted.lower(params_dev, abstract_images).compile()
    if cache_key is not None:
        _compiled_cache[cache_key] = compiled
        while len(_compiled_cache) > _COMPILED_CACHE_SIZE:
            _compiled_cache.popitem(last=False)
    return _Executable(compiled, params_dev, batch_sharding)


def _activation_bytes(spec: Any, job: _Job) -> int:
    """Rough per-device activation bytes of one batch (used where XLA gives no analysis)."""
    per_device = job.batch_size // _data_parallel_size(job.mesh)
    tokens = job.grid[0] * job.grid[1] + 1 + job.num_registers
    heads = int(getattr(spec, "num_heads", 1) or 1)
    # Residual stream, qkv, MLP hidden (4x) and a few temporaries, plus one attention matrix.
    activations = per_device * (tokens * job.width * 4 * 12 + heads * tokens * tokens * 4 * 2)
    return activations + per_device * int(np.prod(job.image_shape))


def _check_memory(params: Any, spec: Any, job: _Job) -> None:
    """Refuses, before anything is placed, a model that cannot fit one device of the mesh.

    Needs = the parameters one device holds (split over a 'model' mesh axis when there is one)
    plus a rough activation estimate; the limit is the device allocator's (GPUs, TPUs). CPU
    devices report no limit and are not checked.
    """
    limit = sharding_lib.device_memory_limit(job.mesh.devices.flat[0])
    if limit is None:
        return
    shards = sharding_lib.model_axis_size(job.mesh)
    param_bytes = sharding_lib.param_bytes_per_device(params, shards)
    need = param_bytes + _activation_bytes(spec, job)
    if need > limit:
        gib = 1 << 30
        dtypes = sorted({str(x.dtype) for x in jax.tree.leaves(params)})
        raise ConfigError(
            f"model {spec.name}: needs about {need / gib:.1f} GiB per device (parameters "
            f"{param_bytes / gib:.1f} GiB in {'/'.join(dtypes)} over {shards} model-axis "
            f"device(s), plus activations of {job.batch_size // _data_parallel_size(job.mesh)} "
            f"images per device), but a device holds {limit / gib:.1f} GiB. Use bfloat16 "
            f"parameters, a mesh with a '{sharding_lib.MODEL_AXIS}' axis over more devices "
            "(parameters are split over it), or a smaller batch_size"
        )


def _peak_device_bytes(executable: _Executable, spec: Any, job: _Job) -> tuple[int, str]:
    """Peak bytes per device from XLA's memory analysis, else a rough activation estimate."""
    try:
        analysis = executable.compiled.memory_analysis()
    except (NotImplementedError, AttributeError, RuntimeError):
        analysis = None
    if analysis is not None:
        peak = (
            analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            + analysis.temp_size_in_bytes
            - analysis.alias_size_in_bytes
        )
        return int(peak), "XLA memory analysis"
    shards = sharding_lib.model_axis_size(job.mesh)
    param_bytes = sharding_lib.param_bytes_per_device(executable.params, shards)
    return int(param_bytes + _activation_bytes(spec, job)), "estimate"


def _open_entries(
    store: store_lib.FeatureStore, spec: Any, job: _Job, create: bool
) -> tuple[store_lib.Group | None, dict[int, store_lib.Entry | None]]:
    """The group and per-layer entries of a job; with create=False, None for missing ones."""
    info = {"grid": list(job.grid), "patch_size": int(spec.patch_size), "model": str(spec.name)}
    path = store.group_dir(job.group_key, spec.name)
    if not create and not path.exists():
        return None, dict.fromkeys(job.layers)
    group = store.group(job.group_key, name=spec.name)
    entries = {}
    for layer in job.layers:
        if not create and not group.entry_dir(layer).exists():
            entries[layer] = None
        else:
            entries[layer] = group.entry(layer, job.array_shapes, info=info)
    return group, entries


@dataclasses.dataclass
class _Work:
    """What is left to do: layers not yet complete, their done rows, batches still to run."""

    pending: tuple[int, ...]
    done: dict[int, np.ndarray]
    batches: list[int]


def _remaining_work(
    job: _Job, entries: Mapping[int, store_lib.Entry | None], stored: bool
) -> _Work:
    if not stored:
        done = {layer: np.zeros(job.num_images, bool) for layer in job.layers}
        return _Work(job.layers, done, list(range(job.num_batches)))
    pending = tuple(
        layer for layer in job.layers if entries[layer] is None or not entries[layer].is_complete
    )
    done = {}
    for layer in pending:
        entry = entries[layer]
        done[layer] = entry.done_rows() if entry is not None else np.zeros(job.num_images, bool)
    # A batch runs when any pending layer lacks any of its rows.
    all_done = np.ones(job.num_batches * job.batch_size, bool)
    for layer in pending:
        all_done[: job.num_images] &= done[layer]
    batches = np.flatnonzero(~all_done.reshape(job.num_batches, job.batch_size).all(axis=1))
    return _Work(pending, done, batches.tolist())


def _make_plan(job: _Job, work: _Work, stored: bool, peak: tuple[int, str]) -> Plan:
    itemsize = store_lib.STORAGE_DTYPES[job.options.dtype][1].itemsize
    row_bytes = sum(int(np.prod(shape[1:])) for shape, _ in job.array_shapes.values()) * itemsize
    return Plan(
        num_images=job.num_images,
        image_size=job.image_shape[:2],
        input_size=job.input_size,
        grid=job.grid,
        layers=job.layers,
        pending_layers=work.pending,
        batch_size=job.batch_size,
        num_batches=job.num_batches,
        num_batches_todo=len(work.batches),
        num_patches=job.num_images * job.grid[0] * job.grid[1],
        bytes_on_disk=row_bytes * job.num_images * len(job.layers) if stored else 0,
        peak_device_bytes=peak[0],
        memory_source=peak[1],
        num_devices=job.mesh.size,
        num_processes=jax.process_count(),
        cached=stored and not work.pending,
    )


@_accepts_options
def plan(
    module: Any,
    params: Any,
    spec: Any,
    images: Any,
    layers: Sequence[int] = (-1,),
    store: store_lib.FeatureStore | None = None,
    key: Mapping[str, Any] | None = None,
    *,
    options: ExtractOptions | None = None,
    metadata: Mapping[str, np.ndarray] | None = None,
    **overrides: Any,
) -> Plan:
    """A dry run of `extract` with the same arguments: counts, bytes and peak memory, no work.

    Compiles the forward (to ask XLA for its memory analysis; `extract` reuses the executable)
    but neither runs it nor writes to the store. Arguments are those of `extract`; the ones that
    do not change the plan (with_cls, metadata, num_workers, ...) are accepted and ignored.

    Returns:
      Plan, also logged; `print(plan)` gives a one-paragraph summary.
    """
    del metadata  # no effect on the plan
    opts = ExtractOptions.of(options, overrides, "extract.plan")
    spec = _with_params_digest(spec, params)
    job = _make_job(spec, images, layers, key, opts.batch_size, opts.mesh, store, opts.forward())
    entries = _open_entries(store, spec, job, create=False)[1] if store is not None else {}
    work = _remaining_work(job, entries, store is not None)
    peak = (0, "nothing to run")
    if work.pending:
        peak = _peak_device_bytes(_compile(module, params, spec, job, work.pending), spec, job)
    result = _make_plan(job, work, store is not None, peak)
    logging.info("Extraction plan for %s: %s", spec.name, result)
    return result


def _size_or_none(size: Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"resize_to: {size!r}, expected (height, width) of positive ints")
    return (int(size[0]), int(size[1]))


# ---------------------------------------------------------------------------------------------
# Extraction


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of True in a bool vector."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _local_block(tree: Any) -> tuple[int, Any]:
    """(first row, host copy) of the rows of a batch-sharded output this process holds."""
    first_leaf = jax.tree.leaves(tree)[0]
    starts = sorted({s.index[0].start or 0 for s in first_leaf.addressable_shards})

    def gather(array: jax.Array) -> np.ndarray:
        by_start = {}
        for shard in array.addressable_shards:
            by_start.setdefault(shard.index[0].start or 0, shard)  # replicas: keep one
        return np.concatenate([np.asarray(by_start[s].data) for s in starts], axis=0)

    return starts[0], jax.tree.map(gather, tree)


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _agree(work: _Work, job: _Job) -> _Work:
    """Process 0's view of what to run, broadcast to all (they read markers at different times)."""
    if jax.process_count() == 1:
        return work
    layers = job.layers
    mask = np.zeros(len(layers) + job.num_batches, np.int32)
    mask[[layers.index(layer) for layer in work.pending]] = 1
    mask[len(layers) + np.asarray(work.batches, dtype=int)] = 1
    mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    pending = tuple(layer for i, layer in enumerate(layers) if mask[i])
    done = {layer: work.done.get(layer, np.zeros(job.num_images, bool)) for layer in pending}
    return _Work(pending, done, np.flatnonzero(mask[len(layers) :]).tolist())


@_accepts_options
def extract(
    module: Any,
    params: Any,
    spec: Any,
    images: Any,
    layers: Sequence[int] = (-1,),
    store: store_lib.FeatureStore | None = None,
    key: Mapping[str, Any] | None = None,
    *,
    options: ExtractOptions | None = None,
    metadata: Mapping[str, np.ndarray] | None = None,
    **overrides: Any,
) -> FeatureSet:
    """Extracts patch (and CLS/register) features of every requested layer in one forward pass.

    With a store, each layer lands in its own entry keyed by the sha256 of everything that shaped
    it (model spec and weights hash, layer, image/input size, norm, gsd_ratio, dtypes, and `key`);
    asking again for stored features returns them without calling the model, and an interrupted
    run resumes where it stopped. CLS and register tokens are always stored (they cost 1/(h*w) of
    the patches); `with_cls` decides whether they are returned.

    Args:
      module: flax module called as `module.apply({"params": p}, images, layers=..., norm=...,
        gsd_ratio=...)` returning {"patch": {i: [B,h,w,D]}, "cls": {i: [B,D]}, "registers": ...}.
      params: its parameters (host or device arrays).
      spec: ModelSpec (name, weights_hash, patch_size, width, depth, num_registers, to_dict()).
      images: uint8 [N, H, W, 3] numpy array, or an ImageSource (e.g. FileImageSource).
      layers: block indices, negatives from the end.
      store: FeatureStore, or None to compute in memory (single process only).
      key: JSON-like dict naming what produced the images (dataset, split, tiling, transform).
        Required for an ImageSource with a store; for an array it defaults to the images' sha256.
      options: an `ExtractOptions` (batch_size, with_cls, gsd_ratio, dtype, compute_dtype, mesh,
        resize_to, norm, preprocess_fn, num_workers, prefetch, progress_interval_s); all
        defaults if None.
      metadata: per-image (or per-patch [N, h, w, ...]) arrays stored beside the features, e.g.
        {"image_id": ..., "label": ..., "tile_row": ...}.
      **overrides: any field of `ExtractOptions` by name (`batch_size=8, dtype="float16"`),
        replacing that field of `options`.

    Returns:
      FeatureSet (np.memmap arrays when stored, numpy arrays in memory).

    Raises:
      ConfigError, DatasetError: bad arguments or images.
      StoreError: the store holds another model/geometry under this key, a corrupted manifest,
        or a full disk (the entry stays resumable).
    """
    opts = ExtractOptions.of(options, overrides, "extract.extract")
    spec = _with_params_digest(spec, params)
    job = _make_job(spec, images, layers, key, opts.batch_size, opts.mesh, store, opts.forward())
    meta = _checked_metadata(metadata, job.num_images)
    group, entries = None, {}
    if store is not None:
        group, entries = _open_entries(store, spec, job, create=True)
        if jax.process_index() == 0:
            group.write_metadata(meta, job.num_images)
    work = _remaining_work(job, entries, store is not None)
    executable = _compile(module, params, spec, job, work.pending) if work.pending else None
    peak = _peak_device_bytes(executable, spec, job) if executable else (0, "nothing to run")
    the_plan = _make_plan(job, work, store is not None, peak)
    # Debug level only (--verbose): a run of many experiments makes hundreds of (mostly cached)
    # extraction calls, and the progress line below already logs each one that runs.
    logging.debug("Extraction plan for %s: %s", spec.name, the_plan)
    agreed = _agree(work, job)
    if agreed.pending != work.pending:
        executable = _compile(module, params, spec, job, agreed.pending) if agreed.pending else None
    work = agreed

    in_memory: dict[int, dict[str, np.ndarray]] = {}
    if store is None:
        for layer in work.pending:
            in_memory[layer] = {
                name: np.empty(shape, store_lib.STORAGE_DTYPES[dt][0])
                for name, (shape, dt) in job.array_shapes.items()
            }
    if work.pending and work.batches:
        sink = _Sink(job, work, entries, in_memory, opts.progress_interval_s)
        _run_batches(job, work, executable, sink, opts.num_workers, opts.prefetch)

    if store is None:
        arrays, feats_meta = in_memory, meta
    else:
        arrays, feats_meta = _finalize_stored(job, work, group, entries)
    registers = opts.with_cls and job.num_registers > 0
    return FeatureSet(
        patch=LayerDict({i: arrays[i]["patch"] for i in job.layers}, job.depth),
        cls=LayerDict(
            {i: arrays[i]["cls"] for i in job.layers} if opts.with_cls else {}, job.depth
        ),
        registers=LayerDict(
            {i: arrays[i]["registers"] for i in job.layers} if registers else {}, job.depth
        ),
        meta=feats_meta,
        key=job.group_key if store is not None else None,
        key_hash=store_lib.key_hash(job.group_key),
        entry_dir=group.path if group is not None else None,
        grid=job.grid,
    )


def _checked_metadata(
    metadata: Mapping[str, np.ndarray] | None, num_images: int
) -> dict[str, np.ndarray]:
    """`metadata` as numpy arrays with a default "image_id"; each must have N rows first."""
    meta = {k: np.asarray(v) for k, v in (metadata or {}).items()}
    meta.setdefault("image_id", np.arange(num_images, dtype=np.int64))
    for name, value in meta.items():
        if value.ndim == 0 or value.shape[0] != num_images:
            raise DatasetError(
                f"metadata {name!r}: expected shape [N={num_images}, ...], got {value.shape}"
            )
    return meta


def _finalize_stored(
    job: _Job, work: _Work, group: store_lib.Group, entries: Mapping[int, store_lib.Entry]
) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Marks the written entries complete (process 0) and opens every layer's arrays.

    Returns:
      ({layer: {name: np.memmap}}, the group's stored metadata).
    """
    _sync(f"vitjax-extract-written-{store_lib.key_hash(job.group_key)}")
    if jax.process_index() == 0:
        for layer in work.pending:
            entries[layer].finalize()
    _sync(f"vitjax-extract-final-{store_lib.key_hash(job.group_key)}")
    arrays = {}
    for layer in job.layers:
        entries[layer].reload()
        arrays[layer] = entries[layer].open_arrays()
    return arrays, group.read_metadata()


class _Sink:
    """Writes this process's rows of finished batches (to the store or to in-memory arrays)."""

    def __init__(
        self,
        job: _Job,
        work: _Work,
        entries: Mapping[int, store_lib.Entry],
        in_memory: dict[int, dict[str, np.ndarray]],
        progress_interval_s: float,
    ):
        self.job, self.work, self.entries, self.in_memory = job, work, entries, in_memory
        self.meter = progress_lib.Progress(
            total=sum(job.valid_rows(b) for b in work.batches),
            unit="images",
            per_item={"patches": job.grid[0] * job.grid[1]},
            name=f"extract {job.group_key['model']}",
            interval_s=progress_interval_s,
        )

    def write(self, batch_index: int, outputs: Any) -> None:
        job = self.job
        first, host = _local_block(outputs)
        start = batch_index * job.batch_size + first
        stop = min(start + host[self.work.pending[0]]["patch"].shape[0], job.num_images)
        for layer in self.work.pending:
            # Rows already marked done keep their bytes; padding rows are never written.
            for a, b in _runs(~self.work.done[layer][start:stop]):
                chunk = {name: value[a:b] for name, value in host[layer].items()}
                if layer in self.in_memory:
                    for name, value in chunk.items():
                        self.in_memory[layer][name][start + a : start + b] = value
                else:
                    self.entries[layer].write_rows(start + a, chunk)
        self.meter.update(job.valid_rows(batch_index))


def _run_batches(
    job: _Job,
    work: _Work,
    executable: _Executable,
    sink: _Sink,
    num_workers: int | None,
    prefetch: int,
) -> None:
    """The device loop: read ahead on threads, dispatch, write back on a writer thread."""
    global_shape = (job.batch_size, *job.image_shape)
    lo, hi = _local_rows(executable.sharding, global_shape)
    row_ranges = [
        (min(b * job.batch_size + lo, job.num_images), min(b * job.batch_size + hi, job.num_images))
        for b in work.batches
    ]
    reader = _Prefetcher(
        job.source,
        row_ranges,
        hi - lo,
        job.image_shape,
        num_workers or min(8, os.cpu_count() or 1),
        prefetch,
    )
    # A writer thread copies outputs back and writes them while this thread keeps the device
    # fed; the bounded queue caps the batches whose outputs wait in device memory.
    pending_writes: queue.Queue = queue.Queue(maxsize=2)
    failures: list[BaseException] = []

    def writer() -> None:
        while (item := pending_writes.get()) is not None:
            if not failures:  # after a failure, drain without writing
                try:
                    sink.write(*item)
                except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                    failures.append(err)

    thread = threading.Thread(target=writer, name="vitjax-write", daemon=True)
    thread.start()
    batches_in = iter(reader)
    try:
        for batch_index in work.batches:
            if failures:
                break
            local = next(batches_in)
            images = jax.make_array_from_process_local_data(
                executable.sharding, local, global_shape
            )
            pending_writes.put((batch_index, executable(images)))
    finally:
        pending_writes.put(None)
        thread.join()
        batches_in.close()
    if failures:
        raise failures[0]
    sink.meter.close()
