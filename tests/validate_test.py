"""Tests of the up-front config check: every problem, listed at once, before any work."""

# isort: off
from tests import test_util  # noqa: F401  (simulated CPU devices before JAX starts)

# isort: on
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest, parameterized

from configs import bdd100k, cityscapes, demo, fair1m, scalemae
from vitjax import errors, extract, run, validate


def make_tempdir(test) -> str:
    path = tempfile.mkdtemp(prefix="vitjax_validate_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


class ValidateTest(parameterized.TestCase):
    @parameterized.parameters(
        (demo, "test"), (demo, None), (bdd100k, "synthetic"), (scalemae, "synthetic")
    )
    def test_shipped_configs_without_data_have_no_problem(self, module, arg):
        self.assertEqual(validate.problems(module.get_config(arg)), [])

    def test_every_problem_is_listed_before_any_extraction(self):
        c = demo.get_config("test")
        c.knn.metric = "cosin"
        c.tracking.geometries = ("foo",)
        c.robustness.blur_kind = "gaussian"
        c.probe.optimizer = "adam"
        c.fair1m_retrieval.perturbations = ("shift", "twist")
        c.models = ("dino:ti:16:/no/such/dino", "mae:ti:16:none", "ibot:ti:16:/no/such/ibot")
        workdir = os.path.join(make_tempdir(self), "w")
        with (
            mock.patch.object(extract, "extract", side_effect=AssertionError("extracted")),
            self.assertRaises(errors.ConfigError) as raised,
        ):
            run.run(c, workdir)
        message = str(raised.exception)
        for expected in (
            "config.knn.metric='cosin'",
            "did you mean 'cosine'",
            "config.tracking.geometries entry 'foo'",
            "config.robustness.blur_kind='gaussian'",
            "config.probe.optimizer='adam'",
            "twist",
            "/no/such/dino",
            "/no/such/ibot",  # every missing checkpoint, not only the first
            "checkpoints_convert",
        ):
            self.assertIn(expected, message)
        self.assertIn("7 problems", message)
        self.assertFalse(os.path.exists(workdir))  # nothing was written either

    def test_checks_only_the_sections_that_run(self):
        c = demo.get_config("test")
        c.experiments = ("tracking",)
        c.knn.metric = "cosin"  # the tracking experiment has its own similarity
        c.robustness.blur_kind = "gaussian"
        self.assertEqual(validate.problems(c), [])
        c.tracking.metric = "cosin"
        (problem,) = validate.problems(c)
        self.assertIn("config.tracking.metric", problem)

    def test_unknown_experiment_suggests_the_closest(self):
        c = demo.get_config("test")
        c.experiments = ("fewshots",)
        (problem,) = validate.problems(c)
        self.assertIn("did you mean 'fewshot'", problem)

    def test_data_roots_are_checked(self):
        missing = os.path.join(make_tempdir(self), "nothing_here")
        c = cityscapes.get_config()
        c.models = ("dino:ti:16:none",)
        c.data.root = missing
        self.assertTrue(any("config.data.root" in p and missing in p for p in validate.problems(c)))
        c = fair1m.get_config()
        c.models = ("dino:ti:16:none",)
        c.fair1m_retrieval.root = missing
        (problem,) = validate.problems(c)
        self.assertIn("config.fair1m_retrieval.root", problem)
        c = bdd100k.get_config("synthetic")
        c.tracking.dataset = "bdd100k"
        c.tracking.root = missing
        (problem,) = validate.problems(c)
        self.assertIn("config.tracking.root", problem)

    def test_checkpoint_of_another_model_is_reported(self):
        from vitjax import models

        folder = os.path.join(make_tempdir(self), "ckpt")
        module, params, spec = models.random_model("dino", "ti", 0, depth=1)
        models.save(folder, params, spec)
        c = demo.get_config("test")
        c.models = (f"dino:ti:16:{folder}",)
        self.assertEqual(validate.problems(c), [])
        c.models = (f"mae:ti:16:{folder}",)
        (problem,) = validate.problems(c)
        self.assertIn("holds dino:ti:16", problem)

    def test_did_you_mean(self):
        self.assertEqual(
            validate.did_you_mean("cosin", ("dot", "cosine")), " (did you mean 'cosine'?)"
        )
        self.assertEqual(validate.did_you_mean("zzz", ("dot", "cosine")), "")


if __name__ == "__main__":
    absltest.main()
