"""Softmax linear probe (vitjax.probes) against sklearn LogisticRegression on synthetic features.

Full size (patch-level scale: 200,000 training features of ViT-B width, 19 Cityscapes classes):
  python benchmarks/bench_probe.py
Smoke run:
  python benchmarks/bench_probe.py --quick

Reports training seconds, test accuracy and peak RSS growth for: the probe with its default
(lr x wd) sweep and retraining, the probe with one fixed setting, and sklearn's lbfgs
LogisticRegression.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from vitjax import probes  # noqa: E402


def synthetic(rng, means, n):
    labels = rng.integers(0, len(means), n)
    return (means[labels] + rng.standard_normal((n, means.shape[1]), dtype=np.float32)), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--train", type=int, default=200_000)
    parser.add_argument("--test", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--epochs", type=int, default=probes.ProbeConfig().epochs)
    parser.add_argument("--sklearn_max_iter", type=int, default=100)
    parser.add_argument("--skip_sklearn", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.dim, args.epochs = 20_000, 5_000, 128, 5

    print(common.machine_header())
    rng = np.random.default_rng(0)
    # Class separation scaled by 1/sqrt(D) keeps the task equally hard at every width.
    means = (rng.standard_normal((args.classes, args.dim)) * 3.6 / np.sqrt(args.dim)).astype(
        np.float32
    )
    train_x, train_y = synthetic(rng, means, args.train)
    test_x, test_y = synthetic(rng, means, args.test)
    print(
        f"train {train_x.shape} test {test_x.shape} classes={args.classes} epochs={args.epochs} "
        f"({train_x.nbytes / 2**20:.0f} MiB of training features)"
    )

    sweep = dataclasses.replace(probes.ProbeConfig(), epochs=args.epochs)
    single = dataclasses.replace(
        sweep, learning_rates=(3e-3,), weight_decays=(1e-4,), val_fraction=0.0
    )

    def fit_probe(config):
        def fit():
            probe = probes.train_softmax_probe(train_x, train_y, args.classes, config=config)
            return probe.predict_labels(test_x)

        return fit

    def fit_sklearn():
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=args.sklearn_max_iter)
        model.fit(train_x, train_y)
        return model.predict(test_x)

    grid = len(sweep.learning_rates) * len(sweep.weight_decays)
    methods = [
        (f"vitjax probe, sweep of {grid} + retrain", fit_probe(sweep)),
        ("vitjax probe, one setting", fit_probe(single)),
    ]
    if not args.skip_sklearn:
        methods.append(
            (f"sklearn LogisticRegression (lbfgs, {args.sklearn_max_iter} it)", fit_sklearn)
        )

    rows = []
    for name, fit in methods:
        with common.PeakRSS() as memory:
            start = time.perf_counter()
            pred = fit()
            seconds = time.perf_counter() - start
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "test_accuracy": float(np.mean(pred == test_y)),
                "peak_rss_MiB": memory.delta_mb,
            }
        )
    print(common.format_table(rows))


if __name__ == "__main__":
    main()
