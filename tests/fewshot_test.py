"""Tests of the few-shot samplers, the shipped Cityscapes lists and the FAIR1M tile rule."""

from tests import test_util  # noqa: F401  # isort: skip

import collections
import json
import os
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from vitjax.data import cityscapes, fair1m, fewshot
from vitjax.errors import ConfigError, DatasetError

torch = test_util.optional_import("torch")


def brute_force_greedy(presence, k, class_order, order):
    used, out = set(), {}
    for c in class_order:
        out[c] = []
        for i in order:
            if len(out[c]) == k:
                break
            if presence[i][c] and i not in used:
                out[c].append(int(i))
                used.add(i)
    return out


class SamplePerGroupTest(parameterized.TestCase):
    def test_k_per_group_and_determinism(self):
        groups = ["b"] * 7 + ["a"] * 5 + ["c"] * 9
        idx = fewshot.sample_per_group(groups, k=3, seed=11)
        self.assertEqual(collections.Counter(groups[i] for i in idx), {"a": 3, "b": 3, "c": 3})
        self.assertEqual(list(idx), sorted(idx))
        np.testing.assert_array_equal(idx, fewshot.sample_per_group(groups, k=3, seed=11))
        draws = {tuple(fewshot.sample_per_group(groups, 3, seed=s)) for s in range(5)}
        self.assertGreater(len(draws), 1)
        with self.assertLogs(level="WARNING"):
            self.assertLen(fewshot.sample_per_group(groups, k=6, seed=0), 6 + 5 + 6)
        with self.assertRaisesRegex(ConfigError, "group 'a' has 5 items"):
            fewshot.sample_per_group(groups, k=6, strict=True)

    def test_per_city(self):
        samples = [
            cityscapes.CityscapesSample("train", city, f"{city}_{n:06d}_000019", "", None, None)
            for city in ("ulm", "aachen")
            for n in range(6)
        ]
        chosen = fewshot.per_city(samples, k=4, seed=0)
        self.assertEqual(collections.Counter(s.city for s in chosen), {"ulm": 4, "aachen": 4})
        self.assertEqual(chosen, fewshot.per_city(samples, k=4, seed=0))

    def test_split_per_class(self):
        labels = np.repeat(np.arange(4), 5)
        items = [collections.namedtuple("S", "label i")(int(c), i) for i, c in enumerate(labels)]
        train, rest = fewshot.split_per_class(items, k=2, seed=3)
        self.assertEqual(collections.Counter(s.label for s in train), {0: 2, 1: 2, 2: 2, 3: 2})
        self.assertEqual(sorted(train + rest), items)


class ShippedListsTest(absltest.TestCase):
    def test_cityscapes_lists(self):
        self.assertEqual(
            fewshot.list_splits(), ["cityscapes_train_4_per_city", "cityscapes_val_10_per_city"]
        )
        train = fewshot.load_split("cityscapes_train_4_per_city")
        self.assertEqual(
            (train.dataset, train.split, len(train.stems)), ("cityscapes", "train", 72)
        )
        counts = collections.Counter(s.rsplit("_", 2)[0] for s in train.stems)
        self.assertEqual(counts, {c: 4 for c in cityscapes.SPLIT_CITIES["train"]})
        self.assertEqual(train.stems[:2], ("aachen_000051_000019", "aachen_000000_000019"))
        self.assertEqual(train.stems[-1], "zurich_000011_000019")
        val = fewshot.load_split("cityscapes_val_10_per_city")
        counts = collections.Counter(s.rsplit("_", 2)[0] for s in val.stems)
        self.assertEqual(counts, {"frankfurt": 10, "lindau": 10, "munster": 10})
        self.assertIn("munster_000147_000019", val.stems)
        for stem in train.stems + val.stems:
            self.assertRegex(stem, r"^[a-z]+_\d{6}_\d{6}$")
        self.assertLen(set(train.stems), 72)

    def test_save_load_and_errors(self):
        folder = self.enterContext(tempfile.TemporaryDirectory())
        path = os.path.join(folder, "mine.json")
        listed = fewshot.SplitList("mine", "cityscapes", "val", ("lindau_000001_000019",), "x")
        fewshot.save_split(path, listed)
        self.assertEqual(fewshot.load_split(path), listed)
        self.assertEqual(os.listdir(folder), ["mine.json"])  # no temporary left behind
        with self.assertRaisesRegex(ConfigError, "unknown; shipped: .*cityscapes_train_4_per_city"):
            fewshot.load_split("ade20k_magic")
        with open(path, "w") as f:
            json.dump({"dataset": "cityscapes", "split": "val", "stems": [1]}, f)
        with self.assertRaisesRegex(DatasetError, "mine.json: 'stems' must be a list of strings"):
            fewshot.load_split(path)
        with open(path, "w") as f:
            f.write("{")
        with self.assertRaisesRegex(DatasetError, "mine.json: cannot read split list"):
            fewshot.load_split(path)


class GreedyTest(parameterized.TestCase):
    @parameterized.parameters((0, 97), (1, 50), (2, 28))
    @test_util.requires("torch")
    def test_class_presence_matches_torch_nearest_exact(self, seed, h):
        rng = np.random.default_rng(seed)
        mask = rng.integers(0, 151, (h, 83)).astype(np.uint8)
        small = (
            torch.nn.functional.interpolate(
                torch.from_numpy(mask)[None, None].float(), size=(28, 42), mode="nearest-exact"
            )[0, 0]
            .numpy()
            .astype(int)
        )
        expected = np.zeros(151, bool)
        expected[np.unique(small)] = True
        np.testing.assert_array_equal(fewshot.class_presence(mask), expected)

    @parameterized.parameters((0, None), (1, 7), (2, 0))
    def test_greedy_matches_brute_force(self, data_seed, seed):
        rng = np.random.default_rng(data_seed)
        presence = rng.random((40, 9)) < 0.3
        got = fewshot.greedy_per_class(presence, k=3, seed=seed)
        order = np.arange(40) if seed is None else np.random.default_rng(seed).permutation(40)
        self.assertEqual(got, brute_force_greedy(presence, 3, range(8, 0, -1), order))
        self.assertEqual(list(got), list(range(8, 0, -1)))
        used = [i for items in got.values() for i in items]
        self.assertLen(set(used), len(used))  # no image reused
        for c, items in got.items():
            self.assertTrue(all(presence[i, c] for i in items))


class TileSelectionTest(absltest.TestCase):
    def test_fractions_match_brute_force(self):
        rng = np.random.default_rng(0)
        mask = np.zeros((23, 31), np.int64)
        for inst in range(1, 7):
            y, x = rng.integers(0, 20), rng.integers(0, 28)
            mask[y : y + rng.integers(2, 9), x : x + rng.integers(2, 9)] = inst
        fractions, ids, grid = fewshot.tile_instance_fractions(mask, (8, 10))
        self.assertEqual(grid, (3, 4))
        np.testing.assert_array_equal(ids, np.unique(mask[mask > 0]))
        for t in range(12):
            r, c = divmod(t, 4)
            tile = mask[8 * r : 8 * r + 8, 10 * c : 10 * c + 10]
            for j, inst in enumerate(ids):
                self.assertAlmostEqual(fractions[t, j], (tile == inst).sum() / (mask == inst).sum())
        np.testing.assert_allclose(fractions.sum(axis=0), 1.0)

    def test_one_third_rule(self):
        # Instance 1 (category 2): 9 pixels, 3 in tile 0 (exactly 1/3), 6 in tile 1.
        # Instance 2 (category 5): 4 pixels, 1 in tile 2 (1/4), 3 in tile 3.
        mask = np.zeros((8, 8), np.int64)
        mask[0, 1:4] = 1
        mask[0:2, 4:7] = 1
        mask[7, 3] = 2
        mask[7, 4:7] = 2
        categories = np.zeros((8, 8), np.int64)
        categories[mask == 1] = 2
        categories[mask == 2] = 5
        membership = fewshot.tile_membership_from_masks(mask, categories, 4, num_categories=5)
        self.assertEqual(membership.shape, (4, 6))
        self.assertEqual([np.flatnonzero(row).tolist() for row in membership], [[2], [2], [], [5]])
        selected = fewshot.select_tiles_per_category(membership, k=8, seed=None)
        self.assertEqual(selected, [(3, 5), (0, 2), (1, 2)])
        one = fewshot.select_tiles_per_category(membership, k=1, seed=None, category_order=[2, 5])
        self.assertEqual(one, [(0, 2), (3, 5)])

    def test_on_rasterised_fair1m_objects(self):
        box = fair1m.FAIR1MObject("Bus", 22, 3, np.array([(2, 2), (10, 2), (10, 6), (2, 6)], float))
        court = fair1m.FAIR1MObject(
            "Bridge", 37, 5, np.array([(9, 9), (15, 9), (15, 15), (9, 15)], float)
        )
        masks = fair1m.rasterize([box, court], (16, 16))
        membership = fewshot.tile_membership_from_masks(
            masks.instance, masks.fine, 8, fair1m.NUM_FINE
        )
        # The bus (32 px) lies 24 px in tile 0 and 8 px (1/4) in tile 1; the bridge is in tile 3.
        self.assertEqual([np.flatnonzero(row).tolist() for row in membership], [[22], [], [], [37]])


if __name__ == "__main__":
    absltest.main()
