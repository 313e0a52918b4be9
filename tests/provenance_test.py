"""Tests for vitjax.provenance: cache keys follow the code that computes, not its comments."""

import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest

from vitjax import provenance

_MODULE = '''"""A module docstring."""

SCALE = 2.0  # a comment


class Thing:
    """A class docstring."""

    def f(self, x):
        """Doubles x."""
        return x * SCALE


def only_doc():
    """Nothing but a docstring."""
'''


class ProvenanceTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.pkg = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.pkg)
        os.makedirs(os.path.join(self.pkg, "models"))
        self.write("models/a.py", _MODULE)
        self.write("extract.py", "def g(x):\n    return x + 1\n")

    def write(self, rel, text):
        with open(os.path.join(self.pkg, rel), "w") as f:
            f.write(text)

    def digest(self):
        provenance.source_digest.cache_clear()
        with mock.patch.object(provenance, "_PACKAGE_DIR", self.pkg):
            return provenance.source_digest(*provenance.FEATURE_CODE)

    def test_comments_docstrings_and_formatting_do_not_change_the_digest(self):
        base = self.digest()
        edited = (
            _MODULE.replace('"""A module docstring."""', '"""Reworded, longer\n\ndocstring."""')
            .replace("# a comment", "# another comment entirely")
            .replace('"""Doubles x."""', '"""Returns twice x.\n\n    Args: x."""')
            .replace("return x * SCALE", "return (x *\n                SCALE)")
            .replace('"""Nothing but a docstring."""', '"""Still only a docstring."""')
        )
        self.assertNotEqual(edited, _MODULE)
        self.write("models/a.py", edited)
        self.assertEqual(self.digest(), base)

    def test_code_changes_change_the_digest(self):
        base = self.digest()
        for old, new in [("SCALE = 2.0", "SCALE = 2.5"), ("x * SCALE", "x / SCALE")]:
            self.write("models/a.py", _MODULE.replace(old, new))
            self.assertNotEqual(self.digest(), base, (old, new))
        self.write("models/a.py", _MODULE)
        self.assertEqual(self.digest(), base)
        self.write("extract.py", "def g(x):\n    return x + 2\n")
        self.assertNotEqual(self.digest(), base)

    def test_added_and_renamed_files_change_the_digest(self):
        base = self.digest()
        self.write("models/b.py", "")
        added = self.digest()
        self.assertNotEqual(added, base)
        os.rename(os.path.join(self.pkg, "models/b.py"), os.path.join(self.pkg, "models/c.py"))
        self.assertNotEqual(self.digest(), added)

    def test_a_string_statement_after_code_is_code(self):
        # Only the leading string of a body is a docstring; a later string expression is kept.
        a = provenance.code_fingerprint("x = 1\n'keep me'\n")
        b = provenance.code_fingerprint("x = 1\n'changed'\n")
        self.assertNotEqual(a, b)

    def test_the_real_package_digest_is_stable_and_hex(self):
        provenance.source_digest.cache_clear()
        d = provenance.source_digest()
        self.assertRegex(d, r"^[0-9a-f]{16}$")
        self.assertEqual(provenance.source_digest(), d)


if __name__ == "__main__":
    absltest.main()
