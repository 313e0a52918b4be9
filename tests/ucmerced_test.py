"""Tests of the UC Merced reader and of the shared image decoding (TIFF, gray, RGBA, 16-bit)."""

from tests import test_util  # noqa: F401  # isort: skip

import os
import tempfile

import numpy as np
import tifffile
from absl.testing import absltest
from PIL import Image

from vitjax.data import images, ucmerced
from vitjax.errors import ConfigError, DatasetError

SHAPES = [(32, 32), (32, 30)]  # the second mimics the odd-sized images


def write_fixture(root: str) -> dict[str, np.ndarray]:
    written = {}
    for c, name in enumerate(("agricultural", "airplane")):
        folder = os.path.join(root, "UCMerced_LandUse", "Images", name)
        os.makedirs(folder)
        for n, shape in enumerate(SHAPES):
            rgb = np.random.default_rng(10 * c + n).integers(0, 256, (*shape, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(os.path.join(folder, f"{name}{n:02d}.tif"))
            written[f"{name}{n:02d}"] = rgb
    return written


class UCMercedTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.enterContext(tempfile.TemporaryDirectory())
        self.written = write_fixture(self.root)

    def test_class_order(self):
        self.assertLen(ucmerced.CLASS_NAMES, 21)
        self.assertEqual(list(ucmerced.CLASS_NAMES), sorted(ucmerced.CLASS_NAMES))
        samples = ucmerced.UCMercedReader(self.root).samples()
        got = [(s.class_name, s.label, s.stem) for s in samples]
        self.assertEqual(
            got,
            [
                ("agricultural", 0, "agricultural00"),
                ("agricultural", 0, "agricultural01"),
                ("airplane", 1, "airplane00"),
                ("airplane", 1, "airplane01"),
            ],
        )
        # Any of the three root spellings works.
        for root in ("UCMerced_LandUse", "UCMerced_LandUse/Images"):
            reader = ucmerced.UCMercedReader(os.path.join(self.root, root))
            self.assertLen(reader.samples(), 4)

    def test_tiff_decoding_and_size_policies(self):
        raw = ucmerced.UCMercedReader(self.root, size_policy="none")
        for sample in raw.samples():
            np.testing.assert_array_equal(raw.load_image(sample), self.written[sample.stem])
        odd = raw.samples()[1]
        original = self.written[odd.stem]
        resized = ucmerced.UCMercedReader(self.root, image_size=(32, 32)).load_image(odd)
        self.assertEqual((resized.shape, resized.dtype), ((32, 32, 3), np.uint8))
        oracle = np.asarray(Image.fromarray(original).resize((32, 32), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(resized, oracle)
        padded = ucmerced.UCMercedReader(self.root, (32, 32), "pad").load_image(odd)
        np.testing.assert_array_equal(padded[:, :30], original)
        self.assertFalse(padded[:, 30:].any())
        cropped = ucmerced.UCMercedReader(self.root, (32, 28), "pad").load_image(odd)
        np.testing.assert_array_equal(cropped, original[:, 1:29])
        with self.assertRaisesRegex(ConfigError, "size_policy='stretch'"):
            ucmerced.UCMercedReader(self.root, size_policy="stretch")

    def test_hidden_entries_are_skipped(self):
        images_dir = os.path.join(self.root, "UCMerced_LandUse", "Images")
        clean = ucmerced.UCMercedReader(self.root).samples()
        os.makedirs(os.path.join(images_dir, ".ipynb_checkpoints"))
        os.makedirs(os.path.join(images_dir, "__MACOSX", "airplane"))
        for junk in (".DS_Store", os.path.join("airplane", "._airplane00.tif")):
            with open(os.path.join(images_dir, junk), "wb") as f:
                f.write(b"\x00\x05\x16\x07")  # an AppleDouble header, not a TIFF
        with self.assertLogs(level="INFO") as logs:
            self.assertEqual(ucmerced.UCMercedReader(self.root).samples(), clean)
        self.assertRegex("\n".join(logs.output), r"skipping hidden entries .*__MACOSX")
        os.makedirs(os.path.join(images_dir, "misc"))
        with self.assertRaisesRegex(DatasetError, "misc: unknown class folder"):
            ucmerced.UCMercedReader(self.root).samples()

    def test_seeded_split(self):
        reader = ucmerced.UCMercedReader(self.root, train_per_class=1, seed=5)
        train, test = reader.samples("train"), reader.samples("test")
        self.assertEqual([s.label for s in train], [0, 1])
        self.assertEqual(sorted(s.stem for s in train + test), sorted(self.written))
        again = ucmerced.UCMercedReader(self.root, train_per_class=1, seed=5).samples("train")
        self.assertEqual(train, again)
        draws = {
            tuple(
                s.stem
                for s in ucmerced.UCMercedReader(self.root, train_per_class=1, seed=seed).samples(
                    "train"
                )
            )
            for seed in range(12)
        }
        self.assertGreater(len(draws), 1)  # the seed matters
        with self.assertRaisesRegex(ConfigError, "needs train_per_class"):
            ucmerced.UCMercedReader(self.root).samples("train")

    def test_bad_input(self):
        with self.assertRaisesRegex(DatasetError, "no class folders found; expected"):
            ucmerced.UCMercedReader(self.enterContext(tempfile.TemporaryDirectory()))
        os.makedirs(os.path.join(self.root, "UCMerced_LandUse", "Images", "airport"))
        with self.assertRaisesRegex(DatasetError, "Images/airport: unknown class folder"):
            ucmerced.UCMercedReader(self.root).samples()
        os.rmdir(os.path.join(self.root, "UCMerced_LandUse", "Images", "airport"))
        reader = ucmerced.UCMercedReader(self.root)
        sample = reader.samples()[0]
        with open(sample.path, "wb") as f:
            f.write(b"II*\x00garbage")
        with self.assertRaisesRegex(DatasetError, "agricultural00.tif: cannot decode image"):
            reader.load_image(sample)

    def test_read_image_conversions(self):
        folder = self.enterContext(tempfile.TemporaryDirectory())
        rng = np.random.default_rng(0)
        gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
        Image.fromarray(gray).save(os.path.join(folder, "gray.png"))
        np.testing.assert_array_equal(
            images.read_image(os.path.join(folder, "gray.png")), np.stack([gray] * 3, axis=-1)
        )
        rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
        Image.fromarray(rgba).save(os.path.join(folder, "rgba.png"))
        np.testing.assert_array_equal(
            images.read_image(os.path.join(folder, "rgba.png")), rgba[..., :3]
        )
        palette = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).quantize(8)
        palette.save(os.path.join(folder, "palette.png"))
        np.testing.assert_array_equal(
            images.read_image(os.path.join(folder, "palette.png")),
            np.asarray(palette.convert("RGB")),
        )
        deep = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
        tifffile.imwrite(os.path.join(folder, "deep.tif"), deep)
        np.testing.assert_array_equal(
            images.read_image(os.path.join(folder, "deep.tif")),
            np.round(deep / 257.0).astype(np.uint8),
        )
        deep_gray = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
        Image.fromarray(deep_gray).save(os.path.join(folder, "deep.png"))
        np.testing.assert_array_equal(
            images.read_image(os.path.join(folder, "deep.png")),
            np.stack([np.round(deep_gray / 257.0).astype(np.uint8)] * 3, axis=-1),
        )
        planar = rng.integers(0, 256, (3, 9, 11), dtype=np.uint8)
        tifffile.imwrite(
            os.path.join(folder, "planar.tif"), planar, photometric="rgb", planarconfig="separate"
        )
        np.testing.assert_array_equal(
            images.read_image(os.path.join(folder, "planar.tif")), np.moveaxis(planar, 0, -1)
        )
        self.assertEqual(images.image_size(os.path.join(folder, "planar.tif")), (9, 11))
        with self.assertRaisesRegex(DatasetError, "nothing.png: image file not found"):
            images.read_image(os.path.join(folder, "nothing.png"))


if __name__ == "__main__":
    absltest.main()
