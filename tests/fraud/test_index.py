"""VectorIndex: the exact matrix product is the oracle for the faiss HNSW path."""

from __future__ import annotations

import numpy as np
import pytest

from voiceid.fraud.index import VectorIndex

DIM = 192


def random_units(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def planted(rng: np.random.Generator, base: np.ndarray, cosines: np.ndarray) -> np.ndarray:
    """Probes at exactly `cosines` from `base` rows (a fraudster's new call vs their flagged one)."""
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cosines[:, None] * base + np.sqrt(1 - cosines[:, None] ** 2) * noise).astype(np.float32)


def test_exact_search_matches_brute_force_and_skips_removed():
    rng = np.random.default_rng(1)
    x = random_units(rng, 500)
    index = VectorIndex(DIM)
    index.add([f"k{i}" for i in range(500)], x)
    probe = random_units(rng, 1)
    brute = np.argsort(-(x @ probe[0]))[:5]
    got = index.search(probe, 5)[0]
    assert [n.key for n in got] == [f"k{i}" for i in brute]
    assert got[0].score == pytest.approx(float(x[brute[0]] @ probe[0]), abs=1e-5)
    index.remove([f"k{brute[0]}"])
    assert index.search(probe, 1)[0][0].key == f"k{brute[1]}"
    assert len(index) == 499 and f"k{brute[0]}" not in index


def test_replacing_a_key_and_compaction_keep_results_consistent():
    rng = np.random.default_rng(2)
    x = random_units(rng, 100)
    index = VectorIndex(DIM)
    index.add([str(i) for i in range(100)], x)
    index.add(["7"], x[8])  # replace: "7" now carries 8's vector
    assert {n.key for n in index.search(x[8], 2)[0]} == {"7", "8"}
    index.remove([str(i) for i in range(50)])  # past a quarter tombstoned: compacts
    assert len(index) == 50
    assert index.search(x[60], 1)[0][0].key == "60"
    assert all(int(n.key) >= 50 for n in index.search(x[3], 10)[0])


def test_hnsw_recall_against_the_exact_oracle():
    """Above exact_max the graph answers; it must find >= 99 % of the exact above-threshold hits."""
    rng = np.random.default_rng(3)
    n = 20_000
    x = random_units(rng, n)
    index = VectorIndex(DIM, exact_max=1_000)
    keys = [f"v{i}" for i in range(n)]
    index.add(keys, x)
    assert index.uses_approximate
    sources = rng.choice(n, 300, replace=False)
    probes = planted(rng, x[sources], rng.uniform(0.5, 0.9, 300).astype(np.float32))
    exact = index.exact_search(probes, 5)
    approx = index.search(probes, 5)
    wanted = found = 0
    for e, a in zip(exact, approx, strict=True):
        hits = {nb.key for nb in e if nb.score >= 0.45}
        wanted += len(hits)
        found += len(hits & {nb.key for nb in a})
    assert wanted >= 300
    assert found / wanted >= 0.99
    # Deletions are honoured inside the graph search (tombstones filtered by an ID selector).
    index.remove([keys[sources[0]]])
    assert keys[sources[0]] not in {nb.key for nb in index.search(probes[0], 5)[0]}
    # Incremental add after the graph was built is searchable.
    index.add(["late"], probes[1])
    assert index.search(probes[1], 1)[0][0].key == "late"


def test_shape_errors():
    index = VectorIndex(DIM)
    with pytest.raises(ValueError):
        index.add(["a", "b"], np.ones((1, DIM)))
    with pytest.raises(ValueError):
        index.add(["a", "a"], np.ones((2, DIM)))
    assert index.search(np.ones(DIM), 3) == [[]]
