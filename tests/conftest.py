"""pytest setup shared by the whole suite: simulated CPU devices before JAX starts its backend."""

from tests import test_util
from tests.skip_guard import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

test_util.setup_cpu_devices()
