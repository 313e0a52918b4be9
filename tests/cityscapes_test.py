"""Tests of the Cityscapes reader on a tiny fixture in the real layout."""

from tests import test_util  # noqa: F401  # isort: skip

import os
import tempfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from vitjax.data import cityscapes, fewshot, patch_labels, tiling
from vitjax.errors import ConfigError, DatasetError

cs_labels = test_util.optional_import("cityscapesscripts.helpers.labels")

H, W = 64, 128  # 1:2 like the real 1024 x 2048 frames
# The first listed stems of the shipped lists, so the fixture also exercises `find`.
STEMS = {
    "train": ["aachen_000051_000019", "bochum_000000_022210"],
    "val": ["frankfurt_000001_066574"],
}


def _label_ids(seed: int) -> np.ndarray:
    """A labelIds map with road, car, bicycle, unlabeled and parking regions, then random ids."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 34, size=(H, W)).astype(np.uint8)
    ids[:16, :32] = 7  # road
    ids[:16, 32:64] = 26  # car
    ids[:16, 64:96] = 33  # bicycle
    ids[:16, 96:] = 0  # unlabeled
    ids[16:32, :32] = 9  # parking (ignored)
    return ids


def write_fixture(root: str) -> dict[str, np.ndarray]:
    """Writes leftImg8bit + gtFine for STEMS; returns the labelIds per stem."""
    written = {}
    for split, stems in STEMS.items():
        for n, stem in enumerate(stems):
            city = stem.split("_")[0]
            image_dir = os.path.join(root, "leftImg8bit", split, city)
            label_dir = os.path.join(root, "gtFine", split, city)
            os.makedirs(image_dir, exist_ok=True)
            os.makedirs(label_dir, exist_ok=True)
            rgb = np.random.default_rng(n).integers(0, 256, (H, W, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(os.path.join(image_dir, stem + "_leftImg8bit.png"))
            ids = _label_ids(len(written))
            Image.fromarray(ids).save(os.path.join(label_dir, stem + "_gtFine_labelIds.png"))
            written[stem] = ids
    return written


class CityscapesTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.enterContext(tempfile.TemporaryDirectory())
        self.label_ids = write_fixture(self.root)
        self.reader = cityscapes.CityscapesReader(self.root)

    @test_util.requires("cityscapesscripts")
    def test_label_table_equals_cityscapesscripts(self):
        ours = [(r.name, r.id, r.train_id, r.category, r.ignore_in_eval) for r in cityscapes.LABELS]
        official = [(r.name, r.id, r.trainId, r.category, r.ignoreInEval) for r in cs_labels.labels]
        self.assertEqual(ours, official)
        for label_id in range(256):
            expected = 255
            if label_id in cs_labels.id2label and 0 <= cs_labels.id2label[label_id].trainId < 255:
                expected = cs_labels.id2label[label_id].trainId
            self.assertEqual(int(cityscapes.LABEL_ID_TO_TRAIN_ID[label_id]), expected, label_id)
        self.assertEqual(
            cityscapes.CLASS_NAMES, tuple(cs_labels.trainId2label[i].name for i in range(19))
        )

    @test_util.requires("cityscapesscripts")
    def test_train_ids_of_fixture(self):
        sample = self.reader.samples("train")[0]
        train_ids = self.reader.load_train_ids(sample)
        self.assertEqual(train_ids.dtype, np.uint8)
        self.assertEqual(train_ids.shape, (H, W))
        self.assertEqual(int(train_ids[0, 0]), 0)  # 7 road
        self.assertEqual(int(train_ids[0, 40]), 13)  # 26 car
        self.assertEqual(int(train_ids[0, 70]), 18)  # 33 bicycle
        self.assertEqual(int(train_ids[0, 100]), 255)  # 0 unlabeled
        self.assertEqual(int(train_ids[20, 0]), 255)  # 9 parking
        oracle = np.vectorize(
            lambda i: t if 0 <= (t := cs_labels.id2label[int(i)].trainId) < 255 else 255
        )(self.label_ids[sample.stem])
        np.testing.assert_array_equal(train_ids, oracle)

    def test_samples_pair_images_and_labels(self):
        train = self.reader.samples("train")
        self.assertEqual([s.stem for s in train], STEMS["train"])
        self.assertEqual([s.city for s in train], ["aachen", "bochum"])
        self.assertEqual(self.reader.cities("train"), ["aachen", "bochum"])
        for s in train + self.reader.samples("validation"):
            self.assertTrue(s.image_path.endswith(f"{s.city}/{s.stem}_leftImg8bit.png"))
            self.assertTrue(s.label_ids_path.endswith(f"{s.city}/{s.stem}_gtFine_labelIds.png"))
            self.assertIsNone(s.train_ids_path)
        image, labels = self.reader.load(self.reader.samples("val")[0])
        self.assertEqual((image.shape, image.dtype, labels.shape), ((H, W, 3), np.uint8, (H, W)))

    def test_image_in_wrong_city_folder_is_an_error(self):
        src = os.path.join(self.root, "leftImg8bit", "train", "aachen")
        os.rename(
            os.path.join(src, "aachen_000051_000019_leftImg8bit.png"),
            os.path.join(src, "bochum_000001_000019_leftImg8bit.png"),
        )
        with self.assertRaisesRegex(DatasetError, "inside city folder 'aachen'"):
            self.reader.samples("train")

    def test_missing_layout_names_expected_layout(self):
        with self.assertRaisesRegex(DatasetError, r"leftImg8bit/<split>/<city>"):
            cityscapes.CityscapesReader(self.enterContext(tempfile.TemporaryDirectory())).samples(
                "train"
            )
        with self.assertRaisesRegex(DatasetError, "expected one of train, val, test"):
            self.reader.samples("extra")

    def test_missing_or_mis_sized_label_is_an_error(self):
        sample = self.reader.samples("train")[0]
        Image.fromarray(np.zeros((H // 2, W // 2), np.uint8)).save(sample.label_ids_path)
        with self.assertRaisesRegex(DatasetError, "label map is 32x64 .* is 64x128"):
            self.reader.load_train_ids(sample)
        os.remove(sample.label_ids_path)
        sample = self.reader.samples("train")[0]
        with self.assertRaisesRegex(DatasetError, "no aachen_000051_000019_gtFine_labelIds.png"):
            self.reader.load_train_ids(sample)

    def test_unreadable_image_is_an_error(self):
        sample = self.reader.samples("train")[0]
        with open(sample.image_path, "wb") as f:
            f.write(b"not a png")
        with self.assertRaisesRegex(DatasetError, "aachen_000051_000019_leftImg8bit.png"):
            self.reader.load_image(sample)

    def test_label_train_ids_preferred_and_cross_checked(self):
        stem = STEMS["train"][0]
        label_dir = os.path.join(self.root, "gtFine", "train", "aachen")
        correct = cityscapes.label_ids_to_train_ids(self.label_ids[stem])
        train_ids_path = os.path.join(label_dir, stem + "_gtFine_labelTrainIds.png")
        Image.fromarray(correct).save(train_ids_path)
        sample = self.reader.samples("train")[0]
        self.assertEqual(sample.train_ids_path, train_ids_path)
        np.testing.assert_array_equal(self.reader.load_train_ids(sample), correct)

        tampered = correct.copy()
        tampered[0, 0] = 5
        Image.fromarray(tampered).save(train_ids_path)
        with self.assertRaisesRegex(DatasetError, "1 of 8192 pixels differ"):
            self.reader.load_train_ids(sample)
        # Without the cross-check the trainIds file is what is read (it is preferred).
        unchecked = cityscapes.CityscapesReader(self.root, cross_check=False)
        np.testing.assert_array_equal(unchecked.load_train_ids(sample), tampered)
        # Forcing labelIds ignores the file.
        by_ids = cityscapes.CityscapesReader(self.root, label_source="label_ids")
        np.testing.assert_array_equal(by_ids.load_train_ids(sample), correct)
        # Requiring trainIds fails where the file is absent.
        strict = cityscapes.CityscapesReader(self.root, label_source="train_ids")
        with self.assertRaisesRegex(DatasetError, "labelTrainIds.png"):
            strict.load_train_ids(strict.samples("train")[1])

    def test_k_per_city_and_shipped_lists(self):
        train = self.reader.samples("train")
        self.assertEqual(
            [s.city for s in fewshot.per_city(train, k=1, seed=3)], ["aachen", "bochum"]
        )
        with self.assertRaisesRegex(ConfigError, "has 1 items"):
            fewshot.per_city(train, k=2)
        listed = fewshot.load_split("cityscapes_train_4_per_city")
        found = self.reader.find([listed.stems[0]], "train")
        self.assertEqual(found[0].stem, "aachen_000051_000019")
        with self.assertRaisesRegex(
            DatasetError, "1 listed images not found.*aachen_000000_000019"
        ):
            self.reader.find(list(listed.stems[:2]), "train")

    def test_tile_grid_and_patch_labels(self):
        # 8 x 4 tiles of width / 8 (256 px on real frames, 16 px here), 4 x 4 patches per tile.
        sample = self.reader.samples("train")[0]
        train_ids = self.reader.load_train_ids(sample)
        tile = W // 8
        tiles, infos = tiling.tile_image(train_ids, (tile, tile))
        self.assertEqual(len(tiles), 32)
        self.assertEqual((infos[9].row, infos[9].col, infos[9].y0, infos[9].x0), (1, 1, tile, tile))
        for k in (0, 9, 31):
            ref = train_ids[infos[k].y0 : infos[k].y0 + tile, infos[k].x0 : infos[k].x0 + tile]
            np.testing.assert_array_equal(tiles[k], ref)
            centre = patch_labels.patch_labels(tiles[k], (4, 4), rule="centre")
            np.testing.assert_array_equal(centre, ref[2::4, 2::4])
            mode = patch_labels.patch_labels(tiles[k], (4, 4), rule="mode")
            for i in range(4):
                for j in range(4):
                    votes = ref[4 * i : 4 * i + 4, 4 * j : 4 * j + 4].ravel()
                    votes = votes[votes != 255]
                    expected = np.bincount(votes).argmax() if votes.size else 255
                    self.assertEqual(int(mode[i, j]), int(expected))


if __name__ == "__main__":
    absltest.main()
