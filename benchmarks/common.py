"""Helpers shared by the benchmarks: machine matmul rate, peak memory, timing and tables."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Context manager sampling the RSS in a thread; `.delta_mb` = peak minus RSS at entry.

    Catches memory that tracemalloc cannot see (XLA and BLAS buffers).
    """

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.start_mb = self.peak_mb = current_rss_mb()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb


def best_time(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Minimum wall time over `repeats` calls (results blocked on) and the last result."""
    import jax

    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best, result


def matmul_gflops(n: int = 2048, repeats: int = 3) -> dict[str, float]:
    """The machine's float32 matmul rate (GFLOP/s) for n x n x n products, numpy and jax."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    _ = a @ b  # warm up BLAS threads
    numpy_s, _ = best_time(lambda: a @ b, repeats)
    matmul = jax.jit(jnp.matmul)
    a_dev, b_dev = jnp.asarray(a), jnp.asarray(b)
    jax.block_until_ready(matmul(a_dev, b_dev))
    jax_s, _ = best_time(lambda: matmul(a_dev, b_dev), repeats)
    return {"numpy": flops / numpy_s / 1e9, "jax": flops / jax_s / 1e9}


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Renders dict rows (same keys) as an aligned plain-text table."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[cell(row.get(key, "")) for key in keys] for row in rows]
    widths = [max(len(key), *(len(c[i]) for c in cells)) for i, key in enumerate(keys)]
    lines = ["  ".join(key.ljust(w) for key, w in zip(keys, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def machine_header() -> str:
    """One line naming the JAX backend, devices and CPU count."""
    import jax

    devices = jax.devices()
    return (
        f"jax {jax.__version__} backend={jax.default_backend()} devices={len(devices)} "
        f"({devices[0].device_kind}) cpus={os.cpu_count()}"
    )
