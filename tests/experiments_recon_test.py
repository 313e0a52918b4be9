"""MAE reconstruction with zeroed features: metrics at known values, pixel round trips, wiring."""

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
from absl.testing import absltest, parameterized  # noqa: E402
from skimage import metrics as sk_metrics  # noqa: E402

from configs import mae_reconstruction as recon_config  # noqa: E402
from tests import test_util  # noqa: F401
from vitjax import errors, experiments, models, run  # noqa: E402
from vitjax.experiments import common  # noqa: E402
from vitjax.experiments import mae_reconstruction as recon  # noqa: E402


def tempdir(test) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_recon_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def images(n=3, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class ScoresTest(parameterized.TestCase):
    def test_identical_images(self):
        x = images()
        scores = recon.reconstruction_scores(x, x.astype(np.float32))
        self.assertEqual(scores["pixel_mse"], 0.0)
        self.assertEqual(scores["ssim"], 1.0)
        self.assertEqual(scores["psnr"], float("inf"))

    def test_scores_match_skimage(self):
        a = images(seed=1)
        b = np.clip(a + np.random.default_rng(2).normal(0, 20, a.shape), 0, 255)
        scores = recon.reconstruction_scores(a, b)
        psnr = [
            sk_metrics.peak_signal_noise_ratio(x, y, data_range=255)
            for x, y in zip(a.astype(float), b)
        ]
        ssim = [
            sk_metrics.structural_similarity(x, y, data_range=255, channel_axis=-1)
            for x, y in zip(a.astype(float), b)
        ]
        self.assertAlmostEqual(scores["psnr"], np.mean(psnr), places=8)
        self.assertAlmostEqual(scores["ssim"], np.mean(ssim), places=8)
        self.assertAlmostEqual(scores["pixel_mse"], np.mean((a - b) ** 2), places=6)

    def test_shape_mismatch(self):
        with self.assertRaises(errors.VitjaxError):
            recon.reconstruction_scores(images(2), images(3))


class PixelsTest(parameterized.TestCase):
    @parameterized.parameters(False, True)
    def test_targets_back_to_pixels_round_trip(self, norm_pix):
        spec = models.get_spec("mae", "ti")
        x = images(2, 32)
        target = recon.decoder_targets(spec, x, norm_pix)
        self.assertEqual(target.shape, (2, 4, 16 * 16 * 3))
        pixels = recon.prediction_pixels(spec, target, x, norm_pix)
        back = np.asarray(models.unpatchify(pixels, 16, (2, 2)))
        np.testing.assert_allclose(back, x, atol=1e-3)

    def test_norm_pix_targets_match_mae_formula(self):
        spec = models.get_spec("mae", "ti")
        x = images(1, 16)
        raw = recon.decoder_targets(spec, x, False)[0, 0]
        normed = recon.decoder_targets(spec, x, True)[0, 0]
        # MAE: (t - mean) / (var + 1e-6) ** 0.5 with torch's unbiased variance.
        expected = (raw - raw.mean()) / np.sqrt(raw.var(ddof=1) + 1e-6)
        np.testing.assert_allclose(normed, expected, rtol=1e-5, atol=1e-5)

    @parameterized.parameters(0.0, 0.75)
    def test_perfect_decoder_scores(self, ratio):
        spec = models.get_spec("mae", "ti")
        x = images(2, 32)
        keep = recon.keep_indices(2, 4, ratio, np.random.default_rng(0))
        pred = recon.decoder_targets(spec, x, False)
        scores = recon.score_case(spec, x, pred, keep, norm_pix=False, paste_visible=True)
        self.assertAlmostEqual(scores["mse"], 0.0, places=10)
        self.assertAlmostEqual(scores["ssim"], 1.0, places=6)
        self.assertGreater(scores["psnr"], 60.0)

    def test_masked_mse_counts_only_masked_patches(self):
        spec = models.get_spec("mae", "ti")
        x = images(1, 32)
        keep = np.array([[0, 3]], np.int32)  # patches 1 and 2 masked
        pred = recon.decoder_targets(spec, x, False)
        pred[0, 0] += 10.0  # a visible patch: not scored, and pasted over by the original
        pred[0, 1] += 2.0
        scores = recon.score_case(spec, x, pred, keep, norm_pix=False, paste_visible=True)
        self.assertAlmostEqual(scores["mse"], 4.0 / 2, places=5)  # mean over the 2 masked patches
        ref = recon.score_case(spec, x, pred, np.arange(4)[None].astype(np.int32), False, True)
        self.assertAlmostEqual(ref["mse"], (100.0 + 4.0) / 4, places=4)

    def test_keep_indices(self):
        rng = np.random.default_rng(1)
        keep = recon.keep_indices(3, 196, 0.75, rng)
        self.assertEqual(keep.shape, (3, 49))
        for row in keep:
            self.assertLen(np.unique(row), 49)
            self.assertTrue(np.all(np.diff(row) > 0))
        np.testing.assert_array_equal(
            recon.keep_indices(2, 9, 0.0, rng), np.tile(np.arange(9), (2, 1))
        )
        with self.assertRaises(errors.ConfigError):
            recon.keep_indices(1, 9, 1.0, rng)


class WiringTest(absltest.TestCase):
    def test_zeroed_dims_reach_the_decoder(self):
        module, params, spec = models.random_model("mae", "ti", 0, depth=1)
        model = experiments.ModelHandle("mae", module, params, spec, True)
        x = images(3, 32)
        keep = recon.keep_indices(3, 4, 0.5, np.random.default_rng(0))
        zeroed = np.array([0, 5, 17])
        got = recon.reconstruct(model, x, keep, zeroed, batch_size=2)
        # Independent path: encoder, zero by slicing, decoder, one image at a time.
        encoder_params = {k: v for k, v in params.items() if k != "decoder"}
        decoder = models.create_decoder(spec)
        for i in range(3):
            pre = models.preprocess(spec, x[i : i + 1])
            tokens = np.array(
                module.apply({"params": encoder_params}, pre, keep_indices=keep[i : i + 1])[
                    "tokens"
                ]
            )
            tokens[..., zeroed] = 0.0
            want = decoder.apply(
                {"params": params["decoder"]}, tokens, keep_indices=keep[i : i + 1], grid=(2, 2)
            )
            np.testing.assert_allclose(got[i], np.asarray(want)[0], rtol=1e-4, atol=1e-4)
        full = recon.reconstruct(model, x, keep, None, batch_size=4)
        self.assertGreater(np.abs(full - got).max(), 1e-4)


class EndToEndTest(absltest.TestCase):
    def test_run(self):
        c = recon_config.get_config("synthetic")
        c.experiments = ("mae_reconstruction",)
        c.models = ("mae:ti:16:none", "dino:ti:16:none")
        c.model_depth = 1
        recon_config.add_demo(c, tiny=True)
        c.data.synthetic_hw = (112, 224)
        c.data.tile_size = c.data.tile_out = 112
        c.data.synthetic_eval_images = 2
        workdir = tempdir(self)
        results = run.run(c, workdir)
        rows = results["experiments"]["mae_reconstruction"]["tables"]["reconstruction"]
        self.assertLen(rows, 2 * 3)  # the MAE model only: mask ratios x feature variants
        self.assertEqual({r["features"] for r in rows}, {"full", "top10_zeroed", "random10_zeroed"})
        for r in rows:
            self.assertEqual(r["family"], "mae")
            self.assertGreater(r["mse"], 0.0)
            self.assertTrue(-1.0 <= r["ssim"] < 1.0)
        self.assertTrue(
            os.path.exists(os.path.join(workdir, "figures", "mae_reconstruction_scores.png"))
        )
        self.check_variance_comes_from_train_tiles(c, results)

    def check_variance_comes_from_train_tiles(self, c, results):
        """The zeroed top-N dims are those of highest variance over the TRAIN tiles' patches."""
        mae = [h for h in run.load_models(c) if h.spec.family == "mae"][0]
        zeroed = results["experiments"]["mae_reconstruction"]["scalars"]["zeroed_dims"]
        data = common.load_segmentation(c)

        def top_variance(tiles):
            # Oracle: the encoder applied directly (no store), numpy variance in float64.
            out = mae.module.apply(
                {"params": {k: v for k, v in mae.params.items() if k != "decoder"}},
                models.preprocess(mae.spec, tiles),
                layers=(-1,),
                norm=True,
            )["patch"][mae.spec.depth - 1]
            var = np.asarray(out, np.float64).reshape(-1, mae.spec.width).var(axis=0)
            return np.argsort(-var, kind="stable")[:10].tolist()

        train_top = top_variance(data.train.tiles)
        self.assertEqual(zeroed[mae.name]["top10_zeroed"], train_top)
        # The reconstructed (evaluation) tiles would give other dims: the test tells them apart.
        self.assertNotEqual(
            top_variance(data.eval.tiles[: c.mae_reconstruction.num_images]), train_top
        )
        self.assertLen(zeroed[mae.name]["random10_zeroed"], 10)


if __name__ == "__main__":
    absltest.main()
