"""Tests of vitjax/progress.py with a fake clock."""

from absl.testing import absltest

from tests import test_util  # noqa: F401
from vitjax import progress as progress_lib


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ProgressTest(absltest.TestCase):
    def test_rates_eta_and_rate_limited_lines(self):
        clock = FakeClock()
        lines = []
        meter = progress_lib.Progress(
            total=1000,
            unit="images",
            per_item={"patches": 196},
            name="extract",
            interval_s=10.0,
            clock=clock,
            log_fn=lines.append,
        )
        for _ in range(5):  # 5 updates within 2.5 seconds: no line yet
            clock.now += 0.5
            meter.update(40)
        self.assertEqual(lines, [])
        clock.now += 7.5  # 10 s elapsed, 250 images done
        meter.update(50)
        self.assertLen(lines, 1)
        self.assertAlmostEqual(meter.rate(), 25.0)
        self.assertAlmostEqual(meter.eta(), 30.0)
        self.assertEqual(
            lines[0],
            "extract: 250/1000 images, 25.0 images/s, 4900 patches/s, elapsed 0:10, ETA 0:30",
        )
        clock.now += 1.0
        meter.update(10)
        self.assertLen(lines, 1)
        final = meter.close()
        self.assertLen(lines, 2)
        self.assertStartsWith(final, "extract: 260/1000 images")

    def test_unknown_total_and_durations(self):
        clock = FakeClock()
        meter = progress_lib.Progress(total=None, clock=clock, log_fn=lambda _: None)
        clock.now += 2.0
        meter.update(4)
        self.assertNotIn("ETA", meter.message())
        self.assertEqual(progress_lib.format_duration(3725), "1:02:05")
        self.assertEqual(progress_lib.format_duration(float("nan")), "?")


if __name__ == "__main__":
    absltest.main()
