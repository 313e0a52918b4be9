"""Tests of vitjax.corruptions against scipy.ndimage, scikit-image, torchvision and numpy FFTs."""

import jax
import numpy as np
import scipy.ndimage as ndimage
from absl.testing import absltest, parameterized
from skimage import transform as sktransform

from tests import test_util  # noqa: F401
from vitjax import corruptions, errors

torch = test_util.optional_import("torch")
tvf = test_util.optional_import("torchvision.transforms.v2.functional")

# scipy.ndimage names of the module's (numpy) border modes.
SCIPY_MODE = {
    "constant": "constant",
    "edge": "nearest",
    "reflect": "mirror",
    "symmetric": "reflect",
    "wrap": "grid-wrap",
}
# On 0-255 images, float32 coordinate rounding (~1e-7 relative) moves bilinear values by <= ~5e-4.
WARP_ATOL = 2e-3
FILTER_ATOL = 2e-4


def _images(batch=2, height=20, width=24, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, channels))


class BlurTest(parameterized.TestCase):
    @parameterized.parameters((3, "reflect"), (5, "edge"), (7, "symmetric"), (7, "reflect"))
    def test_gaussian_matches_scipy(self, kernel_size, mode):
        images = _images()
        sigma = corruptions.default_gaussian_sigma(kernel_size)
        radius = (kernel_size - 1) // 2
        expected = ndimage.gaussian_filter(
            images, (0, sigma, sigma, 0), mode=SCIPY_MODE[mode], radius=(0, radius, radius, 0)
        )
        got = corruptions.gaussian_blur(images.astype(np.float32), kernel_size, mode=mode)
        np.testing.assert_allclose(np.asarray(got), expected, atol=FILTER_ATOL)

    @parameterized.parameters(3, 7, 9)
    @test_util.requires("torch", "torchvision")
    def test_gaussian_default_sigma_matches_torchvision(self, kernel_size):
        images = _images(channels=1, height=30, width=26).astype(np.float32)
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
        expected = tvf.gaussian_blur(tensor, [kernel_size, kernel_size]).permute(0, 2, 3, 1)
        got = corruptions.gaussian_blur(images, kernel_size)
        np.testing.assert_allclose(np.asarray(got), expected.numpy(), atol=FILTER_ATOL)

    def test_gaussian_explicit_sigma(self):
        images = _images()
        expected = ndimage.gaussian_filter(
            images, (0, 2.5, 2.5, 0), mode="mirror", radius=(0, 4, 4, 0)
        )
        got = corruptions.gaussian_blur(images, 9, sigma=2.5)
        np.testing.assert_allclose(np.asarray(got), expected, atol=FILTER_ATOL)

    @parameterized.parameters(
        *[(k, "reflect") for k in (2, 3, 4, 6, 8)], *[(4, m) for m in SCIPY_MODE if m != "reflect"]
    )
    def test_box_matches_scipy_uniform_filter(self, kernel_size, mode):
        images = _images(seed=kernel_size)
        expected = ndimage.uniform_filter(
            images, size=(1, kernel_size, kernel_size, 1), mode=SCIPY_MODE[mode]
        )
        got = corruptions.box_blur(images, kernel_size, mode=mode)
        np.testing.assert_allclose(np.asarray(got), expected, atol=FILTER_ATOL)

    def test_even_box_anchor_is_backwards(self):
        # k = 2 averages pixels (i - 1, i), cv2.blur's default anchor k // 2.
        images = np.zeros((1, 9, 9, 1))
        images[0, 4, 4, 0] = 200.0
        got = np.asarray(corruptions.box_blur(images, 2))[0, :, :, 0]
        expected = np.zeros((9, 9))
        expected[4:6, 4:6] = 50.0
        np.testing.assert_allclose(got, expected, atol=1e-5)

    def test_bad_kernel_sizes_raise(self):
        with self.assertRaisesRegex(errors.ConfigError, "odd"):
            corruptions.gaussian_blur(_images(), 4)
        with self.assertRaisesRegex(errors.ConfigError, "kernel_size"):
            corruptions.box_blur(_images(), 0)
        with self.assertRaisesRegex(errors.VitjaxError, r"\[B, H, W, C\]"):
            corruptions.box_blur(np.zeros((4, 4, 3)), 2)


class NoiseTest(parameterized.TestCase):
    @parameterized.parameters(10.0, 40.0)
    def test_gaussian_noise_statistics(self, sigma):
        images = np.full((4, 64, 64, 3), 127.5, np.float32)
        noise = np.asarray(corruptions.gaussian_noise(jax.random.key(1), images, sigma)) - 127.5
        # 49k samples: the std of the sample mean is sigma / 221, of the sample std sigma / 313.
        self.assertLess(abs(noise.mean()), 5 * sigma / 221)
        self.assertLess(abs(noise.std() / sigma - 1.0), 5 / 313)

    def test_noise_is_seeded_and_clipped(self):
        images = _images()
        key = jax.random.key(7)
        first = np.asarray(corruptions.gaussian_noise(key, images, 30.0))
        again = np.asarray(corruptions.gaussian_noise(key, images, 30.0))
        other = np.asarray(corruptions.gaussian_noise(jax.random.key(8), images, 30.0))
        np.testing.assert_array_equal(first, again)
        self.assertGreater(np.abs(first - other).mean(), 1.0)
        self.assertEqual(first.min(), 0.0)
        self.assertEqual(first.max(), 255.0)
        # Image i's noise does not depend on the batch size.
        single = np.asarray(corruptions.gaussian_noise(key, images[:1], 30.0))
        np.testing.assert_array_equal(single[0], first[0])

    @parameterized.parameters(0, 1, 2, 3)
    def test_frequency_band_energy_stays_in_its_ring(self, band):
        height, width, num_bands, sigma = 64, 48, 4, 5.0
        images = np.full((2, height, width, 3), 128.0, np.float32)
        out = corruptions.frequency_band_noise(jax.random.key(band), images, band, num_bands, sigma)
        noise = np.asarray(out, np.float64) - 128.0
        np.testing.assert_allclose(noise.std(axis=(1, 2, 3)), sigma, rtol=1e-4)
        self.assertLess(abs(noise.mean()), 1e-4)
        # Independent ring: full (not real) FFT grid, radius normalised by its maximum.
        fy = np.fft.fftfreq(height)[:, None]
        fx = np.fft.fftfreq(width)[None, :]
        radius = np.sqrt(fy**2 + fx**2)
        radius /= radius.max()
        ring = (radius >= band / num_bands - 1e-9) & (radius > 0)
        if band < num_bands - 1:
            ring &= radius < (band + 1) / num_bands - 1e-9
        power = np.abs(np.fft.fft2(noise, axes=(1, 2))) ** 2
        self.assertGreater(power[:, ring].sum() / power.sum(), 0.9999)

    def test_frequency_band_bad_band_raises(self):
        with self.assertRaisesRegex(errors.ConfigError, "band"):
            corruptions.frequency_band_noise(jax.random.key(0), _images(), 4, num_bands=4)


class GeometryTest(parameterized.TestCase):
    @parameterized.parameters(
        *[(3, -5, m) for m in SCIPY_MODE], (0, 2, "constant"), (-16, 0, "edge"), (7, 0, "reflect")
    )
    def test_shift_matches_scipy(self, dx, dy, mode):
        images = _images()
        expected = ndimage.shift(images, (0, dy, dx, 0), order=0, mode=SCIPY_MODE[mode])
        got = corruptions.shift(images, dx, dy, mode=mode)
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4)

    def test_shift_rejects_fractions(self):
        with self.assertRaisesRegex(errors.ConfigError, "integer"):
            corruptions.shift(_images(), 1.5, 0)

    @parameterized.parameters(
        *[(20.0, m) for m in SCIPY_MODE], *[(d, "constant") for d in (5.0, -33.0, 180.0)]
    )
    def test_rotate_matches_skimage(self, degrees, mode):
        images = _images()
        expected = np.stack(
            [
                sktransform.rotate(
                    image, degrees, order=1, mode=mode, cval=0.0, preserve_range=True, clip=False
                )
                for image in images
            ]
        )
        got = corruptions.rotate(images, degrees, mode=mode)
        np.testing.assert_allclose(np.asarray(got), expected, atol=WARP_ATOL)

    def test_rotate_constant_fill_value(self):
        images = _images()
        expected = np.stack(
            [
                sktransform.rotate(image, 30.0, order=1, cval=77.0, preserve_range=True)
                for image in images
            ]
        )
        got = corruptions.rotate(images, 30.0, cval=77.0)
        np.testing.assert_allclose(np.asarray(got), expected, atol=WARP_ATOL)

    def test_rotate_quarter_turn_is_rot90(self):
        images = _images(height=24, width=24)
        got = corruptions.rotate(images, 90.0)
        np.testing.assert_allclose(
            np.asarray(got), np.rot90(images, 1, axes=(1, 2)), atol=WARP_ATOL
        )

    @parameterized.parameters(
        *[(f, "constant") for f in (0.8, 0.9, 1.1, 1.2, 2.0)], (0.8, "edge"), (0.8, "reflect")
    )
    def test_scale_matches_scipy_affine_transform(self, factor, mode):
        images = _images()
        centre = np.array([(images.shape[1] - 1) / 2, (images.shape[2] - 1) / 2])
        scipy_mode = "grid-constant" if mode == "constant" else SCIPY_MODE[mode]
        expected = ndimage.affine_transform(
            images,
            np.diag([1.0, 1.0 / factor, 1.0 / factor, 1.0]),
            offset=np.r_[0.0, centre - centre / factor, 0.0],
            order=1,
            mode=scipy_mode,
        )
        got = corruptions.scale(images, factor, mode=mode)
        np.testing.assert_allclose(np.asarray(got), expected, atol=WARP_ATOL)

    def test_identities_are_exact(self):
        images = _images().astype(np.float32)
        np.testing.assert_array_equal(np.asarray(corruptions.rotate(images, 0.0)), images)
        np.testing.assert_array_equal(np.asarray(corruptions.scale(images, 1.0)), images)
        np.testing.assert_array_equal(np.asarray(corruptions.shift(images, 0, 0)), images)
        np.testing.assert_array_equal(np.asarray(corruptions.box_blur(images, 1)), images)


class CorrespondenceTest(parameterized.TestCase):
    def test_shift_by_one_patch(self):
        got = corruptions.correspondence_map("shift", 16, (64, 48), 16)
        expected = np.array([[-1, 0, 1], [-1, 3, 4], [-1, 6, 7], [-1, 9, 10]])
        np.testing.assert_array_equal(got, expected)
        got = corruptions.correspondence_map("shift", (-16, 32), (64, 48), 16)
        expected = np.array([[-1, -1, -1], [-1, -1, -1], [1, 2, -1], [4, 5, -1]])
        np.testing.assert_array_equal(got, expected)
        # The image op moves patch contents the same way.
        images = _images(height=64, width=48)
        shifted = np.asarray(corruptions.shift(images, 16, 0))
        np.testing.assert_allclose(shifted[:, :, 16:], images[:, :, :-16], atol=1e-4)

    @parameterized.parameters(1, 2, 3, 4, 7)
    def test_small_shifts_keep_every_patch(self, pixels):
        identity = np.arange(14 * 14).reshape(14, 14)
        got = corruptions.correspondence_map("shift", pixels, (224, 224), 16)
        np.testing.assert_array_equal(got, identity)
        got = corruptions.correspondence_map("shift", pixels, (224, 224), 16, direction=(0, 1))
        np.testing.assert_array_equal(got, identity)

    def test_shift_of_half_a_patch_moves_centres_onto_edges(self):
        # Centre 8 + 16 j maps to 16 j: the left edge of patch j (half-open squares).
        got = corruptions.correspondence_map("shift", 8, (32, 64), 16)
        np.testing.assert_array_equal(got, [[0, 1, 2, 3], [4, 5, 6, 7]])
        got = corruptions.correspondence_map("shift", 9, (32, 64), 16)
        np.testing.assert_array_equal(got, [[-1, 0, 1, 2], [-1, 4, 5, 6]])

    @parameterized.parameters("rotate", "scale", "blur", "box_blur", "noise", "freq_noise")
    def test_neutral_amounts_are_identity(self, kind):
        amount = 0.0 if kind == "rotate" else 1.0
        got = corruptions.correspondence_map(kind, amount, (224, 224), 16)
        np.testing.assert_array_equal(got, np.arange(196).reshape(14, 14))

    def test_half_turn_reverses_and_quarter_turn_is_rot90(self):
        grid = np.arange(14 * 14).reshape(14, 14)
        got = corruptions.correspondence_map("rotate", 180.0, (224, 224), 16)
        np.testing.assert_array_equal(got, grid[::-1, ::-1])
        got = corruptions.correspondence_map("rotate", 90.0, (224, 224), 16)
        np.testing.assert_array_equal(got, np.rot90(grid))

    def test_scale_hand_computed(self):
        # Centres 8, 24, 40, 56 map to 32 + (p - 32) / 2 = 20, 28, 36, 44 -> patches 1, 1, 2, 2.
        got = corruptions.correspondence_map("scale", 2.0, (64, 64), 16)
        rows = np.array([1, 1, 2, 2])
        np.testing.assert_array_equal(got, rows[:, None] * 4 + rows[None, :])
        # Zooming out by 2: centres map to 32 + 2 (p - 32) = -16, 16, 48, 80.
        got = corruptions.correspondence_map("scale", 0.5, (64, 64), 16)
        expected = np.full((4, 4), -1)
        expected[1:3, 1:3] = [[5, 7], [13, 15]]
        np.testing.assert_array_equal(got, expected)

    @parameterized.parameters(("rotate", 13.0), ("rotate", -27.0), ("scale", 1.3), ("scale", 0.7))
    def test_map_agrees_with_image_op(self, kind, amount):
        # Odd patch size: patch centres fall on pixels, so we can read the warped image there.
        patch, grid = 15, 6
        size = patch * grid
        labels = np.repeat(
            np.repeat(np.arange(grid * grid).reshape(grid, grid), patch, 0), patch, 1
        )
        images = (labels + 1.0)[None, :, :, None]
        warped = np.asarray(corruptions.apply(kind, amount, images, mode="constant"))[0, :, :, 0]
        centres = np.arange(grid) * patch + patch // 2
        read = warped[np.ix_(centres, centres)] - 1.0
        expected = corruptions.correspondence_map(kind, amount, (size, size), patch)
        # Away from patch edges bilinear sampling reads one patch's constant value exactly.
        exact = np.abs(read - np.round(read)) < 1e-3
        self.assertGreater(exact.mean(), 0.75)
        np.testing.assert_array_equal(np.round(read[exact]).astype(int), expected[exact])

    def test_bad_arguments_raise(self):
        with self.assertRaisesRegex(errors.ConfigError, "unknown kind"):
            corruptions.correspondence_map("shear", 1.0)
        with self.assertRaisesRegex(errors.ConfigError, "multiples"):
            corruptions.correspondence_map("rotate", 1.0, (100, 100), 16)


class ApplyTest(parameterized.TestCase):
    @parameterized.parameters(
        ("blur", (3, 5, 7), {}, lambda x, lv, k: corruptions.gaussian_blur(x, int(lv))),
        ("box_blur", (2, 4, 6, 8), {}, lambda x, lv, k: corruptions.box_blur(x, int(lv))),
        ("noise", (10, 20), {}, lambda x, lv, k: corruptions.gaussian_noise(k, x, lv)),
        (
            "freq_noise",
            (0, 2),
            {"num_bands": 3, "sigma": 15.0},
            lambda x, lv, k: corruptions.frequency_band_noise(k, x, int(lv), 3, 15.0),
        ),
        ("shift", (1, 4), {}, lambda x, lv, k: corruptions.shift(x, int(lv), 0)),
        (
            "shift",
            (2, -3),
            {"direction": (1, 1), "mode": "edge"},
            lambda x, lv, k: corruptions.shift(x, int(lv), int(lv), mode="edge"),
        ),
        ("rotate", (5, 20), {}, lambda x, lv, k: corruptions.rotate(x, lv)),
        (
            "scale",
            (0.8, 1.2),
            {"mode": "reflect"},
            lambda x, lv, k: corruptions.scale(x, lv, mode="reflect"),
        ),
    )
    def test_levels_match_single_ops(self, name, levels, options, single):
        images = _images(height=16, width=20)
        key = jax.random.key(3)
        stacked = np.asarray(corruptions.apply_levels(name, levels, images, key, **options))
        self.assertEqual(stacked.shape, (len(levels), *images.shape))
        for index, level in enumerate(levels):
            expected = np.asarray(single(images.astype(np.float32), level, key))
            np.testing.assert_allclose(stacked[index], expected, atol=1e-3)
            if index == 0:  # `apply` is apply_levels on one level; one compile is enough
                by_name = np.asarray(corruptions.apply(name, level, images, key, **options))
                np.testing.assert_allclose(by_name, expected, atol=1e-3)

    def test_quantize_rounds(self):
        out = np.asarray(corruptions.apply("rotate", 7.0, _images(), quantize=True))
        np.testing.assert_array_equal(out, np.round(out))

    def test_repeated_calls_do_not_recompile(self):
        images = _images(height=16, width=16)
        corruptions.apply_levels("rotate", (1.0, 2.0), images)
        before = corruptions._apply_levels._cache_size()
        corruptions.apply_levels("rotate", (3.0, 4.0), images + 1.0)
        self.assertEqual(corruptions._apply_levels._cache_size(), before)

    def test_bad_requests_raise(self):
        with self.assertRaisesRegex(errors.ConfigError, "known"):
            corruptions.apply("jpeg", 1, _images())
        with self.assertRaisesRegex(errors.ConfigError, "PRNG key"):
            corruptions.apply("noise", 10, _images())
        with self.assertRaisesRegex(errors.ConfigError, "options"):
            corruptions.apply("rotate", 10, _images(), sigma=3.0)
        with self.assertRaisesRegex(errors.ConfigError, "mode"):
            corruptions.apply("rotate", 10, _images(), mode="mirror")


if __name__ == "__main__":
    absltest.main()
