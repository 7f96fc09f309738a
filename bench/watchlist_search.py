"""Latency of one 1:N watchlist screen over N random unit 192-d voiceprints: exact vs HNSW.

    PYTHONPATH=. python bench/watchlist_search.py [--sizes 10000 100000 1000000] [--queries 200]

For each N: p50/p95 of a single-probe search (k = 5) by the exact float32 matrix product and by the
faiss HNSW index `VectorIndex` switches to above `search_exact_max`, the HNSW build time, and its
recall against the exact oracle: the fraction of exact top-5 neighbours at cosine >= 0.45 that HNSW
also returns, for probes planted at cosine 0.5-0.9 from a stored vector (a listed voice calling
again). Random vectors are the hard case for a graph index: no cluster structure to exploit.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from voiceid.fraud.index import VectorIndex

DIM = 192


def units(rng: np.random.Generator, n: int, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), DIM), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def planted(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    cos = rng.uniform(0.5, 0.9, len(base)).astype(np.float32)[:, None]
    noise = rng.standard_normal(base.shape, dtype=np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cos * base + np.sqrt(1 - cos**2) * noise).astype(np.float32)


def timed(fn, probes: np.ndarray) -> tuple[float, float, list]:
    results, times = [], []
    for probe in probes:
        start = time.perf_counter()
        results.append(fn(probe, 5)[0])
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print("| N | exact p50 ms | exact p95 ms | HNSW build s | HNSW p50 ms | HNSW p95 ms | HNSW recall |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        rng = np.random.default_rng(n)
        x = units(rng, n)
        probes = planted(rng, x[rng.choice(n, args.queries, replace=False)])
        index = VectorIndex(DIM, exact_max=0)  # every search() goes to HNSW; exact_search() is the oracle
        index.add([str(i) for i in range(n)], x)
        del x
        e50, e95, exact = timed(index.exact_search, probes)
        start = time.perf_counter()
        index.search(probes[0], 1)  # builds the graph
        build = time.perf_counter() - start
        h50, h95, approx = timed(index.search, probes)
        wanted = found = 0
        for e, a in zip(exact, approx, strict=True):
            hits = {nb.key for nb in e if nb.score >= 0.45}
            wanted += len(hits)
            found += len(hits & {nb.key for nb in a})
        print(
            f"| {n:,} | {e50:.2f} | {e95:.2f} | {build:.1f} | {h50:.2f} | {h95:.2f} | {found / wanted:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
