"""VectorIndex snapshots: a loaded index answers like the live one, and erased rows are zero bytes."""

from __future__ import annotations

import numpy as np
import pytest

from voiceid.fraud.index import SnapshotFormatError, VectorIndex

DIM = 192


def units(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def built(n: int = 200, exact_max: int = 50) -> tuple[VectorIndex, np.ndarray]:
    vectors = units(1, n)
    index = VectorIndex(DIM, exact_max=exact_max)
    for start in range(0, n, 40):  # incremental, as the worker's cache grows
        index.add([f"k{i}" for i in range(start, min(n, start + 40))], vectors[start : start + 40])
    return index, vectors


def test_a_loaded_snapshot_answers_exactly_like_the_live_index():
    index, vectors = built()
    index.remove(["k3", "k77"])
    probes = np.concatenate([vectors[:20] + 0.05 * units(2, 20), units(3, 20)])
    live = index.search(probes, 5)  # graph search: 198 live > exact_max 50
    assert index.uses_approximate
    loaded, meta = VectorIndex.from_snapshot(index.to_snapshot({"refs": {"k1": "alice"}}), exact_max=50)
    assert meta == {"refs": {"k1": "alice"}}
    assert len(loaded) == 198 and "k3" not in loaded and "k5" in loaded
    assert loaded._graph is not None and loaded._graph.ntotal == 200  # the graph came with it: no build
    assert loaded.search(probes, 5) == live
    assert loaded.exact_search(probes, 5) == index.exact_search(probes, 5)
    # It keeps growing incrementally and keeps deleting, like the live one.
    extra = units(4, 10)
    loaded.add([f"new{i}" for i in range(10)], extra)
    loaded.remove(["k5"])
    found = loaded.search(extra, 1)
    assert [row[0].key for row in found] == [f"new{i}" for i in range(10)]
    assert all(n.key != "k5" for n in loaded.search(vectors[5], 10)[0])


def test_removed_vectors_are_zero_in_memory_and_in_the_snapshot_bytes():
    index, _ = built()
    index.build_graph()  # the graph holds its own copy of every vector
    gone, kept, replaced = index.vectors(["k10", "k11", "k12"])  # as stored (normalised)
    index.remove(["k10"])
    index.add(["k12"], units(9, 1))  # a replaced vector is overwritten too
    payload = index.to_snapshot()
    assert kept.astype("<f4").tobytes() in payload  # the check can fail: live rows are there verbatim
    assert gone.astype("<f4").tobytes() not in payload
    assert replaced.astype("<f4").tobytes() not in payload
    loaded, _ = VectorIndex.from_snapshot(payload, exact_max=50)
    assert not loaded._matrix[10].any() and not loaded._matrix[12].any()


def test_a_malformed_payload_is_refused():
    index, _ = built(60)
    payload = bytearray(index.to_snapshot())
    with pytest.raises(SnapshotFormatError):
        VectorIndex.from_snapshot(b"not a snapshot")
    head = payload.index(b'"rows":') + len('"rows":')
    payload[head : head + 2] = b"61"  # header and graph disagree
    with pytest.raises(SnapshotFormatError):
        VectorIndex.from_snapshot(payload)
