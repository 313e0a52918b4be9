"""Tests of vitjax.probes against sklearn (LogisticRegression, Ridge, StandardScaler, r2_score),
numpy, and JAX's own compilation events."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import dataclasses
import os
import tempfile
import tracemalloc

import jax
import numpy as np
from absl.testing import absltest, parameterized

from vitjax import errors, probes

linear_model = test_util.optional_import("sklearn.linear_model")
metrics = test_util.optional_import("sklearn.metrics")
preprocessing = test_util.optional_import("sklearn.preprocessing")

NUM_CLASSES, DIM = 19, 64


def gaussian_classes(rng, means, n):
    """Noisy, overlapping Gaussian classes (linearly separable only in expectation)."""
    labels = rng.integers(0, len(means), n)
    features = means[labels] + rng.standard_normal((n, means.shape[1]))
    return features.astype(np.float32), labels


# Small settings keep each probe fit around a second on CPU.
FAST = probes.ProbeConfig(
    batch_size=256, epochs=10, learning_rates=(3e-3, 1e-2), weight_decays=(0.0, 1e-2)
)


@test_util.requires("sklearn")
class SoftmaxProbeTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(0)
        means = rng.standard_normal((NUM_CLASSES, DIM)) * 0.45
        cls.train_x, cls.train_y = gaussian_classes(rng, means, 6000)
        cls.test_x, cls.test_y = gaussian_classes(rng, means, 6000)
        # An offset (as in raw ViT features) is what the BatchNorm variant is for. sklearn fits the
        # centred copy: its intercept is unpenalised, so the offset cannot change its predictions,
        # and lbfgs converges much faster without it.
        cls.offset = rng.uniform(-5, 5, DIM).astype(np.float32)
        oracle = linear_model.LogisticRegression(C=0.1, max_iter=500)
        oracle.fit(cls.train_x, cls.train_y)
        cls.sklearn_accuracy = float(np.mean(oracle.predict(cls.test_x) == cls.test_y))

    @parameterized.parameters(
        dict(optimizer="adamw", batchnorm=False),
        dict(optimizer="adamw", batchnorm=True),
        dict(optimizer="sgd", batchnorm=True),
    )
    def test_accuracy_within_one_point_of_sklearn(self, optimizer, batchnorm):
        config = dataclasses.replace(FAST, optimizer=optimizer)
        if optimizer == "sgd":
            config = dataclasses.replace(config, learning_rates=(0.1, 0.3))
        offset = self.offset if batchnorm else 0.0
        probe = probes.train_softmax_probe(
            self.train_x + offset, self.train_y, NUM_CLASSES, batchnorm=batchnorm, config=config
        )
        accuracy = float(np.mean(probe.predict_labels(self.test_x + offset) == self.test_y))
        self.assertGreater(self.sklearn_accuracy, 0.7)  # a meaningful, not saturated problem
        self.assertAlmostEqual(accuracy, self.sklearn_accuracy, delta=0.01)
        self.assertLen(probe.sweep, 4)
        self.assertEqual(probe.val_accuracy, max(s["val_accuracy"] for s in probe.sweep))
        self.assertIn(probe.learning_rate, config.learning_rates)
        logits = probe.predict(self.test_x)
        self.assertEqual(logits.shape, (len(self.test_x), NUM_CLASSES))
        self.assertEqual(logits.dtype, np.float32)

    def test_batchnorm_statistics_match_numpy(self):
        config = dataclasses.replace(
            FAST, learning_rates=(1e-2,), weight_decays=(0.0,), val_fraction=0.0, epochs=1
        )
        train_x, test_x = self.train_x + self.offset, self.test_x + self.offset
        labels = self.train_y.copy()
        labels[:100] = 255
        probe = probes.train_softmax_probe(
            train_x, labels, NUM_CLASSES, batchnorm=True, config=config
        )
        rows = train_x[100:].astype(np.float64)
        np.testing.assert_allclose(probe.mean, rows.mean(0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(probe.std, np.sqrt(rows.var(0) + 1e-6), rtol=1e-6)
        expected = (test_x - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-6)
        np.testing.assert_allclose(probe.normalize(test_x), expected, rtol=1e-5, atol=1e-5)
        self.assertIsNone(probe.val_accuracy)

    def test_batchnorm_is_normalize_features_on_labelled_rows(self):
        # The probe's on-device BatchNorm and the host-side standardisation (used by the variance
        # experiment) are one operation: training on the host-normalised features with no
        # BatchNorm gives the same probe.
        config = dataclasses.replace(
            FAST, learning_rates=(1e-2,), weight_decays=(1e-2,), val_fraction=0.0, epochs=2
        )
        train_x = self.train_x[:3000] + self.offset
        labels = self.train_y[:3000].copy()
        labels[::7] = 255
        with_bn = probes.train_softmax_probe(
            train_x, labels, NUM_CLASSES, batchnorm=True, config=config
        )
        stats = probes.feature_normalizer(train_x, rows=np.flatnonzero(labels != 255))
        host = probes.normalize_features(train_x, *stats)
        without_bn = probes.train_softmax_probe(host, labels, NUM_CLASSES, config=config)
        np.testing.assert_array_equal(with_bn.mean, stats[0])
        np.testing.assert_array_equal(with_bn.std, stats[1])
        np.testing.assert_array_equal(with_bn.normalize(train_x), host)
        np.testing.assert_allclose(with_bn.weights, without_bn.weights, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            with_bn.predict(self.test_x + self.offset),
            without_bn.predict(probes.normalize_features(self.test_x + self.offset, *stats)),
            rtol=1e-5,
            atol=1e-5,
        )

    def test_ignored_rows_take_no_part(self):
        config = dataclasses.replace(FAST, epochs=2)
        keep = self.train_x[:3000], self.train_y[:3000]
        # Interleave ignore-labelled rows with garbage features.
        x = np.concatenate([keep[0], np.full((500, DIM), 1e6, np.float32)])
        y = np.concatenate([keep[1], np.full(500, 255)])
        order = np.random.default_rng(1).permutation(len(x))
        x, y = x[order], y[order]
        kept_rows = np.sort(order.argsort()[:3000])
        clean = probes.train_softmax_probe(x[kept_rows], y[kept_rows], NUM_CLASSES, config=config)
        mixed = probes.train_softmax_probe(x, y, NUM_CLASSES, config=config)
        np.testing.assert_allclose(mixed.weights, clean.weights, rtol=1e-5, atol=1e-6)
        self.assertEqual(mixed.sweep, clean.sweep)

    def test_memmap_and_padding_steps(self):
        config = dataclasses.replace(FAST, epochs=2, steps_per_call=5, batch_size=300)
        x, y = self.train_x[:2100], self.train_y[:2100]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "feats.f32")
            mm = np.memmap(path, np.float32, "w+", shape=x.shape)
            mm[:] = x
            mm.flush()
            mm = np.memmap(path, np.float32, "r", shape=x.shape)
            # 2 epochs x ceil(1890 / 300) = 14 steps: the third call of 5 has a padding step.
            streamed = probes.train_softmax_probe(mm, y, NUM_CLASSES, config=config)
            del mm
        one_step_calls = dataclasses.replace(config, steps_per_call=1)
        reference = probes.train_softmax_probe(x, y, NUM_CLASSES, config=one_step_calls)
        np.testing.assert_allclose(streamed.weights, reference.weights, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(streamed.bias, reference.bias, rtol=1e-5, atol=1e-6)

    def test_keep_best_without_retraining_is_reproducible(self):
        config = dataclasses.replace(FAST, epochs=2, retrain_on_all=False)
        a = probes.train_softmax_probe(
            self.train_x[:2000], self.train_y[:2000], NUM_CLASSES, seed=3, config=config
        )
        b = probes.train_softmax_probe(
            self.train_x[:2000], self.train_y[:2000], NUM_CLASSES, seed=3, config=config
        )
        self.assertFalse(a.retrained_on_all)
        np.testing.assert_array_equal(a.weights, b.weights)
        self.assertEqual(a.sweep, b.sweep)

    def test_bad_input_raises(self):
        with self.assertRaisesRegex(errors.ConfigError, "labels"):
            probes.train_softmax_probe(self.train_x[:10], np.full(10, 40), NUM_CLASSES)
        with self.assertRaisesRegex(errors.ConfigError, "optimizer"):
            probes.train_softmax_probe(
                self.train_x[:10],
                self.train_y[:10],
                NUM_CLASSES,
                config=probes.ProbeConfig(optimizer="lbfgs"),
            )
        with self.assertRaisesRegex(errors.ConfigError, "held-out"):
            probes.train_softmax_probe(
                self.train_x[:10],
                self.train_y[:10],
                NUM_CLASSES,
                config=probes.ProbeConfig(val_fraction=0.0),
            )


_memmap = test_util.write_memmap


class FeatureNormalizerTest(parameterized.TestCase):
    """The one streamed standardisation: statistics of (a subset of) the rows, then (x - m) / s."""

    CHUNK = 128

    def _features(self, dtype, offset, rows=1000, seed=0):
        rng = np.random.default_rng(seed)
        scales = np.array([0.05, 1.0, 3.0, 0.2, 10.0, 0.5])
        return _memmap(self, (rng.standard_normal((rows, 6)) * scales + offset).astype(dtype))

    @parameterized.product(dtype=[np.float16, np.float32], offset=[0.0, 1e4], subset=[False, True])
    def test_moments_match_float64_numpy(self, dtype, offset, subset):
        x = self._features(dtype, offset)
        self.assertGreater(len(x), 5 * self.CHUNK)
        # Unsorted labelled rows (every third row void), as a probe passes them.
        rows = np.random.default_rng(1).permutation(len(x))[::3] if subset else None
        mean, var = probes.feature_moments(x, rows=rows, chunk_rows=self.CHUNK)
        exact = np.asarray(x).astype(np.float64)[slice(None) if rows is None else rows]
        self.assertEqual(mean.dtype, np.float64)
        np.testing.assert_allclose(mean, exact.mean(axis=0), rtol=1e-12)
        # With offset 1e4 and std 0.05, E[x^2] - E[x]^2 in float64 is off by ~1e-4 relative.
        np.testing.assert_allclose(var, np.var(exact, axis=0), rtol=1e-9)

    @parameterized.product(dtype=[np.float16, np.float32], offset=[0.0, 1e4])
    @test_util.requires("sklearn")
    def test_normalizer_on_labelled_rows_matches_sklearn(self, dtype, offset):
        ref = self._features(dtype, offset, seed=1)
        x = self._features(dtype, offset, rows=700, seed=2)
        labelled = np.flatnonzero(np.random.default_rng(3).random(len(ref)) < 0.7)
        mean, std = probes.feature_normalizer(ref, rows=labelled, chunk_rows=self.CHUNK)
        scaler = preprocessing.StandardScaler().fit(np.asarray(ref)[labelled].astype(np.float64))
        np.testing.assert_allclose(mean, scaler.mean_, rtol=1e-12)
        # MAE's BatchNorm eps (1e-6) by default; float16 at 1e4 (spacing 8) makes the low-variance
        # dims constant, where eps alone is the scale.
        np.testing.assert_allclose(std, np.sqrt(scaler.var_ + 1e-6), rtol=1e-9)
        out = probes.normalize_features(x, mean, std, chunk_rows=self.CHUNK)
        self.assertEqual((out.dtype, out.shape), (np.float32, x.shape))
        expected = (np.asarray(x).astype(np.float64) - scaler.mean_) / np.sqrt(scaler.var_ + 1e-6)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
        masked = probes.normalize_features(x, mean, std, feature_mask=[1, 0, 1, 1, 0, 1])
        np.testing.assert_array_equal(masked[:, [1, 4]], 0.0)
        np.testing.assert_array_equal(masked[:, [0, 2, 3, 5]], out[:, [0, 2, 3, 5]])

    def test_no_whole_array_float64_copy(self):
        x = self._features(np.float32, 1e4, rows=40_000)
        whole_f64 = x.shape[0] * x.shape[1] * 8
        labelled = np.arange(0, len(x), 2)
        tracemalloc.start()
        try:
            probes.feature_moments(x, chunk_rows=1024)
            _, peak_all = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            stats = probes.feature_normalizer(x, rows=labelled, chunk_rows=1024)
            _, peak_rows = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            out = probes.normalize_features(x, *stats, chunk_rows=1024)
            _, peak_normalize = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak_all, whole_f64 / 4)
        # The row subset is an index array (8 bytes per row) plus one chunk at a time.
        self.assertLess(peak_rows, labelled.nbytes + whole_f64 / 4)
        # The float32 result is held whole; nothing the size of a float64 copy besides it.
        self.assertLess(peak_normalize, out.nbytes + whole_f64 / 4)

    def test_bad_input_raises(self):
        with self.assertRaisesRegex(errors.ConfigError, "2-D"):
            probes.feature_moments(np.zeros(4, np.float32))
        with self.assertRaisesRegex(errors.ConfigError, "no rows"):
            probes.feature_moments(np.zeros((0, 4), np.float32))
        with self.assertRaisesRegex(errors.ConfigError, "no rows"):
            probes.feature_normalizer(np.zeros((3, 4)), rows=np.array([], int))
        with self.assertRaisesRegex(errors.ConfigError, "rows"):
            probes.feature_moments(np.zeros((3, 4)), rows=[0, 3])
        with self.assertRaisesRegex(errors.ConfigError, "D=4"):
            probes.normalize_features(np.zeros((3, 4)), np.zeros(3), np.ones(3))
        with self.assertRaisesRegex(errors.ConfigError, "feature_mask"):
            probes.normalize_features(np.zeros((3, 2)), np.zeros(2), np.ones(2), [0, 2])


def _count_compiles():
    """Starts counting JAX traces and compilations; returns (counts dict, stop function)."""
    counts = {"trace": 0, "compile": 0}

    def listener(event, duration, **kwargs):
        del duration, kwargs
        if event == "/jax/core/compile/jaxpr_trace_duration":
            counts["trace"] += 1
        elif event == "/jax/core/compile/backend_compile_duration":
            counts["compile"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    return counts, lambda: jax.monitoring.unregister_event_duration_listener(listener)


class FeatureMaskTest(parameterized.TestCase):
    """A feature mask equals deleting the columns, at one compiled width."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(10)
        num_classes, dim, n = 5, 24, 3000
        means = rng.standard_normal((num_classes, dim)) * 0.5
        labels = rng.integers(0, num_classes, 2 * n)
        x = means[labels] + rng.standard_normal((2 * n, dim))
        # The masked dims would dominate if they leaked: one is the label itself, one is huge
        # noise, one is a large offset (BatchNorm statistics of its own).
        cls.masked = np.array([2, 7, 19])
        x[:, 2] = labels * 10.0
        x[:, 7] = rng.standard_normal(2 * n) * 1e4
        x[:, 19] += 300.0
        x = x.astype(np.float32)
        cls.labels = labels[:n].copy()
        cls.labels[:200] = 255
        cls.train_x, cls.test_x, cls.test_y = x[:n], x[n:], labels[n:]
        cls.num_classes = num_classes
        cls.mask = np.ones(dim, bool)
        cls.mask[cls.masked] = False

    @parameterized.parameters(
        dict(optimizer="adamw", batchnorm=False),
        dict(optimizer="adamw", batchnorm=True),
        dict(optimizer="sgd", batchnorm=True),
    )
    def test_mask_equals_training_on_deleted_columns(self, optimizer, batchnorm):
        config = dataclasses.replace(
            FAST, optimizer=optimizer, epochs=3, weight_decays=(0.0, 1e-2), batch_size=128
        )
        if optimizer == "sgd":
            config = dataclasses.replace(config, learning_rates=(0.1, 0.3))
        kept = self.mask
        # A 0/1 float mask is accepted as well as a bool one.
        masked = probes.train_softmax_probe(
            self.train_x,
            self.labels,
            self.num_classes,
            batchnorm=batchnorm,
            seed=4,
            config=config,
            feature_mask=kept.astype(np.float32),
        )
        deleted = probes.train_softmax_probe(
            self.train_x[:, kept],
            self.labels,
            self.num_classes,
            batchnorm=batchnorm,
            seed=4,
            config=config,
        )
        # Guaranteed: weights of masked dims are exactly 0 (zero start, zero gradient, zero decay).
        np.testing.assert_array_equal(masked.weights[~kept], 0.0)
        # Equal up to float32 summation order (measured: <= 6e-8 on weights of size ~1).
        np.testing.assert_allclose(masked.weights[kept], deleted.weights, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(masked.bias, deleted.bias, rtol=1e-5, atol=1e-6)
        self.assertEqual(masked.hparams, deleted.hparams)
        for a, b in zip(masked.sweep, deleted.sweep):
            self.assertAlmostEqual(a["val_accuracy"], b["val_accuracy"], delta=1.5 / 280)
        pred_masked = masked.predict_labels(self.test_x)
        pred_deleted = deleted.predict_labels(self.test_x[:, kept])
        self.assertGreater(np.mean(pred_masked == pred_deleted), 0.998)
        self.assertAlmostEqual(
            np.mean(pred_masked == self.test_y), np.mean(pred_deleted == self.test_y), delta=0.002
        )
        np.testing.assert_array_equal(masked.feature_mask, kept)
        if batchnorm:
            normalized = masked.normalize(self.test_x)
            np.testing.assert_array_equal(normalized[:, ~kept], 0.0)
            np.testing.assert_allclose(
                normalized[:, kept], deleted.normalize(self.test_x[:, kept]), rtol=1e-6, atol=1e-6
            )

    def test_another_mask_does_not_retrace(self):
        config = dataclasses.replace(FAST, epochs=1, batch_size=128)
        probes.train_softmax_probe(
            self.train_x, self.labels, self.num_classes, config=config, feature_mask=self.mask
        )
        fewer = self.mask.copy()
        fewer[:10] = False
        counts, stop = _count_compiles()
        try:
            probe = probes.train_softmax_probe(
                self.train_x, self.labels, self.num_classes, config=config, feature_mask=fewer
            )
            self.assertEqual(counts, {"trace": 0, "compile": 0})
            np.testing.assert_array_equal(probe.weights[~fewer], 0.0)
            # Control: the counter does see a new width (the column-deleted features).
            probes.train_softmax_probe(
                self.train_x[:, fewer], self.labels, self.num_classes, config=config
            )
            self.assertGreater(counts["trace"], 0)
        finally:
            stop()

    def test_bad_mask_raises(self):
        with self.assertRaisesRegex(errors.ConfigError, r"feature_mask.*\(24,\)"):
            probes.train_softmax_probe(
                self.train_x, self.labels, self.num_classes, feature_mask=np.ones(5, bool)
            )


@test_util.requires("sklearn")
class RidgeTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("primal", 120, 15, 3), ("dual", 30, 80, 4), ("single_target", 60, 10, 0)
    )
    def test_matches_sklearn_ridge(self, num_rows, dim, targets):
        rng = np.random.default_rng(num_rows)
        x = rng.standard_normal((num_rows, dim)) * rng.uniform(0.1, 5, dim) + rng.uniform(
            -3, 3, dim
        )
        y_shape = (num_rows,) if targets == 0 else (num_rows, targets)
        y = rng.standard_normal(y_shape) + 2.0
        alphas = (1e-3, 0.1, 1.0, 10.0, 1000.0)
        model = probes.ridge_fit(x, y, l2s=alphas)
        for alpha in alphas:
            # sklearn's `alpha` multiplies ||w||^2 with unscaled squared error: the same as l2.
            oracle = linear_model.Ridge(alpha=alpha, solver="svd").fit(x, y)
            weights, bias = model.weights(alpha)
            np.testing.assert_allclose(
                weights, np.atleast_2d(oracle.coef_).T.reshape(weights.shape), atol=1e-5
            )
            np.testing.assert_allclose(bias, np.atleast_1d(oracle.intercept_), atol=1e-5)
            np.testing.assert_allclose(model.predict(x, alpha), oracle.predict(x), atol=1e-5)

    def test_zero_l2_is_least_squares(self):
        rng = np.random.default_rng(3)
        x, y = rng.standard_normal((50, 6)), rng.standard_normal((50, 2))
        oracle = linear_model.LinearRegression().fit(x, y)
        np.testing.assert_allclose(
            probes.ridge_fit(x, y, (0.0,)).predict(x, 0.0), oracle.predict(x), atol=1e-8
        )

    def test_select_matches_brute_force_and_r2(self):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((200, 40))
        y = x[:, :3] @ rng.standard_normal((3, 2)) + 3.0 * rng.standard_normal((200, 2))
        l2s = (0.01, 1.0, 30.0, 1000.0)
        selection = probes.ridge_select(x, y, l2s=l2s, val_fraction=0.25, seed=5)
        order = np.random.default_rng(5).permutation(200)
        val, train = np.sort(order[:50]), np.sort(order[50:])
        want = {}
        for l2 in l2s:
            fit = linear_model.Ridge(alpha=l2).fit(x[train], y[train])
            want[l2] = metrics.r2_score(y[val], fit.predict(x[val]))
        self.assertEqual(set(selection.val_scores), set(want))
        for l2 in l2s:
            self.assertAlmostEqual(selection.val_scores[l2], want[l2], places=6)
        self.assertEqual(selection.l2, max(want, key=want.get))
        refit = linear_model.Ridge(alpha=selection.l2).fit(x, y)
        np.testing.assert_allclose(
            selection.model.predict(x, selection.l2), refit.predict(x), atol=1e-5
        )

    def test_one_hot_classification(self):
        rng = np.random.default_rng(6)
        means = rng.standard_normal((5, 12)) * 2
        labels = rng.integers(0, 5, 400)
        x = means[labels] + rng.standard_normal((400, 12))
        labels[:10] = 255
        targets = probes.one_hot(labels, 5)
        np.testing.assert_array_equal(targets[:10], 0.0)
        np.testing.assert_array_equal(targets[10:].argmax(1), labels[10:])
        selection = probes.ridge_select(x[10:], targets[10:], score="accuracy")
        pred = selection.model.predict(x[10:], selection.l2).argmax(1)
        oracle = linear_model.RidgeClassifier(alpha=selection.l2).fit(x[10:], labels[10:])
        # RidgeClassifier fits +-1 targets, which rescales the solution but keeps argmax rankings
        # close; both should classify these well-separated classes nearly perfectly alike.
        self.assertGreater(np.mean(pred == oracle.predict(x[10:])), 0.97)
        with self.assertRaisesRegex(errors.ConfigError, "labels"):
            probes.one_hot(np.array([0, 7]), 5)


class InputCheckTest(parameterized.TestCase):
    """NaN / inf features and float labels are errors naming the array and the first bad row."""

    def _data(self, rows=400, dim=8):
        rng = np.random.default_rng(7)
        means = rng.standard_normal((3, dim)) * 2
        return gaussian_classes(rng, means, rows)

    @parameterized.parameters(
        (np.nan, False, False), (np.inf, True, False), (np.nan, False, True), (np.inf, True, True)
    )
    def test_non_finite_training_row(self, value, batchnorm, sweep):
        x, y = self._data()
        # Without a sweep every labelled row is trained on (counted in the compiled step); with
        # one and no retraining, row 123 is only a held-out row (checked with the accuracies).
        config = probes.ProbeConfig(
            learning_rates=(1e-2,),
            weight_decays=(0.0,),
            batch_size=64,
            epochs=1,
            val_fraction=0.0,
            steps_per_call=2,
        )
        if sweep:
            config = dataclasses.replace(
                config, learning_rates=(1e-2, 1e-1), val_fraction=0.5, retrain_on_all=False
            )
        x[123, 4] = value
        with self.assertRaisesRegex(
            errors.InputError, r"`features` .* 1 non-finite value.* first bad row is 123"
        ):
            probes.train_softmax_probe(x, y, 3, batchnorm=batchnorm, config=config)
        # The same row ignore-labelled takes no part, and a masked dim is never read.
        config = dataclasses.replace(config, val_fraction=0.0, learning_rates=(1e-2,))
        y_ignored = y.copy()
        y_ignored[123] = 255
        probes.train_softmax_probe(x, y_ignored, 3, config=config, batchnorm=batchnorm)
        mask = np.arange(8) != 4
        probe = probes.train_softmax_probe(x, y, 3, config=config, feature_mask=mask)
        self.assertTrue(np.isfinite(probe.predict(x)).all())
        with self.assertRaisesRegex(errors.InputError, r"LinearProbe.predict: .* row is 123"):
            probes.train_softmax_probe(x[:100], y[:100], 3, config=config).predict(x)

    def test_float_labels_are_refused_not_truncated(self):
        x, y = self._data()
        with self.assertRaisesRegex(errors.InputError, "`labels` must hold integer labels"):
            probes.train_softmax_probe(x, y + 0.4, 3, config=FAST)
        with self.assertRaisesRegex(errors.InputError, "`labels`"):
            probes.one_hot(np.array([0.0, 1.9]), 3)

    def test_moments_and_normalizer(self):
        x, _ = self._data()
        x[50, 2] = np.inf
        x[60, 0] = np.nan
        with self.assertRaisesRegex(
            errors.InputError, r"feature_moments: `features` .* 2 non-finite value.* row is 50"
        ):
            probes.feature_moments(test_util.write_memmap(self, x))
        with self.assertRaisesRegex(errors.InputError, "row is 60"):
            probes.feature_normalizer(x, rows=np.arange(55, 100))
        probes.feature_moments(x, rows=np.arange(49))  # the bad rows are not used
        mean, std = probes.feature_normalizer(x, rows=np.arange(49))
        with self.assertRaisesRegex(errors.InputError, r"normalize_features: .* row is 50"):
            probes.normalize_features(x, mean, std)
        with self.assertRaisesRegex(errors.InputError, "`std`"):
            probes.normalize_features(x[:10], mean, np.full_like(std, np.nan))

    def test_ridge(self):
        rng = np.random.default_rng(8)
        x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 2))
        bad_x, bad_y = x.copy(), y.copy()
        bad_x[31, 3], bad_y[17, 1] = np.nan, np.inf
        with self.assertRaisesRegex(errors.InputError, r"ridge_fit: `X` .* row is 31"):
            probes.ridge_fit(bad_x, y)
        with self.assertRaisesRegex(errors.InputError, r"ridge_fit: `Y` .* row is 17"):
            probes.ridge_fit(x, bad_y)
        with self.assertRaisesRegex(errors.InputError, r"ridge_select: `X` .* row is 31"):
            probes.ridge_select(bad_x, y)
        with self.assertRaisesRegex(errors.InputError, r"RidgeModel.predict: `X` .* row is 31"):
            probes.ridge_fit(x, y).predict(bad_x, 1.0)


if __name__ == "__main__":
    absltest.main()
