"""Every module of vitjax imports without the test-only or conversion-only dependencies."""

import json
import subprocess
import sys

from absl.testing import absltest

from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# Needed only by checkpoints_convert/ (torch) or as test oracles; vitjax itself must not load them.
FORBIDDEN = (
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "faiss",
    "sklearn",
    "cityscapesscripts",
)

_SCRIPT = """
import importlib, json, pkgutil, sys
import vitjax
names = sorted(m.name for m in pkgutil.walk_packages(vitjax.__path__, "vitjax."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(m.split(".")[0] for m in sys.modules)}))
"""


class ImportTest(absltest.TestCase):
    def test_no_module_of_vitjax_loads_torch_or_test_oracles(self):
        out = subprocess.run(
            [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        # The walk must really have found the package's modules, or the check below means nothing.
        for expected in ("vitjax.knn", "vitjax.extract", "vitjax.models.vit", "vitjax.main"):
            self.assertIn(expected, result["modules"])
        loaded = set(result["loaded"])
        self.assertEqual([m for m in FORBIDDEN if m in loaded], [])


if __name__ == "__main__":
    absltest.main()
