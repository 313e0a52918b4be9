"""TFDSSource against the real tensorflow_datasets package (no TensorFlow).

Datasets are written in the ArrayRecord format by TFDS's own writer (a GeneratorBasedBuilder with
the official builder's features, version and config), into a temporary data_dir, exactly as
`tfds.builder(name, file_format='array_record').download_and_prepare()` lays them out. They are read
back through `TFDSSource` and through the Scale-MAE k-NN experiment, and compared with the raw-file
readers on the same images.
"""

from tests import test_util  # noqa: F401  # isort: skip

import os
import shutil
import sys
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest
from PIL import Image

from configs import scalemae as scalemae_config
from vitjax import run
from vitjax.data import cityscapes, resisc45, tfds_source, ucmerced
from vitjax.errors import ConfigError, DatasetError
from vitjax.experiments import scalemae_knn

tfds = test_util.optional_import("tensorflow_datasets")

# (class, image shapes): irregular sizes as in the real UC Merced; classes chosen so that the
# class indices (0, 1, 3) are not positions among the folders present.
UCM_IMAGES = {
    "agricultural": [(40, 40), (38, 40), (40, 37)],
    "airplane": [(40, 40), (40, 40), (39, 39)],
    "beach": [(40, 40), (36, 40), (40, 40)],
}


def tempdir(test) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_tfds_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def write_tfds(data_dir: str, name: str, splits: dict[str, list[dict]]) -> str:
    """Writes `splits` ({split: [example]}) as ArrayRecord with TFDS's writer, using the features,
    version and config of the official builder `name` ('cityscapes/semantic_segmentation')."""
    official = tfds.builder(name, data_dir=data_dir)
    config = official.builder_config

    class Writer(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = official.version
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=config.name)] if config else []
        # No source folder (checksums, metadata): TFDS would look one up from the module path.
        code_path = None

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=official.info.features)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(items) for split, items in splits.items()}

        def _generate_examples(self, items):
            yield from enumerate(items)

    Writer.name = official.name
    writer = Writer(
        data_dir=data_dir, config=config.name if config else None, file_format="array_record"
    )
    writer.download_and_prepare()
    return writer.data_dir


def write_ucmerced(root: str) -> dict[str, tuple[int, np.ndarray]]:
    """Raw UC Merced layout (TIFFs); returns {file name: (class index, pixels)}."""
    written = {}
    rng = np.random.default_rng(0)
    for name, shapes in UCM_IMAGES.items():
        folder = os.path.join(root, "UCMerced_LandUse", "Images", name)
        os.makedirs(folder)
        label = ucmerced.CLASS_NAMES.index(name)
        for n, shape in enumerate(shapes):
            # Classes differ in brightness, so a k-NN on any features can separate them.
            base = 60 + 60 * len(written) // 3
            rgb = (base + rng.integers(0, 40, (*shape, 3))).astype(np.uint8)
            file_name = f"{name}{n:02d}.tif"
            Image.fromarray(rgb).save(os.path.join(folder, file_name))
            written[file_name] = (label, rgb)
    return written


def ucmerced_examples(root: str, written) -> list[dict]:
    """The TFDS `uc_merced` examples of the raw files (the TIFFs decoded, stored as PNG)."""
    examples = []
    for file_name, (label, _) in written.items():
        folder = os.path.join(root, "UCMerced_LandUse", "Images", ucmerced.CLASS_NAMES[label])
        with Image.open(os.path.join(folder, file_name)) as im:
            examples.append({"image": im.convert("RGB"), "label": label, "filename": file_name})
    return examples


@test_util.requires("tensorflow_datasets")
class UCMercedTFDSTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix="vitjax_tfds_test_")
        cls.data_dir = os.path.join(cls.root, "tensorflow_datasets")
        cls.written = write_ucmerced(cls.root)
        write_tfds(cls.data_dir, "uc_merced", {"train": ucmerced_examples(cls.root, cls.written)})

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def test_array_record_layout_read_without_tensorflow(self):
        folder = os.path.join(self.data_dir, "uc_merced", "2.0.0")
        self.assertIn("uc_merced-train.array_record-00000-of-00001", os.listdir(folder))
        source = tfds_source.TFDSSource("uc_merced", "train", data_dir=self.data_dir)
        self.assertLen(source, len(self.written))
        seen = set()
        for i in range(len(source)):
            example = source[i]
            label, pixels = self.written[example["filename"]]
            self.assertEqual(example["label"], label)
            np.testing.assert_array_equal(example["image"], pixels)
            np.testing.assert_array_equal(source.images[i], pixels)
            seen.add(example["filename"])
        self.assertEqual(seen, set(self.written))
        labels, names = source.labels()
        self.assertEqual(names, [source[i]["filename"] for i in range(len(source))])
        self.assertEqual(labels.tolist(), [self.written[n][0] for n in names])
        # Neither writing nor reading imported TensorFlow.
        self.assertNotIn("tensorflow", sys.modules)

    def test_scalemae_knn_split_matches_the_raw_reader(self):
        cfg = scalemae_config.scalemae_knn_defaults()
        cfg.load_size = 48
        cfg.ucmerced.train_per_class = 1
        cfg.ucmerced.root = self.root
        raw = scalemae_knn.load_split("ucmerced", cfg, 3)
        cfg.ucmerced.root = ""
        cfg.ucmerced.tfds_data_dir = self.data_dir
        via_tfds = scalemae_knn.load_split("ucmerced", cfg, 3)
        np.testing.assert_array_equal(via_tfds.train_labels, raw.train_labels)
        np.testing.assert_array_equal(via_tfds.test_labels, raw.test_labels)
        for i in range(len(raw.train_labels)):
            np.testing.assert_array_equal(via_tfds.load_train(i), raw.load_train(i))
        for i in range(len(raw.test_labels)):
            np.testing.assert_array_equal(via_tfds.load_test(i), raw.load_test(i))
        self.assertEqual(via_tfds.load_test(0).shape, (48, 48, 3))
        self.assertEqual(via_tfds.identity["train"], raw.identity["train"])
        self.assertNotEqual(via_tfds.identity, raw.identity)  # another source, another cache key

    def test_scalemae_knn_experiment_reads_the_tfds_directory(self):
        def accuracies(**fields):
            c = scalemae_config.get_config("synthetic")
            c.models = ("dino:ti:16:none",)
            c.model_depth = 1
            s = c.scalemae_knn
            s.datasets = ("ucmerced",)
            s.ucmerced.train_per_class = 1
            s.ucmerced.update(fields)
            s.load_size, s.input_size, s.sizes, s.removed = 32, 32, (32,), (0,)
            rows = run.run(c, tempdir(self))["experiments"]["scalemae_knn"]["tables"]["knn"]
            return [(r["representation"], r["accuracy"]) for r in rows]

        via_tfds = accuracies(root="", tfds_data_dir=self.data_dir)
        self.assertLen(via_tfds, 2)  # cls, mean_patch
        self.assertEqual(via_tfds, accuracies(root=self.root))


@test_util.requires("tensorflow_datasets")
class RESISC45TFDSTest(absltest.TestCase):
    def test_scalemae_knn_split_matches_the_raw_reader(self):
        root = tempdir(self)
        rng = np.random.default_rng(2)
        examples = []
        for name in ("airport", "beach"):
            folder = os.path.join(root, "NWPU-RESISC45", name)
            os.makedirs(folder)
            for n in (1, 2, 3):
                file_name = f"{name}_{n:03d}.jpg"
                pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, file_name), quality=90)
                with Image.open(os.path.join(folder, file_name)) as im:
                    label = resisc45.CLASS_NAMES.index(name)
                    examples.append(
                        {"image": im.convert("RGB"), "label": label, "filename": file_name}
                    )
        data_dir = os.path.join(root, "tensorflow_datasets")
        write_tfds(data_dir, "resisc45", {"train": examples})
        cfg = scalemae_config.scalemae_knn_defaults()
        cfg.load_size = 64
        cfg.resisc45.train_per_class = 1
        cfg.resisc45.root = root
        raw = scalemae_knn.load_split("resisc45", cfg, 0)
        cfg.resisc45.root = ""
        cfg.resisc45.tfds_data_dir = data_dir
        via_tfds = scalemae_knn.load_split("resisc45", cfg, 0)
        np.testing.assert_array_equal(via_tfds.train_labels, [1, 4])  # airport, beach
        np.testing.assert_array_equal(via_tfds.train_labels, raw.train_labels)
        np.testing.assert_array_equal(via_tfds.test_labels, raw.test_labels)
        for i in range(4):
            np.testing.assert_array_equal(via_tfds.load_test(i), raw.load_test(i))
        self.assertEqual(via_tfds.identity["test"], raw.identity["test"])


@test_util.requires("tensorflow_datasets", "cityscapesscripts")
class CityscapesTFDSTest(absltest.TestCase):
    def test_semantic_segmentation_label_ids_become_train_ids(self):
        from cityscapesscripts.helpers import labels as cs_labels

        rng = np.random.default_rng(1)
        ids = np.array([label.id for label in cs_labels.labels if label.id >= 0], np.uint8)
        examples, expected = [], {}
        for n in range(2):
            image = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
            label_ids = rng.choice(ids, size=(32, 64)).astype(np.uint8)
            image_id = f"frankfurt_000000_{n:06d}"
            examples.append(
                {
                    "image_id": image_id,
                    "image_left": Image.fromarray(image),
                    "segmentation_label": Image.fromarray(label_ids),
                }
            )
            train_ids = np.array(
                [[cs_labels.id2label[int(v)].trainId for v in row] for row in label_ids]
            )
            train_ids[(train_ids < 0) | (train_ids > 18)] = 255
            expected[image_id] = (image, train_ids)
        data_dir = tempdir(self)
        write_tfds(data_dir, "cityscapes/semantic_segmentation", {"validation": examples})
        source = tfds_source.TFDSSource("cityscapes/semantic_segmentation", "validation", data_dir)
        self.assertLen(source, 2)
        for i in range(2):
            example = source[i]
            image, train_ids = expected[example["image_id"]]
            np.testing.assert_array_equal(example["image"], image)
            np.testing.assert_array_equal(example["labels"], train_ids)
        self.assertEqual(cityscapes.NUM_CLASSES, 19)
        with self.assertRaisesRegex(ConfigError, "no image-level labels"):
            source.labels()


class MissingTFDSTest(absltest.TestCase):
    @test_util.requires("tensorflow_datasets")
    def test_missing_dataset_is_an_error_and_nothing_is_written(self):
        data_dir = tempdir(self)
        prepare = mock.patch.object(
            tfds.core.DatasetBuilder, "download_and_prepare", side_effect=RuntimeError("download")
        )
        with prepare as download_and_prepare:
            with self.assertRaisesRegex(DatasetError, r"cannot open 'uc_merced'.*array_record"):
                tfds_source.TFDSSource("uc_merced", "train", data_dir=data_dir)
        download_and_prepare.assert_not_called()  # never download into the user's data_dir
        self.assertEqual(os.listdir(data_dir), [])

    def test_tfds_not_installed(self):
        with mock.patch.dict(sys.modules, {"tensorflow_datasets": None}):
            with self.assertRaisesRegex(ConfigError, r"pip install 'vitjax\[tfds\]'"):
                tfds_source.TFDSSource("cityscapes", "train")


if __name__ == "__main__":
    absltest.main()
