"""Experiments are found by their register decorator; helper modules of any name are not."""

import os
import shutil
import sys
import tempfile
from unittest import mock

from absl.testing import absltest

from vitjax import errors, experiments

PAPER_EXPERIMENTS = {
    "fair1m_retrieval",
    "fewshot",
    "global_context",
    "layerwise",
    "mae_reconstruction",
    "robustness",
    "scalemae_knn",
    "tiling_vs_full",
    "tracking",
    "variance",
}

_HELPER = '''"""A helper module: no experiment, whatever its name."""


def double(x):
    return 2 * x
'''

_RUNNER = """from vitjax import experiments
from {package} import toolbox


@experiments.register("toy_registry_run")
def run(ctx, cfg):
    return experiments.Result(scalars={{"value": toolbox.double(21)}})


def register(name):  # a local function of that name is no experiment
    return name


register("not_an_experiment")
"""


class RegistryTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)
        self.package = "toy_registry_pkg"
        root = os.path.join(self.folder, self.package)
        os.makedirs(root)
        files = {
            "__init__.py": "",
            "toolbox.py": _HELPER,
            "runner.py": _RUNNER.format(package=self.package),
        }
        for name, text in files.items():
            with open(os.path.join(root, name), "w") as f:
                f.write(text)
        self.root = root

    def test_package_experiments_are_the_registered_ones(self):
        folder = os.path.dirname(experiments.__file__)
        declared = experiments.declared_experiments(folder, experiments.__name__)
        self.assertEqual(set(declared), PAPER_EXPERIMENTS)
        self.assertEqual(declared["fewshot"], "vitjax.experiments.fewshot")
        # known(): these plus whatever tests registered in this process; never the helper.
        self.assertContainsSubset(PAPER_EXPERIMENTS, experiments.known())
        self.assertNotIn("common", experiments.known())

    def test_helper_with_any_name_is_not_an_experiment(self):
        found = experiments.declared_experiments(self.root, self.package)
        self.assertEqual(found, {"toy_registry_run": f"{self.package}.runner"})

    def test_get_imports_the_declaring_module(self):
        declared = experiments.declared_experiments(self.root, self.package)
        sys.path.insert(0, self.folder)
        self.addCleanup(sys.path.remove, self.folder)
        self.addCleanup(experiments._REGISTRY.pop, "toy_registry_run", None)
        for name in (self.package, f"{self.package}.toolbox", f"{self.package}.runner"):
            self.addCleanup(sys.modules.pop, name, None)
        with mock.patch.object(experiments, "_declared", return_value=declared):
            self.assertIn("toy_registry_run", experiments.known())
            self.assertNotIn("toolbox", experiments.known())
            fn = experiments.get("toy_registry_run")
            self.assertEqual(fn(None, None).scalars, {"value": 42})
            with self.assertRaisesRegex(errors.ConfigError, "unknown experiment 'toolbox'"):
                experiments.get("toolbox")


if __name__ == "__main__":
    absltest.main()
