"""Tests of vitjax.metrics against cityscapesscripts, scikit-learn, scikit-image and brute force."""

import os
import tempfile

import numpy as np
from absl.testing import absltest, parameterized
from PIL import Image
from skimage import metrics as skmetrics

from tests import test_util  # noqa: F401
from vitjax import errors, metrics

cs_eval = test_util.optional_import("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
cs_labels = test_util.optional_import("cityscapesscripts.helpers.labels")
skl = test_util.optional_import("sklearn.metrics")


def _cityscapes_train_ids() -> np.ndarray:
    """labelId -> trainId lookup (0..18 evaluated, 255 otherwise) for labelIds 0..33."""
    lookup = np.full(34, 255, np.int64)
    for label in cs_labels.labels:
        if 0 <= label.id < 34 and not label.ignoreInEval:
            lookup[label.id] = label.trainId
    return lookup


class ConfusionMatrixTest(parameterized.TestCase):
    def test_hand_computed(self):
        gt = np.array([[0, 1, 1], [2, 255, 2]])
        pred = np.array([[0, 1, 255], [0, 1, 7]])
        cm = metrics.confusion_matrix(gt, pred, 3)
        expected = [[1, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0, 1]]
        np.testing.assert_array_equal(cm, expected)
        self.assertEqual(cm.dtype, np.int64)
        self.assertAlmostEqual(metrics.accuracy(cm), 2 / 5)
        # class 0: TP 1, FP 1 (gt 2 predicted 0), FN 0; class 1: TP 1, FN 1; class 2: FN 2.
        np.testing.assert_allclose(metrics.iou_per_class(cm), [0.5, 0.5, 0.0])

    @parameterized.parameters(0, 1, 2)
    @test_util.requires("sklearn")
    def test_matches_sklearn(self, seed):
        rng = np.random.default_rng(seed)
        num_classes = 6
        gt = rng.integers(0, num_classes, (40, 50))
        gt[rng.random(gt.shape) < 0.2] = 255
        pred = rng.integers(0, num_classes + 2, gt.shape)  # ids 6, 7 are not evaluated
        pred[rng.random(gt.shape) < 0.1] = 255
        cm = metrics.confusion_matrix(gt, pred, num_classes)
        keep = gt != 255
        expected = skl.confusion_matrix(gt[keep], pred[keep], labels=np.arange(num_classes))
        np.testing.assert_array_equal(cm[:, :num_classes], expected)
        np.testing.assert_array_equal(
            cm[:, num_classes], [np.sum((gt == c) & (pred >= num_classes)) for c in range(6)]
        )
        self.assertAlmostEqual(metrics.accuracy(cm), skl.accuracy_score(gt[keep], pred[keep]))
        jaccard = skl.jaccard_score(
            gt[keep], pred[keep], labels=np.arange(num_classes), average=None, zero_division=0
        )
        np.testing.assert_allclose(metrics.iou_per_class(cm), jaccard, rtol=1e-12)
        recall = skl.recall_score(
            gt[keep], pred[keep], labels=np.arange(num_classes), average=None, zero_division=0
        )
        np.testing.assert_allclose(metrics.class_accuracy(cm), recall, rtol=1e-12)

    def test_streaming_equals_one_shot(self):
        rng = np.random.default_rng(3)
        gt = rng.integers(0, 5, (4, 30))
        pred = rng.integers(0, 5, (4, 30))
        stream = metrics.ConfusionMatrix(5)
        for row in range(4):
            stream.update(gt[row], pred[row])
        np.testing.assert_array_equal(stream.result(), metrics.confusion_matrix(gt, pred, 5))
        stream.reset()
        self.assertEqual(stream.result().sum(), 0)

    def test_iou_nan_for_absent_classes_and_conventions(self):
        # Class 2 never appears in gt or pred; class 3 appears only as a false positive.
        cm = metrics.confusion_matrix([0, 0, 1, 1], [0, 3, 1, 1], 4)
        iou = metrics.iou_per_class(cm)
        np.testing.assert_allclose(iou, [0.5, 1.0, np.nan, 0.0])
        self.assertAlmostEqual(metrics.mean_iou(cm, "present"), 1.5 / 3)
        # ADE20K convention: every class counts, absent ones as 0.
        self.assertAlmostEqual(metrics.mean_iou(cm, "all"), 1.5 / 4, places=12)
        with self.assertRaisesRegex(errors.ConfigError, "convention"):
            metrics.mean_iou(cm, "cityscapes")

    def test_square_matrices_accepted(self):
        cm = np.array([[3, 1], [0, 4]])
        np.testing.assert_allclose(metrics.iou_per_class(cm), [0.75, 0.8])
        self.assertAlmostEqual(metrics.accuracy(cm), 7 / 8)
        with self.assertRaisesRegex(errors.VitjaxError, "confusion matrix"):
            metrics.iou_per_class(np.zeros((3, 5)))

    def test_shape_mismatch_raises(self):
        with self.assertRaisesRegex(errors.VitjaxError, "differ"):
            metrics.confusion_matrix(np.zeros(3), np.zeros(4), 2)


class InputCheckTest(parameterized.TestCase):
    def test_float_labels_are_refused_not_truncated(self):
        # 1.7 used to be counted as class 1.
        with self.assertRaisesRegex(errors.InputError, "`pred` must hold integer labels"):
            metrics.confusion_matrix(np.array([0, 1]), np.array([0.0, 1.7]), 2)
        with self.assertRaisesRegex(errors.InputError, "`gt` must hold integer labels"):
            metrics.ConfusionMatrix(2).update(np.array([0.0, 1.0]), np.array([0, 1]))
        with self.assertRaisesRegex(errors.InputError, "`nn_patch`"):
            metrics.retrieval_outcomes([1], [1], [1], [3], [1], [1], [1], [3.5])
        with self.assertRaisesRegex(errors.InputError, "`true_cats`"):
            metrics.association_accuracy([1], [1], [0], [0.2])

    @parameterized.parameters(np.nan, np.inf)
    def test_non_finite_values_are_errors(self, value):
        rng = np.random.default_rng(4)
        a = rng.uniform(0, 255, (4, 8, 8, 3))
        b = a.copy()
        b[2, 1, 5, 0] = value
        for fn in (metrics.mse, lambda x, y: metrics.psnr(x, y, 255.0)):
            with self.assertRaisesRegex(
                errors.InputError,
                r"`b` .* 1 non-finite value.* first bad row is 2 .*\(2, 1, 5, 0\)",
            ):
                fn(a, b)
        with self.assertRaisesRegex(errors.InputError, "`a`"):
            metrics.ssim(b[2], a[2], 255.0)
        y = rng.normal(size=(10, 3))
        yhat = y.copy()
        yhat[7, 2] = value
        with self.assertRaisesRegex(errors.InputError, r"r2_score: `yhat` .* first bad row is 7"):
            metrics.r2_score(y, yhat)


@test_util.requires("cityscapesscripts")
class CityscapesOracleTest(absltest.TestCase):
    """Compare with the official Cityscapes pixel-level evaluation on random labelId maps."""

    def test_iou_matches_cityscapes_scripts(self):
        rng = np.random.default_rng(5)
        args = cs_eval.args
        args.evalInstLevelScore = False
        args.evalPixelAccuracy = False
        args.quiet = True
        cs_matrix = cs_eval.generateMatrix(args)
        lookup = _cityscapes_train_ids()
        stream = metrics.ConfusionMatrix(19)
        evaluated = correct = 0
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(3):
                gt = rng.integers(0, 34, (48, 64)).astype(np.uint8)
                pred = gt.copy()
                wrong = rng.random(gt.shape) < 0.6
                pred[wrong] = rng.integers(0, 34, wrong.sum())  # ignored labelIds included
                gt_file = os.path.join(tmp, f"gt{index}.png")
                pred_file = os.path.join(tmp, f"pred{index}.png")
                Image.fromarray(gt).save(gt_file)
                Image.fromarray(pred).save(pred_file)
                cs_eval.evaluatePair(pred_file, gt_file, cs_matrix, {}, {}, args)
                stream.update(lookup[gt], lookup[pred])
                evaluated += np.sum(lookup[gt] != 255)
                correct += np.sum((lookup[gt] != 255) & (pred == gt))
        cm = stream.result()
        got = metrics.iou_per_class(cm)
        train_id_to_label = {
            label.trainId: label.id for label in cs_labels.labels if not label.ignoreInEval
        }
        expected = {
            train_id: cs_eval.getIouScoreForLabel(label_id, cs_matrix, args)
            for train_id, label_id in train_id_to_label.items()
        }
        np.testing.assert_allclose(got, [expected[t] for t in range(19)], rtol=1e-12)
        self.assertAlmostEqual(
            metrics.mean_iou(cm, "present"),
            cs_eval.getScoreAverage({t: expected[t] for t in range(19)}, args),
            places=12,
        )
        # Pixel accuracy: evaluated pixels = gt labelIds with a trainId; predicting an ignored
        # labelId there (the extra column) is an error.
        self.assertGreater(cm[:, 19].sum(), 0)
        self.assertAlmostEqual(metrics.accuracy(cm), correct / evaluated, places=12)


class RetrievalOutcomesTest(parameterized.TestCase):
    def test_hand_computed(self):
        # Queries: 0 hits its target; 1 misses it but hits its fine class; 2 same super;
        # 3 other object; 4 background; 5 has no target and hits its own instance.
        counts = metrics.retrieval_outcomes(
            query_fine=[1, 1, 2, 3, 3, 4],
            query_super=[1, 1, 1, 2, 2, 2],
            query_instance=[1, 1, 2, 3, 3, 4],
            query_patch_target=[10, 11, 12, 13, 14, -1],
            nn_fine=[1, 1, 1, 1, 0, 4],
            nn_super=[1, 1, 1, 1, 0, 2],
            nn_instance=[1, 5, 6, 7, 0, 4],
            nn_patch=[10, 3, 4, 5, 6, 7],
        )
        self.assertEqual(
            counts,
            {
                "queries": 6,
                "upper_bound": 5,
                "same_patch": 1,
                "same_fine": 2,
                "same_super": 1,
                "other_object": 1,
                "background": 1,
                "same_instance": 2,
                "at_least_fine": 3,
                "at_least_super": 4,
                "any_object": 5,
            },
        )

    def test_same_patch_requires_same_tile(self):
        counts = metrics.retrieval_outcomes(
            [1, 1],
            [1, 1],
            [1, 1],
            [5, 5],
            [1, 1],
            [1, 1],
            [1, 1],
            [5, 5],
            query_tile=[0, 0],
            nn_tile=[0, 3],
        )
        self.assertEqual((counts["same_patch"], counts["same_fine"]), (1, 1))
        self.assertEqual(counts["same_instance"], 1)

    @parameterized.parameters(0, 1)
    def test_matches_brute_force(self, seed):
        rng = np.random.default_rng(seed)
        q = 500
        fine_to_super = np.array([0, 1, 1, 1, 2, 2, 3])
        query_fine = rng.integers(1, 7, q)
        nn_fine = rng.integers(0, 7, q)
        arrays = dict(
            query_fine=query_fine,
            query_super=fine_to_super[query_fine],
            query_instance=rng.integers(1, 4, q),
            query_patch_target=rng.integers(-1, 5, q),
            nn_fine=nn_fine,
            nn_super=fine_to_super[nn_fine],
            nn_instance=np.where(nn_fine > 0, rng.integers(1, 4, q), 0),
            nn_patch=rng.integers(0, 5, q),
        )
        query_tile, nn_tile = rng.integers(0, 2, q), rng.integers(0, 2, q)
        counts = metrics.retrieval_outcomes(**arrays, query_tile=query_tile, nn_tile=nn_tile)
        expected = dict.fromkeys(metrics.RETRIEVAL_OUTCOMES, 0)
        for i in range(q):
            a = {name: value[i] for name, value in arrays.items()}
            if (
                a["query_patch_target"] >= 0
                and a["nn_patch"] == a["query_patch_target"]
                and (query_tile[i] == nn_tile[i])
            ):
                expected["same_patch"] += 1
            elif a["nn_fine"] == 0:
                expected["background"] += 1
            elif a["nn_fine"] == a["query_fine"]:
                expected["same_fine"] += 1
            elif a["nn_super"] == a["query_super"]:
                expected["same_super"] += 1
            else:
                expected["other_object"] += 1
        self.assertEqual({k: counts[k] for k in metrics.RETRIEVAL_OUTCOMES}, expected)
        self.assertEqual(counts["queries"], q)
        self.assertEqual(counts["upper_bound"], int(np.sum(arrays["query_patch_target"] >= 0)))

    def test_length_mismatch_raises(self):
        with self.assertRaisesRegex(errors.VitjaxError, "lengths"):
            metrics.retrieval_outcomes([1], [1], [1], [1], [1], [1], [1], [1, 2])


class AssociationAccuracyTest(absltest.TestCase):
    def test_counts(self):
        got = metrics.association_accuracy([1, 2, 3, 4], [1, 2, 9, 9], [0, 1, 1, 2], [0, 1, 0, 2])
        self.assertEqual(got, {"instance": 0.5, "category": 0.75, "count": 4})
        got = metrics.association_accuracy(
            [1, 2, 3, 4], [1, 2, 9, 9], [0, 1, 1, 2], [0, 1, 0, 2], valid=[1, 0, 1, 0]
        )
        self.assertEqual(got, {"instance": 0.5, "category": 0.5, "count": 2})
        empty = metrics.association_accuracy([], [], [], [])
        self.assertTrue(np.isnan(empty["instance"]))


class ImageAndRegressionMetricsTest(parameterized.TestCase):
    @parameterized.parameters(((32, 40, 3), -1), ((3, 30, 28), 0), ((25, 31), None))
    def test_ssim_matches_skimage(self, shape, channel_axis):
        rng = np.random.default_rng(0)
        a = rng.uniform(0, 255, shape)
        b = np.clip(a + rng.normal(0, 25, shape), 0, 255)
        expected = skmetrics.structural_similarity(a, b, data_range=255, channel_axis=channel_axis)
        got = metrics.ssim(a, b, 255, channel_axis=channel_axis)
        self.assertAlmostEqual(got, expected, delta=1e-6)

    def test_ssim_unit_range_and_identity(self):
        rng = np.random.default_rng(1)
        a = rng.random((20, 20, 3))
        b = rng.random((20, 20, 3))
        expected = skmetrics.structural_similarity(a, b, data_range=1.0, channel_axis=-1)
        self.assertAlmostEqual(metrics.ssim(a, b, 1.0), expected, delta=1e-6)
        self.assertAlmostEqual(metrics.ssim(a, a, 1.0), 1.0, delta=1e-12)

    def test_psnr_and_mse(self):
        rng = np.random.default_rng(2)
        a = rng.uniform(0, 255, (2, 16, 16, 3))
        b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255)
        expected = skmetrics.peak_signal_noise_ratio(a, b, data_range=255)
        self.assertAlmostEqual(metrics.psnr(a, b, 255), expected, places=10)
        self.assertAlmostEqual(metrics.mse(a, b), skmetrics.mean_squared_error(a, b), places=10)
        per_image = metrics.psnr(a, b, 255, axis=(1, 2, 3))
        for i in range(2):
            self.assertAlmostEqual(
                per_image[i], skmetrics.peak_signal_noise_ratio(a[i], b[i], data_range=255)
            )
        self.assertEqual(metrics.psnr(a, a, 255), np.inf)

    @test_util.requires("sklearn")
    def test_r2_matches_sklearn(self):
        rng = np.random.default_rng(3)
        y = rng.normal(size=(60, 5))
        yhat = y + rng.normal(scale=0.7, size=y.shape)
        yhat[:, 1] = -yhat[:, 1]  # a negative-R^2 output
        y[:, 3] = 2.0  # constant target, imperfect prediction -> 0.0
        y[:, 4] = 1.0
        yhat[:, 4] = 1.0  # constant target, perfect prediction -> 1.0
        self.assertAlmostEqual(metrics.r2_score(y, yhat), skl.r2_score(y, yhat), places=12)
        self.assertAlmostEqual(
            metrics.r2_score(y[:, 0], yhat[:, 0]), skl.r2_score(y[:, 0], yhat[:, 0]), places=12
        )


if __name__ == "__main__":
    absltest.main()
