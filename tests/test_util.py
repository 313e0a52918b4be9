"""Helpers shared by the tests. Import this before anything touches a JAX backend."""

import os
import shutil
import tempfile

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
