"""Blocked exact k-NN (vitjax.knn.search) against faiss-cpu and sklearn brute force.

Full size (the paper's scale: 20,000 query patches against 100,000 database patches, ViT-B width):
  python benchmarks/bench_knn.py
Smoke run:
  python benchmarks/bench_knn.py --quick

For each method: wall seconds (best of --repeats, after a warm-up call that also compiles), ratio to
faiss, achieved GFLOP/s for the 2*Q*N*D multiply-adds as a fraction of the machine's measured
float32 matmul rate, peak RSS growth, and agreement of the neighbour indices with faiss.

The cost of vitjax's finiteness check (NaN / inf rows are errors; counted on the device in the
same compiled step as the scores) is measured in the same run: vitjax with and without it,
calls alternated so that load on a shared machine affects both alike, and the check's reduction
alone, timed over every database chunk the search reads (an upper bound: in the search it is fused
into the step that computes the scores).
Size used for the figure in BUILD_NOTES.md (finishes in under 2 minutes on 2 cores):
  python benchmarks/bench_knn.py --queries=2000 --database=20000 --repeats=5 --skip_sklearn
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from vitjax import knn  # noqa: E402


def sklearn_dot_topk(queries: np.ndarray, database: np.ndarray, k: int, chunk: int = 2048):
    """Chunked sklearn linear_kernel + argpartition (NearestNeighbors has no inner product)."""
    from sklearn.metrics.pairwise import linear_kernel

    scores = np.empty((len(queries), k), np.float32)
    idx = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), chunk):
        block = linear_kernel(queries[start : start + chunk], database)
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        idx[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        scores[start : start + chunk] = np.take_along_axis(part_scores, order, axis=1)
    return scores, idx


def sklearn_l2_topk(queries: np.ndarray, database: np.ndarray, k: int):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(database)
    dist, idx = nn.kneighbors(queries)
    return -(dist.astype(np.float32) ** 2), idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--database", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--metric", choices=("dot", "l2"), default="dot")
    parser.add_argument("--query_block", type=int, default=knn.DEFAULT_QUERY_BLOCK)
    parser.add_argument("--db_block", type=int, default=knn.DEFAULT_DB_BLOCK)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip_sklearn", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.database, args.dim, args.repeats = 2_000, 16_384, 256, 1

    import faiss

    print(
        common.machine_header(), f"faiss {faiss.__version__} threads={faiss.omp_get_max_threads()}"
    )
    rates = common.matmul_gflops(1024 if args.quick else 2048)
    peak_rate = max(rates.values())
    print(
        f"float32 matmul rate: numpy {rates['numpy']:.1f} GFLOP/s, jax {rates['jax']:.1f} GFLOP/s"
    )

    rng = np.random.default_rng(0)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    database = rng.standard_normal((args.database, args.dim), dtype=np.float32)
    flops = 2.0 * args.queries * args.database * args.dim
    print(
        f"Q={args.queries} N={args.database} D={args.dim} k={args.k} metric={args.metric} "
        f"blocks=({args.query_block}, {args.db_block}); {flops / 1e12:.2f} TFLOP"
    )

    def run_vitjax():
        return knn.search(
            queries,
            database,
            k=args.k,
            metric=args.metric,
            query_block=args.query_block,
            db_block=args.db_block,
        )

    def run_vitjax_unchecked():
        knn._CHECK_FINITE = False
        try:
            return run_vitjax()
        finally:
            knn._CHECK_FINITE = True

    def run_faiss():
        index = faiss.IndexFlatL2(args.dim) if args.metric == "l2" else faiss.IndexFlatIP(args.dim)
        index.add(database)
        scores, idx = index.search(queries, args.k)
        return (-scores if args.metric == "l2" else scores), idx

    def run_sklearn():
        if args.metric == "l2":
            return sklearn_l2_topk(queries, database, args.k)
        return sklearn_dot_topk(queries, database, args.k)

    methods = [
        ("vitjax.knn", run_vitjax),
        ("vitjax.knn, no finite check", run_vitjax_unchecked),
        ("faiss IndexFlat", run_faiss),
    ]
    if not args.skip_sklearn:
        methods.append(("sklearn brute", run_sklearn))

    results = {}
    for name, fn in methods:
        with common.PeakRSS() as memory:
            start = time.perf_counter()
            fn()  # warm-up (compiles for vitjax)
            first = time.perf_counter() - start
            seconds, out = common.best_time(fn, args.repeats)
        results[name] = (seconds, first, memory.delta_mb, out)

    faiss_seconds, _, _, (faiss_scores, faiss_idx) = results["faiss IndexFlat"]
    rows = []
    for name, (seconds, first, mem_mb, (scores, idx)) in results.items():
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "first_call_s": first,
                "x_faiss": seconds / faiss_seconds,
                "GFLOP/s": flops / seconds / 1e9,
                "frac_matmul_peak": flops / seconds / 1e9 / peak_rate,
                "peak_rss_MiB": mem_mb,
                "idx_rows_equal_faiss": float(np.mean(np.all(idx == faiss_idx, axis=1))),
                "max_score_diff": float(np.max(np.abs(scores - faiss_scores))),
            }
        )
    print(common.format_table(rows))
    # Alternate checked and unchecked calls (both compiled above) for the relative cost.
    checked, unchecked = [], []
    for _ in range(max(args.repeats, 3)):
        for times, fn in ((checked, run_vitjax), (unchecked, run_vitjax_unchecked)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    print(
        f"finiteness check: {min(checked):.3f} s with, {min(unchecked):.3f} s without (best of "
        f"{len(checked)} alternated calls): {100 * (min(checked) / min(unchecked) - 1):+.1f}%"
    )
    import jax
    import jax.numpy as jnp

    count = jax.jit(lambda x: jnp.sum(jnp.any(~jnp.isfinite(x), axis=1)))
    chunk = jnp.asarray(database[: min(knn.DEFAULT_CHUNK_ROWS, args.database)])
    calls = -(-args.database // chunk.shape[0]) * -(-args.queries // knn.DEFAULT_QUERY_CHUNK_ROWS)
    count(chunk).block_until_ready()
    best = float("inf")
    for _ in range(max(args.repeats, 3)):
        start = time.perf_counter()
        for _ in range(calls):
            count(chunk).block_until_ready()
        best = min(best, time.perf_counter() - start)
    print(
        f"check reduction alone: {best:.4f} s for {calls} chunk(s) of {chunk.shape[0]} rows = "
        f"{100 * best / min(checked):.2f}% of the checked search"
    )
    q_bytes = args.queries * args.dim * 4
    print(
        f"(queries alone are {q_bytes / 2**20:.0f} MiB; database {database.nbytes / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
