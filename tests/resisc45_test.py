"""Tests of the NWPU-RESISC45 reader."""

from tests import test_util  # noqa: F401  # isort: skip

import os
import tempfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from vitjax.data import resisc45
from vitjax.errors import DatasetError

FILES = {
    "airplane": ["airplane_001.jpg", "airplane_002.jpg"],
    "airport": ["airport_001.jpg", "airport_700.jpg"],
    "beach": ["beach_5.jpg", "beach_12.jpg"],  # a re-upload without zero padding
}


def write_fixture(root: str) -> None:
    for name, files in FILES.items():
        folder = os.path.join(root, "NWPU-RESISC45", name)
        os.makedirs(folder)
        for n, file_name in enumerate(files):
            Image.fromarray(np.full((32, 32, 3), 20 * n, np.uint8)).save(
                os.path.join(folder, file_name)
            )


class RESISC45Test(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.enterContext(tempfile.TemporaryDirectory())
        write_fixture(self.root)
        self.reader = resisc45.RESISC45Reader(self.root, image_size=None)

    def test_class_order_from_fixed_list(self):
        self.assertLen(resisc45.CLASS_NAMES, 45)
        self.assertEqual(list(resisc45.CLASS_NAMES), sorted(resisc45.CLASS_NAMES))
        got = [(s.label, s.stem) for s in self.reader.samples()]
        # beach is class 4 of the 45, whatever folders exist; numbers sort numerically.
        self.assertEqual(
            got,
            [
                (0, "airplane_001"),
                (0, "airplane_002"),
                (1, "airport_001"),
                (1, "airport_700"),
                (4, "beach_005"),
                (4, "beach_012"),
            ],
        )
        sample = self.reader.samples()[4]
        self.assertTrue(sample.path.endswith("beach/beach_5.jpg"))
        image, label = self.reader.load(sample)
        self.assertEqual((image.shape, image.dtype, label), ((32, 32, 3), np.uint8, 4))
        resized = resisc45.RESISC45Reader(os.path.join(self.root, "NWPU-RESISC45"))
        self.assertEqual(resized.load_image(sample).shape, (256, 256, 3))

    def test_seeded_split(self):
        split = resisc45.RESISC45Reader(self.root, train_per_class=1, seed=1)
        train, test = split.samples("train"), split.samples("test")
        self.assertEqual([s.label for s in train], [0, 1, 4])
        self.assertLen(test, 3)
        self.assertEqual(
            train, resisc45.RESISC45Reader(self.root, train_per_class=1, seed=1).samples("train")
        )
        self.assertEqual(set(train) | set(test), set(self.reader.samples()))

    def test_bad_names(self):
        folder = os.path.join(self.root, "NWPU-RESISC45", "beach")
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(os.path.join(folder, "beach_005.jpg"))
        with self.assertRaisesRegex(
            DatasetError, "beach_5.jpg and beach_005.jpg|beach_005.jpg and beach_5.jpg"
        ):
            self.reader.samples()
        os.remove(os.path.join(folder, "beach_005.jpg"))
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(os.path.join(folder, "sea_1.jpg"))
        with self.assertRaisesRegex(
            DatasetError, "sea_1.jpg: expected a file name 'beach_<number>.jpg'"
        ):
            self.reader.samples()
        os.remove(os.path.join(folder, "sea_1.jpg"))
        os.makedirs(os.path.join(self.root, "NWPU-RESISC45", "castle"))
        with self.assertRaisesRegex(DatasetError, "castle: unknown class folder"):
            self.reader.samples()


if __name__ == "__main__":
    absltest.main()
