"""Rate-limited progress logging: items/s, derived units/s and ETA for long loops.

Examples:
  >>> progress = Progress(total=1000, unit="images", per_item={"patches": 196}, name="extract")
  >>> for _ in range(10):
  ...     progress.update(100)
  >>> progress.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from absl import logging


def format_duration(seconds: float) -> str:
    """Formats seconds as `H:MM:SS` (or `M:SS` under an hour); '?' when unknown."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts finished items and logs throughput and ETA at most once per `interval_s`.

    Attributes:
      total: expected number of items (None when unknown: no ETA).
      done: items finished so far.
    """

    def __init__(
        self,
        total: int | None,
        unit: str = "items",
        per_item: Mapping[str, float] | None = None,
        name: str = "",
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        log_fn: Callable[[str], None] | None = None,
    ):
        """Starts the clock.

        Args:
          total: number of items the loop will finish, or None if unknown.
          unit: name of one item, used in the log line ("images").
          per_item: other units derived from items, e.g. {"patches": 196}: logs patches/s too.
          name: prefix of every log line.
          interval_s: minimum seconds between two log lines (the last update always may log
            through `close`).
          clock: monotonic time source in seconds (injectable for tests).
          log_fn: where lines go; absl `logging.info` by default.
        """
        self.total = total
        self.unit = unit
        self.per_item = dict(per_item or {})
        self.name = name
        self.interval_s = interval_s
        self._clock = clock
        self._log = log_fn or (lambda msg: logging.info("%s", msg))
        self._start = clock()
        self._last_log = self._start
        self.done = 0
        self.lines: list[str] = []

    @property
    def elapsed(self) -> float:
        """Seconds since construction."""
        return self._clock() - self._start

    def rate(self) -> float:
        """Items per second so far (0 before any time has passed)."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float:
        """Seconds left at the current rate; nan when unknown."""
        rate = self.rate()
        if self.total is None or rate <= 0:
            return float("nan")
        return max(self.total - self.done, 0) / rate

    def timing(self) -> str:
        """'elapsed M:SS, ETA M:SS' ('ETA ?' before any progress; no ETA without a total)."""
        text = f"elapsed {format_duration(self.elapsed)}"
        return text if self.total is None else f"{text}, ETA {format_duration(self.eta())}"

    def message(self) -> str:
        """The current status line."""
        rate = self.rate()
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        parts = [f"{count} {self.unit}", f"{rate:.1f} {self.unit}/s"]
        parts += [f"{rate * factor:.0f} {unit}/s" for unit, factor in self.per_item.items()]
        parts.append(self.timing())
        prefix = f"{self.name}: " if self.name else ""
        return prefix + ", ".join(parts)

    def _emit(self) -> None:
        line = self.message()
        self.lines.append(line)
        self._log(line)
        self._last_log = self._clock()

    def update(self, n: int = 1) -> None:
        """Records `n` more finished items; logs if `interval_s` has passed since the last line."""
        self.done += n
        if self._clock() - self._last_log >= self.interval_s:
            self._emit()

    def close(self) -> str:
        """Logs the final line and returns it."""
        self._emit()
        return self.lines[-1]
