"""Model-parallel placement of ViT parameters: the big matrices split over a 'model' mesh axis.

A model whose parameters do not fit one device (DINOv3 7B: 6.7B parameters, 13.4 GB in bfloat16,
27 GB in float32) runs with its parameters sharded over the `model` axis of the mesh, Megatron
style: the qkv and first MLP kernels (and their biases) by output column, the attention output and
second MLP kernels by input row; norms, tokens and position tables stay replicated. The forward is
unchanged: `jax.jit` with these input shardings lets XLA insert the collectives, so the output is
the unsharded computation's (up to the order of float sums).

Examples:
  >>> mesh = Mesh(np.asarray(jax.devices()).reshape(1, 8), ("data", "model"))
  >>> params = jax.device_put(params, param_shardings(params, mesh))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MODEL_AXIS = "model"

# (module, leaf) -> dimension split over the model axis.
_COLUMN = {("qkv", "kernel"): 1, ("qkv", "bias"): 0, ("fc1", "kernel"): 1, ("fc1", "bias"): 0}
_COLUMN |= {("w12", "kernel"): 1, ("w12", "bias"): 0}
_ROW = {("proj", "kernel"): 0, ("fc2", "kernel"): 0, ("w3", "kernel"): 0}


def model_axis_size(mesh: Mesh | None) -> int:
    """Devices along the mesh's 'model' axis (1 without one)."""
    if mesh is None or MODEL_AXIS not in mesh.axis_names:
        return 1
    return int(mesh.shape[MODEL_AXIS])


def partition(path: tuple[str, ...], shape: tuple[int, ...], shards: int) -> P:
    """The PartitionSpec of the parameter at `path` for `shards` model-axis devices.

    Block matrices (`block_*/attn/*`, `block_*/mlp/*`) split as described in the module doc when
    the split dimension divides evenly; everything else is replicated (`P()`).
    """
    if shards <= 1 or not path or not path[0].startswith("block_") or len(path) < 2:
        return P()
    key = tuple(path[-2:])
    dim = _COLUMN.get(key, _ROW.get(key))
    if dim is None or shape[dim] % shards:
        return P()
    spec = [None] * len(shape)
    spec[dim] = MODEL_AXIS
    return P(*spec)


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(entry, "key", getattr(entry, "name", entry))) for entry in path)


def param_shardings(params: Mapping[str, Any], mesh: Mesh) -> Any:
    """A tree of NamedSharding with the structure of `params` (arrays or ShapeDtypeStructs;
    replicated when the mesh has no 'model' axis)."""
    shards = model_axis_size(mesh)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(
            mesh, partition(_path_names(path), tuple(leaf.shape), shards)
        ),
        params,
    )


def param_bytes_per_device(params: Mapping[str, Any], shards: int) -> int:
    """Bytes of parameters one device holds with `shards` model-axis devices.

    Args:
      params: the parameter tree, of arrays or `jax.ShapeDtypeStruct`s (nothing is allocated).
      shards: devices along the model axis.
    """
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        size = int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        spec = partition(_path_names(path), tuple(leaf.shape), shards)
        total += size // shards if any(s is not None for s in spec) else size
    return total


def device_memory_limit(device: jax.Device | None = None) -> int | None:
    """Bytes one device can hold (its allocator's limit), or None where JAX does not say (CPU)."""
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats()
    except (NotImplementedError, AttributeError, RuntimeError):
        return None
    if not stats:
        return None
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None
