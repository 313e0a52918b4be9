"""The dataset registry: a dataset added as one registered loader runs through `run.run`."""

from tests import test_util  # noqa: F401  # isort: skip

import json
import shutil
import subprocess
import sys
import tempfile

import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from configs import common as common_config
from configs import scalemae as scalemae_config
from vitjax import errors, run, validate
from vitjax.data import registry
from vitjax.data.types import SceneSplit

TOY = "toy_colours"
# One solid colour per class: the known `colour` model's patch tokens (vitjax/models/known.py)
# are a function of the patch colour only, so every image of a class has the same features.
COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230]], np.uint8)


# What a contributor writes in vitjax/data/<name>.py: one registered loader returning the kind's
# split type. `shift_test_labels` mislabels the test images (class c -> c + shift), so the
# known answer moves from 1 to 0 only through what the loader returns.
@registry.register_dataset(TOY, kind=registry.SCENES, display="toy colours")
def load_toy(name: str, dcfg: ml_collections.ConfigDict, load_size: int, seed: int) -> SceneSplit:
    del seed
    n, k = int(dcfg.per_class), int(dcfg.train_per_class)
    labels = np.repeat(np.arange(len(COLOURS)), n)
    images = np.broadcast_to(
        COLOURS[labels][:, None, None, :], (len(labels), load_size, load_size, 3)
    )
    train = np.flatnonzero(np.arange(len(labels)) % n < k)
    test = np.flatnonzero(np.arange(len(labels)) % n >= k)
    shifted = (labels[test] + int(dcfg.shift_test_labels)) % len(COLOURS)
    return SceneSplit(
        name,
        ["red", "green", "blue"],
        labels[train].astype(np.int32),
        shifted.astype(np.int32),
        lambda i: np.array(images[train[i]]),
        lambda i: np.array(images[test[i]]),
        {"per_class": n, "train_per_class": k, "shift": int(dcfg.shift_test_labels)},
    )


def toy_config(shift: int) -> ml_collections.ConfigDict:
    """What a contributor writes in configs/<name>.py: the experiment's section, the new dataset."""
    c = common_config.get_base()
    c.experiments = ("scalemae_knn",)
    c.models = ("known:colour",)
    scalemae_config.add_knn_demo(c, tiny=True)
    s = c.scalemae_knn
    s.datasets = (TOY,)
    s[TOY] = ml_collections.ConfigDict(
        dict(per_class=3, train_per_class=1, shift_test_labels=shift)
    )
    s.load_size = s.input_size = 32
    s.sizes = (32, 16)
    s.removed = (0,)
    s.representations = ("mean_patch",)
    s.k = 2
    return c


class ToyDatasetTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.workdir = tempfile.mkdtemp(prefix="vitjax_toy_")
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)

    @parameterized.parameters((0, 1.0), (1, 0.0))
    def test_registered_dataset_runs_scalemae_knn(self, shift, expected):
        self.assertIn(TOY, registry.list_datasets(registry.SCENES))
        config = toy_config(shift)
        self.assertEqual(validate.problems(config), [])
        results = run.run(config, self.workdir)
        rows = results["experiments"]["scalemae_knn"]["tables"]["knn"]
        self.assertLen(rows, 2)  # one per size
        for row in rows:
            self.assertEqual(row["dataset"], TOY)
            # Test images have exactly their class's features: the nearest train images are of
            # the test image's own colour, so the accuracy is 1, or 0 with every label shifted.
            self.assertEqual(row["accuracy"], expected, row)


class RegistryTest(absltest.TestCase):
    def test_unknown_name_names_the_known_ones(self):
        with self.assertRaisesRegex(
            errors.ConfigError, r"config.tracking.dataset='mot16'.*bdd100k, mot17, synthetic"
        ):
            registry.get_dataset("mot16", registry.TRACKING, "config.tracking.dataset")

    def test_a_name_is_registered_once_per_kind(self):
        with self.assertRaisesRegex(ValueError, "already registered"):
            registry.register_dataset(TOY, kind=registry.SCENES)(lambda *a: None)
        with self.assertRaisesRegex(ValueError, "kind="):
            registry.register_dataset("x", kind="video")

    def test_root_check_names_field_and_layout(self):
        spec = registry.get_dataset("cityscapes", registry.SEGMENTATION)
        with self.assertRaisesRegex(
            errors.ConfigError,
            r"config.data.root='/nonexistent' is not a folder: set --config.data.root=<folder>"
            r" to the Cityscapes root; expected the layout <root>/leftImg8bit",
        ):
            spec.check_root("/nonexistent", "config.data.root")

    def test_data_imports_neither_experiments_nor_models(self):
        script = (
            "import json, sys; import vitjax.data.registry as r; r.list_datasets(); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('vitjax.'))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
        loaded = json.loads(out.strip().splitlines()[-1])
        self.assertIn("vitjax.data.loaders.segmentation", loaded)  # the loaders did load
        upward = [m for m in loaded if m.split(".")[1] in ("experiments", "models", "extract")]
        self.assertEqual(upward, [])


if __name__ == "__main__":
    absltest.main()
