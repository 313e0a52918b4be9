"""Empty query/candidate sets are errors that name the cause; partly empty ones are warnings."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import dataclasses
import os
import shutil
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from configs import bdd100k, demo, fair1m
from vitjax import errors, extract, run
from vitjax.experiments import fair1m_retrieval, mae_reconstruction


def make_tempdir(test) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_empty_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def no_extraction():
    return mock.patch.object(extract, "extract", side_effect=AssertionError("extracted"))


def tracking_config():
    c = bdd100k.get_config("synthetic")
    c.models = ("dino:ti:16:none",)
    c.model_depth = 1
    bdd100k.add_demo(c, tiny=True)  # one synthetic video of 5 frames, gaps (1, 3)
    return c


class TrackingTest(absltest.TestCase):
    def test_window_without_a_labelled_pair_is_an_error(self):
        c = tracking_config()
        c.tracking.max_frames = 1
        with no_extraction(), self.assertRaisesRegex(errors.DatasetError, "max_frames"):
            run.run(c, make_tempdir(self))

    def test_gap_without_pairs_is_a_warning_and_no_row(self):
        c = tracking_config()
        c.tracking.gaps = (1, 50)
        entry = run.run(c, make_tempdir(self))["experiments"]["tracking"]
        rows = entry["tables"]["association"]
        self.assertEqual({r["gap"] for r in rows}, {1})
        self.assertTrue(all(r["queries"] > 0 for r in rows))
        (warning,) = entry["warnings"]
        self.assertIn("gap 50", warning)

    def test_bdd100k_runlocal_window_before_the_first_label(self):
        fixtures = os.environ.get("VITJAX_FIXTURES")
        if not fixtures:
            self.skipTest("VITJAX_FIXTURES is not set (CI sets it to the shared fixtures)")
        c = bdd100k.get_config("runlocal")
        c.models = ("dino:ti:16:none",)
        c.model_depth = 1
        c.tracking.root = os.path.join(fixtures, "bdd100k", "vis4d_track", "bdd100k")
        # The fixture's video 00091078-875c1f73 is labelled from frameIndex 165 on, beyond the
        # 20-frame window of `runlocal`: the run must say so instead of reporting empty rows.
        with no_extraction(), self.assertRaisesRegex(errors.DatasetError, r"max_frames.*165"):
            run.run(c, make_tempdir(self))


class Fair1MTest(absltest.TestCase):
    def test_tiles_without_object_patches_are_an_error_before_extraction(self):
        c = fair1m.get_config("synthetic")
        c.models = ("dino:ti:16:none",)
        c.model_depth = 1
        real = fair1m_retrieval.load_tiles

        def objects_below_a_patch(cfg, seed):
            tiles = real(cfg, seed)
            # Every object shrunk to nothing under the patch centres: background everywhere.
            return dataclasses.replace(tiles, fine_mask=np.zeros_like(tiles.fine_mask))

        with (
            mock.patch.object(fair1m_retrieval, "load_tiles", objects_below_a_patch),
            no_extraction(),
            self.assertRaisesRegex(errors.DatasetError, "no query patch.*smaller than a patch"),
        ):
            run.run(c, make_tempdir(self))


class RemovalCountTest(absltest.TestCase):
    def test_counts_at_or_above_the_width_are_warned(self):
        c = demo.get_config("test")
        c.experiments = ("mae_reconstruction", "scalemae_knn")
        c.models = ("mae:ti:16:none",)  # width 192
        c.model_depth = 1
        c.mae_reconstruction.zeroed = 192
        c.mae_reconstruction.mask_ratios = (0.0,)
        c.scalemae_knn.removed = (0, 500)
        c.scalemae_knn.sizes = (112,)

        def perfect_decoder(model, images, *_):
            # The decoder's numerics are tested elsewhere; here only which cases run matters.
            return mae_reconstruction.decoder_targets(model.spec, images, False)

        with mock.patch.object(mae_reconstruction, "reconstruct", perfect_decoder):
            results = run.run(c, make_tempdir(self))
        recon = results["experiments"]["mae_reconstruction"]
        self.assertEqual({r["features"] for r in recon["tables"]["reconstruction"]}, {"full"})
        (warning,) = recon["warnings"]
        self.assertRegex(warning, "zeroed: 192 .*feature width 192")
        knn = results["experiments"]["scalemae_knn"]
        self.assertEqual({r["removed"] for r in knn["tables"]["knn"]}, {0})
        self.assertNotEmpty(knn["warnings"])
        self.assertTrue(all("[500]" in w and "192" in w for w in knn["warnings"]))

    def test_global_context_top_n_at_the_width_is_warned(self):
        c = demo.get_config("test")
        c.experiments = ("global_context",)
        c.models = ("dino:ti:16:none",)  # width 192
        c.model_depth = 1
        c.global_context.top_n = 192
        entry = run.run(c, make_tempdir(self))["experiments"]["global_context"]
        (warning,) = entry["warnings"]
        self.assertRegex(warning, "top_n=192 .*feature width 192: 191 dimensions")
        dims = {r["features"]: r["dims"] for r in entry["tables"]["r2"]}
        self.assertEqual(dims["top192_removed"], 1)


if __name__ == "__main__":
    absltest.main()
