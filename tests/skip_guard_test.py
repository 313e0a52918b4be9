"""The suite without the oracles: optional imports, skip markers, and CI's no-skip guard."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

from absl.testing import absltest

from tests import test_util

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSENT = "vitjax_no_such_module"


def _run(case: type[unittest.TestCase]) -> unittest.TestResult:
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
    return result


class OptionalImportTest(absltest.TestCase):
    def test_missing_module_and_missing_parent_give_none(self):
        self.assertIsNone(test_util.optional_import(ABSENT))
        self.assertIsNone(test_util.optional_import(f"{ABSENT}.sub"))
        self.assertEqual(test_util.missing_modules("json", ABSENT), [ABSENT])

    def test_installed_module_is_returned(self):
        self.assertIs(test_util.optional_import("json.decoder"), sys.modules["json.decoder"])


class RequiresTest(absltest.TestCase):
    def test_class_and_method_are_skipped_naming_what_is_missing(self):
        ran = []

        @test_util.requires("json", ABSENT)
        class Whole(unittest.TestCase):
            def test_a(self):
                ran.append("whole")

        class Part(unittest.TestCase):
            @test_util.requires(ABSENT)
            def test_needs(self):
                ran.append("needs")

            @test_util.requires("json")
            def test_has(self):
                ran.append("has")

        reason = f"needs {ABSENT} (pip install -e '.[test]')"
        whole = _run(Whole)
        self.assertEqual([why for _, why in whole.skipped], [reason])
        part = _run(Part)
        self.assertEqual([why for _, why in part.skipped], [reason])
        self.assertEqual(part.testsRun, 2)
        self.assertEqual(ran, ["has"])

    def test_skip_unless_installed_skips_from_inside_a_test(self):
        class Case(unittest.TestCase):
            def test_helper(self):
                test_util.skip_unless_installed("json")
                test_util.skip_unless_installed(ABSENT, "json")
                raise AssertionError("not reached")

        result = _run(Case)
        self.assertEqual(result.failures + result.errors, [])
        self.assertEqual(
            [why for _, why in result.skipped], [f"needs {ABSENT} (pip install -e '.[test]')"]
        )

    def test_hypothesis_stand_ins_skip_given_tests(self):
        given, settings, st = test_util._hypothesis_stand_ins()

        class Case(unittest.TestCase):
            @given(n=st.integers(1, 3), flag=st.booleans())
            @settings(max_examples=5, deadline=None)
            def test_property(self, n, flag):
                raise AssertionError("a stand-in must not run the test")

            @settings(max_examples=5)
            def test_plain(self):
                pass

        result = _run(Case)
        self.assertEqual(result.testsRun, 2)
        self.assertEqual(result.failures + result.errors, [])
        self.assertEqual(
            [why for _, why in result.skipped], ["needs hypothesis (pip install -e '.[test]')"]
        )


_TESTS = """
import unittest

import pytest

from tests import test_util


def test_passes():
    pass


def test_pytest_skip():
    pytest.skip("no fixture files")


@test_util.requires("vitjax_no_such_module")
class Oracle(unittest.TestCase):
    def test_oracle(self):
        pass
"""

_MODULE_SKIP = """
import pytest

pytest.skip("whole module", allow_module_level=True)


def test_never_collected():
    pass
"""


class SkipGuardTest(absltest.TestCase):
    """tests/skip_guard.py, loaded into a pytest run on a small test file in a temporary folder."""

    def pytest(self, source: str, no_skips: bool) -> tuple[int, str]:
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        with open(os.path.join(tmp, "sample_test.py"), "w") as f:
            f.write(textwrap.dedent(source))
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VITJAX_NO_SKIPS"))
        }
        env["PYTHONPATH"] = REPO
        if no_skips:
            env["VITJAX_NO_SKIPS"] = "1"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
        cmd += ["-p", "tests.skip_guard", "sample_test.py"]
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout + proc.stderr

    def test_skips_are_reported_with_reasons_when_unset(self):
        rc, out = self.pytest(_TESTS, no_skips=False)
        self.assertEqual(rc, 0, out)
        self.assertIn("1 passed, 2 skipped", out)
        self.assertIn("needs vitjax_no_such_module (pip install -e '.[test]')", out)

    def test_every_skip_fails_under_vitjax_no_skips(self):
        rc, out = self.pytest(_TESTS, no_skips=True)
        self.assertEqual(rc, 1, out)
        # A skipped class fails at setup (an error), a skipped test in its body (a failure).
        self.assertIn("1 failed, 1 passed, 1 error", out)
        self.assertIn("test_pytest_skip was skipped under VITJAX_NO_SKIPS=1", out)
        self.assertIn("): no fixture files", out)
        self.assertIn("test_oracle was skipped under VITJAX_NO_SKIPS=1", out)
        self.assertIn("): needs vitjax_no_such_module (pip install -e '.[test]')", out)

    def test_module_level_skip_fails_under_vitjax_no_skips(self):
        rc, out = self.pytest(_MODULE_SKIP, no_skips=True)
        self.assertEqual(rc, 2, out)  # interrupted: an error during collection
        self.assertIn("sample_test.py was skipped under VITJAX_NO_SKIPS=1: whole module", out)


if __name__ == "__main__":
    absltest.main()
