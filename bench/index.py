"""Vector index at scale: build time, memory, latency and recall against exact search.

For each N in --sizes, N synthetic unit vectors of --dim floats are indexed with the
index the shipped `[index]` settings choose (index/index_factory.py), and held-out
queries measure:
- build time (training on a sample, adding everything, nprobe tuning), save/load time;
- index bytes (the saved files, i.e. what the loaded index holds in memory);
- p50/p99 latency of single-query searches (k=100) at 1 and at all OpenMP threads;
- recall@10 and recall@100 against exact search (ties count as hits) on held-out queries,
  with nprobe as tuned at build (on indexed vectors) and re-tuned on a second, disjoint
  set of held-out queries (`VectorIndex.tune(..., queries=...)`);
- exact single-query latency, and the speed ratio exact / index.

Data: like real embeddings, clustered and anisotropic. --clusters centres around a shared
direction (--shared; CLIP image embeddings sit in a narrow cone), cluster sizes Zipf-like,
members = centre + noise whose covariance has a power-law spectrum (--spectrum, in a
random basis), all L2-normalised; queries are held-out perturbations of data points.
`--spectrum 0 --shared 0` gives isotropic gaussian clusters, a harder, less realistic case.

Run:  .venv/bin/python bench/index.py                       # 1e4, 1e5, 1e6 (minutes)
      .venv/bin/python bench/index.py --sizes 10000,100000  # a subset
"""

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

# This file is bench/index.py: put the repository root first so that `index` means the
# package, not this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import IndexSettings
from index.index_factory import spec_from_settings
from index.vector_index import VectorIndex, knn_recall

log = logging.getLogger("bench.index")


def clustered_unit_vectors(
    n: int,
    dim: int,
    nq: int,
    *,
    clusters: int,
    spectrum: float,
    shared: float,
    query_noise: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) data and (nq, dim) held-out queries, float32, unit norm (see module)."""
    rng = np.random.default_rng(seed)
    variances = np.arange(1, dim + 1, dtype=np.float64) ** -spectrum
    variances /= variances.sum()  # E|noise|^2 = 1
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))  # (dim, dim) random rotation
    colour = (np.sqrt(variances)[:, None] * basis.T).astype(np.float32)  # (dim, dim)

    def noise(rows: int) -> np.ndarray:
        return rng.standard_normal((rows, dim), dtype=np.float32) @ colour  # (rows, dim)

    axis = rng.standard_normal(dim).astype(np.float32)
    axis /= np.linalg.norm(axis)
    centres = shared * axis + noise(clusters)  # (clusters, dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.5
    members = rng.choice(clusters, size=n, p=weights / weights.sum())  # (n,)
    spread = rng.uniform(0.5, 1.0, clusters).astype(np.float32)  # (clusters,)
    data = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        part = members[start : start + 65536]
        data[start : start + len(part)] = centres[part] + spread[part, None] * noise(len(part))
    faiss.normalize_L2(data)
    picks = rng.choice(n, size=nq, replace=False)
    queries = (data[picks] + query_noise * noise(nq)).astype(np.float32)  # (nq, dim)
    faiss.normalize_L2(queries)
    return data, queries


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def single_query_latency(
    search: object, queries: np.ndarray, threads: int
) -> tuple[list[float], list[float]]:
    """Wall and calling-thread CPU seconds per search(query), one query at a time.

    With one OpenMP thread the search runs in the calling thread, so its CPU time is the
    latency without waiting for cores taken by other processes.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        wall, cpu = [], []
        for row in range(len(queries)):
            start, start_cpu = time.perf_counter(), time.thread_time()
            search(queries[row : row + 1])  # type: ignore[operator]
            wall.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
        return wall, cpu
    finally:
        faiss.omp_set_num_threads(previous)


@dataclass
class Row:
    n: int
    factory: str
    tuned_on: str
    nprobe: int | None
    k_factor: float
    build_s: float
    save_s: float
    load_s: float
    index_mb: float
    raw_mb: float
    recall10: float
    recall100: float
    p50: dict[int, float]
    p99: dict[int, float]
    exact_p50: dict[int, float]
    cpu_p50: float  # one thread, calling-thread CPU time
    exact_cpu_p50: float


def measure(
    index: VectorIndex,
    data: np.ndarray,
    queries: np.ndarray,
    true_scores: np.ndarray,
    args: argparse.Namespace,
    thread_counts: list[int],
) -> tuple[dict[int, float], dict[int, float], dict[int, float], float]:
    """Recall@10/@100 on `queries` and single-query latency percentiles per thread count."""
    k = 100
    _, found = index.search(queries, k)
    recalls = {}
    for depth in (10, 100):
        exact = [
            data[(row_ids[:depth] - 1) // 2] @ queries[row] for row, row_ids in enumerate(found)
        ]
        recalls[depth] = knn_recall(exact, true_scores[:, depth - 1], depth)
    latency_queries = queries[: args.latency_queries]
    p50: dict[int, float] = {}
    p99: dict[int, float] = {}
    for threads in thread_counts:
        index.search_threads = threads
        index.search(latency_queries[:5], k)  # warm-up
        wall, cpu = single_query_latency(lambda q: index.search(q, k), latency_queries, threads)
        p50[threads], p99[threads] = percentiles_ms(wall)
        if threads == 1:
            cpu_p50 = percentiles_ms(cpu)[0]
        index.search_threads = 0
        print(
            f"   {threads} thread(s): p50 {p50[threads]:.2f} ms, p99 {p99[threads]:.2f} ms; "
            f"recall@10 {recalls[10]:.3f}, recall@100 {recalls[100]:.3f}",
            flush=True,
        )
    return recalls, p50, p99, cpu_p50


def run_size(n: int, args: argparse.Namespace, thread_counts: list[int]) -> list[Row]:
    k = 100
    t0 = time.perf_counter()
    data, all_queries = clustered_unit_vectors(
        n,
        args.dim,
        args.queries + args.tune_queries,
        clusters=args.clusters,
        spectrum=args.spectrum,
        shared=args.shared,
        query_noise=args.query_noise,
        seed=args.seed,
    )
    queries, tune_queries = all_queries[: args.queries], all_queries[args.queries :]
    print(f"\n== N={n}: data generated in {time.perf_counter() - t0:.1f}s", flush=True)
    t0 = time.perf_counter()
    true_scores, _ = faiss.knn(queries, data, k, metric=faiss.METRIC_INNER_PRODUCT)  # (nq, k)
    print(f"   exact ground truth for {len(queries)} queries: {time.perf_counter() - t0:.1f}s")
    exact_p50: dict[int, float] = {}
    exact_cpu_p50 = 0.0
    for threads in thread_counts:
        samples, cpu = single_query_latency(
            lambda q: faiss.knn(q, data, k, metric=faiss.METRIC_INNER_PRODUCT),
            queries[: args.exact_queries],
            threads,
        )
        exact_p50[threads] = percentiles_ms(samples)[0]
        if threads == 1:
            exact_cpu_p50 = percentiles_ms(cpu)[0]
        print(f"   exact search, {threads} thread(s): p50 {exact_p50[threads]:.1f} ms")
    ids = np.arange(n, dtype=np.int64) * 2 + 1  # catalog-like ids, not positions

    spec = spec_from_settings(n, args.dim, IndexSettings(factory=args.factory))
    t0 = time.perf_counter()
    index = VectorIndex.build(ids, data, spec, encoder="bench", device=args.device)
    build_s = time.perf_counter() - t0
    print(
        f"   built {spec.factory} in {build_s:.1f}s (tuned on indexed vectors): "
        f"nprobe {index.nprobe}, k-factor {index.refine_k_factor:g}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t0 = time.perf_counter()
        manifest = index.save(Path(tmp))
        save_s = time.perf_counter() - t0
        del index
        t0 = time.perf_counter()
        index = VectorIndex.load(Path(tmp), "bench", args.dim, device=args.device)
        load_s = time.perf_counter() - t0
    common: dict[str, Any] = {
        "n": n,
        "factory": spec.factory,
        "save_s": save_s,
        "load_s": load_s,
        "index_mb": manifest.total_bytes / 2**20,
        "raw_mb": data.nbytes / 2**20,
        "exact_p50": exact_p50,
        "exact_cpu_p50": exact_cpu_p50,
    }
    rows = []
    recalls, p50, p99, cpu_p50 = measure(index, data, queries, true_scores, args, thread_counts)
    rows.append(
        Row(
            tuned_on="indexed" if index.nprobe is not None else "-",
            nprobe=index.nprobe,
            k_factor=index.refine_k_factor,
            build_s=build_s,
            recall10=recalls[10],
            recall100=recalls[100],
            p50=p50,
            p99=p99,
            cpu_p50=cpu_p50,
            **common,
        )
    )
    if index.nprobe is not None and args.tune_queries:
        t0 = time.perf_counter()
        index.tune(ids, data, replace(spec, nprobe=None), queries=tune_queries)
        tune_s = time.perf_counter() - t0
        print(
            f"   re-tuned on {len(tune_queries)} held-out queries in {tune_s:.1f}s: "
            f"nprobe {index.nprobe}, k-factor {index.refine_k_factor:g}",
            flush=True,
        )
        recalls, p50, p99, cpu_p50 = measure(index, data, queries, true_scores, args, thread_counts)
        rows.append(
            Row(
                tuned_on="queries",
                nprobe=index.nprobe,
                k_factor=index.refine_k_factor,
                build_s=tune_s,
                recall10=recalls[10],
                recall100=recalls[100],
                p50=p50,
                p99=p99,
                cpu_p50=cpu_p50,
                **common,
            )
        )
    return rows


def print_table(rows: list[Row], thread_counts: list[int]) -> None:
    print("\nindex choice (shipped [index] settings unless --factory); tuned on: indexed =")
    print("build-time tuning on indexed vectors, queries = re-tuned on held-out queries")
    print("(build s for those rows: the re-tuning time); recall on other held-out queries")
    print(
        f"{'N':>9}  {'factory':<34} {'tuned on':>8} {'nprobe':>6} {'kf':>4} {'build s':>8} "
        f"{'save s':>6} {'load s':>6} {'index MB':>9} {'f32 MB':>7} {'R@10':>6} {'R@100':>6}"
    )
    for r in rows:
        print(
            f"{r.n:>9}  {r.factory:<34} {r.tuned_on:>8} "
            f"{r.nprobe if r.nprobe is not None else '-':>6} {r.k_factor:>4g} {r.build_s:>8.1f} "
            f"{r.save_s:>6.1f} {r.load_s:>6.1f} {r.index_mb:>9.1f} {r.raw_mb:>7.0f} "
            f"{r.recall10:>6.3f} {r.recall100:>6.3f}"
        )
    print("\nsingle-query latency, k=100 (ms); speed = exact p50 / index p50 at equal threads")
    print(
        f"{'N':>9}  {'tuned on':>8} {'threads':>7} {'p50':>8} {'p99':>8} {'exact p50':>10} "
        f"{'speed':>8}"
    )
    for r in rows:
        for t in thread_counts:
            print(
                f"{r.n:>9}  {r.tuned_on:>8} {t:>7} {r.p50[t]:>8.2f} {r.p99[t]:>8.2f} "
                f"{r.exact_p50[t]:>10.1f} {r.exact_p50[t] / r.p50[t]:>7.1f}x"
            )
    print("\none thread, CPU time of the calling thread (insensitive to other processes)")
    print(f"{'N':>9}  {'tuned on':>8} {'cpu p50':>8} {'exact cpu p50':>14} {'speed':>8}")
    for r in rows:
        print(
            f"{r.n:>9}  {r.tuned_on:>8} {r.cpu_p50:>8.2f} {r.exact_cpu_p50:>14.1f} "
            f"{r.exact_cpu_p50 / r.cpu_p50:>7.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated N")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=3000)
    parser.add_argument("--spectrum", type=float, default=0.8, help="noise power-law exponent")
    parser.add_argument("--shared", type=float, default=0.7, help="weight of the shared axis")
    parser.add_argument("--query-noise", type=float, default=0.4)
    parser.add_argument("--queries", type=int, default=500, help="held-out recall queries")
    parser.add_argument("--tune-queries", type=int, default=200, help="held-out, for tuning")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=30)
    parser.add_argument("--factory", default="", help="faiss factory string (default: chosen)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--tmp", default=None, help="directory for the saved index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    cores = faiss.omp_get_max_threads()
    thread_counts = sorted({1, cores})
    print(
        f"faiss {faiss.__version__}, {cores} OpenMP threads, GPUs: {faiss.get_num_gpus()}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    rows = [row for n in sizes for row in run_size(n, args, thread_counts)]
    print_table(rows, thread_counts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\npeak RSS {peak_mb:.0f} MB; load average {os.getloadavg()[0]:.2f} at end "
        f"(above {cores} means other processes shared the cores)"
    )


if __name__ == "__main__":
    main()
