"""Protocol logic of the segmentation-side experiments on hand-made features and labels."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import dataclasses
import os
import re
import shutil
import tempfile
import tracemalloc
import types
from unittest import mock

import jax
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized
from PIL import Image

from configs import ade20k as ade20k_config
from configs import cityscapes as cityscapes_config
from configs import common as common_config
from configs import demo as demo_config
from vitjax import errors, experiments, models, probes, run
from vitjax.data import tiling
from vitjax.data.loaders import segmentation as segmentation_loaders
from vitjax.experiments import (
    common,
    fewshot,
    global_context,
    layerwise,
    robustness,
    variance,
)

linear_model = test_util.optional_import("sklearn.linear_model")
preprocessing = test_util.optional_import("sklearn.preprocessing")
sk_metrics = test_util.optional_import("sklearn.metrics")

KNN_CFG = common.knn_defaults()
KNN_CFG.update(
    dict(k=10, rule="1nn", metric="dot", exclude_ignore=True, query_block=64, db_block=128)
)


def brute_force_1nn(support, labels, queries, keep_dims):
    """Oracle: label of the highest dot product over the kept dims (ties -> lower index)."""
    scores = queries[:, keep_dims] @ support[:, keep_dims].T
    return labels[np.argmax(scores, axis=1)]


write_memmap = test_util.write_memmap


def noisy_class_features(rng, n, num_classes, informative, noise_dims, noise_scale):
    """Features: class centroid in `informative` dims + high-variance pure-noise dims."""
    labels = rng.integers(0, num_classes, n)
    centroids = rng.standard_normal((num_classes, informative)) * 3.0
    signal = centroids[labels] + 0.3 * rng.standard_normal((n, informative))
    noise = noise_scale * rng.standard_normal((n, noise_dims))
    return np.concatenate([noise, signal], axis=1).astype(np.float32), labels


@dataclasses.dataclass
class FakeSpec:
    family: str
    size: str
    patch_size: int = 16
    depth: int = 12
    rel_pos_bias: bool = False
    pos_interp: str = "scale_offset"
    native_grid: tuple = (14, 14)


def handle(family="mae", size="b", random_weights=False, name=None, **spec_fields):
    spec = FakeSpec(family, size, **spec_fields)
    return experiments.ModelHandle(name or f"{family}_{size}", None, None, spec, random_weights)


class VarianceTest(parameterized.TestCase):
    def test_removing_noisy_top_variance_dims_helps_knn(self):
        rng = np.random.default_rng(0)
        feats, labels = noisy_class_features(rng, 600, 4, 16, 8, noise_scale=20.0)
        support, queries = feats[:400], feats[400:]
        s_labels, q_labels = labels[:400], labels[400:]

        order = common.variance_order(support)
        self.assertCountEqual(order[:8].tolist(), range(8))  # the noise dims come first

        full = common.knn_predict(support, s_labels, queries, 4, KNN_CFG)
        removed = common.knn_predict(support, s_labels, queries, 4, KNN_CFG, drop_dims=order[:8])
        acc_full = (full == q_labels).mean()
        acc_removed = (removed == q_labels).mean()
        self.assertGreater(acc_removed, acc_full + 0.3)
        self.assertGreater(acc_removed, 0.95)
        # Independent oracle: brute-force 1-NN by dot product over the kept dims.
        keep = np.setdiff1d(np.arange(support.shape[1]), order[:8])
        np.testing.assert_array_equal(removed, brute_force_1nn(support, s_labels, queries, keep))
        np.testing.assert_array_equal(
            full, brute_force_1nn(support, s_labels, queries, np.arange(support.shape[1]))
        )

    def test_random_control_does_not_remove_the_noise(self):
        rng = np.random.default_rng(1)
        feats, labels = noisy_class_features(rng, 600, 4, 16, 8, noise_scale=20.0)
        support, queries = feats[:400], feats[400:]
        s_labels, q_labels = labels[:400], labels[400:]
        dims = variance.random_dims(np.random.default_rng(3), feats.shape[1], 8)
        self.assertLen(np.unique(dims), 8)
        acc_random = (
            common.knn_predict(support, s_labels, queries, 4, KNN_CFG, drop_dims=dims) == q_labels
        ).mean()
        order = common.variance_order(support)
        acc_top = (
            common.knn_predict(support, s_labels, queries, 4, KNN_CFG, drop_dims=order[:8])
            == q_labels
        ).mean()
        self.assertGreater(acc_top, acc_random)

    def test_spectrum_matches_numpy_variance(self):
        x = np.random.default_rng(2).standard_normal((50, 7)) * np.arange(1, 8)
        spec = variance.spectrum(x)
        expected = np.sort(np.var(x, axis=0))[::-1]
        np.testing.assert_allclose(spec, expected / expected.sum(), rtol=1e-12)
        self.assertAlmostEqual(spec.sum(), 1.0)

    @parameterized.parameters((3, 2 / 3), (1, 0.0), (2, 1.0), (5, 4 / 5))
    def test_topn_overlap(self, n, expected):
        a = np.array([4, 1, 7, 0, 2, 3, 5, 6])
        b = np.array([1, 4, 0, 7, 6, 5, 3, 2])
        # Oracle: python sets.
        self.assertAlmostEqual(
            common.topn_overlap(a, b, n), len(set(a[:n]) & set(b[:n])) / n, places=12
        )
        self.assertAlmostEqual(common.topn_overlap(a, b, n), expected)

    @test_util.requires("sklearn")
    def test_standardize_is_the_probe_batchnorm_on_labelled_rows(self):
        rng = np.random.default_rng(4)
        ref = (rng.standard_normal((100, 5)) * [1, 10, 0.1, 3, 7] + 5).astype(np.float32)
        labels = rng.integers(0, 3, 100)
        labels[::4] = common.IGNORE
        ref[labels == common.IGNORE] += 50.0  # void patches must not move the statistics
        x = rng.standard_normal((20, 5)).astype(np.float32)
        scaler = preprocessing.StandardScaler().fit(ref[labels != common.IGNORE])
        np.testing.assert_allclose(
            common.standardize(x, ref, labels, eps=0.0), scaler.transform(x), rtol=1e-5
        )
        # By default MAE's BatchNorm eps, 1e-6; and exactly the trained probe's normalisation.
        out = common.standardize(x, ref, labels)
        expected = (x - scaler.mean_) / np.sqrt(scaler.var_ + 1e-6)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
        config = probes.ProbeConfig(
            learning_rates=(1e-2,), weight_decays=(0.0,), val_fraction=0.0, epochs=1
        )
        probe = probes.train_softmax_probe(ref, labels, 3, batchnorm=True, config=config)
        np.testing.assert_array_equal(probe.normalize(x), out)


class StreamedStatisticsTest(parameterized.TestCase):
    """Variance order and standardisation of feature-store memmaps, streamed in row chunks.

    The statistics themselves (`probes.feature_moments` / `feature_normalizer`) are tested in
    probes_test.py.
    """

    CHUNK = 128

    def _memmap(self, dtype, offset, rows=1000, dim=6, seed=0):
        """A read-only .npy memmap of `rows` x `dim` features spanning several chunks."""
        rng = np.random.default_rng(seed)
        scales = np.array([0.05, 1.0, 3.0, 0.2, 10.0, 0.5])[:dim]
        values = (rng.standard_normal((rows, dim)) * scales + offset).astype(dtype)
        return write_memmap(self, values)

    @parameterized.product(dtype=[np.float16, np.float32], offset=[0.0, 1e4])
    def test_variance_order_and_spectrum_match_numpy(self, dtype, offset):
        x = self._memmap(dtype, offset)
        var = np.var(np.asarray(x).astype(np.float64), axis=0)
        np.testing.assert_array_equal(common.variance_order(x), np.argsort(-var, kind="stable"))
        expected = np.sort(var)[::-1] / var.sum()
        np.testing.assert_allclose(variance.spectrum(x), expected, rtol=1e-9)
        given = probes.feature_moments(x)[1]
        np.testing.assert_array_equal(
            variance.spectrum(np.zeros((0, 0)), variance=given), variance.spectrum(x)
        )

    @parameterized.product(dtype=[np.float16, np.float32], offset=[0.0, 1e4])
    @test_util.requires("sklearn")
    def test_standardize_memmap_matches_sklearn(self, dtype, offset):
        ref = self._memmap(dtype, offset, seed=1)
        x = self._memmap(dtype, offset, rows=700, seed=2)
        labels = np.random.default_rng(3).integers(0, 4, len(ref))
        labels[labels == 3] = common.IGNORE
        # eps = 1e-6 (the probe's BatchNorm) by default: float16 at 1e4 (spacing 8) makes the
        # low-variance dims constant, where eps alone is the scale.
        out = common.standardize(x, ref, labels, chunk_rows=self.CHUNK)
        self.assertEqual(out.dtype, np.float32)
        self.assertEqual(out.shape, x.shape)
        labelled = np.asarray(ref)[labels != common.IGNORE].astype(np.float64)
        scaler = preprocessing.StandardScaler().fit(labelled)
        expected = (np.asarray(x).astype(np.float64) - scaler.mean_) / np.sqrt(scaler.var_ + 1e-6)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
        stats = probes.feature_normalizer(ref, rows=np.flatnonzero(labels != common.IGNORE))
        np.testing.assert_array_equal(
            common.standardize(x, stats=stats, chunk_rows=self.CHUNK), out
        )

    def test_no_whole_array_float64_copy(self):
        x = self._memmap(np.float32, 1e4, rows=40_000, dim=6)
        labels = np.zeros(len(x), np.int32)
        labels[::3] = common.IGNORE
        whole_f64 = x.shape[0] * x.shape[1] * 8
        # (variance_order reads through probes.feature_moments, memory-tested in probes_test.py.)
        tracemalloc.start()
        try:
            out = common.standardize(x, x, labels, chunk_rows=1024)
            _, peak_standardize = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # The float32 result is held whole (and the labelled-row index); nothing the size of a
        # float64 copy besides them.
        self.assertLess(peak_standardize, out.nbytes + len(x) * 8 + whole_f64 / 4)

    def test_bad_shapes_raise(self):
        with self.assertRaisesRegex(errors.ConfigError, "no rows"):
            common.variance_order(np.zeros((0, 4), np.float32))
        with self.assertRaisesRegex(errors.ConfigError, "2-D"):
            common.variance_order(np.zeros(4, np.float32))
        with self.assertRaisesRegex(errors.ConfigError, "D=4"):
            common.standardize(np.zeros((3, 4)), np.ones((5, 3)))
        with self.assertRaisesRegex(errors.ConfigError, "reference_labels"):
            common.standardize(np.zeros((3, 4)), np.ones((5, 4)), np.zeros(4))
        with self.assertRaisesRegex(errors.ConfigError, "no rows"):
            common.standardize(np.zeros((3, 4)), np.ones((5, 4)), np.full(5, common.IGNORE))
        with self.assertRaisesRegex(errors.ConfigError, "reference"):
            common.standardize(np.zeros((3, 4)))


class RowsOnly:
    """Array-like view of a memmap that fails on a column selection or a whole-array read."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype

    def __len__(self):
        return len(self.array)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            raise AssertionError(f"column selection {key!r} copies the whole array")
        return self.array[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was read")


class LinearDropDimsTest(parameterized.TestCase):
    """The linear probe drops dims with a mask: rows streamed, one compile per width D."""

    def _ctx(self):
        config = cityscapes_config.get_config()
        config.probe.update(
            dict(
                epochs=3,
                batch_size=128,
                learning_rates=(1e-2, 3e-2),
                weight_decays=(0.0, 1e-3),
                val_fraction=0.2,
            )
        )
        return types.SimpleNamespace(config=config, seed=3, mesh=None)

    @parameterized.parameters("mae", "dino")  # with and without the probe's BatchNorm
    def test_drop_dims_equals_deleting_columns_without_copying(self, family):
        rng = np.random.default_rng(5)
        feats, labels = noisy_class_features(rng, 1500, 4, 16, 8, noise_scale=20.0)
        # Overlapping classes (accuracy ~0.6): a leaked dim would change many predictions.
        feats[:, 8:] += 8.0 * rng.standard_normal((1500, 16)).astype(np.float32)
        if family == "mae":
            feats[:, 8:] += 100.0  # an offset for the BatchNorm to remove
        # A last column holding the label: it would dominate the probe if a dropped dim leaked.
        feats = np.concatenate([feats, 5.0 * labels[:, None].astype(np.float32)], axis=1)
        labels[::9] = common.IGNORE
        support, queries = write_memmap(self, feats[:1000]), write_memmap(self, feats[1000:])
        ctx, model = self._ctx(), handle(family)
        drop = np.array([0, 3, 5, 17, 24])
        keep = np.setdiff1d(np.arange(feats.shape[1]), drop)
        pred = common.predict(
            "linear",
            ctx,
            model,
            RowsOnly(support),
            labels[:1000],
            RowsOnly(queries),
            4,
            drop_dims=drop,
        )
        # Oracle: the probe trained on the column-deleted arrays with the same seed.
        want = common.linear_predict(
            np.asarray(support)[:, keep],
            labels[:1000],
            np.asarray(queries)[:, keep],
            4,
            ctx.config.probe,
            batchnorm=family == "mae",
            seed=ctx.seed,
        )
        self.assertEqual(pred.dtype, np.int32)
        self.assertGreater(np.mean(pred == want), 0.995)  # measured 1.0; a leak gives <= 0.98
        q_labels = labels[1000:]
        accuracy = np.mean(pred[q_labels != common.IGNORE] == q_labels[q_labels != common.IGNORE])
        self.assertGreater(accuracy, 0.5)  # 4 classes: chance is 0.25

        # Another removal count: same width, so nothing is traced or compiled again.
        counts = {"trace": 0, "compile": 0}

        def listener(event, duration, **kwargs):
            del duration, kwargs
            if event == "/jax/core/compile/jaxpr_trace_duration":
                counts["trace"] += 1
            elif event == "/jax/core/compile/backend_compile_duration":
                counts["compile"] += 1

        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            common.predict(
                "linear",
                ctx,
                model,
                RowsOnly(support),
                labels[:1000],
                RowsOnly(queries),
                4,
                drop_dims=np.arange(10),
            )
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)
        self.assertEqual(counts, {"trace": 0, "compile": 0})


class ScoreTest(parameterized.TestCase):
    def _split(self):
        # Two 8x8 images, tiles of 4 -> 2x2 tiles each, 2x2 patch grid per tile.
        rng = np.random.default_rng(0)
        labels = [rng.integers(0, 3, (8, 8)).astype(np.uint8) for _ in range(2)]
        labels[0][0, :] = 255
        images = [np.zeros((8, 8, 3), np.uint8) for _ in range(2)]
        geo = tiling.Geometry("t", tile_size=(4, 4))
        return common.make_split(images, labels, geo, [0, 1], ["a", "b"]), labels

    @test_util.requires("sklearn")
    def test_patch_level_scores_match_sklearn(self):
        split, _ = self._split()
        targets = split.patch_targets((2, 2), "centre")
        self.assertEqual(targets.shape, (8 * 4,))
        pred = np.random.default_rng(1).integers(0, 3, targets.shape)
        data_cfg = ml_collections.ConfigDict(
            dict(score_level="patch", patch_label_rule="centre", miou_convention="present")
        )
        s = common.score(pred, split, (2, 2), 3, data_cfg)
        keep = targets != 255
        iou = sk_metrics.jaccard_score(targets[keep], pred[keep], labels=[0, 1, 2], average=None)
        np.testing.assert_allclose(s["iou"], iou)
        self.assertAlmostEqual(s["miou"], iou.mean())
        self.assertAlmostEqual(s["acc"], sk_metrics.accuracy_score(targets[keep], pred[keep]))

    @test_util.requires("sklearn")
    def test_pixel_level_scores_upsample_each_patch(self):
        split, labels = self._split()
        pred = np.random.default_rng(2).integers(0, 3, 8 * 4)
        data_cfg = ml_collections.ConfigDict(
            dict(score_level="pixel", patch_label_rule="centre", miou_convention="present")
        )
        s = common.score(pred, split, (2, 2), 3, data_cfg)
        # Oracle: every patch covers a 2x2 pixel block; tiles are row-major per image.
        gt, pixels = [], []
        grids = pred.reshape(2, 2, 2, 2, 2)  # image, tile row, tile col, patch row, patch col
        for i in range(2):
            full = grids[i].transpose(0, 2, 1, 3).reshape(4, 4)
            pixels.append(np.kron(full, np.ones((2, 2), int)).ravel())
            gt.append(labels[i].ravel())
        gt, pixels = np.concatenate(gt), np.concatenate(pixels)
        keep = gt != 255
        iou = sk_metrics.jaccard_score(gt[keep], pixels[keep], labels=[0, 1, 2], average=None)
        np.testing.assert_allclose(s["iou"], iou)
        self.assertAlmostEqual(s["acc"], sk_metrics.accuracy_score(gt[keep], pixels[keep]))

    def test_label_padding_is_ignored(self):
        images = [np.zeros((6, 6, 3), np.uint8)]
        labels = [np.ones((6, 6), np.uint8)]
        split = common.make_split(
            images, labels, tiling.Geometry("t", tile_size=(4, 4)), [0], ["x"]
        )
        self.assertEqual(split.tiles.shape, (4, 4, 4, 3))
        self.assertTrue(np.all(split.label_tiles[3][2:, :] == 255))
        self.assertTrue(np.all(split.label_tiles[0] == 1))

    def test_select_images_renumbers(self):
        split, _ = self._split()
        sub = split.select_images(np.array([False, True]))
        self.assertEqual(sub.num_images, 1)
        self.assertEqual({i.image_index for i in sub.infos}, {0})
        np.testing.assert_array_equal(sub.tiles, split.tiles[4:])


class LayerwiseTest(parameterized.TestCase):
    @parameterized.parameters(((), 4, [0, 1, 2, 3]), ((0, -1), 4, [0, 3]), ((2, 1, 2), 3, [1, 2]))
    def test_resolve_layers(self, layers, depth, expected):
        self.assertEqual(layerwise.resolve_layers(layers, depth), expected)

    @parameterized.parameters((5,), ("x",), (-5,), (1.0,))
    def test_resolve_layers_rejects(self, *layers):
        with self.assertRaises(errors.ConfigError):
            layerwise.resolve_layers(layers, 4)

    @test_util.requires("sklearn")
    def test_per_class_breakdown(self):
        gt = np.array([0, 0, 1, 1, 2, 2, 2, 255])
        pred = np.array([0, 1, 1, 1, 2, 0, 2, 0])
        cm = common.confusion(gt, pred, 4)
        s = common.scores_from_confusion(cm, "present")
        row = layerwise.per_class_rows({"model": "m"}, 3, s["iou"], ["a", "b", "c", "d"])
        keep = gt != 255
        iou = sk_metrics.jaccard_score(gt[keep], pred[keep], labels=[0, 1, 2], average=None)
        self.assertEqual(row["layer"], 3)
        for name, value in zip("abc", iou):
            self.assertAlmostEqual(row[name], value)
        self.assertIsNone(row["d"])  # absent class: no IoU
        self.assertAlmostEqual(s["miou"], iou.mean())


class GlobalContextTest(absltest.TestCase):
    def test_class_fractions_brute_force(self):
        rng = np.random.default_rng(0)
        tiles = rng.choice([0, 1, 2, 255], size=(5, 6, 6)).astype(np.uint8)
        tiles[4] = 255
        frac, valid = global_context.class_fractions(tiles, [2, 0])
        for t in range(4):
            labelled = tiles[t][tiles[t] != 255]
            self.assertAlmostEqual(frac[t, 0], np.mean(labelled == 2))
            self.assertAlmostEqual(frac[t, 1], np.mean(labelled == 0))
        np.testing.assert_array_equal(valid, [True, True, True, True, False])

    def test_central_patch(self):
        feats = np.arange(2 * 3 * 4 * 2).reshape(2 * 3 * 4, 2)
        centre = global_context.central_patches(feats, 2, (3, 4))
        np.testing.assert_array_equal(centre, feats.reshape(2, 3, 4, 2)[:, 1, 2])

    def test_variants_partition_dims(self):
        order = np.random.default_rng(0).permutation(20)
        v = global_context.feature_variants(order, 5, np.random.default_rng(1))
        self.assertCountEqual(v["full"], range(20))
        self.assertCountEqual(np.concatenate([v["top5_removed"], v["top5_only"]]), range(20))
        self.assertCountEqual(v["top5_only"], order[:5])
        self.assertLen(np.unique(v["random5"]), 5)

    @test_util.requires("sklearn")
    def test_ridge_r2_matches_sklearn(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((120, 6))
        y = x @ rng.standard_normal((6, 2)) + 0.5 * rng.standard_normal((120, 2))
        out = global_context.fit_and_score(x[:80], y[:80], x[80:], y[80:], [1.0], 0.25, 0)
        ref = linear_model.Ridge(alpha=1.0).fit(x[:80], y[:80]).predict(x[80:])
        self.assertAlmostEqual(out["r2"], sk_metrics.r2_score(y[80:], ref), places=6)
        self.assertEqual(out["l2"], 1.0)
        self.assertGreater(out["r2"], 0.8)


def corrupt_reference(tiles, name, level, options, seed, batch):
    """Oracle: the former `common.corrupt`, one `corruptions.apply` per level and per batch."""
    from vitjax import corruptions

    key = jax.random.key(seed)
    out = np.empty_like(tiles)
    for start in range(0, len(tiles), batch):
        rows = np.asarray(tiles[start : start + batch], np.float32)
        result = corruptions.apply(
            name, level, rows, jax.random.fold_in(key, start), quantize=True, **options
        )
        out[start : start + batch] = np.clip(np.asarray(result), 0, 255).astype(np.uint8)
    return out


class RobustnessTest(parameterized.TestCase):
    def test_levels_from_config(self):
        cfg = ml_collections.ConfigDict(
            dict(
                blur_kind="box_blur",
                blur_levels=(2, 4),
                noise_levels=(10.0,),
                freq_bands=(0, 3),
                num_bands=4,
                freq_sigma=20.0,
            )
        )
        levels = robustness.corruption_levels(cfg)
        self.assertEqual(
            [(a, b, c) for a, b, c, _ in levels],
            [
                ("blur", "box_blur", 2.0),
                ("blur", "box_blur", 4.0),
                ("noise", "noise", 10.0),
                ("freq_noise", "freq_noise", 0.0),
                ("freq_noise", "freq_noise", 3.0),
            ],
        )

    def test_corrupt_is_uint8_and_box_blur_matches_mean(self):
        rng = np.random.default_rng(0)
        tiles = rng.integers(0, 256, (3, 9, 9, 3)).astype(np.uint8)
        out = common.corrupt(tiles, "box_blur", 3.0, {}, seed=0)
        self.assertEqual(out.dtype, np.uint8)
        # Oracle: an interior pixel of a 3x3 box blur is the mean of its 3x3 neighbourhood.
        expected = tiles[:, 3:6, 3:6].astype(np.float64).mean(axis=(1, 2))
        np.testing.assert_allclose(out[:, 4, 4], np.round(expected), atol=1)
        noisy = common.corrupt(tiles, "noise", 30.0, {}, seed=0)
        self.assertGreater(np.abs(noisy.astype(int) - tiles).mean(), 5)
        np.testing.assert_array_equal(noisy, common.corrupt(tiles, "noise", 30.0, {}, seed=0))

    def test_groups_merge_the_levels_of_one_corruption_in_order(self):
        cfg = ml_collections.ConfigDict(
            dict(
                blur_kind="blur",
                blur_levels=(3, 5),
                noise_levels=(10.0, 20.0),
                freq_bands=(1,),
                num_bands=4,
                freq_sigma=20.0,
            )
        )
        groups = robustness.corruption_groups(robustness.corruption_levels(cfg))
        self.assertEqual(
            [(g[0], g[1], g[3]) for g in groups],
            [
                ("blur", "blur", [3.0, 5.0]),
                ("noise", "noise", [10.0, 20.0]),
                ("freq_noise", "freq_noise", [1.0]),
            ],
        )
        self.assertEqual(groups[2][2], {"num_bands": 4, "sigma": 20.0})

    @parameterized.parameters(
        ("blur", (3.0, 7.0, 5.0), {}),
        ("box_blur", (2.0, 4.0), {"mode": "edge"}),
        ("noise", (10.0, 40.0), {}),
        ("freq_noise", (0.0, 2.0), {"num_bands": 4, "sigma": 20.0}),
        ("rotate", (15.0,), {}),
    )
    def test_corrupt_levels_is_bit_identical_to_per_level_batches(self, name, levels, options):
        from vitjax import corruptions

        rng = np.random.default_rng(1)
        tiles = rng.integers(0, 256, (7, 12, 10, 3)).astype(np.uint8)
        with mock.patch.object(common, "CORRUPT_BATCH", 3):  # batches of 3, 3 and a short 1
            before = corruptions._apply_levels._cache_size()
            outs = common.corrupt_levels(tiles, name, levels, options, seed=5)
            # Kernel sizes are one static bound and the short batch is padded: one compile.
            self.assertLessEqual(corruptions._apply_levels._cache_size() - before, 1)
            singles = [common.corrupt(tiles, name, lv, options, seed=5) for lv in levels]
            prefix = common.corrupt(tiles[:4], name, levels[-1], options, seed=5)
        self.assertLen(outs, len(levels))
        for level, out, single in zip(levels, outs, singles):
            reference = corrupt_reference(tiles, name, level, options, 5, batch=3)
            self.assertEqual(out.dtype, np.uint8)
            np.testing.assert_array_equal(out, reference, err_msg=f"{name} {level}")
            np.testing.assert_array_equal(single, reference, err_msg=f"{name} {level}")
        # A tile's corruption does not depend on the other tiles (nor on the padding rows).
        np.testing.assert_array_equal(prefix, outs[-1][:4])


class FewshotTableTest(parameterized.TestCase):
    MODELS = (
        handle("mae", "b"),
        handle("dinov2", "b", patch_size=14),
        handle("dino", "b", random_weights=True, name="dino_random"),
        handle("dino", "s"),
        handle("dino", "b", patch_size=8, name="dino_b8"),
        handle("dinov2", "b", patch_size=16, name="dinov2_b16"),
        handle("ibot", "b"),
    )

    def _table(self, config=None, shots=4, eval_images=30):
        config = config or cityscapes_config.get_config()
        ctx = experiments.Context(self.MODELS, None, "/tmp", 0, config)
        rows = [
            {
                "model": m.name,
                "shots": shots,
                "method": meth,
                "miou": 0.1,
                "train_images": 18 * shots,
                "eval_images": eval_images,
            }
            for m in self.MODELS
            for meth in ("knn", "linear")
        ]
        return {r["model"]: r for r in fewshot.tab2(ctx, rows, shots, ["knn", "linear"])}

    def test_paper_numbers_only_for_the_papers_backbones(self):
        table = self._table()
        self.assertEqual(table["mae_b"]["knn_paper"], 0.058)
        self.assertEqual(table["mae_b"]["linear_paper"], 0.375)
        self.assertEqual(table["dinov2_b"]["knn_paper"], 0.496)  # DINOv2 is ViT-B/14
        self.assertEqual(table["mae_b"]["knn_miou"], 0.1)
        # No published sha256 of these files: the paper's number comes with that caveat.
        self.assertIn("checkpoint not identified", table["mae_b"]["knn_vs_paper"])
        for name, why in (
            ("dino_random", "weights random"),
            ("dino_s", "backbone dino s/16 != dino b/16"),
            ("dino_b8", "backbone dino b/8 != dino b/16"),
            ("dinov2_b16", "backbone dinov2 b/16 != dinov2 b/14"),
        ):
            # Random weights, not ViT-B, wrong patch size (both ways): no number, and why.
            self.assertIsNone(table[name]["knn_paper"], name)
            self.assertIsNone(table[name]["linear_paper"], name)
            self.assertIn(why, table[name]["knn_vs_paper"])
            self.assertTrue(table[name]["linear_vs_paper"].startswith("not comparable: "))
        # The paper reports no iBOT number: no column to fill.
        self.assertNotIn("knn_paper", table["ibot_b"])

    @parameterized.named_parameters(
        # (name, field path, value, knn column kept, linear column kept)
        ("dataset", "dataset", "ade20k", False, False),
        ("seeded_splits", "data.splits", "seeded", False, False),
        ("majority_rule", "knn.rule", "majority", False, True),
        ("cosine_metric", "knn.metric", "cosine", False, True),
        ("void_excluded", "knn.exclude_ignore", True, False, True),
    )
    def test_protocol_mismatch_hides_paper_numbers(self, field, value, knn_kept, linear_kept):
        config = cityscapes_config.get_config()
        section, _, name = field.rpartition(".")
        (config[section] if section else config)[name] = value
        row = self._table(config)["mae_b"]
        self.assertEqual(row["knn_paper"] is not None, knn_kept)
        self.assertEqual(row["linear_paper"] is not None, linear_kept)
        for method, kept in (("knn", knn_kept), ("linear", linear_kept)):
            # The comparison names the differing field when it hides the number.
            self.assertEqual(name in row[f"{method}_vs_paper"], not kept, row[f"{method}_vs_paper"])
        self.assertEqual(row["knn_miou"], 0.1)

    def test_other_shots_hide_paper_numbers(self):
        row = self._table(shots=2)["mae_b"]
        self.assertIsNone(row["knn_paper"])
        self.assertIn("train_per_group 2 != 4", row["knn_vs_paper"])
        self.assertIn("n_train_images 36 != 72", row["knn_vs_paper"])

    def test_fewer_eval_images_hide_paper_numbers(self):
        # The case: 3 evaluation images instead of 30 showed knn_paper 0.345.
        row = self._table(eval_images=3)["mae_b"]
        self.assertIsNone(row["knn_paper"])
        self.assertEqual(row["knn_vs_paper"], "not comparable: n_eval_images 3 != 30")

    def test_methods_checking(self):
        self.assertEqual(common.methods(("knn", "linear")), ["knn", "linear"])
        with self.assertRaisesRegex(errors.ConfigError, r"config\.fewshot\.methods=.*'svm'"):
            common.methods(("knn", "svm"), "config.fewshot.methods")
        with self.assertRaisesRegex(errors.ConfigError, r"config\.robustness\.methods"):
            common.methods((), "config.robustness.methods")


class DatasetConfigTest(absltest.TestCase):
    def test_other_dataset_gets_its_protocol_and_root(self):
        config = cityscapes_config.get_config()
        config.data.other_roots = ml_collections.ConfigDict(
            dict(ade20k="/data/ade", cityscapes="/data/cs")
        )
        ade = common.dataset_config(config, "ade20k")
        self.assertEqual(ade.dataset, "ade20k")
        self.assertEqual(ade.data.root, "/data/ade")
        self.assertEqual(tuple(ade.data.resize_hw), (448, 672))
        self.assertEqual((ade.data.tile_size, ade.data.tile_out), (224, 224))
        self.assertEqual(config.data.tile_size, 256)  # the original is untouched
        self.assertIs(common.dataset_config(config, "cityscapes"), config)
        config.data.other_roots.ade20k = ""
        with self.assertRaisesRegex(errors.ConfigError, "other_roots"):
            common.dataset_config(config, "ade20k")


class TilingVsFullTest(absltest.TestCase):
    def test_native_only_models_only_at_native_grid(self):
        # SimMIM resamples its relative position bias table, so it runs at any grid; a spec whose
        # position encoding is fixed to the native grid does not.
        spec = models.get_spec("simmim", "b")
        simmim = experiments.ModelHandle("simmim_b", None, None, spec, True)
        self.assertTrue(common.runs_at(simmim, (896, 1792)))
        fixed = dataclasses.replace(
            simmim, spec=dataclasses.replace(spec, pos_interp="native_only")
        )
        self.assertTrue(common.runs_at(fixed, (224, 224)))
        self.assertFalse(common.runs_at(fixed, (896, 1792)))
        self.assertTrue(common.runs_at(handle("dino", "b"), (896, 1792)))
        # Sides must be whole patches.
        self.assertFalse(common.runs_at(handle("dino", "b"), (224, 230)))
        self.assertTrue(common.runs_at(handle("dinov2", "b", patch_size=14), (224, 448)))
        self.assertFalse(common.runs_at(handle("dinov2", "b", patch_size=14), (256, 256)))

    def test_full_geometry_is_one_resized_tile(self):
        data_cfg = ml_collections.ConfigDict(dict(resize_hw=(0, 0), tile_size=256, tile_out=224))
        geo = common.geometry(data_cfg, full_hw=(32, 64))
        tiles, infos = tiling.apply_geometry(np.zeros((20, 40, 3), np.uint8), geo)
        self.assertEqual(tiles.shape, (1, 32, 64, 3))
        self.assertEqual((infos[0].orig_h, infos[0].orig_w), (20, 40))
        geo = common.geometry(data_cfg)
        tiles, _ = tiling.apply_geometry(np.zeros((512, 1024, 3), np.uint8), geo)
        self.assertEqual(tiles.shape, (8, 224, 224, 3))


class KnnVoidTest(parameterized.TestCase):
    """`knn.exclude_ignore`: void support patches kept (as [R1]) or dropped."""

    def _data(self):
        rng = np.random.default_rng(0)
        support = rng.standard_normal((80, 6)).astype(np.float32)
        labels = rng.choice([0, 1, 2, 255], size=80, p=[0.2, 0.2, 0.2, 0.4])
        queries = rng.standard_normal((50, 6)).astype(np.float32)
        gt = rng.integers(0, 3, 50)
        return support, labels, queries, gt

    def _cfg(self, exclude, rule="1nn", k=10):
        c = common.knn_defaults()
        c.update(
            dict(k=k, rule=rule, metric="dot", exclude_ignore=exclude, query_block=16, db_block=32)
        )
        return c

    @test_util.requires("sklearn")
    def test_void_neighbour_is_an_error_when_kept(self):
        support, labels, queries, gt = self._data()
        pred = common.knn_predict(support, labels, queries, 3, self._cfg(False))
        # Oracle: the label of the highest dot product, void included.
        nearest = labels[np.argmax(queries @ support.T, axis=1)]
        self.assertTrue((nearest == 255).any())  # the case under test occurs
        np.testing.assert_array_equal(pred, np.where(nearest == 255, 3, nearest))
        s = common.scores_from_confusion(common.confusion(gt, pred, 3), "present")
        # A void prediction is a miss for its gt class and a false positive for none.
        self.assertAlmostEqual(s["acc"], sk_metrics.accuracy_score(gt, nearest))
        iou = sk_metrics.jaccard_score(gt, nearest, labels=[0, 1, 2], average=None)
        np.testing.assert_allclose(s["iou"], iou)

    def test_void_patches_left_out_when_excluded(self):
        support, labels, queries, _ = self._data()
        pred = common.knn_predict(support, labels, queries, 3, self._cfg(True))
        keep = labels != 255
        expected = labels[keep][np.argmax(queries @ support[keep].T, axis=1)]
        np.testing.assert_array_equal(pred, expected)

    @parameterized.parameters(True, False)
    def test_1nn_searches_one_neighbour_only(self, exclude):
        from vitjax import knn

        support, labels, queries, _ = self._data()
        with mock.patch.object(knn, "search", wraps=knn.search) as spy:
            pred = common.knn_predict(support, labels, queries, 3, self._cfg(exclude, k=10))
            common.knn_predict(support, labels, queries, 3, self._cfg(exclude, "majority", 5))
        self.assertEqual([c.kwargs["k"] for c in spy.call_args_list], [1, 5])
        # Oracle: the label of the highest dot product (void left out, or predicting class 3).
        keep = labels != 255 if exclude else np.ones(len(labels), bool)
        nearest = labels[keep][np.argmax(queries @ support[keep].T, axis=1)]
        np.testing.assert_array_equal(pred, np.where(nearest == 255, 3, nearest))

    def test_majority_counts_void_as_a_label(self):
        support, labels, queries, _ = self._data()
        pred = common.knn_predict(support, labels, queries, 3, self._cfg(False, "majority", 5))
        order = np.argsort(-(queries @ support.T), axis=1, kind="stable")[:, :5]
        expected = []
        for row in order:
            votes = [int(labels[i]) for i in row]
            counts = {v: votes.count(v) for v in votes}
            best = max(counts.values())
            winner = next(v for v in votes if counts[v] == best)  # ties: the nearest
            expected.append(3 if winner == 255 else winner)
        np.testing.assert_array_equal(pred, expected)


class ProbeSettingsTest(absltest.TestCase):
    def _probe_cfg(self, **overrides):
        cfg = ml_collections.ConfigDict(cityscapes_config.get_config().probe.to_dict())
        cfg.update(
            dict(
                epochs=2,
                batch_size=64,
                learning_rates=(0.01,),
                weight_decays=(0.0,),
                val_fraction=0.0,
            ),
            **overrides,
        )
        return cfg

    def test_optimizer_schedule_and_warmup_reach_the_probe(self):
        from vitjax import probes

        rng = np.random.default_rng(0)
        x = rng.standard_normal((120, 4)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int32)
        captured = []
        real = probes.train_softmax_probe

        def spy(*args, **kwargs):
            captured.append(kwargs["config"])
            return real(*args, **kwargs)

        cfg = self._probe_cfg(optimizer="sgd", schedule="constant", warmup_epochs=0.5, momentum=0.5)
        with mock.patch.object(probes, "train_softmax_probe", side_effect=spy):
            predict = common.fit_linear(x, y, 2, cfg)
        self.assertEqual(predict(x).shape, (120,))
        got = captured[0]
        self.assertEqual(
            (got.optimizer, got.schedule, got.warmup_epochs, got.momentum),
            ("sgd", "constant", 0.5, 0.5),
        )
        self.assertEqual((got.epochs, got.batch_size, got.learning_rates), (2, 64, (0.01,)))

    def test_bad_optimizer_is_a_config_error(self):
        x = np.zeros((8, 2), np.float32)
        with self.assertRaisesRegex(errors.ConfigError, "optimizer"):
            common.fit_linear(x, np.zeros(8, np.int32), 2, self._probe_cfg(optimizer="lbfgs"))


class ConfigDefaultsTest(absltest.TestCase):
    def test_paper_defaults(self):
        from vitjax import probes

        c = common_config.get_base()
        self.assertFalse(c.knn.exclude_ignore)  # [R1] keeps void patches
        self.assertEqual(tuple(c.variance.linear_removed), tuple(c.variance.removed))
        self.assertEqual(max(c.variance.linear_removed), 750)
        self.assertEqual(c.data.ade20k_train_pool, 2500)
        self.assertEqual(tuple(c.data.ade20k_presence_grid), (28, 42))
        self.assertEqual(c.global_context.target, "image")
        defaults = probes.ProbeConfig()
        for field in ("optimizer", "schedule", "warmup_epochs", "momentum"):
            self.assertEqual(c.probe[field], getattr(defaults, field), field)
        ade = ade20k_config.get_config()
        self.assertEqual((ade.data.train_per_group, ade.data.eval_per_group), (4, 2))
        self.assertEqual(ade.data.splits, "paper")

    def test_ignore_label_is_not_a_setting_and_knn_blocks_are_bounded(self):
        from vitjax import knn

        c = common_config.get_base()
        self.assertNotIn("ignore_label", c.data)
        self.assertEqual(common.IGNORE, 255)
        self.assertEqual(
            (c.knn.query_block, c.knn.db_block), (knn.DEFAULT_QUERY_BLOCK, knn.DEFAULT_DB_BLOCK)
        )
        common_config.accelerator(c)
        # One float32 score block per step: at most 512 MiB on an accelerator.
        self.assertLessEqual(c.knn.query_block * c.knn.db_block * 4, 512 * 2**20)
        self.assertEqual((c.knn.query_block, c.knn.db_block), (4096, 32768))

    def test_demo_and_smoke_configs_stay_small(self):
        for config in (
            demo_config.get_config(),
            demo_config.get_config("test"),
            cityscapes_config.get_config("runlocal"),
            ade20k_config.get_config("runlocal"),
        ):
            self.assertLessEqual(len(config.variance.linear_removed), 2)


class VarianceOverlapTest(absltest.TestCase):
    def _config(self, other_roots, overlap=("synthetic", "ade20k")):
        c = demo_config.get_config("test")
        c.models = ("dino:ti:16:none",)
        c.model_depth = 1
        c.experiments = ("variance",)
        c.variance.overlap_datasets = overlap
        c.data.other_roots = ml_collections.ConfigDict(other_roots)
        return c

    def test_plan(self):
        existing = tempfile.mkdtemp(prefix="vitjax_root_")
        self.addCleanup(shutil.rmtree, existing, ignore_errors=True)
        missing = os.path.join(existing, "nope")
        c = self._config(dict(ade20k=missing, cityscapes=existing))
        skipped = variance.overlap_plan(c, ["synthetic", "ade20k", "cityscapes"])
        self.assertEqual(list(skipped), ["ade20k"])
        self.assertIn(missing, skipped["ade20k"])
        c.dataset = "ade20k"  # the run's own dataset is read from data.root, not checked here
        self.assertEqual(variance.overlap_plan(c, ["ade20k", "cityscapes"]), {})
        with self.assertRaisesRegex(errors.ConfigError, "other_roots.*ade20k"):
            variance.overlap_plan(self._config(dict(cityscapes="/x")), ["ade20k"])
        with self.assertRaisesRegex(errors.ConfigError, "overlap_datasets.*kitti"):
            variance.overlap_plan(c, ["kitti"])

    def test_missing_root_is_skipped_with_a_note(self):
        workdir = tempfile.mkdtemp(prefix="vitjax_var_")
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        missing = os.path.join(workdir, "no_ade20k")
        results = run.run(self._config(dict(ade20k=missing)), os.path.join(workdir, "w"))
        entry = results["experiments"]["variance"]
        (row,) = entry["tables"]["overlap"]
        self.assertEqual((row["dataset_a"], row["dataset_b"]), ("synthetic", "ade20k"))
        self.assertIsNone(row["overlap"])
        self.assertIn("ade20k skipped", row["note"])
        self.assertIn(missing, row["note"])
        self.assertIn("Skipped ade20k", entry["text"]["overlap"])
        self.assertEqual(entry["scalars"]["overlap_skipped"], ["ade20k"])
        self.assertEqual(entry["scalars"]["datasets"], ["synthetic"])  # ade20k was not read
        # The caption says what was measured and attributes the finding to the paper.
        spectrum = entry["text"]["spectrum"]
        self.assertIn("Measured share of the top dimension: dino_vitti16-depth1 ", spectrum)
        self.assertIn("The paper reports that a few dimensions hold", spectrum)
        self.assertIn("random weights", spectrum)
        self.assertNotIn("dominant dimensions show as a steep head", spectrum)
        self.assertNotEmpty(entry["tables"]["removal"])  # the sweep itself ran
        # The BatchNorm variant (the probe's own normalisation) ran for both methods.
        bn_methods = [r["method"] for r in entry["tables"]["batchnorm"]]
        self.assertEqual(bn_methods, ["knn", "linear"])
        self.assertTrue(all(0.0 <= r["miou"] <= 1.0 for r in entry["tables"]["batchnorm"]))

    def test_config_error_comes_before_any_work(self):
        from vitjax import extract

        workdir = tempfile.mkdtemp(prefix="vitjax_var_")
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        with (
            mock.patch.object(extract, "extract", side_effect=AssertionError("extracted")),
            self.assertRaisesRegex(errors.ConfigError, "other_roots"),
        ):
            run.run(self._config(dict(cityscapes="/x")), workdir)


def write_ade20k_fixture(root: str) -> None:
    """5 train and 2 val images (32x48) whose masks hold vertical bands of classes 1-3."""
    classes = {
        "training": [[3], [3], [3, 2], [3], [2]],
        "validation": [[1], [2, 3]],
    }
    for split, per_image in classes.items():
        prefix = "ADE_train_" if split == "training" else "ADE_val_"
        for folder in ("images", "annotations"):
            os.makedirs(os.path.join(root, folder, split))
        for n, present in enumerate(per_image, start=1):
            mask = np.zeros((32, 48), np.uint8)
            for k, c in enumerate(present):
                mask[:, 12 * (k + 1) : 12 * (k + 2)] = c
            image = np.random.default_rng(n).integers(0, 256, (32, 48, 3), dtype=np.uint8)
            stem = f"{prefix}{n:08d}"
            Image.fromarray(image).save(os.path.join(root, "images", split, stem + ".jpg"))
            Image.fromarray(mask).save(os.path.join(root, "annotations", split, stem + ".png"))
    with open(os.path.join(root, "objectInfo150.txt"), "w") as f:
        f.write(
            "Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n2\t0.1\t1\t1\tbuilding\n"
            "3\t0.1\t1\t1\tsky\n"
        )


class ADE20KSelectionTest(parameterized.TestCase):
    PRESENT = {1: {3}, 2: {3}, 3: {3, 2}, 4: {3}, 5: {2}}  # train image -> classes

    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp(prefix="vitjax_ade_")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        write_ade20k_fixture(self.root)

    def _config(self, splits, pool, seed=0):
        c = cityscapes_config.get_config()
        c.dataset = "ade20k"
        c.seed = seed
        c.data.root = self.root
        c.data.splits = splits
        c.data.ade20k_train_pool = pool
        c.data.train_per_group = 1
        c.data.eval_per_group = 1
        c.data.resize_hw = (28, 42)
        c.data.tile_size = c.data.tile_out = 14
        return c

    def _greedy(self, order):
        """Oracle: classes 3 -> 1, the first unused image of `order` showing each class."""
        used, out = set(), []
        for cls in (3, 2, 1):
            for n in order:
                if cls in self.PRESENT[n] and n not in used:
                    used.add(n)
                    out.append(f"ADE_train_{n:08d}")
                    break
        return out

    @parameterized.parameters((3, [3, 4, 5]), (0, [1, 2, 3, 4, 5]), (10, [1, 2, 3, 4, 5]))
    def test_paper_takes_the_listing_order_of_the_last_pool_images(self, pool, order):
        data = common.load_segmentation(self._config("paper", pool))
        self.assertEqual(data.train.image_ids, self._greedy(order))
        self.assertEqual(data.eval.image_ids, ["ADE_val_00000002", "ADE_val_00000001"])
        self.assertEqual(data.train.tiles.shape[1:], (14, 14, 3))

    def test_seeded_permutes_the_pool_with_the_config_seed(self):
        chosen = set()
        for seed in range(6):
            data = common.load_segmentation(self._config("seeded", 3, seed))
            order = [[3, 4, 5][i] for i in np.random.default_rng(seed).permutation(3)]
            self.assertEqual(data.train.image_ids, self._greedy(order), seed)
            chosen.add(tuple(data.train.image_ids))
        self.assertGreater(len(chosen), 1)  # the seed matters

    def test_protocol_numbers_reach_the_selection(self):
        from vitjax.data import fewshot as fewshot_data

        config = self._config("paper", 4)
        config.data.ade20k_presence_grid = (16, 24)
        with (
            mock.patch.object(
                segmentation_loaders, "ade20k_presence", wraps=segmentation_loaders.ade20k_presence
            ) as pools,
            mock.patch.object(
                fewshot_data, "greedy_per_class", wraps=fewshot_data.greedy_per_class
            ) as greedy,
        ):
            common.load_segmentation(config)
        root = ade20k_reader(self.root).root
        self.assertEqual(
            [c.args for c in pools.call_args_list],
            [(root, "training", 4, (16, 24)), (root, "validation", None, (16, 24))],
        )
        self.assertEqual([c.args[1] for c in greedy.call_args_list], [1, 1])  # k_train, k_eval
        self.assertEqual([c.kwargs["seed"] for c in greedy.call_args_list], [None, None])

    @parameterized.parameters("paper", "seeded")
    def test_shot_sweep_reads_each_pool_once_and_matches_the_joint_selection(self, splits):
        from vitjax.data import ade20k
        from vitjax.data import fewshot as fewshot_data

        config = self._config(splits, 4, seed=1)
        reads = []
        original = ade20k.ADE20KReader.load_annotation

        def spy(reader, sample, view="raw"):
            reads.append((sample.split, sample.stem, view))
            return original(reader, sample, view)

        with mock.patch.object(ade20k.ADE20KReader, "load_annotation", spy):
            sweep = {k: common.load_segmentation(config, per_group=k) for k in (1, 2)}
        val_reads = [r for r in reads if r[0] == "validation"]
        # Presence of the 2 validation images, then the chosen ones: once for both sizes.
        self.assertLen([r for r in val_reads if r[2] == "raw"], 2)
        self.assertLen([r for r in val_reads if r[2] == "reduced"], sweep[1].eval.num_images)
        self.assertLen([r for r in reads if r[:1] == ("training",) and r[2] == "raw"], 4)
        self.assertIs(sweep[1].eval, sweep[2].eval)
        # Oracle: the former path, the joint selection for each size, tiled on its own.
        reader = ade20k_reader(self.root)
        geo = common.geometry(config.data)
        for k, data in sweep.items():
            chosen = fewshot_data.ade20k_fewshot(
                reader,
                k_train=k,
                k_eval=1,
                train_pool_size=4,
                seed=None if splits == "paper" else 1,
                grid=(28, 42),
            )
            for split, per_class in (
                ("train", chosen.train_per_class),
                ("eval", chosen.eval_per_class),
            ):
                pairs = [(s, c) for c, items in per_class.items() for s in items]
                loaded = [reader.load(s, view="reduced") for s, _ in pairs]
                expected = common.make_split(
                    [image for image, _ in loaded],
                    [mask for _, mask in loaded],
                    geo,
                    [c for _, c in pairs],
                    [s.stem for s, _ in pairs],
                )
                assert_same_split(self, getattr(data, split), expected)

    def test_variance_images_do_not_read_the_eval_split(self):
        from vitjax.data import ade20k

        config = self._config("paper", 4)
        config.dataset = "ade20k"
        with mock.patch.object(
            ade20k.ADE20KReader,
            "load_annotation",
            autospec=True,
            side_effect=ade20k.ADE20KReader.load_annotation,
        ) as spy:
            tiles, key = common.load_images(config, "ade20k")
        self.assertEqual({c.args[1].split for c in spy.call_args_list}, {"training"})
        data = common.load_segmentation(config)
        self.assertIs(tiles, data.train.tiles)
        self.assertEqual(key, data.split_key("train"))


def ade20k_reader(root):
    from vitjax.data import ade20k

    return ade20k.ADE20KReader(root)


def assert_same_split(test, got, expected):
    """Every field of two SegSplits is equal (tiles, labels, tile infos, label maps, ids)."""
    np.testing.assert_array_equal(got.tiles, expected.tiles)
    np.testing.assert_array_equal(got.label_tiles, expected.label_tiles)
    test.assertEqual(got.infos, expected.infos)
    test.assertLen(got.label_maps, len(expected.label_maps))
    for a, b in zip(got.label_maps, expected.label_maps):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.groups, expected.groups)
    test.assertEqual(got.image_ids, expected.image_ids)


class SplitCacheTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        common.clear_data_cache()
        self.addCleanup(common.clear_data_cache)
        self.config = demo_config.get_config("test")

    def _spy(self):
        from vitjax.data import synthetic

        return mock.patch.object(synthetic, "semantic_scenes", wraps=synthetic.semantic_scenes)

    def test_eval_split_is_read_once_across_shot_sizes(self):
        from vitjax.data import synthetic

        c = self.config
        seed, eval_seed = int(c.seed), int(c.seed) + 1_000_003
        with self._spy() as scenes:
            sweep = {k: common.load_segmentation(c, per_group=k) for k in (1, 3)}
        seeds = [call.kwargs["seed"] for call in scenes.call_args_list]
        self.assertEqual(sorted(seeds), sorted([seed, seed, eval_seed]))
        self.assertIs(sweep[1].eval, sweep[3].eval)
        # Oracle: the former path, every size read and tiled on its own.
        geo = common.geometry(c.data)
        size = tuple(c.data.synthetic_hw)
        groups = int(c.data.synthetic_groups)
        n_eval = int(c.data.synthetic_eval_images)
        evals = synthetic.semantic_scenes(n_eval, size=size, seed=eval_seed)
        expected_eval = common.make_split(
            list(evals.images),
            list(evals.labels),
            geo,
            [0] * n_eval,
            [f"synthetic_eval_{i}" for i in range(n_eval)],
        )
        for k, data in sweep.items():
            train = synthetic.semantic_scenes(groups * k, size=size, seed=seed)
            expected = common.make_split(
                list(train.images),
                list(train.labels),
                geo,
                [i % groups for i in range(groups * k)],
                [f"synthetic_train_{i}" for i in range(groups * k)],
            )
            assert_same_split(self, data.train, expected)
            assert_same_split(self, data.eval, expected_eval)
            self.assertEqual(data.class_names, list(train.class_names))
            self.assertEqual(data.per_group, k)
            self.assertEqual(data.split_key("train")["per_group"], k)
        self.assertEqual(sweep[1].split_key("eval"), sweep[3].split_key("eval"))

    def test_train_images_alone_do_not_read_the_eval_split(self):
        c = self.config
        with self._spy() as scenes:
            tiles, key = common.load_images(c, "synthetic")
            aerial, _ = common.load_images(c, "synthetic_aerial")
        self.assertEqual([call.kwargs["seed"] for call in scenes.call_args_list], [int(c.seed)])
        data = common.load_segmentation(c)
        self.assertIs(tiles, data.train.tiles)
        self.assertLen(aerial, len(tiles))
        self.assertEqual(key, data.split_key("train"))
        split, eval_key = common.load_split(c, "eval")
        self.assertIs(split, data.eval)
        self.assertEqual(eval_key, data.split_key("eval"))
        with self.assertRaisesRegex(errors.ConfigError, "split='test'"):
            common.load_split(c, "test")


class GlobalContextTargetTest(parameterized.TestCase):
    def _split(self):
        rng = np.random.default_rng(0)
        labels = [
            rng.choice([0, 1, 2, 255], size=(8, 8)).astype(np.uint8),
            rng.choice([0, 1, 2, 255], size=(6, 10)).astype(np.uint8),  # padded tiles
            np.full((4, 4), 255, np.uint8),  # nothing labelled
        ]
        images = [np.zeros(m.shape + (3,), np.uint8) for m in labels]
        geo = tiling.Geometry("t", tile_size=(4, 4))
        return common.make_split(images, labels, geo, [0, 1, 2], ["a", "b", "c"]), labels

    def test_image_target_is_the_source_images_fractions(self):
        split, labels = self._split()
        y, valid = global_context.targets(split, [2, 0], "image")
        self.assertLen(y, len(split.infos))
        for t, info in enumerate(split.infos):
            image = labels[info.image_index]
            labelled = image[image != 255]
            self.assertEqual(valid[t], labelled.size > 0)
            if labelled.size:
                np.testing.assert_allclose(y[t], [np.mean(labelled == 2), np.mean(labelled == 0)])
        self.assertEqual(np.unique(y[valid], axis=0).shape[0], 2)  # one target per image

    def test_tile_target_is_the_tiles_fractions(self):
        split, labels = self._split()
        y, valid = global_context.targets(split, [1], "tile")
        for t, info in enumerate(split.infos):
            window = labels[info.image_index][info.y0 : info.y0 + 4, info.x0 : info.x0 + 4]
            labelled = window[window != 255]
            self.assertEqual(valid[t], labelled.size > 0)
            if labelled.size:
                self.assertAlmostEqual(y[t, 0], np.mean(labelled == 1))

    def test_unknown_target(self):
        split, _ = self._split()
        with self.assertRaisesRegex(errors.ConfigError, "global_context.target"):
            global_context.targets(split, [0], "crop")


def write_cityscapes_fixture(root: str) -> None:
    """2 train cities x 1 image and 1 val city x 1 image, 64x128, labelIds with 7/26/33/0/9."""
    rng = np.random.default_rng(0)
    for split, city in (("train", "aachen"), ("train", "bochum"), ("val", "frankfurt")):
        stem = f"{city}_000000_000019"
        image_dir = os.path.join(root, "leftImg8bit", split, city)
        label_dir = os.path.join(root, "gtFine", split, city)
        os.makedirs(image_dir)
        os.makedirs(label_dir)
        image = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
        labels = np.full((64, 128), 7, np.uint8)  # road
        labels[:32, :64] = 26  # car
        labels[:32, 64:] = 33  # bicycle
        labels[60:, :] = 0  # unlabeled -> ignore
        labels[:, :8] = 9  # parking -> ignore
        Image.fromarray(image).save(os.path.join(image_dir, f"{stem}_leftImg8bit.png"))
        Image.fromarray(labels).save(os.path.join(label_dir, f"{stem}_gtFine_labelIds.png"))


class CityscapesEndToEndTest(absltest.TestCase):
    def test_fewshot_and_full_input_on_a_cityscapes_fixture(self):
        root = tempfile.mkdtemp(prefix="vitjax_cs_")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        write_cityscapes_fixture(os.path.join(root, "data"))
        config = cityscapes_config.get_config("runlocal")
        config.data.root = os.path.join(root, "data")
        config.data.splits = "paper"  # no shipped 1-per-city list: falls back to the seeded draw
        config.data.tile_size = 32
        config.data.tile_out = 32
        config.models = ("dino:ti:16:none",)
        config.model_depth = 1
        config.experiments = ("fewshot", "tiling_vs_full")
        config.fewshot.methods = ("knn",)
        config.tiling_vs_full.methods = ("knn",)
        config.tiling_vs_full.full_hw = (64, 128)
        results = run.run(config, os.path.join(root, "work"))
        fewshot_rows = results["experiments"]["fewshot"]["tables"]["scores"]
        self.assertLen(fewshot_rows, 1)
        self.assertEqual(fewshot_rows[0]["train_images"], 2)  # one per train city
        self.assertBetween(fewshot_rows[0]["miou"], 0.0, 1.0)
        data = common.load_segmentation(config)
        self.assertLen(data.class_names, 19)
        self.assertEqual(data.train.tiles.shape, (16, 32, 32, 3))  # 2 images x 2x4 tiles
        self.assertEqual(set(np.unique(data.eval.label_maps[0])), {0, 13, 18, 255})
        inputs = {r["input"] for r in results["experiments"]["tiling_vs_full"]["tables"]["scores"]}
        self.assertEqual(inputs, {"tiles", "full"})


class DataErrorsTest(parameterized.TestCase):
    @parameterized.parameters("cityscapes", "ade20k")
    def test_missing_root_names_the_config_field_and_layout(self, dataset):
        config = cityscapes_config.get_config()
        config.dataset = dataset
        layout = "leftImg8bit" if dataset == "cityscapes" else "annotations"
        empty = tempfile.mkdtemp(prefix="vitjax_empty_")
        self.addCleanup(shutil.rmtree, empty, ignore_errors=True)
        for root in ("", "/no/such/folder", empty):
            config.data.root = root
            pattern = re.escape(f"config.data.root={root!r}") + r".*--config\.data\.root=.*"
            with self.assertRaisesRegex(errors.ConfigError, pattern + layout):
                common.load_segmentation(config)

    def test_too_many_images_per_city_names_the_field(self):
        root = tempfile.mkdtemp(prefix="vitjax_cs_")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        write_cityscapes_fixture(root)  # one image per city
        config = cityscapes_config.get_config()
        config.data.root = root
        config.data.splits = "seeded"
        config.data.train_per_group = 2
        config.data.eval_per_group = 1
        with self.assertRaisesRegex(errors.ConfigError, r"config\.data\.train_per_group.*=2"):
            common.load_segmentation(config)
        config.data.train_per_group = 1
        config.data.eval_per_group = 3
        with self.assertRaisesRegex(errors.ConfigError, r"config\.data\.eval_per_group=3"):
            common.load_segmentation(config)
        config.data.eval_per_group = 1
        self.assertEqual(common.load_segmentation(config).train.num_images, 2)


def tiny_context(test, config=None, depth=2):
    """A Context over one random dino ViT-Ti/16 with a feature store in a temporary folder."""
    workdir = tempfile.mkdtemp(prefix="vitjax_ctx_")
    test.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    module, params, spec = models.random_model("dino", "ti", 0, depth=depth)
    model = experiments.ModelHandle("dino", module, params, spec, True)
    from vitjax.store import FeatureStore

    config = config or demo_config.get_config("test")
    store = FeatureStore(os.path.join(workdir, "features"))
    return experiments.Context([model], store, workdir, 0, config), model


class FeatureKeyTest(absltest.TestCase):
    """`Context.features` names an image array by its content digest, memoised when frozen."""

    def _keys(self, ctx, model, *arrays):
        from vitjax import extract

        with mock.patch.object(extract, "extract", return_value=None) as spy:
            for images in arrays:
                ctx.features(model, images, key={"split": "x"})
        return [c.kwargs["key"]["images_sha256"] for c in spy.call_args_list]

    def _oracle(self, images):
        # The same content digest the extraction keys un-keyed arrays by.
        from vitjax import extract

        digest = getattr(extract, "images_digest", None) or extract._images_digest
        return digest(np.array(images))

    def test_frozen_array_is_hashed_once(self):
        ctx, model = tiny_context(self)
        tiles = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
        tiles.flags.writeable = False
        with mock.patch.object(
            experiments, "images_digest", wraps=experiments.images_digest
        ) as digest:
            keys = self._keys(ctx, model, tiles, tiles, tiles)
            # Another experiment of the run shares the memo.
            keys += self._keys(ctx.for_experiment("other"), model, tiles)
        self.assertEqual(digest.call_count, 1)
        self.assertEqual(keys, [self._oracle(tiles)] * 4)

    def test_writable_arrays_and_their_views_are_hashed_every_time(self):
        ctx, model = tiny_context(self)
        tiles = np.zeros((2, 16, 16, 3), np.uint8)
        view = tiles[:]
        view.flags.writeable = False  # read-only, but its base is not
        first = self._keys(ctx, model, tiles, view)
        tiles[0, 0, 0, 0] = 1  # changed in place
        second = self._keys(ctx, model, tiles, view)
        self.assertEqual(first, [self._oracle(np.zeros_like(tiles))] * 2)
        self.assertEqual(second, [self._oracle(tiles)] * 2)
        self.assertNotEqual(first[0], second[0])
        self.assertEqual(ctx.digests.computed, 4)

    def test_same_content_in_another_array_gets_the_same_key(self):
        ctx, model = tiny_context(self)
        a = np.arange(2 * 16 * 16 * 3, dtype=np.uint8).reshape(2, 16, 16, 3)
        b = a.copy()
        a.flags.writeable = b.flags.writeable = False
        keys = self._keys(ctx, model, a, b, a[:1])
        self.assertEqual(keys[0], keys[1])
        self.assertEqual(keys[2], self._oracle(a[:1]))
        self.assertNotEqual(keys[2], keys[0])

    def test_split_tiles_are_read_only(self):
        data = common.load_segmentation(demo_config.get_config("test"))
        self.assertFalse(data.train.tiles.flags.writeable)
        self.assertFalse(data.eval.tiles.flags.writeable)
        self.assertFalse(data.eval.select_images([0]).tiles.flags.writeable)


class LayerwiseRunTest(absltest.TestCase):
    def test_one_forward_pass_per_split_and_per_layer_scores(self):
        config = demo_config.get_config("test")
        config.layerwise.layers = ()
        ctx, model = tiny_context(self, config)
        ctx = ctx.for_experiment("layerwise")
        with mock.patch.object(
            experiments.Context, "features", autospec=True, side_effect=experiments.Context.features
        ) as spy:
            result = layerwise.run(ctx, config.layerwise)
        self.assertEqual(spy.call_count, 2)  # train and eval, every layer at once
        self.assertEqual({tuple(c.kwargs["layers"]) for c in spy.call_args_list}, {(0, 1)})
        rows = result.tables["by_layer"]
        self.assertEqual([r["layer"] for r in rows], [0, 1])
        # Oracle: each layer's features on their own (the cached pass, read one layer at a time).
        data = common.load_segmentation(config)
        grid = common.grid_of(model, data.train.tiles.shape[1:3])
        labels = data.train.patch_targets(grid, config.data.patch_label_rule)
        for row in rows:
            support = common.patch_features(
                ctx, model, data.train.tiles, data.split_key("train"), row["layer"], (0, 1)
            )
            queries = common.patch_features(
                ctx, model, data.eval.tiles, data.split_key("eval"), row["layer"], (0, 1)
            )
            support, queries = np.array(support, np.float64), np.array(queries, np.float64)
            nearest = labels[np.argmax(queries @ support.T, axis=1)]
            pred = np.where(nearest == 255, data.num_classes, nearest)
            s = common.score(pred, data.eval, grid, data.num_classes, config.data)
            self.assertAlmostEqual(row["miou"], s["miou"], places=6)
            self.assertAlmostEqual(row["acc"], s["acc"], places=6)


if __name__ == "__main__":
    absltest.main()
