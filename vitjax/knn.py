"""Blocked exact k-nearest-neighbour search and k-NN classification.

`search` finds the exact top-k database rows for every query without ever holding the Q x N score
matrix: queries are streamed from the host in chunks of `query_chunk_rows` rows, and for each query
chunk the database is streamed in chunks of `chunk_rows` rows (so `np.memmap`s larger than memory
work on both sides). Query chunks are cut into blocks of `query_block` rows, database chunks into
blocks of `db_block` rows, and a running top-k per query is merged block by block inside a
`lax.scan`. Device memory is O(query_block x db_block + (query_chunk_rows + chunk_rows) x D +
query_chunk_rows x k) whatever Q and N; every chunk is padded to the same shape, so the kernel
compiles once per configuration.

Ties are broken by the lower database index, identically for every block size and device count:
`lax.top_k` puts the lower position first among equal values, and every merge concatenates the
candidates in database order (running top-k of earlier rows first), so position order is index order.

With `mesh=`, each database chunk is split across all devices of the mesh; every device computes a
partial top-k of its contiguous slice, and the partials are gathered in device order and merged
exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vitjax import errors, metrics, progress

METRICS = ("dot", "cosine", "l2")
RULES = ("1nn", "majority", "weighted")

# Tuned on a 2-core AVX-512 CPU (benchmarks/bench_knn.py): big enough blocks that the matmul runs
# near peak, small enough that a [query_block, db_block] score block stays cheap to reduce.
DEFAULT_QUERY_BLOCK = 1024
DEFAULT_DB_BLOCK = 8192
DEFAULT_CHUNK_ROWS = 65536
DEFAULT_QUERY_CHUNK_ROWS = 65536
# Width of the contiguous column groups whose maxima pre-select candidates (see `_block_top_k`).
DEFAULT_GROUP_SIZE = 32

# Counts how often the chunk kernel is traced; tests use it to prove that nothing recompiles.
_TRACE_COUNT = 0
# The finiteness check of queries and database; only benchmarks/bench_knn.py turns it off, to
# measure its cost (a NaN or inf row would otherwise silently take every query's top slots).
_CHECK_FINITE = True
# Rows per float64 chunk of the streamed database statistics that centre the "l2" metric.
_SHIFT_CHUNK_ROWS = 8192


class Neighbours(tuple):
    """`(scores, indices)` of a search, unpacks as a pair; `.metric` records the metric by name.

    Attributes:
      scores: float32 [Q, k] similarities (for "l2", minus the squared distance), best first.
      indices: int32 [Q, k] database rows; -1 where fewer than k candidates exist.
      metric: "dot", "cosine" or "l2".
    """

    def __new__(cls, scores: np.ndarray, indices: np.ndarray, metric: str):
        result = super().__new__(cls, (scores, indices))
        result.metric = metric
        return result

    @property
    def scores(self) -> np.ndarray:
        return self[0]

    @property
    def indices(self) -> np.ndarray:
        return self[1]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _block_top_k(scores: jax.Array, k: int, group_size: int) -> tuple[jax.Array, jax.Array]:
    """Exact top-k along the last axis of a score block, lower column first among ties.

    For large blocks a plain `lax.top_k` over every column is the bottleneck on CPU, so the columns
    are cut into contiguous groups of `group_size`; the k groups with the largest maxima must hold
    the top-k elements (a group that is not chosen is beaten by k groups whose maxima each beat all
    of its elements, ties going to the lower group and thus the lower index), so the exact top-k is
    taken over those k * group_size candidates, gathered back in ascending column order.

    Args:
      scores: float32 [B, M].
      k: number of entries to keep, at most M.
      group_size: group width; 0 disables the pre-selection.

    Returns:
      (values float32 [B, k], columns int32 [B, k]), sorted by value descending, then column.
    """
    rows, cols = scores.shape
    if group_size <= 1 or cols % group_size or 4 * k * group_size > cols:
        return lax.top_k(scores, k)
    grouped = scores.reshape(rows, cols // group_size, group_size)
    _, best_groups = lax.top_k(jnp.max(grouped, axis=-1), k)
    best_groups = jnp.sort(best_groups, axis=-1)  # ascending index order keeps ties stable
    candidates = jnp.take_along_axis(grouped, best_groups[:, :, None], axis=1)
    values, pos = lax.top_k(candidates.reshape(rows, k * group_size), k)
    group_of_pos = jnp.take_along_axis(best_groups, pos // group_size, axis=1)
    return values, group_of_pos * group_size + pos % group_size


def _merge(values: jax.Array, indices: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Top-k along the last axis of candidates already laid out in ascending database order."""
    top_values, pos = lax.top_k(values, k)
    return top_values, jnp.take_along_axis(indices, pos, axis=-1)


def _scan_database(
    queries: jax.Array,
    query_groups: jax.Array | None,
    database: jax.Array,
    db_bias: jax.Array,
    db_groups: jax.Array | None,
    dim_mask: jax.Array | None,
    shift: jax.Array,
    first_index: jax.Array,
    carry_values: jax.Array,
    carry_indices: jax.Array,
    *,
    metric: str,
    k: int,
    db_block: int,
    group_size: int,
    compute_dtype: Any,
) -> tuple[jax.Array, jax.Array]:
    """Merges every row of `database` into the running top-k of every query block.

    Args:
      queries: float32 [num_query_blocks, query_block, D] (already masked / normalised / scaled).
      query_groups: int32 [num_query_blocks, query_block] or None.
      database: float32 [R, D], R a multiple of db_block.
      db_bias: float32 [R], 0 for candidates and -inf for excluded or padded rows.
      db_groups: int32 [R] or None.
      dim_mask: float32 [D] (1 = keep) or None; only used for database norms.
      shift: float32 [D] subtracted from every database row for "l2" (see `_l2_shift`; the
        queries arrive already shifted); unused by the other metrics.
      first_index: int32 scalar, global index of database row 0.
      carry_values, carry_indices: [num_query_blocks, query_block, k] running top-k.

    Returns:
      The updated running top-k, same shapes as the carry.
    """
    num_rows, dim = database.shape
    num_blocks = num_rows // db_block
    if metric == "l2":
        # Distances are translation invariant; shifting both sides removes a large common offset
        # before the float32 expansion |q|^2 - 2 q.x + |x|^2, which would otherwise cancel it.
        database = database - shift[None, :]
    blocks = database.reshape(num_blocks, db_block, dim)
    biases = db_bias.reshape(num_blocks, db_block)
    groups = None if db_groups is None else db_groups.reshape(num_blocks, db_block)
    starts = first_index + jnp.arange(num_blocks, dtype=jnp.int32) * db_block
    block_k = min(k, db_block)

    def per_query_block(args):
        q, q_group, values, indices = args
        q = q.astype(compute_dtype)

        def merge_block(carry, block_args):
            x, bias, x_group, start = block_args
            scores = lax.dot_general(
                q,
                x.astype(compute_dtype),
                (((1,), (1,)), ((), ())),
                preferred_element_type=jnp.float32,
            )
            if metric != "dot":
                sq = x * x if dim_mask is None else x * x * dim_mask
                sq_norm = jnp.sum(sq, axis=1)
            if metric == "cosine":
                inv_norm = jnp.where(sq_norm > 0, lax.rsqrt(jnp.maximum(sq_norm, 1e-38)), 0.0)
                scores = scores * inv_norm[None, :]
            elif metric == "l2":
                # Queries arrive doubled; -|q|^2 is added once at the end, it cannot change ranks.
                bias = bias - sq_norm
            # Adding the bias also turns -0.0 into +0.0: top_k orders -0.0 below +0.0.
            scores = scores + bias[None, :]
            if x_group is not None:
                scores = jnp.where(q_group[:, None] == x_group[None, :], -jnp.inf, scores)
            block_values, columns = _block_top_k(scores, block_k, group_size)
            merged = _merge(
                jnp.concatenate([carry[0], block_values], axis=1),
                jnp.concatenate([carry[1], columns + start], axis=1),
                k,
            )
            return merged, None

        (values, indices), _ = lax.scan(
            merge_block, (values, indices), (blocks, biases, groups, starts)
        )
        return values, indices

    return lax.map(per_query_block, (queries, query_groups, carry_values, carry_indices))


@functools.lru_cache(maxsize=64)
def _chunk_fn(
    mesh: Mesh | None,
    metric: str,
    k: int,
    db_block: int,
    group_size: int,
    compute_dtype: Any,
    has_groups: bool,
    has_mask: bool,
    check_finite: bool,
):
    """Builds (once per static configuration) the jitted kernel merging one database chunk.

    The kernel returns the updated running top-k and the number of database rows of the chunk
    holding a NaN or inf (0 without `check_finite`), counted in the same compiled step.
    """
    kernel = functools.partial(
        _scan_database,
        metric=metric,
        k=k,
        db_block=db_block,
        group_size=group_size,
        compute_dtype=compute_dtype,
    )

    def single(q, q_groups, x, bias, x_groups, mask, shift, first, carry_v, carry_i):
        global _TRACE_COUNT
        _TRACE_COUNT += 1
        return kernel(
            q,
            q_groups if has_groups else None,
            x,
            bias,
            x_groups if has_groups else None,
            mask if has_mask else None,
            shift,
            first,
            carry_v,
            carry_i,
        )

    def with_count(merge):
        def step(q, q_groups, x, bias, x_groups, mask, shift, first, carry_v, carry_i):
            values, indices = merge(
                q, q_groups, x, bias, x_groups, mask, shift, first, carry_v, carry_i
            )
            if not check_finite:
                return values, indices, jnp.int32(0)
            # One pass over the chunk already on the device, O(rows x D) against the matmul's
            # O(queries x rows x D); the host reads the count when it waits for the chunk anyway.
            bad_rows = jnp.sum(jnp.any(~jnp.isfinite(x), axis=1), dtype=jnp.int32)
            return values, indices, bad_rows

        return jax.jit(step)

    if mesh is None:
        return with_count(single)

    axes = tuple(mesh.axis_names)
    num_devices = mesh.devices.size

    def sharded(q, q_groups, x, bias, x_groups, mask, shift, first, carry_v, carry_i):
        # Each device scans its own contiguous slice from an empty top-k, so that the running
        # top-k (replicated) is merged exactly once, after the partials are gathered.
        local_rows = x.shape[0]
        device = lax.axis_index(axes)
        empty_v = jnp.full(carry_v.shape, -jnp.inf, jnp.float32)
        empty_i = jnp.full(carry_i.shape, -1, jnp.int32)
        part_v, part_i = single(
            q,
            q_groups,
            x,
            bias,
            x_groups,
            mask,
            shift,
            first + device * local_rows,
            empty_v,
            empty_i,
        )
        # [devices, nqb, qb, k] in device order == database order.
        all_v = lax.all_gather(part_v, axes, axis=0)
        all_i = lax.all_gather(part_i, axes, axis=0)
        all_v = jnp.moveaxis(all_v, 0, 2).reshape(*carry_v.shape[:2], num_devices * k)
        all_i = jnp.moveaxis(all_i, 0, 2).reshape(*carry_i.shape[:2], num_devices * k)
        return _merge(
            jnp.concatenate([carry_v, all_v], axis=-1),
            jnp.concatenate([carry_i, all_i], axis=-1),
            k,
        )

    shard = P(axes)
    return with_count(
        jax.shard_map(
            sharded,
            mesh=mesh,
            in_specs=(P(), P(), shard, shard, shard, P(), P(), P(), P(), P()),
            out_specs=(P(), P()),
            # all_gather leaves the merged top-k identical on every device, which the replication
            # checker cannot infer.
            check_vma=False,
        )
    )


def _l2_shift(database: Any, dim_mask: np.ndarray | None) -> np.ndarray:
    """float32 [D] per-dimension shift that centres the database for the "l2" metric.

    The database mean, computed streamed in float64 (chunk means and squared deviations merged
    exactly, Chan et al.), rounded to the power-of-two grid of the dimension's standard
    deviation: the shift is 0 wherever the mean is below about half the spread (data without
    offsets is searched exactly as before), has few significant bits (so subtracting it from
    float32 values near the mean is exact), and leaves every dimension within about one standard
    deviation of 0. Dropped dimensions get 0.

    Raises:
      errors.InputError: the database holds NaN or inf (found here for free, before the search).
    """
    num_rows, dim = database.shape
    count, mean, m2 = 0, np.zeros(dim, np.float64), np.zeros(dim, np.float64)
    for start in range(0, num_rows, _SHIFT_CHUNK_ROWS):
        chunk = np.array(database[start : start + _SHIFT_CHUNK_ROWS], np.float64)  # a copy
        chunk_mean = chunk.mean(axis=0)
        if _CHECK_FINITE and not np.isfinite(chunk_mean).all():
            metrics.check_finite("knn.search", "database", database)
        rows = len(chunk)
        delta = chunk_mean - mean
        total = count + rows
        mean += delta * (rows / total)
        chunk -= chunk_mean
        m2 += np.einsum("ij,ij->j", chunk, chunk)
        m2 += delta**2 * (count * rows / total)
        count = total
    std = np.sqrt(m2 / max(count, 1))
    with np.errstate(divide="ignore"):
        grid = np.where(std > 0, 2.0 ** np.floor(np.log2(np.where(std > 0, std, 1.0))), 0.0)
    shift = np.where(grid > 0, np.round(mean / np.where(grid > 0, grid, 1.0)) * grid, mean)
    if dim_mask is not None:
        shift = shift * dim_mask
    return np.nan_to_num(shift.astype(np.float32))


def _as_2d_float(name: str, array: Any) -> tuple[int, int]:
    shape = getattr(array, "shape", None)
    if shape is None or len(shape) != 2:
        raise errors.ConfigError(f"knn.search: `{name}` must be a 2-D array [rows, D], got {shape}")
    return int(shape[0]), int(shape[1])


def _check_vector(name: str, array: Any, length: int) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != (length,):
        raise errors.ConfigError(
            f"knn.search: `{name}` must have shape ({length},), got {array.shape}"
        )
    return array


def _check_options(
    metric: str,
    sizes: Sequence[tuple[str, Any]],
    group_size: int,
) -> None:
    """Raises ConfigError on an unknown metric, a non-positive size or a negative group width."""
    if metric not in METRICS:
        raise errors.ConfigError(f"knn.search: metric must be one of {METRICS}, got {metric!r}")
    for name, value in sizes:
        if int(value) != value or value < 1:
            raise errors.ConfigError(f"knn.search: `{name}` must be a positive int, got {value!r}")
    if group_size < 0:
        raise errors.ConfigError(f"knn.search: `group_size` must be >= 0, got {group_size}")


def _check_shapes(queries: Any, database: Any) -> tuple[int, int, int]:
    """(Q, N, D) of [Q, D] queries and an [N, D] database; ConfigError if D differs."""
    num_queries, dim = _as_2d_float("queries", queries)
    num_db, db_dim = _as_2d_float("database", database)
    if db_dim != dim:
        raise errors.ConfigError(
            f"knn.search: `queries` have D={dim} but `database` has D={db_dim}"
        )
    return num_queries, num_db, dim


def _compact_groups(
    query_groups: Any, db_groups: Any, num_queries: int, num_db: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """int32 [Q] and [N] group ids numbered 0.. (None without groups); checks both or neither."""
    if (query_groups is None) != (db_groups is None):
        raise errors.ConfigError("knn.search: give both `query_groups` and `db_groups`, or neither")
    if query_groups is None:
        return None
    query_groups = _check_vector("query_groups", query_groups, num_queries)
    db_groups = _check_vector("db_groups", db_groups, num_db)
    # Compact ids: any hashable-by-value group labels (e.g. int64 image ids) fit in int32.
    _, compact = np.unique(np.concatenate([query_groups, db_groups]), return_inverse=True)
    return compact[:num_queries].astype(np.int32), compact[num_queries:].astype(np.int32)


def _dim_mask(drop_dims: Sequence[int] | np.ndarray | None, dim: int) -> np.ndarray | None:
    """float32 [D] mask, 0 at the dropped dimensions (None when nothing is dropped)."""
    if drop_dims is None or not len(drop_dims):
        return None
    drop = np.asarray(drop_dims).astype(np.int64).ravel()
    if drop.min() < -dim or drop.max() >= dim:
        raise errors.ConfigError(
            f"knn.search: `drop_dims` must index features in [0, {dim}), got {drop.tolist()}"
        )
    dim_mask = np.ones(dim, np.float32)
    dim_mask[drop] = 0.0
    return dim_mask


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Block and chunk sizes of one search, shrunk to its inputs.

    Attributes:
      q_block, x_block: rows of a query block and of a (per-device) database block.
      q_chunk: queries per pass over the database, a multiple of q_block.
      chunk: database rows per kernel call, a multiple of x_block x devices.
    """

    q_block: int
    x_block: int
    q_chunk: int
    chunk: int

    @classmethod
    def of(
        cls,
        num_queries: int,
        num_db: int,
        num_devices: int,
        query_block: int,
        db_block: int,
        query_chunk_rows: int,
        chunk_rows: int,
        group_size: int,
    ) -> _Layout:
        q_block = min(query_block, _round_up(num_queries, 8))
        # A shrunk block stays a multiple of the group width so the candidate pre-selection applies.
        x_block = min(db_block, _round_up(-(-num_db // num_devices), max(16, group_size)))
        q_chunk = max(1, query_chunk_rows // q_block) * q_block
        q_chunk = min(q_chunk, _round_up(num_queries, q_block))
        rows_per_step = x_block * num_devices
        chunk = max(1, chunk_rows // rows_per_step) * rows_per_step
        chunk = min(chunk, _round_up(num_db, rows_per_step))
        return cls(q_block, x_block, q_chunk, chunk)


class _Stream:
    """The host side of one search: pads and places chunks, runs the kernel, copies results out.

    Queries stream in chunks of `layout.q_chunk` rows; for each, the database streams in chunks of
    `layout.chunk` rows through the jitted chunk kernel `fn` (see `_chunk_fn`), which carries the
    running top-k of the query chunk on the device.
    """

    def __init__(
        self,
        queries: Any,
        database: Any,
        *,
        k: int,
        metric: str,
        layout: _Layout,
        dim_mask: np.ndarray | None,
        groups: tuple[np.ndarray, np.ndarray] | None,
        db_valid: np.ndarray | None,
        shift: np.ndarray,
        check_finite: bool,
        mesh: Mesh | None,
        fn: Callable[..., Any],
    ):
        self.queries, self.database = queries, database
        self.k, self.metric, self.layout = k, metric, layout
        self.dim_mask, self.groups, self.db_valid = dim_mask, groups, db_valid
        self.check_finite, self.fn = check_finite, fn
        self.num_queries, self.dim = int(queries.shape[0]), int(queries.shape[1])
        self.num_db = int(database.shape[0])
        if mesh is None:
            self.replicated = self.sharded = None
        else:
            self.replicated = NamedSharding(mesh, P())
            self.sharded = NamedSharding(mesh, P(tuple(mesh.axis_names)))
        self.shift = shift
        mask_arg = np.ones(self.dim, np.float32) if dim_mask is None else dim_mask
        self.mask_dev = self.put(mask_arg, self.replicated)
        self.shift_dev = self.put(shift, self.replicated)
        self.scores = np.full((self.num_queries, k), -np.inf, np.float32)
        self.indices = np.full((self.num_queries, k), -1, np.int32)

    @staticmethod
    def put(array: np.ndarray, sharding: NamedSharding | None) -> jax.Array:
        return jnp.asarray(array) if sharding is None else jax.device_put(array, sharding)

    def query_chunk(self, q_start: int, q_stop: int) -> tuple[jax.Array, jax.Array, np.ndarray]:
        """One query chunk, padded to `q_chunk` rows so every chunk has the same shapes.

        Queries are shifted (l2), masked, then normalised (cosine) or doubled (l2), with norms in
        float64; only this chunk is ever copied, so Q is bounded by the host array (or memmap)
        alone. A NaN or inf makes its row's norm non-finite (also in a dropped dimension: the
        mask multiplies), so the finiteness check costs one test per query.

        Returns:
          (queries float32 [q_chunk / q_block, q_block, D], groups int32 [same, without D],
          float64 [rows] squared norms of the shifted, masked queries).
        """
        q_chunk, q_block, dim = self.layout.q_chunk, self.layout.q_block, self.dim
        rows = q_stop - q_start
        q = np.zeros((q_chunk, dim), np.float32)
        q[:rows] = np.asarray(self.queries[q_start:q_stop], dtype=np.float32)
        if self.metric == "l2":
            q[:rows] -= self.shift
        if self.dim_mask is not None:
            q *= self.dim_mask
        wide = q[:rows].astype(np.float64)
        sq_norm = np.einsum("ij,ij->i", wide, wide)
        if self.check_finite and not np.isfinite(sq_norm).all():
            metrics.check_finite("knn.search", "queries", self.queries)
        if self.metric == "cosine":
            norm = np.sqrt(sq_norm)
            q[:rows] = wide / np.where(norm > 0, norm, 1.0)[:, None]
        elif self.metric == "l2":
            q *= 2.0
        q_groups = np.zeros(q_chunk, np.int32)
        if self.groups is not None:
            q_groups[:rows] = self.groups[0][q_start:q_stop]
        blocks = q_chunk // q_block
        return (
            self.put(q.reshape(blocks, q_block, dim), self.replicated),
            self.put(q_groups.reshape(blocks, q_block), self.replicated),
            sq_norm,
        )

    def database_chunk(self, start: int, stop: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Rows [start, stop) padded to `chunk` rows: (float32 [chunk, D], bias [chunk], groups).

        The bias is 0 for candidates and -inf for padding and rows excluded by `db_valid`.
        """
        chunk, rows = self.layout.chunk, stop - start
        x = np.asarray(self.database[start:stop], dtype=np.float32)
        if rows < chunk:
            x = np.concatenate([x, np.zeros((chunk - rows, self.dim), np.float32)])
        bias = np.full(chunk, -np.inf, np.float32)
        bias[:rows] = 0.0
        if self.db_valid is not None:
            bias[:rows][~self.db_valid[start:stop]] = -np.inf
        x_groups = np.zeros(chunk, np.int32)
        if self.groups is not None:
            x_groups[:rows] = self.groups[1][start:stop]
        return (
            self.put(x, self.sharded),
            self.put(bias, self.sharded),
            self.put(x_groups, self.sharded),
        )

    def check_chunk(self, bad_rows: jax.Array, start: int, stop: int) -> None:
        """Raises if the kernel counted non-finite rows in database[start:stop]."""
        if self.check_finite and int(bad_rows):
            metrics.check_finite("knn.search", "database", self.database)
            # Not reached unless the database changed under us; never return wrong neighbours.
            raise errors.InputError(
                f"knn.search: `database` rows {start}-{stop - 1} held non-finite values"
            )

    def finish(self, q_start: int, q_stop: int, sq_norm: np.ndarray, carry_v, carry_i) -> None:
        """Copies one query chunk's running top-k into the outputs."""
        q_chunk, k = self.layout.q_chunk, self.k
        rows = q_stop - q_start
        values = np.asarray(carry_v).reshape(q_chunk, k)[:rows]
        indices = np.asarray(carry_i).reshape(q_chunk, k)[:rows]
        found = np.isfinite(values)
        if self.metric == "l2":
            values = values - sq_norm.astype(np.float32)[:, None]
        self.scores[q_start:q_stop] = np.where(found, values, -np.inf)
        self.indices[q_start:q_stop] = np.where(found, indices, -1)

    def run(self) -> Neighbours:
        """Streams every query chunk against every database chunk; the merged top-k of all."""
        q_chunk, chunk = self.layout.q_chunk, self.layout.chunk
        carry_shape = (q_chunk // self.layout.q_block, self.layout.q_block, self.k)
        empty_v = np.full(carry_shape, -np.inf, np.float32)
        empty_i = np.full(carry_shape, -1, np.int32)
        num_q_chunks = -(-self.num_queries // q_chunk)
        # Rate-limited lines (every 10 s at most); short searches log nothing.
        meter = progress.Progress(
            num_q_chunks * self.num_db,
            "chunk rows",
            name=f"knn.search ({num_q_chunks} query chunks x {self.num_db} database rows)",
        )
        in_flight = pending = None
        for q_start in range(0, self.num_queries, q_chunk):
            q_stop = min(q_start + q_chunk, self.num_queries)
            q_dev, q_groups_dev, q_sq_norm = self.query_chunk(q_start, q_stop)
            carry_v = self.put(empty_v, self.replicated)
            carry_i = self.put(empty_i, self.replicated)
            for start in range(0, self.num_db, chunk):
                stop = min(start + chunk, self.num_db)
                x, bias, x_groups = self.database_chunk(start, stop)
                carry_v, carry_i, bad_rows = self.fn(
                    q_dev,
                    q_groups_dev,
                    x,
                    bias,
                    x_groups,
                    self.mask_dev,
                    self.shift_dev,
                    jnp.int32(start),
                    carry_v,
                    carry_i,
                )
                # Dispatch is asynchronous: the next chunk is read from disk while this one
                # computes. Waiting for the previous chunk keeps at most two chunks alive, so host
                # memory stays bounded however fast the reads are.
                if in_flight is not None:
                    jax.block_until_ready(in_flight[0])
                    self.check_chunk(*in_flight[1:])
                    meter.update(in_flight[3] - in_flight[2])
                in_flight = (carry_v, bad_rows, start, stop)
            # The previous query chunk is copied out only now, so its copy overlaps this one's
            # work; at most two query chunks' carries are alive at once.
            if pending is not None:
                self.finish(*pending)
            pending = (q_start, q_stop, q_sq_norm, carry_v, carry_i)
        self.check_chunk(*in_flight[1:])
        self.finish(*pending)
        return Neighbours(self.scores, self.indices, self.metric)


def search(
    queries: Any,
    database: Any,
    k: int = 10,
    metric: str = "dot",
    drop_dims: Sequence[int] | np.ndarray | None = None,
    query_groups: Any = None,
    db_groups: Any = None,
    query_block: int = DEFAULT_QUERY_BLOCK,
    db_block: int = DEFAULT_DB_BLOCK,
    compute_dtype: Any = jnp.float32,
    mesh: Mesh | None = None,
    *,
    db_valid: Any = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS,
    group_size: int = DEFAULT_GROUP_SIZE,
) -> Neighbours:
    """Exact k nearest neighbours of every query among the database rows.

    Args:
      queries: [Q, D] array-like of floats, e.g. an `np.memmap`; read in chunks of
        `query_chunk_rows` rows (converted to float32 one chunk at a time).
      database: [N, D] array-like of floats, e.g. an `np.memmap`; read in chunks of `chunk_rows`
        rows, so it never has to be loaded whole.
      k: neighbours per query (any positive value; with fewer than k candidates the rest of the
        row is index -1 and score -inf).
      metric: "dot" (inner product), "cosine" (inner product of L2-normalised vectors; a zero
        vector has similarity 0 to everything) or "l2" (score = minus the squared distance;
        queries and database are first shifted by the database's mean, read in one extra
        streamed pass, so that large offsets shared by all rows do not cancel in float32).
      drop_dims: feature dimensions to ignore (e.g. the highest-variance ones). The database is not
        copied: the queries get zeros there, and database norms leave those dimensions out.
      query_groups, db_groups: int [Q] and [N]; a database row whose group equals the query's group
        is never returned (e.g. patches of the query's own image). Give both or neither.
      query_block, db_block: block sizes of the blocked matmul (shrunk for small inputs).
      compute_dtype: dtype of the matmul inputs (`jnp.bfloat16` halves their size); accumulation
        and the returned scores are float32 either way.
      mesh: a `jax.sharding.Mesh`; each database chunk is split over all of its devices.
      db_valid: bool [N]; rows marked False are never returned (e.g. ignore-labelled patches).
      chunk_rows: database rows moved to the device per call (rounded to whole blocks).
      query_chunk_rows: queries moved to the device per pass over the database (rounded to whole
        query blocks); the database is read once per query chunk.
      group_size: column-group width of the exact candidate pre-selection (0 disables it).

    Returns:
      `Neighbours`: (scores float32 [Q, k], indices int32 [Q, k]), best first, ties going to the
      lower index; unpacks as a pair, and `.metric` names the metric.

    Raises:
      errors.ConfigError: on unknown metric, non-positive k or block sizes, or mismatched shapes.
      errors.InputError: a query or database row holds NaN or inf (counted on the device in the
        same compiled step as the scores; the message names the count and the first bad row).

    Examples:
      >>> db = np.eye(4, dtype=np.float32)
      >>> scores, idx = search(db[:2] * 2, db, k=2)
      >>> idx.tolist()
      [[0, 1], [1, 0]]
    """
    _check_options(
        metric,
        (
            ("k", k),
            ("query_block", query_block),
            ("db_block", db_block),
            ("chunk_rows", chunk_rows),
            ("query_chunk_rows", query_chunk_rows),
        ),
        group_size,
    )
    num_queries, num_db, dim = _check_shapes(queries, database)
    groups = _compact_groups(query_groups, db_groups, num_queries, num_db)
    if db_valid is not None:
        db_valid = _check_vector("db_valid", db_valid, num_db).astype(bool)
    dim_mask = _dim_mask(drop_dims, dim)
    if num_queries == 0 or num_db == 0:
        empty_scores = np.full((num_queries, k), -np.inf, np.float32)
        return Neighbours(empty_scores, np.full((num_queries, k), -1, np.int32), metric)

    num_devices = 1 if mesh is None else int(mesh.devices.size)
    layout = _Layout.of(
        num_queries,
        num_db,
        num_devices,
        query_block,
        db_block,
        query_chunk_rows,
        chunk_rows,
        group_size,
    )
    check_finite = bool(_CHECK_FINITE)
    shift = _l2_shift(database, dim_mask) if metric == "l2" else np.zeros(dim, np.float32)
    fn = _chunk_fn(
        mesh,
        metric,
        int(k),
        int(layout.x_block),
        int(group_size),
        jnp.dtype(compute_dtype),
        groups is not None,
        dim_mask is not None,
        check_finite,
    )
    stream = _Stream(
        queries,
        database,
        k=k,
        metric=metric,
        layout=layout,
        dim_mask=dim_mask,
        groups=groups,
        db_valid=db_valid,
        shift=shift,
        check_finite=check_finite,
        mesh=mesh,
        fn=fn,
    )
    return stream.run()


def classify(
    idx: np.ndarray,
    scores: np.ndarray,
    db_labels: np.ndarray,
    num_classes: int,
    rule: str = "1nn",
    k: int | None = None,
    temperature: float = 0.07,
) -> np.ndarray:
    """Predicts a class per query from its neighbours.

    Neighbours with index -1 or a label outside [0, num_classes) (e.g. the ignore label 255) do not
    vote; to keep such rows out of the neighbour list altogether, pass `db_valid` to `search`.

    Args:
      idx: int [Q, K] neighbour indices from `search`, best first.
      scores: float [Q, K] matching similarities.
      db_labels: int [N] label of every database row.
      num_classes: number of classes C.
      rule: "1nn" (label of the nearest voter), "majority" (most frequent label among the first k;
        ties go to the tied label met first, i.e. nearest) or "weighted" (DINO: sum of
        exp(score / temperature) per label; ties go to the lower label).
      k: use only the first k neighbours (default: all K).
      temperature: softmax temperature of the "weighted" rule.

    Returns:
      int32 [Q] predicted labels; -1 for a query without any voting neighbour.

    Raises:
      errors.ConfigError: on an unknown rule, bad k, or mismatched shapes.
      errors.InputError: `db_labels` or `idx` are not integers (float labels are not truncated).

    Examples:
      >>> classify(np.array([[2, 0, 1]]), np.zeros((1, 3)), np.array([1, 0, 0]), 2, "majority")
      array([0], dtype=int32)
    """
    if rule not in RULES:
        raise errors.ConfigError(f"knn.classify: rule must be one of {RULES}, got {rule!r}")
    idx = metrics.check_labels("knn.classify", "idx", idx)
    scores = np.asarray(scores, dtype=np.float64)
    db_labels = metrics.check_labels("knn.classify", "db_labels", db_labels)
    if idx.ndim != 2 or scores.shape != idx.shape:
        raise errors.ConfigError(
            f"knn.classify: `idx` and `scores` must both be [Q, K], got {idx.shape}, {scores.shape}"
        )
    if db_labels.ndim != 1:
        raise errors.ConfigError(f"knn.classify: `db_labels` must be [N], got {db_labels.shape}")
    if k is not None:
        if k < 1 or k > idx.shape[1]:
            raise errors.ConfigError(f"knn.classify: `k` must be in [1, {idx.shape[1]}], got {k}")
        idx, scores = idx[:, :k], scores[:, :k]
    if temperature <= 0:
        raise errors.ConfigError(f"knn.classify: `temperature` must be > 0, got {temperature}")
    num_queries, width = idx.shape
    present = (idx >= 0) & (idx < len(db_labels))
    labels = np.where(present, db_labels[np.where(present, idx, 0)], -1).astype(np.int64)
    voting = present & (labels >= 0) & (labels < num_classes)
    labels = np.where(voting, labels, -1)
    has_vote = voting.any(axis=1)
    first_voter = np.argmax(voting, axis=1)
    nearest = labels[np.arange(num_queries), first_voter]
    if rule == "1nn" or width == 0:
        return np.where(has_vote, nearest, -1).astype(np.int32)

    rows = np.repeat(np.arange(num_queries), width).reshape(num_queries, width)
    safe_labels = np.where(voting, labels, 0)
    if rule == "majority":
        counts = np.zeros((num_queries, num_classes), np.int64)
        np.add.at(counts, (rows[voting], safe_labels[voting]), 1)
        best = counts.max(axis=1, keepdims=True)
        # Among tied labels, the one whose first occurrence is nearest wins.
        tied = (counts[rows, safe_labels] == best) & voting
        choice = labels[np.arange(num_queries), np.argmax(tied, axis=1)]
    else:
        # Shift by the row maximum before exp so large dot products do not overflow.
        logits = np.where(voting, scores, -np.inf)
        row_max = np.max(np.where(voting, scores, -np.inf), axis=1, keepdims=True)
        weights = np.where(
            voting, np.exp((logits - np.where(has_vote[:, None], row_max, 0.0)) / temperature), 0.0
        )
        totals = np.zeros((num_queries, num_classes), np.float64)
        np.add.at(totals, (rows[voting], safe_labels[voting]), weights[voting])
        choice = np.argmax(totals, axis=1)
    return np.where(has_vote, choice, -1).astype(np.int32)
