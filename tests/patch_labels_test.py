"""Tests for vitjax.data.patch_labels.

Oracles: hand-computed footprints of a 256-pixel tile under 14 patches, a pure-Python brute force
(rational patch boundaries, collections.Counter per patch), and PyTorch's nearest-exact resize of
the label map to the patch grid (what the authors' code did for the "centre" rule).
"""

import collections
import time
from fractions import Fraction

import numpy as np
from absl import logging
from absl.testing import absltest, parameterized

from tests import test_util  # noqa: F401
from vitjax import errors
from vitjax.data import patch_labels as pl
from vitjax.data import synthetic

torch = test_util.optional_import("torch")
F = test_util.optional_import("torch.nn.functional")
given, settings, st = test_util.hypothesis_api()

# Patch footprints of a 256 px tile under a 14-patch grid, worked out by hand: patch boundaries at
# i * 256 / 14 = 0, 18.29, 36.57, 54.86, 73.14, 91.43, 109.71, 128, 146.29, ...; pixel y belongs to
# the patch containing y + 0.5, so patch 0 = pixels 0..17, patch 1 = 18..36, patch 2 = 37..54, ...
FOOTPRINT_256_14 = [18, 19, 18, 18, 18, 19, 18, 18, 19, 18, 18, 18, 19, 18]
FIRST_PIXEL_256_14 = [0, 18, 37, 55, 73, 91, 110, 128, 146, 165, 183, 201, 219, 238]
# Centre pixels floor((i + 0.5) * 256 / 14): 9.14 -> 9, 27.43 -> 27, 45.71 -> 45, 64 -> 64, ...
CENTRE_256_14 = [9, 27, 45, 64, 82, 100, 118, 137, 155, 173, 192, 210, 228, 246]


def _brute_force_mode(label_map, grid, ignore_label, ignore_votes):
    h, w = label_map.shape
    gh, gw = grid
    out = np.empty(grid, np.int64)
    for i in range(gh):
        for j in range(gw):
            votes = collections.Counter()
            for y in range(h):
                if not Fraction(i * h, gh) <= Fraction(2 * y + 1, 2) < Fraction((i + 1) * h, gh):
                    continue
                for x in range(w):
                    if Fraction(j * w, gw) <= Fraction(2 * x + 1, 2) < Fraction((j + 1) * w, gw):
                        lab = int(label_map[y, x])
                        if lab != ignore_label or ignore_votes:
                            votes[lab] += 1
            if not votes:
                out[i, j] = ignore_label
            else:
                best = max(votes.values())
                out[i, j] = min(lab for lab, c in votes.items() if c == best)
    return out


def _torch_nearest_exact(label_map, grid):
    test_util.skip_unless_installed("torch")  # a decorator would reseed hypothesis
    x = torch.from_numpy(np.asarray(label_map, np.float64))[None, None]
    return F.interpolate(x, size=tuple(grid), mode="nearest-exact")[0, 0].numpy().astype(np.int64)


class PatchLabelsTest(parameterized.TestCase):
    def test_footprints_256_over_14(self):
        cells = pl.pixel_to_cell(256, 14)
        self.assertEqual(pl.footprint_sizes(256, 14).tolist(), FOOTPRINT_256_14)
        self.assertEqual(np.searchsorted(cells, np.arange(14)).tolist(), FIRST_PIXEL_256_14)
        self.assertEqual(pl.footprint_sizes(224, 14).tolist(), [16] * 14)

    def test_centre_rule_hand_example(self):
        label_map = np.arange(256, dtype=np.int32)[:, None] * 1000 + np.arange(256)[None, :]
        out = pl.patch_labels(label_map, (14, 14), rule="centre", ignore_label=None)
        self.assertEqual((out[:, 0] // 1000).tolist(), CENTRE_256_14)
        self.assertEqual((out[0] % 1000).tolist(), CENTRE_256_14)
        self.assertEqual(out.dtype, np.int32)

    def test_mode_rule_hand_example(self):
        lab = np.zeros((256, 256), np.uint8)
        lab[:18] = 5  # exactly patch row 0
        lab[18:37] = 3  # exactly patch row 1
        out = pl.patch_labels(lab, (14, 14), rule="mode")
        self.assertTrue((out[0] == 5).all() and (out[1] == 3).all() and (out[2] == 0).all())
        # Row 17 (last of patch 0) turns to 3: patch 0 is still 17 vs 1 for label 5.
        lab[17] = 3
        self.assertTrue((pl.patch_labels(lab, (14, 14), rule="mode")[0] == 5).all())
        # A tie inside patch row 2 (pixels 37..54): 9 rows of 4 and 9 rows of 2 -> lowest, 2.
        lab[37:46], lab[46:55] = 4, 2
        self.assertTrue((pl.patch_labels(lab, (14, 14), rule="mode")[2] == 2).all())
        # The centre rule reads row 45 (label 4 here) instead.
        self.assertTrue((pl.patch_labels(lab, (14, 14), rule="centre")[2] == 4).all())

    def test_ignore_handling(self):
        lab = np.full((32, 32), 255, np.uint8)
        lab[0, 0] = 7  # a single valid pixel in patch (0, 0)
        lab[16:, 16:] = 3
        lab[16, 16] = 255
        out = pl.patch_labels(lab, (2, 2), rule="mode")
        self.assertEqual(out.tolist(), [[7, 255], [255, 3]])
        voted = pl.patch_labels(lab, (2, 2), rule="mode", ignore_votes=True)
        self.assertEqual(voted.tolist(), [[255, 255], [255, 3]])
        self.assertEqual(
            pl.patch_labels(lab, (2, 2), rule="centre").tolist(), [[255, 255], [255, 3]]
        )

    @given(
        h=st.integers(1, 23),
        w=st.integers(1, 23),
        gh=st.integers(1, 7),
        gw=st.integers(1, 7),
        num_labels=st.integers(1, 4),
        ignore_votes=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    @settings(max_examples=50, deadline=None, derandomize=True)
    def test_against_brute_force_and_torch(self, h, w, gh, gw, num_labels, ignore_votes, seed):
        rng = np.random.default_rng(seed)
        values = np.array([0, 2, 9, 255])[:num_labels]
        lab = rng.choice(values, size=(h, w)).astype(np.uint8)
        got = pl.patch_labels(lab, (gh, gw), rule="mode", ignore_votes=ignore_votes)
        np.testing.assert_array_equal(got, _brute_force_mode(lab, (gh, gw), 255, ignore_votes))
        # The centre rule: torch nearest-exact, except where torch rounds an exact tie down.
        centre = pl.patch_labels(lab, (gh, gw), rule="centre")
        if all(((2 * i + 1) * n) % (2 * g) for n, g in ((h, gh), (w, gw)) for i in range(g)):
            np.testing.assert_array_equal(centre, _torch_nearest_exact(lab, (gh, gw)))

    @parameterized.parameters((14,), (16,))
    @test_util.requires("torch")
    def test_centre_matches_torch_on_paper_tiles(self, grid):
        lab = np.random.default_rng(grid).integers(0, 34, (8, 256, 256)).astype(np.uint8)
        got = pl.patch_labels_batch(lab, (grid, grid), rule="centre")
        for k in range(len(lab)):
            np.testing.assert_array_equal(got[k], _torch_nearest_exact(lab[k], (grid, grid)))

    def test_batch_equals_single_and_wide_labels(self):
        rng = np.random.default_rng(0)
        # Instance-style ids (labelId * 1000 + k) and negatives take the np.unique path.
        lab = rng.choice([-1, 0, 26001, 26002, 33000], size=(3, 40, 36)).astype(np.int32)
        batch = pl.patch_labels_batch(lab, (5, 4), rule="mode", ignore_label=-1)
        for k in range(3):
            np.testing.assert_array_equal(
                batch[k], _brute_force_mode(lab[k], (5, 4), -1, ignore_votes=False)
            )

    def test_pixel_fraction(self):
        rng = np.random.default_rng(1)
        mask = rng.random((2, 30, 19)) < 0.3
        got = pl.pixel_fraction(mask, (4, 3))
        py, px = pl.pixel_to_cell(30, 4), pl.pixel_to_cell(19, 3)
        for n in range(2):
            for i in range(4):
                for j in range(3):
                    block = mask[n][py == i][:, px == j]
                    self.assertAlmostEqual(float(got[n, i, j]), block.mean(), places=6)

    def test_object_patch_labels_on_aerial_tiles(self):
        aerial = synthetic.aerial_tiles(3, size=(64, 64), seed=5, objects_per_tile=(4, 8))
        grid = (5, 5)  # 64 / 5 = 12.8 px footprints
        for rule in ("mode", "centre"):
            labels = pl.object_patch_labels(
                aerial.fine_mask, aerial.instance_mask, aerial.fine_to_super, grid, rule
            )
            py, px = pl.pixel_to_cell(64, 5), pl.pixel_to_cell(64, 5)
            for n in range(3):
                for i in range(5):
                    for j in range(5):
                        fine = aerial.fine_mask[n][py == i][:, px == j].ravel()
                        inst = aerial.instance_mask[n][py == i][:, px == j].ravel()
                        if rule == "mode":
                            counts = np.bincount(fine)
                            want_fine = int(counts.argmax())
                            want_inst = int(np.bincount(inst[fine == want_fine]).argmax())
                        else:
                            cy, cx = (2 * i + 1) * 64 // 10, (2 * j + 1) * 64 // 10
                            want_fine = int(aerial.fine_mask[n, cy, cx])
                            want_inst = int(aerial.instance_mask[n, cy, cx])
                        self.assertEqual(labels.fine[n, i, j], want_fine)
                        self.assertEqual(labels.instance[n, i, j], want_inst)
                        self.assertEqual(labels.super[n, i, j], aerial.fine_to_super[want_fine])
                        self.assertAlmostEqual(
                            float(labels.object_fraction[n, i, j]), (inst > 0).mean(), places=6
                        )
                        if want_inst:
                            box = aerial.boxes[n][want_inst - 1]
                            self.assertEqual(box.fine_id, want_fine)
        single = pl.object_patch_labels(
            aerial.fine_mask[0], aerial.instance_mask[0], aerial.fine_to_super, grid
        )
        self.assertEqual(single.fine.shape, grid)

    def test_speed_2304_tiles(self):
        rng = np.random.default_rng(2)
        # 36 copies of 64 random tiles: the count is what matters, not 151 M fresh random draws.
        tiles = np.tile(rng.integers(0, 34, (64, 256, 256), dtype=np.uint8), (36, 1, 1))
        tiles[:, :40] = 255
        start = time.perf_counter()
        out = pl.patch_labels_batch(tiles, (14, 14), rule="mode")
        elapsed = time.perf_counter() - start
        logging.info("mode patch labels: 2,304 tiles of 256 px in %.2f s", elapsed)
        print(f"mode patch labels: 2,304 tiles of 256 px -> 14x14 in {elapsed:.2f} s")
        self.assertEqual(out.shape, (2304, 14, 14))
        # Spot check two tiles with the hand-computed footprints (blocks of 18 or 19 pixels).
        edges = FIRST_PIXEL_256_14 + [256]
        for k in (0, 1999):
            for i in range(14):
                for j in range(14):
                    block = tiles[k, edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
                    counts = np.bincount(block.ravel(), minlength=256)[:255]
                    want = int(counts.argmax()) if counts.any() else 255
                    self.assertEqual(out[k, i, j], want)

    def test_bad_input(self):
        with self.assertRaisesRegex(errors.ConfigError, "rule"):
            pl.patch_labels(np.zeros((4, 4), np.uint8), (2, 2), rule="median")
        with self.assertRaisesRegex(errors.DatasetError, "integer"):
            pl.patch_labels(np.zeros((4, 4), np.float32), (2, 2))
        with self.assertRaisesRegex(errors.DatasetError, "fine_to_super"):
            pl.object_patch_labels(
                np.full((4, 4), 3), np.zeros((4, 4), np.int32), np.array([0, 1]), (2, 2)
            )


if __name__ == "__main__":
    absltest.main()
