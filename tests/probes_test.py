"""Tests of vitjax.probes against sklearn (LogisticRegression, Ridge, r2_score) and numpy."""

import dataclasses
import os
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized
from sklearn import linear_model, metrics

from tests import test_util  # noqa: F401
from vitjax import errors, probes

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


class FeatureNormalizerTest(absltest.TestCase):
    def test_streamed_statistics_match_numpy(self):
        rng = np.random.default_rng(2)
        # A large offset: a naive float32 sum of squares would cancel badly.
        x = (rng.standard_normal((1000, 7)) * rng.uniform(0.01, 3, 7) + 1e4).astype(np.float32)
        with mock.patch.object(probes, "_CHUNK_ROWS", 64):
            mean, std = probes.feature_normalizer(x)
        ref = x.astype(np.float64)
        np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-7)
        np.testing.assert_allclose(std, np.sqrt(ref.var(0) + 1e-6), rtol=1e-5)
        self.assertEqual(mean.dtype, np.float32)


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

    def test_r2_score_matches_sklearn(self):
        rng = np.random.default_rng(7)
        y, y_hat = rng.standard_normal((30, 3)), rng.standard_normal((30, 3))
        y[:, 2] = 1.0  # constant target
        y_hat[:, 2] = 1.0
        self.assertAlmostEqual(probes.r2_score(y, y_hat), metrics.r2_score(y, y_hat), places=10)
        self.assertAlmostEqual(
            probes.r2_score(y[:, 0], y_hat[:, 0]), metrics.r2_score(y[:, 0], y_hat[:, 0]), places=10
        )


if __name__ == "__main__":
    absltest.main()
