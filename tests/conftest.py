"""pytest setup shared by the whole suite: simulated CPU devices before JAX starts its backend."""

from tests import test_util

test_util.setup_cpu_devices()
