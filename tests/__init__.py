"""The vitjax test suite. Importing the package sets up simulated CPU devices before JAX starts, so
`python -m tests.<name>_test` and pytest see the same 8 devices whatever a test file imports first."""

from tests import test_util

test_util.setup_cpu_devices()
