"""Tests of vitjax.roi_align against torchvision.ops.roi_align."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from tests import test_util  # noqa: F401
from vitjax import errors, roi_align

torch = test_util.optional_import("torch")
torchvision = test_util.optional_import("torchvision")

# Boxes in image pixels for a 14 x 18 map at stride 16 (224 x 288 px): whole image, generic, partly
# outside on each side, tiny (below one cell), empty, inverted, a thin strip, fully outside.
BOXES = np.array(
    [
        [0.0, 0.0, 224.0, 288.0],
        [10.3, 20.7, 100.2, 90.1],
        [-30.0, -20.0, 50.0, 60.0],
        [200.0, 250.0, 320.0, 330.0],
        [50.0, 50.0, 52.0, 51.0],
        [60.0, 60.0, 60.0, 60.0],
        [100.0, 40.0, 90.0, 30.0],
        [3.3, 4.4, 7.5, 200.0],
        [-100.0, -100.0, -50.0, -60.0],
        [17.0, 33.0, 270.0, 215.5],
    ],
    np.float32,
)
BOX_BATCH = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])


def _features(batch=2, height=14, width=18, dim=5, seed=0):
    return (
        np.random.default_rng(seed).standard_normal((batch, height, width, dim)).astype(np.float32)
    )


def _torchvision(features, boxes, box_batch, output_size, spatial_scale, sampling_ratio, aligned):
    rois = torch.from_numpy(np.concatenate([box_batch[:, None], boxes], axis=1).astype(np.float32))
    out = torchvision.ops.roi_align(
        torch.from_numpy(features).permute(0, 3, 1, 2),  # torchvision is NCHW
        rois,
        output_size,
        spatial_scale,
        sampling_ratio,
        aligned,
    )
    return out.permute(0, 2, 3, 1).numpy()


class RoiAlignTest(parameterized.TestCase):
    @parameterized.product(
        aligned=(True, False), sampling_ratio=(-1, 1, 2, 3), output_size=((7, 7), (3, 5))
    )
    @test_util.requires("torch", "torchvision")
    def test_matches_torchvision(self, aligned, sampling_ratio, output_size):
        features = _features()
        expected = _torchvision(
            features, BOXES, BOX_BATCH, output_size, 1 / 16, sampling_ratio, aligned
        )
        got = roi_align.roi_align(
            features, BOXES, BOX_BATCH, output_size, 1 / 16, sampling_ratio, aligned
        )
        self.assertEqual(got.shape, (len(BOXES), *output_size, features.shape[-1]))
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)

    @parameterized.parameters(True, False)
    @test_util.requires("torch", "torchvision")
    def test_random_boxes_other_scale(self, aligned):
        rng = np.random.default_rng(1)
        features = _features(batch=3, height=9, width=11, dim=4, seed=2)
        corners = rng.uniform(-20, 100, (40, 2, 2))
        boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1).astype(np.float32)
        boxes = boxes[:, [1, 0, 3, 2]]  # shuffle x/y roles so boxes are not square-biased
        box_batch = rng.integers(0, 3, 40)
        expected = _torchvision(features, boxes, box_batch, (4, 6), 1 / 8, -1, aligned)
        got = roi_align.roi_align(features, boxes, box_batch, (4, 6), 1 / 8, -1, aligned)
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)

    def test_adaptive_samples_are_ceil_of_roi_over_bins(self):
        got = roi_align.adaptive_samples(BOXES[:2], (7, 7), 1 / 16, aligned=True)
        # Box 0: 14 x 18 cells -> ceil(14 / 7) = 2, ceil(18 / 7) = 3 (x1, y1, x2, y2 -> (y, x)).
        # Box 1: 69.4 / 16 = 4.34 rows, 89.9 / 16 = 5.62 cols -> 1, 1.
        np.testing.assert_array_equal(got, [[3, 2], [1, 1]])

    @test_util.requires("torch", "torchvision")
    def test_jit_with_static_bound_matches_host_path(self):
        features = _features()
        boxes = jnp.asarray(BOXES)

        @jax.jit
        def pooled(boxes):
            return roi_align.roi_align(features, boxes, BOX_BATCH, max_samples_per_bin=4)

        expected = _torchvision(features, BOXES, BOX_BATCH, (7, 7), 1 / 16, -1, True)
        np.testing.assert_allclose(np.asarray(pooled(boxes)), expected, atol=1e-5)

        @jax.jit
        def unbounded(boxes):
            return roi_align.roi_align(features, boxes, BOX_BATCH)

        with self.assertRaisesRegex(errors.ConfigError, "max_samples_per_bin"):
            unbounded(boxes)

    @test_util.requires("torch", "torchvision")
    def test_roi_pool_mean(self):
        features = _features()
        expected = _torchvision(features, BOXES, BOX_BATCH, (7, 7), 1 / 16, 2, True).mean((1, 2))
        got = roi_align.roi_pool_mean(features, BOXES, BOX_BATCH, sampling_ratio=2)
        self.assertEqual(got.shape, (len(BOXES), features.shape[-1]))
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)

    def test_constant_map_gives_constant_inside_boxes(self):
        features = np.full((1, 14, 14, 3), 2.5, np.float32)
        boxes = np.array([[16.0, 16.0, 200.0, 120.0]], np.float32)
        got = roi_align.roi_align(features, boxes, np.array([0]))
        np.testing.assert_allclose(np.asarray(got), 2.5, rtol=1e-6)

    def test_empty_and_bad_inputs(self):
        features = _features()
        empty = roi_align.roi_align(features, np.zeros((0, 4), np.float32), np.zeros(0, int))
        self.assertEqual(empty.shape, (0, 7, 7, 5))
        with self.assertRaisesRegex(errors.VitjaxError, r"\[K, 4\]"):
            roi_align.roi_align(features, np.zeros((3, 5)), np.zeros(3, int))
        with self.assertRaisesRegex(errors.VitjaxError, "box_batch"):
            roi_align.roi_align(features, BOXES, np.full(len(BOXES), 2))
        with self.assertRaisesRegex(errors.VitjaxError, r"\[B, h, w, D\]"):
            roi_align.roi_align(features[0], BOXES, BOX_BATCH)

    @parameterized.parameters(np.nan, np.inf, -np.inf)
    def test_non_finite_inputs_are_errors(self, value):
        features = _features()
        features[1, 3, 7, 2] = value
        with self.assertRaisesRegex(
            errors.InputError, r"`feature_map` .* 1 non-finite value.* first bad row is 1 .*7, 2"
        ):
            roi_align.roi_align(features, BOXES, BOX_BATCH)
        boxes = BOXES.copy()
        boxes[4, 2] = value
        with self.assertRaisesRegex(errors.InputError, r"`boxes` .* first bad row is 4"):
            roi_align.roi_align(_features(), boxes, BOX_BATCH)

    def test_float_box_batch_is_refused_not_truncated(self):
        with self.assertRaisesRegex(errors.InputError, "`box_batch` must hold integer"):
            roi_align.roi_align(_features(), BOXES, BOX_BATCH + 0.5)


if __name__ == "__main__":
    absltest.main()
