"""Helpers shared by the tests. Import this before anything touches a JAX backend."""

import importlib
import importlib.util
import os
import shutil
import tempfile
import unittest

NUM_CPU_DEVICES = 8


def setup_cpu_devices(n: int = NUM_CPU_DEVICES) -> None:
    """Ask JAX for `n` simulated CPU devices (idempotent; must run before the backend starts)."""
    flag = f"--xla_force_host_platform_device_count={n}"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + flag).strip()
    os.environ.setdefault("TIMM_FUSED_ATTN", "0")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def write_memmap(test, values):
    """A read-only .npy memmap holding `values`, in a folder removed when `test` ends.

    Args:
      test: the running absltest.TestCase (owns the cleanup).
      values: numpy array of any shape and dtype.
    """
    import numpy as np

    tmp = tempfile.mkdtemp()
    test.addCleanup(shutil.rmtree, tmp)
    path = os.path.join(tmp, "features.npy")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=values.dtype, shape=values.shape)
    out[:] = values
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


setup_cpu_devices()


def file_modes(root: str) -> dict[str, tuple[bool, int]]:
    """{path relative to root: (is_dir, permission bits)} of everything under `root`."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = (os.path.isdir(path), os.stat(path).st_mode & 0o777)
    return out


# The test oracles (torch, timm, sklearn, faiss, ...) come with `pip install -e '.[test]'`; a venv
# with only the core dependencies still imports every test module and runs every test that does
# not compare against one of them. CI installs everything and turns any skip into a failure
# (tests/skip_guard.py), so an oracle test cannot silently stop running there.
INSTALL_HINT = "pip install -e '.[test]'"


# What tests/torch_reference.py (the PyTorch reference models of the parity and converter tests)
# imports; the classes that use it are marked `@test_util.requires(*test_util.TORCH_REFERENCE)`.
TORCH_REFERENCE = ("torch", "torchvision", "timm", "transformers")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package of a dotted name is missing
        return False


def optional_import(name: str):
    """The module `name` (dotted names allowed), or None when it (or a parent package) is missing.

    Bind test oracles with it at module level (`torch = test_util.optional_import("torch")`) and
    mark the tests that use them with `requires`.
    """
    if not _installed(name):
        return None
    return importlib.import_module(name)


def missing_modules(*modules: str) -> list[str]:
    """The names among `modules` that are not installed, in the given order."""
    return [m for m in modules if not _installed(m)]


def skip_reason(missing: list[str]) -> str:
    """The skip message for tests whose oracle modules `missing` are not installed."""
    return f"needs {', '.join(missing)} ({INSTALL_HINT})"


def requires(*modules: str):
    """Decorator for a test class or method that compares against the oracle packages `modules`.

    Skips it, naming what is missing and how to install it, when any of them is not installed;
    otherwise leaves it unchanged.
    """
    missing = missing_modules(*modules)
    return unittest.skipIf(bool(missing), skip_reason(missing))


def reference_module(name: str, *modules: str):
    """The test helper module tests/<name>.py, or None when one of `modules` it imports is missing."""
    if missing_modules(*modules):
        return None
    return importlib.import_module(f"tests.{name}")


def torch_reference():
    """The module tests/torch_reference.py, or None when one of TORCH_REFERENCE is missing."""
    return reference_module("torch_reference", *TORCH_REFERENCE)


def skip_unless_installed(*modules: str) -> None:
    """Raises unittest.SkipTest (reason as `requires`) when one of `modules` is missing.

    For the oracle helpers of hypothesis tests: with `derandomize=True` hypothesis seeds its
    examples from the test's source, decorator lines included, so a `requires` line there would
    change which examples run.
    """
    missing = missing_modules(*modules)
    if missing:
        raise unittest.SkipTest(skip_reason(missing))


class _AnyStrategy:
    """Stand-in for `hypothesis.strategies`: every strategy is None (the test is skipped anyway)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _hypothesis_stand_ins():
    reason = skip_reason(["hypothesis"])

    def given(*args, **kwargs):
        return unittest.skip(reason)

    def settings(*args, **kwargs):
        return lambda test: test

    return given, settings, _AnyStrategy()


def hypothesis_api():
    """(given, settings, strategies) of hypothesis; without it, stand-ins that skip `@given` tests.

    `@given` runs at import time, so the stand-ins keep the test module importable:
      given, settings, st = test_util.hypothesis_api()
    """
    hypothesis = optional_import("hypothesis")
    if hypothesis is None:
        return _hypothesis_stand_ins()
    return hypothesis.given, hypothesis.settings, hypothesis.strategies
