"""Extraction run as a separate process, launched by tests/extract_test.py and distributed_test.py.

Modes:
  extract      one process; `--delay` seconds of sleep per image read so the parent can SIGKILL
               it half-way through.
  distributed  one of `--num_processes` processes joined by `jax.distributed.initialize` on
               127.0.0.1:`--port` with gloo CPU collectives; all write the same store.

Both extract the fixed test dataset (`make_images`) with the fixed test model (`make_model`) and
the fixed arguments (`EXTRACT_KWARGS`), so a test can build the reference store in its own process.

Usage:
  python -m tests.extract_worker --mode=extract --store=/tmp/s --delay=0.05
  python -m tests.extract_worker --mode=distributed --store=/tmp/s --process_id=0 \
      --num_processes=2 --port=12345 --devices=4
"""

import argparse
import os
import sys
import time

NUM_IMAGES = 44
IMAGE_SIZE = (32, 48)
KEY = {"dataset": "random-uint8", "seed": 0, "split": "test"}
EXTRACT_KWARGS = dict(layers=(0, -1), batch_size=8, with_cls=True, dtype="float16")


def make_images(n: int = NUM_IMAGES):
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (n, *IMAGE_SIZE, 3), dtype=np.uint8)


def make_model(family: str = "dino"):
    """(module, params, spec) of the tiny random test model (seeded, identical in every process)."""
    from vitjax import models

    return models.random_model(family, "ti", seed=0, depth=2)


class SlowSource:
    """An ImageSource over an array that sleeps per image, so a run can be killed half-way."""

    def __init__(self, images, delay: float):
        self.images = images
        self.delay = delay

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        time.sleep(self.delay)
        return self.images[index]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("extract", "distributed"), required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--devices", type=int, default=8)
    args = parser.parse_args(argv)

    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import jax

    from tests import test_util  # noqa: F401  (after XLA_FLAGS: keeps our device count)

    if args.mode == "distributed":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=120,
        )
    from vitjax import extract
    from vitjax import store as store_lib

    module, params, spec = make_model()
    images = make_images()
    source = SlowSource(images, args.delay) if args.delay else images
    feats = extract.extract(
        module,
        params,
        spec,
        source,
        store=store_lib.FeatureStore(args.store),
        key=KEY,
        num_workers=1,
        prefetch=1,
        progress_interval_s=0.0,
        **EXTRACT_KWARGS,
    )
    print(
        f"worker {args.process_id}/{jax.process_count()} devices={jax.device_count()} "
        f"done {feats.entry_dir}",
        flush=True,
    )
    if args.mode == "distributed":
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
