"""Helpers shared by the tests. Import this before anything touches a JAX backend."""

import os

NUM_CPU_DEVICES = 8


def setup_cpu_devices(n: int = NUM_CPU_DEVICES) -> None:
    """Ask JAX for `n` simulated CPU devices (idempotent; must run before the backend starts)."""
    flag = f"--xla_force_host_platform_device_count={n}"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + flag).strip()
    os.environ.setdefault("TIMM_FUSED_ATTN", "0")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


setup_cpu_devices()
