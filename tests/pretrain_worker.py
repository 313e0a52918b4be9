"""A pretraining run as a separate process, launched (and SIGKILLed) by tests/pretrain_test.py.

It trains `config()` (the tiny MAE of configs/pretrain_mae.py:test) with `--delay` seconds of sleep
per host batch, so the parent can kill it between two checkpoints.

Usage:
  python -m tests.pretrain_worker --workdir=/tmp/w --delay=0.3
"""

import argparse
import os
import sys
import time


def config():
    """The tiny MAE pretraining config every process of the test uses."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from configs import pretrain_mae

    c = pretrain_mae.get_config("test")
    c.train.steps = 8
    return c


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--devices", type=int, default=8)
    args = parser.parse_args()
    # The same simulated devices as the test process (tests/conftest.py), so the data-parallel
    # reductions, and hence the parameters, are the same in both.
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    from vitjax.pretrain import data as data_lib
    from vitjax.pretrain import train

    real = data_lib.mae_batch

    def slow(*a, **k):
        time.sleep(args.delay)
        return real(*a, **k)

    data_lib.mae_batch = slow
    train.train(config(), args.workdir)


if __name__ == "__main__":
    main()
