"""Tests of vitjax.knn against a float64 numpy brute force and faiss-cpu."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.sharding import Mesh

from tests import test_util  # noqa: F401
from vitjax import errors, knn

faiss = test_util.optional_import("faiss")


def brute_force(queries, database, k, metric="dot", exclude=None):
    """float64 oracle: (scores [Q, k], idx [Q, k]) sorted by score desc, then index asc.

    `exclude`: bool [Q, N], True where a pair may not be returned. Missing entries: -inf / -1.
    """
    q = np.asarray(queries, np.float64)
    x = np.asarray(database, np.float64)
    if metric == "cosine":
        qn, xn = np.linalg.norm(q, axis=1), np.linalg.norm(x, axis=1)
        q = q / np.where(qn > 0, qn, 1)[:, None]
        x = x / np.where(xn > 0, xn, 1)[:, None]
    if metric == "l2":
        scores = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    else:
        scores = q @ x.T
    if exclude is not None:
        scores = np.where(exclude, -np.inf, scores)
    index = np.broadcast_to(np.arange(x.shape[0]), scores.shape)
    order = np.lexsort((index, -scores), axis=1)[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    idx = np.where(np.isfinite(top), order, -1)
    pad = k - top.shape[1]
    if pad > 0:
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
    return top, idx


def int_data(rng, rows, dim, low=-3, high=4):
    """Small integers: every dot product and norm is exact in float32, so ties are exact."""
    return rng.integers(low, high, (rows, dim)).astype(np.float32)


def mesh_1d():
    return Mesh(np.array(jax.devices()), ("data",))


class SearchOracleTest(parameterized.TestCase):
    def assert_same_up_to_ties(self, scores, idx, queries, database, oracle_scores, metric, atol):
        """Scores match the oracle, and each returned index truly has the score of its rank."""
        np.testing.assert_allclose(scores, oracle_scores, rtol=0, atol=atol)
        all_scores, _ = brute_force(queries, database, database.shape[0], metric)
        q = np.asarray(queries, np.float64)
        x = np.asarray(database, np.float64)
        for row in range(len(idx)):
            found = idx[row][idx[row] >= 0]
            self.assertLen(set(found.tolist()), len(found))  # no duplicates
            if metric == "l2":
                true = -((q[row] - x[found]) ** 2).sum(-1)
            elif metric == "cosine":
                xn = x[found] / np.maximum(np.linalg.norm(x[found], axis=1, keepdims=True), 1e-300)
                true = xn @ (q[row] / max(np.linalg.norm(q[row]), 1e-300))
            else:
                true = x[found] @ q[row]
            np.testing.assert_allclose(true, all_scores[row, : len(found)], rtol=0, atol=atol)

    @parameterized.product(
        metric=["dot", "l2"],
        blocks=[(8, 16, 0), (5, 7, 0), (16, 128, 4), (1024, 8192, 32)],
    )
    def test_exact_integer_data_matches_oracle(self, metric, blocks):
        query_block, db_block, group_size = blocks
        rng = np.random.default_rng(0)
        queries, database = int_data(rng, 37, 12), int_data(rng, 203, 12)
        result = knn.search(
            queries,
            database,
            k=7,
            metric=metric,
            query_block=query_block,
            db_block=db_block,
            group_size=group_size,
        )
        scores, idx = result
        self.assertEqual(result.metric, metric)
        self.assertIs(result.indices, idx)
        oracle_scores, oracle_idx = brute_force(queries, database, 7, metric)
        self.assertEqual(scores.dtype, np.float32)
        self.assertEqual(idx.dtype, np.int32)
        np.testing.assert_array_equal(idx, oracle_idx)
        np.testing.assert_array_equal(scores, oracle_scores.astype(np.float32))

    @parameterized.parameters(
        dict(group_size=0, query_block=4, db_block=8),
        dict(group_size=2, query_block=16, db_block=128),
        dict(group_size=4, query_block=64, db_block=256),
    )
    def test_massive_ties_go_to_lower_index(self, group_size, query_block, db_block):
        # 600 rows drawn from 40 distinct vectors: ~15 exact copies of each, so the top 12 of a
        # query mixes tie levels across groups and blocks.
        rng = np.random.default_rng(1)
        distinct = int_data(rng, 40, 6)
        database = distinct[rng.integers(0, 40, 600)]
        queries = int_data(rng, 21, 6)
        oracle_idx = brute_force(queries, database, 12)[1]
        for mesh in (None, mesh_1d()):
            _, idx = knn.search(
                queries,
                database,
                k=12,
                query_block=query_block,
                db_block=db_block,
                group_size=group_size,
                mesh=mesh,
            )
            np.testing.assert_array_equal(idx, oracle_idx)

    @parameterized.parameters(1, 5, 10)
    def test_grouped_block_top_k_equals_top_k(self, k):
        # Integer scores with many ties; a group with a larger maximum must not jump ahead of a
        # lower-index group in tie-breaking.
        rng = np.random.default_rng(k)
        scores = jnp.asarray(rng.integers(0, 6, (50, 512)).astype(np.float32))
        scores = scores.at[0, :8].set(jnp.array([5, 0, 0, 0, 9, 5, 0, 0], jnp.float32))
        want_values, want_idx = jax.lax.top_k(scores, k)
        values, idx = knn._block_top_k(scores, k, group_size=4)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(values, want_values)

    def test_cosine_matches_oracle(self):
        rng = np.random.default_rng(2)
        queries = rng.standard_normal((29, 16)).astype(np.float32)
        database = rng.standard_normal((157, 16)).astype(np.float32) * rng.uniform(
            0.1, 10, (157, 1)
        ).astype(np.float32)
        database[5] = 0.0  # a zero vector has similarity 0
        scores, idx = knn.search(queries, database, k=9, metric="cosine", db_block=32)
        oracle_scores, _ = brute_force(queries, database, 9, "cosine")
        self.assert_same_up_to_ties(scores, idx, queries, database, oracle_scores, "cosine", 1e-5)

    @parameterized.parameters("dot", "cosine", "l2")
    @test_util.requires("faiss")
    def test_matches_faiss(self, metric):
        rng = np.random.default_rng(3)
        queries = rng.standard_normal((150, 24)).astype(np.float32)
        database = rng.standard_normal((1100, 24)).astype(np.float32)
        q, x = queries, database
        if metric == "cosine":
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
        index = faiss.IndexFlatL2(24) if metric == "l2" else faiss.IndexFlatIP(24)
        index.add(x)
        faiss_scores, faiss_idx = index.search(q, 10)
        if metric == "l2":
            faiss_scores = -faiss_scores
        scores, idx = knn.search(queries, database, k=10, metric=metric, db_block=128)
        np.testing.assert_allclose(scores, faiss_scores, rtol=0, atol=1e-4)
        # Random floats: no near-ties at this tolerance, so the indices must agree.
        np.testing.assert_array_equal(idx, faiss_idx)

    def test_k_larger_than_blocks_and_candidates(self):
        rng = np.random.default_rng(4)
        queries, database = int_data(rng, 10, 5), int_data(rng, 60, 5)
        scores, idx = knn.search(queries, database, k=100, query_block=4, db_block=16)
        oracle_scores, oracle_idx = brute_force(queries, database, 100)
        np.testing.assert_array_equal(idx, oracle_idx)
        np.testing.assert_array_equal(idx[:, 60:], -1)
        self.assertTrue(np.all(np.isneginf(scores[:, 60:])))
        np.testing.assert_array_equal(scores, oracle_scores.astype(np.float32))

    @parameterized.parameters("dot", "cosine", "l2")
    def test_drop_dims_equals_deleting_columns(self, metric):
        rng = np.random.default_rng(5)
        queries, database = int_data(rng, 23, 10), int_data(rng, 140, 10)
        drop = np.array([0, 3, 7])
        scores, idx = knn.search(
            queries, database, k=6, metric=metric, drop_dims=drop, db_block=32, query_block=8
        )
        kept_q, kept_x = np.delete(queries, drop, axis=1), np.delete(database, drop, axis=1)
        oracle_scores, oracle_idx = brute_force(kept_q, kept_x, 6, metric)
        if metric == "cosine":
            self.assert_same_up_to_ties(scores, idx, kept_q, kept_x, oracle_scores, metric, 1e-5)
        else:
            np.testing.assert_array_equal(idx, oracle_idx)
            np.testing.assert_array_equal(scores, oracle_scores.astype(np.float32))

    def test_group_exclusion_and_db_valid(self):
        rng = np.random.default_rng(6)
        queries, database = int_data(rng, 30, 8), int_data(rng, 170, 8)
        query_groups = rng.integers(0, 5, 30)
        db_groups = rng.integers(0, 5, 170)
        db_valid = rng.random(170) > 0.3
        exclude = (query_groups[:, None] == db_groups[None, :]) | ~db_valid[None, :]
        oracle_scores, oracle_idx = brute_force(queries, database, 40, exclude=exclude)
        for mesh in (None, mesh_1d()):
            scores, idx = knn.search(
                queries,
                database,
                k=40,
                query_groups=query_groups,
                db_groups=db_groups,
                db_valid=db_valid,
                query_block=8,
                db_block=16,
                mesh=mesh,
            )
            np.testing.assert_array_equal(idx, oracle_idx)
            np.testing.assert_array_equal(scores, oracle_scores.astype(np.float32))
            found = idx >= 0
            self.assertFalse(
                np.any(db_groups[idx][found] == np.repeat(query_groups, 40)[found.ravel()])
            )

    def test_sharded_over_8_devices_and_2d_mesh(self):
        self.assertLen(jax.devices(), 8)
        rng = np.random.default_rng(7)
        queries, database = int_data(rng, 45, 9), int_data(rng, 333, 9)
        oracle_scores, oracle_idx = brute_force(queries, database, 11, "l2")
        mesh_2d = Mesh(np.array(jax.devices()).reshape(2, 4), ("a", "b"))
        for mesh in (mesh_1d(), mesh_2d):
            scores, idx = knn.search(
                queries, database, k=11, metric="l2", query_block=16, db_block=16, mesh=mesh
            )
            np.testing.assert_array_equal(idx, oracle_idx)
            np.testing.assert_array_equal(scores, oracle_scores.astype(np.float32))

    def test_bfloat16_inputs(self):
        rng = np.random.default_rng(8)
        queries = rng.standard_normal((64, 32)).astype(np.float32)
        database = rng.standard_normal((500, 32)).astype(np.float32)
        scores, idx = knn.search(queries, database, k=10, compute_dtype=jnp.bfloat16)
        oracle_scores, oracle_idx = brute_force(queries, database, 10)
        self.assertEqual(scores.dtype, np.float32)
        # bfloat16 keeps 8 mantissa bits: scores within ~1%, most neighbours shared.
        np.testing.assert_allclose(
            scores, oracle_scores, rtol=0, atol=0.05 * np.abs(oracle_scores).max()
        )
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, oracle_idx)])
        self.assertGreater(recall, 0.85)
        true_scores = np.take_along_axis(queries.astype(np.float64) @ database.T, idx, axis=1)
        self.assertLess(
            np.abs(true_scores - oracle_scores).max(), 0.1 * np.abs(oracle_scores).max()
        )

    def test_memmap_streaming_in_chunks_compiles_once(self):
        rng = np.random.default_rng(9)
        queries, database = int_data(rng, 19, 7), int_data(rng, 250, 7)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "db.f32")
            mm = np.memmap(path, np.float32, "w+", shape=database.shape)
            mm[:] = database
            mm.flush()
            mm = np.memmap(path, np.float32, "r", shape=database.shape)
            kwargs = dict(k=5, query_block=8, db_block=16, chunk_rows=64)
            _, idx = knn.search(queries, mm, **kwargs)
            np.testing.assert_array_equal(idx, brute_force(queries, database, 5)[1])
            traces = knn._TRACE_COUNT
            # Another N with the same chunk and query shapes reuses the compiled kernel.
            _, idx = knn.search(queries, mm[:203], **kwargs)
            self.assertEqual(knn._TRACE_COUNT, traces)
            np.testing.assert_array_equal(idx, brute_force(queries, database[:203], 5)[1])
            del mm

    @parameterized.parameters("dot", "cosine", "l2")
    def test_memmap_queries_streamed_in_chunks(self, metric):
        # 45 queries in chunks of 16 (3 chunks, the last one padded) against a database streamed
        # in chunks of 64, with group exclusion and drop_dims exercising the per-chunk query state.
        rng = np.random.default_rng(10)
        queries, database = int_data(rng, 45, 7), int_data(rng, 150, 7)
        query_groups, db_groups = rng.integers(0, 4, 45), rng.integers(0, 4, 150)
        drop = np.array([2])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "queries.f32")
            mm = np.memmap(path, np.float32, "w+", shape=queries.shape)
            mm[:] = queries
            mm.flush()
            mm = np.memmap(path, np.float32, "r", shape=queries.shape)
            kwargs = dict(
                k=6,
                metric=metric,
                drop_dims=drop,
                query_groups=query_groups,
                db_groups=db_groups,
                query_block=8,
                db_block=16,
                chunk_rows=64,
                query_chunk_rows=16,
            )
            scores, idx = knn.search(mm, database, **kwargs)
            # One query chunk holding every query gives identical results.
            single = knn.search(queries, database, **{**kwargs, "query_chunk_rows": 1 << 20})
            np.testing.assert_array_equal(idx, single.indices)
            np.testing.assert_array_equal(scores, single.scores)
            traces = knn._TRACE_COUNT
            # Another Q with the same chunk shapes reuses the compiled kernel.
            _, idx_30 = knn.search(
                mm[:30], database, **{**kwargs, "query_groups": query_groups[:30]}
            )
            self.assertEqual(knn._TRACE_COUNT, traces)
            del mm
        kept_q, kept_x = np.delete(queries, drop, axis=1), np.delete(database, drop, axis=1)
        exclude = query_groups[:, None] == db_groups[None, :]
        oracle_scores, oracle_idx = brute_force(kept_q, kept_x, 6, metric, exclude=exclude)
        if metric == "cosine":
            np.testing.assert_allclose(scores, oracle_scores, rtol=0, atol=1e-5)
            # Each returned index has the oracle score of its rank (cosine ties are not exact).
            qn = kept_q / np.linalg.norm(kept_q, axis=1, keepdims=True).clip(1e-300)
            xn = kept_x / np.linalg.norm(kept_x, axis=1, keepdims=True).clip(1e-300)
            true = np.take_along_axis(qn.astype(np.float64) @ xn.T, idx, axis=1)
            np.testing.assert_allclose(true, oracle_scores, rtol=0, atol=1e-5)
        else:
            np.testing.assert_array_equal(idx, oracle_idx)
            np.testing.assert_array_equal(scores, oracle_scores.astype(np.float32))
            np.testing.assert_array_equal(idx_30, oracle_idx[:30])

    def test_empty_inputs(self):
        scores, idx = knn.search(np.zeros((3, 4), np.float32), np.zeros((0, 4), np.float32), k=2)
        np.testing.assert_array_equal(idx, -np.ones((3, 2)))
        self.assertTrue(np.all(np.isneginf(scores)))
        scores, idx = knn.search(np.zeros((0, 4), np.float32), np.ones((5, 4), np.float32), k=2)
        self.assertEqual(idx.shape, (0, 2))

    def test_bad_input_raises(self):
        q, x = np.zeros((3, 4), np.float32), np.zeros((5, 4), np.float32)
        with self.assertRaisesRegex(errors.ConfigError, "metric"):
            knn.search(q, x, metric="euclid")
        with self.assertRaisesRegex(errors.ConfigError, "D=4"):
            knn.search(q, np.zeros((5, 3), np.float32))
        with self.assertRaisesRegex(errors.ConfigError, "query_groups"):
            knn.search(q, x, query_groups=np.zeros(3))
        with self.assertRaisesRegex(errors.ConfigError, "db_groups"):
            knn.search(q, x, query_groups=np.zeros(3), db_groups=np.zeros(4))
        with self.assertRaisesRegex(errors.ConfigError, "`k`"):
            knn.search(q, x, k=0)
        with self.assertRaisesRegex(errors.ConfigError, "drop_dims"):
            knn.search(q, x, drop_dims=[4])
        with self.assertRaisesRegex(errors.ConfigError, "query_chunk_rows"):
            knn.search(q, x, query_chunk_rows=0)


def recall_at(idx, oracle_idx):
    """Mean fraction of each oracle row's neighbours found in the same row of `idx`."""
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(idx, oracle_idx)])


@test_util.requires("faiss")
class L2OffsetTest(parameterized.TestCase):
    """ViT features share huge offsets in a few dimensions ("massive activations", 1e2-1e4)."""

    @parameterized.product(offset=[1e2, 1e3, 1e4], sharded_streamed=[False, True])
    def test_l2_exact_with_large_shared_offsets(self, offset, sharded_streamed):
        rng = np.random.default_rng(11)
        dim = 32
        shared = np.zeros(dim, np.float32)
        shared[[3, 17, 29]] = [offset, -offset / 2, 0.7 * offset]
        queries = rng.standard_normal((100, dim)).astype(np.float32) + shared
        database = rng.standard_normal((1000, dim)).astype(np.float32) + shared
        drop = np.array([5, 17]) if sharded_streamed else None
        kept_q, kept_x = queries, database
        kwargs = dict(k=10, metric="l2", db_block=64)
        if sharded_streamed:
            kept_q, kept_x = np.delete(queries, drop, 1), np.delete(database, drop, 1)
            kwargs.update(
                drop_dims=drop, mesh=mesh_1d(), chunk_rows=512, query_chunk_rows=32, query_block=16
            )
            database = test_util.write_memmap(self, database)
            queries = test_util.write_memmap(self, queries)
        else:
            database = database.astype(np.float64)  # the centring must not touch it in place
        before = np.array(database)
        scores, idx = knn.search(queries, database, **kwargs)
        np.testing.assert_array_equal(database, before)
        oracle_scores, oracle_idx = brute_force(kept_q, kept_x, 10, "l2")
        self.assertEqual(recall_at(idx, oracle_idx), 1.0)
        np.testing.assert_array_equal(idx, oracle_idx)
        # Squared distances are ~64 here: float32 accuracy of the centred expansion.
        np.testing.assert_allclose(scores, oracle_scores, rtol=0, atol=1e-4)
        # faiss's flat index, the second oracle, agrees on every neighbour.
        index = faiss.IndexFlatL2(kept_x.shape[1])
        index.add(np.ascontiguousarray(kept_x))
        _, faiss_idx = index.search(np.ascontiguousarray(kept_q), 10)
        np.testing.assert_array_equal(idx, faiss_idx)


class NonFiniteTest(parameterized.TestCase):
    @parameterized.product(value=[np.nan, np.inf, -np.inf], metric=["dot", "cosine", "l2"])
    def test_non_finite_database_row_is_an_error(self, value, metric):
        # One bad row used to take every query's top-1 slot (returned as index -1).
        rng = np.random.default_rng(12)
        queries = rng.standard_normal((20, 16)).astype(np.float32)
        database = rng.standard_normal((200, 16)).astype(np.float32)
        database[37, 5] = value
        with self.assertRaisesRegex(
            errors.InputError, r"`database` .* 1 non-finite value.* in 1 row.* first bad row is 37"
        ):
            knn.search(queries, database, k=5, metric=metric)

    @parameterized.parameters(None, "mesh")
    def test_non_finite_rows_found_in_streamed_and_sharded_chunks(self, mesh):
        # Bad rows only in the last database chunk (checked after the loop) of a memmap.
        rng = np.random.default_rng(13)
        queries = rng.standard_normal((20, 8)).astype(np.float32)
        database = rng.standard_normal((300, 8)).astype(np.float32)
        database[290, 1] = np.nan
        database[295, :3] = np.inf
        stream = test_util.write_memmap(self, database)
        with self.assertRaisesRegex(
            errors.InputError, r"`database` .* 4 non-finite value.* in 2 row.* first bad row is 290"
        ):
            knn.search(
                queries,
                stream,
                k=3,
                db_block=16,
                chunk_rows=128,
                mesh=None if mesh is None else mesh_1d(),
            )

    @parameterized.parameters("dot", "l2")
    def test_non_finite_query_is_an_error(self, metric):
        rng = np.random.default_rng(14)
        queries = rng.standard_normal((30, 16)).astype(np.float32)
        database = rng.standard_normal((200, 16)).astype(np.float32)
        queries[4, 0] = np.nan
        with self.assertRaisesRegex(errors.InputError, r"`queries` .* first bad row is 4"):
            # Even in a dropped dimension: the value is still not a feature.
            knn.search(queries, database, k=5, metric=metric, drop_dims=[0])


class ClassifyTest(parameterized.TestCase):
    labels = np.array([0, 1, 1, 2, 2, 255, 0])

    def test_1nn_skips_missing_and_ignored(self):
        idx = np.array([[5, 3, 0], [-1, -1, -1], [1, 0, 2], [-1, 5, 6]])
        pred = knn.classify(idx, np.zeros(idx.shape), self.labels, 3, "1nn")
        np.testing.assert_array_equal(pred, [2, -1, 1, 0])
        self.assertEqual(pred.dtype, np.int32)

    def test_majority_ties_go_to_nearest(self):
        idx = np.array(
            [
                [3, 0, 1, 4, 2],  # 2:2, 0:1, 1:2 -> tie 2 vs 1, label 2 is met first
                [1, 3, 0, 2, 4],  # 1:2, 2:2 -> 1 nearest
                [0, 1, 2, 6, 5],  # 0:2, 1:2, (255 ignored) -> 0
                [4, 1, 2, 6, 6],  # 2:1, 1:2, 0:2 -> tie 1 vs 0: 1 nearer
            ]
        )
        pred = knn.classify(idx, np.zeros(idx.shape), self.labels, 3, "majority")
        np.testing.assert_array_equal(pred, [2, 1, 0, 1])
        # Only the first k neighbours vote.
        pred_k1 = knn.classify(idx, np.zeros(idx.shape), self.labels, 3, "majority", k=1)
        np.testing.assert_array_equal(pred_k1, [2, 1, 0, 2])

    def test_weighted_vote_by_hand(self):
        idx = np.array([[1, 3, 4], [0, 1, 2]])
        scores = np.array([[0.9, 0.8, 0.75], [0.5, 0.48, 0.47]])
        t = 0.07
        # Row 0: class 1 gets e^(0.9/t) = 3.9e5 > class 2 e^(0.8/t) + e^(0.75/t) = 1.3e5, while the
        # majority is class 2. Row 1: class 0 gets e^(0.5/t) = 1265 < class 1 e^(0.48/t) +
        # e^(0.47/t) = 1774, while the nearest is class 0.
        pred = knn.classify(idx, scores, self.labels, 3, "weighted", temperature=t)
        np.testing.assert_array_equal(pred, [1, 1])
        np.testing.assert_array_equal(knn.classify(idx, scores, self.labels, 3, "majority"), [2, 1])
        np.testing.assert_array_equal(knn.classify(idx, scores, self.labels, 3, "1nn"), [1, 0])
        # A higher temperature flattens the weights into a majority vote.
        pred_hot = knn.classify(idx, scores, self.labels, 3, "weighted", temperature=100.0)
        np.testing.assert_array_equal(pred_hot, [2, 1])
        # Large raw dot products must not overflow.
        pred_big = knn.classify(idx, scores * 1e4, self.labels, 3, "weighted", temperature=t)
        np.testing.assert_array_equal(pred_big, [1, 0])

    def test_float_labels_are_refused_not_truncated(self):
        idx = np.array([[1, 3, 4]])
        with self.assertRaisesRegex(errors.InputError, "`db_labels` must hold integer labels"):
            knn.classify(idx, np.zeros(idx.shape), self.labels + 0.5, 3)
        with self.assertRaisesRegex(errors.InputError, "`idx`"):
            knn.classify(idx.astype(np.float32), np.zeros(idx.shape), self.labels, 3)

    def test_bad_rule(self):
        with self.assertRaisesRegex(errors.ConfigError, "rule"):
            knn.classify(np.zeros((1, 1), int), np.zeros((1, 1)), self.labels, 3, "vote")


if __name__ == "__main__":
    absltest.main()
