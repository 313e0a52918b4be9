"""Tests of the ADE20K reader, its few-shot selection and geometry on a tiny fixture."""

from tests import test_util  # noqa: F401  # isort: skip

import os
import sys
import tempfile
import types
from unittest import mock

import numpy as np
from absl.testing import absltest
from PIL import Image

from vitjax.data import ade20k, fewshot, patch_labels, tfds_source, tiling
from vitjax.errors import ConfigError, DatasetError

torch = test_util.optional_import("torch")

# Quirks of the real file: a space after some Idx values, trailing spaces, ', ' synonyms.
OBJECT_INFO = (
    "Idx\tRatio\tTrain\tVal\tName\n"
    "1\t0.1576\t11664\t1172\twall\n"
    "2\t0.1072\t6046\t612\tbuilding, edifice\n"
    "3 \t0.0878\t8265\t796\tsky\n"
    "4\t0.0621\t9336\t917\tfloor, flooring \n"
)
SIZES = {  # (H, W)
    "training": [(64, 96), (80, 64), (64, 96)],
    "validation": [(64, 96), (80, 64)],
}


def _mask(h: int, w: int, classes: list[int]) -> np.ndarray:
    """0 everywhere, then one vertical band per class (wide enough to survive 28 x 42 sampling)."""
    mask = np.zeros((h, w), np.uint8)
    for k, c in enumerate(classes):
        mask[:, (k + 1) * w // 8 : (k + 2) * w // 8] = c
    return mask


# Classes per image: train 1 {150, 3}, train 2 {150, 2}, train 3 {3}; val 1 {150}, val 2 {2, 3}.
CLASSES = {"training": [[150, 3], [150, 2], [3]], "validation": [[150], [2, 3]]}


def write_fixture(root: str) -> str:
    base = os.path.join(root, "ADEChallengeData2016")
    for split, sizes in SIZES.items():
        prefix = "ADE_train_" if split == "training" else "ADE_val_"
        for folder in ("images", "annotations"):
            os.makedirs(os.path.join(base, folder, split))
        for n, ((h, w), classes) in enumerate(zip(sizes, CLASSES[split]), start=1):
            stem = f"{prefix}{n:08d}"
            rgb = np.random.default_rng(n).integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(os.path.join(base, "images", split, stem + ".jpg"))
            mask = _mask(h, w, classes)
            Image.fromarray(mask).save(os.path.join(base, "annotations", split, stem + ".png"))
    with open(os.path.join(base, "objectInfo150.txt"), "w") as f:
        f.write(OBJECT_INFO)
    return base


class ADE20KTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.enterContext(tempfile.TemporaryDirectory())
        self.base = write_fixture(self.root)
        self.reader = ade20k.ADE20KReader(self.root)  # the parent of ADEChallengeData2016

    def test_object_info(self):
        rows = self.reader.object_info()
        self.assertEqual([r.index for r in rows], [1, 2, 3, 4])
        self.assertEqual(self.reader.class_names(), ["wall", "building", "sky", "floor"])
        self.assertEqual(rows[3].names, ("floor", "flooring"))
        self.assertEqual((rows[0].ratio, rows[0].train, rows[0].val), (0.1576, 11664, 1172))

    def test_malformed_object_info(self):
        path = os.path.join(self.base, "objectInfo150.txt")
        for text, message in (
            ("Index\tName\n", "line 1 should be the header"),
            (OBJECT_INFO + "6\t0.1\t1\t1\tlamp\n", "line 6 has Idx 6; expected 5"),
            (OBJECT_INFO + "5\tx\t1\t1\tlamp\n", "line 6: expected integer"),
        ):
            with open(path, "w") as f:
                f.write(text)
            with self.assertRaisesRegex(DatasetError, message):
                self.reader.object_info()

    def test_pairing(self):
        train = self.reader.samples("train")
        self.assertEqual([s.stem for s in train], [f"ADE_train_{n:08d}" for n in (1, 2, 3)])
        self.assertEqual(self.reader.samples("val"), self.reader.samples("validation"))
        for s in train:
            self.assertEqual(os.path.basename(s.annotation_path), s.stem + ".png")
            image, mask = self.reader.load(s)
            self.assertEqual(image.shape[:2], mask.shape)
        os.remove(train[1].annotation_path)
        with self.assertRaisesRegex(DatasetError, "ADE_train_00000002.png: annotation not found"):
            self.reader.samples("training")

    def test_missing_layout(self):
        empty = ade20k.ADE20KReader(self.enterContext(tempfile.TemporaryDirectory()))
        with self.assertRaisesRegex(DatasetError, "expected the ADEChallengeData2016 layout"):
            empty.samples("training")

    def test_label_views(self):
        sample = self.reader.samples("training")[0]
        raw = self.reader.load_annotation(sample, "raw")
        reduced = self.reader.load_annotation(sample, "reduced")
        self.assertEqual(set(np.unique(raw).tolist()), {0, 3, 150})
        self.assertEqual(set(np.unique(reduced).tolist()), {2, 149, 255})
        np.testing.assert_array_equal(reduced == 255, raw == 0)
        np.testing.assert_array_equal(reduced[raw > 0], raw[raw > 0] - 1)

    def test_bad_annotations(self):
        sample = self.reader.samples("validation")[0]
        Image.fromarray(np.full((64, 96), 151, np.uint8)).save(sample.annotation_path)
        with self.assertRaisesRegex(DatasetError, "values up to 151; expected 0-150"):
            self.reader.load_annotation(sample)
        Image.fromarray(np.zeros((64, 90), np.uint8)).save(sample.annotation_path)
        with self.assertRaisesRegex(DatasetError, "label map is 64x90"):
            self.reader.load_annotation(sample)
        Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(sample.annotation_path)
        with self.assertRaisesRegex(DatasetError, "expected a single-channel"):
            self.reader.load_annotation(sample)

    def test_greedy_fewshot_selection(self):
        # Classes visited 150 -> 1 in listing order (seed None); each image used once.
        # train pool = last 2 images: {150, 2} and {3}; val pool: {150}, {2, 3}.
        chosen = fewshot.ade20k_fewshot(
            self.reader, k_train=1, k_eval=1, train_pool_size=2, seed=None
        )
        stems = {c: [s.stem for s in v] for c, v in chosen.train_per_class.items() if v}
        self.assertEqual(stems, {150: ["ADE_train_00000002"], 3: ["ADE_train_00000003"]})
        self.assertEqual(list(chosen.train_per_class)[:2], [150, 149])
        self.assertEqual(chosen.train_per_class[2], [])  # its only image went to class 150
        stems = {c: [s.stem for s in v] for c, v in chosen.eval_per_class.items() if v}
        self.assertEqual(stems, {150: ["ADE_val_00000001"], 3: ["ADE_val_00000002"]})
        self.assertLen(chosen.eval, 2)
        # With the whole training pool and k=2, class 150 takes images 1 and 2, class 3 image 3.
        chosen = fewshot.ade20k_fewshot(self.reader, 2, 2, train_pool_size=None, seed=None)
        self.assertEqual([s.stem[-1] for s in chosen.train_per_class[150]], ["1", "2"])
        self.assertEqual([s.stem[-1] for s in chosen.train_per_class[3]], ["3"])
        # Seeded runs are reproducible.
        a = fewshot.ade20k_fewshot(self.reader, 1, 1, train_pool_size=None, seed=4)
        b = fewshot.ade20k_fewshot(self.reader, 1, 1, train_pool_size=None, seed=4)
        self.assertEqual(a, b)

    @test_util.requires("torch")
    def test_protocol_geometry_and_stitching(self):
        # 672 x 448 resize (mask nearest), 3 x 2 tiles of 224, stitch back to the original size.
        sample = self.reader.samples("training")[1]  # 80 x 64
        image, mask = self.reader.load(sample)
        tiles, infos = tiling.apply_geometry(image, "ade20k")
        label_tiles, _ = tiling.apply_geometry(mask, "ade20k", is_label=True)
        self.assertEqual(tiles.shape, (6, 224, 224, 3))
        self.assertEqual((infos[-1].grid_rows, infos[-1].grid_cols), (2, 3))
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(mask)[None, None].float(), size=(448, 672), mode="nearest-exact"
        )[0, 0].numpy()
        np.testing.assert_array_equal(tiling.stitch(label_tiles, infos), resized)
        grids = np.stack([patch_labels.patch_labels(t, (14, 14)) for t in label_tiles])
        back = tiling.stitch_to_pixels(grids, infos)
        self.assertEqual(back.shape, mask.shape)
        oracle = torch.nn.functional.interpolate(
            torch.from_numpy(tiling.stitch(grids, infos))[None, None].float(),
            size=mask.shape,
            mode="nearest-exact",
        )[0, 0].numpy()
        np.testing.assert_array_equal(back, oracle)
        # Bands are 8 px wide in the original; away from their borders the round trip is exact.
        np.testing.assert_array_equal(back[:, 12:14], mask[:, 12:14])

    def test_tfds_refuses_scene_parse150(self):
        fake = types.SimpleNamespace(data_source=lambda *a, **k: [])
        with mock.patch.dict(sys.modules, {"tensorflow_datasets": fake}):
            for name in ("scene_parse150", "ade20k"):
                with self.assertRaisesRegex(ConfigError, "instance-task masks"):
                    tfds_source.TFDSSource(name, "train")
            with self.assertRaisesRegex(ConfigError, "unsupported"):
                tfds_source.TFDSSource("coco", "train")


if __name__ == "__main__":
    absltest.main()
