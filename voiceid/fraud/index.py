"""1:N cosine search over unit vectors: an exact matrix product, or a faiss HNSW graph for large sets.

Both paths sit behind one interface so callers (watchlist screening, duplicate detection, the
bench) do not care which one answers; the exact path is the oracle the approximate one is tested
against. Vectors are L2-normalised on the way in, so inner product is cosine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from voiceid.verify.vectors import l2_normalise

FloatArray = npt.NDArray[np.float32]

DEFAULT_EXACT_MAX = 100_000
# A snapshot payload: this marker, the header's length (8 bytes, little-endian), the JSON header (row
# keys, graph parameters, the caller's metadata), then faiss's serialisation of the HNSW graph, whose
# flat storage holds every row's vector (so the vectors are stored once, not twice).
SNAPSHOT_MAGIC = b"VIDX1\n"
_HEADER_LEN_BYTES = 8


class SnapshotFormatError(ValueError):
    """A snapshot payload that does not describe a consistent index (wrong marker, sizes, keys)."""


@dataclass(frozen=True)
class Neighbour:
    key: str
    score: float


class Searchable(Protocol):
    """What 1:N callers need: a VectorIndex, or a view of one without some key."""

    def __len__(self) -> int: ...

    def search(self, probes: npt.NDArray[np.floating], k: int) -> list[list[Neighbour]]: ...


class VectorIndex:
    """Keyed unit vectors with top-k cosine search.

    Up to `exact_max` live vectors every search is one float32 matrix product (at 100 k x 192 that
    is ~19 M multiply-adds, a few milliseconds of BLAS). Above it an HNSW inner-product graph
    answers instead: it supports incremental adds, which matters because the watchlist grows one
    entry at a time, and unlike IVF it keeps finding a planted near neighbour on unstructured data
    (see bench/watchlist_search.py; IVF-flat missed a fifth of cos-0.6 neighbours at nprobe 128).
    HNSW cannot delete, so removed rows are tombstoned, filtered out inside the
    graph search with an ID selector, and the graph is rebuilt once tombstones pass a quarter of
    the rows. Thread-safe: one lock around every mutation and search.
    """

    def __init__(
        self,
        dim: int,
        exact_max: int = DEFAULT_EXACT_MAX,
        # M 32 / efConstruction 80 / efSearch >= 512: on random unit vectors (bench/watchlist_search.py)
        # recall 1.000 at 100 k, where M 16 / 40 / 256 gave 0.915 (and 0.32 at 1 M).
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 512,
    ) -> None:
        self.dim = dim
        self.exact_max = exact_max
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._lock = threading.Lock()
        self._matrix: FloatArray = np.zeros((0, dim), dtype=np.float32)
        self._rows = 0  # rows of _matrix in use (live + tombstoned)
        self._keys: list[str | None] = []  # row -> key, None once removed
        self._row_of: dict[str, int] = {}
        self._graph: Any = None  # faiss.IndexHNSWFlat over rows [0, graph.ntotal)

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, key: object) -> bool:
        return key in self._row_of

    def live_keys(self) -> list[str]:
        """The live keys, in row order."""
        with self._lock:
            return list(self._row_of)

    @property
    def uses_approximate(self) -> bool:
        return len(self) > self.exact_max

    # --- mutation -------------------------------------------------------------------------

    def add(self, keys: Sequence[str], vectors: npt.NDArray[np.floating]) -> None:
        """Add (or replace) vectors under `keys`."""
        rows = l2_normalise(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        if rows.shape != (len(keys), self.dim):
            raise ValueError(f"expected {len(keys)} vectors of dimension {self.dim}, got {rows.shape}")
        if len(set(keys)) != len(keys):
            raise ValueError("keys must be unique within one add")
        with self._lock:
            for key in keys:
                self._tombstone(key)
            needed = self._rows + len(keys)
            if needed > len(self._matrix):
                # Amortised growth: doubling keeps one-at-a-time adds O(1) on average.
                grown = np.zeros((max(needed, 2 * len(self._matrix), 64), self.dim), dtype=np.float32)
                grown[: self._rows] = self._matrix[: self._rows]
                self._matrix = grown
            self._matrix[self._rows : needed] = rows
            for offset, key in enumerate(keys):
                self._keys.append(key)
                self._row_of[key] = self._rows + offset
            self._rows = needed
            self._maybe_compact()

    def remove(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._tombstone(key)
            self._maybe_compact()

    def _tombstone(self, key: str) -> None:
        row = self._row_of.pop(key, None)
        if row is not None:
            self._keys[row] = None
            # An erased (or replaced) voice must not survive in memory nor in the next snapshot: the
            # row is overwritten with zeros in the matrix and in the graph's own copy. The graph
            # still navigates through the node; the ID selector keeps it out of the results.
            self._matrix[row] = 0.0
            graph = self._graph
            if graph is not None and row < graph.ntotal:
                self._graph_vectors(graph)[row] = 0.0

    def _graph_vectors(self, graph: Any) -> FloatArray:
        """A writable view of the vectors inside the graph's flat storage (no copy)."""
        import faiss

        storage: Any = faiss.downcast_index(graph.storage)
        ntotal = int(graph.ntotal)
        flat: FloatArray = faiss.rev_swig_ptr(storage.get_xb(), ntotal * self.dim)
        return flat.reshape(ntotal, self.dim)

    def _maybe_compact(self) -> None:
        dead = self._rows - len(self._row_of)
        if dead and dead * 4 > self._rows:
            live = [row for row in range(self._rows) if self._keys[row] is not None]
            self._matrix = self._matrix[live].copy()
            self._keys = [self._keys[row] for row in live]
            self._row_of = {key: row for row, key in enumerate(self._keys) if key is not None}
            self._rows = len(live)
            self._graph = None  # row numbers changed; rebuilt lazily on the next approximate search

    def vectors(self, keys: Sequence[str]) -> FloatArray:
        """The stored (unit) vectors of `keys`, in order; KeyError for a key not held."""
        with self._lock:
            return self._matrix[[self._row_of[key] for key in keys]].copy()

    # --- search ---------------------------------------------------------------------------

    def search(self, probes: npt.NDArray[np.floating], k: int) -> list[list[Neighbour]]:
        """Top-`k` neighbours (best first) of each probe row."""
        queries = l2_normalise(np.atleast_2d(np.asarray(probes, dtype=np.float32)))
        with self._lock:
            if len(self) == 0 or k <= 0:
                return [[] for _ in range(len(queries))]
            if self.uses_approximate:
                scores, rows = self._graph_search(queries, k)
            else:
                scores, rows = self._exact_rows(queries, k)
            return [
                [
                    Neighbour(key, float(score))
                    for score, row in zip(score_row, row_row, strict=True)
                    if row >= 0 and (key := self._keys[row]) is not None
                ]
                for score_row, row_row in zip(scores, rows, strict=True)
            ]

    def exact_search(self, probes: npt.NDArray[np.floating], k: int) -> list[list[Neighbour]]:
        """The oracle: always the full matrix product, whatever the size."""
        queries = l2_normalise(np.atleast_2d(np.asarray(probes, dtype=np.float32)))
        with self._lock:
            if len(self) == 0 or k <= 0:
                return [[] for _ in range(len(queries))]
            scores, rows = self._exact_rows(queries, k)
            return [
                [Neighbour(self._keys[r] or "", float(s)) for s, r in zip(sr, rr, strict=True) if r >= 0]
                for sr, rr in zip(scores, rows, strict=True)
            ]

    def _exact_rows(self, queries: FloatArray, k: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        scores = queries @ self._matrix[: self._rows].T
        if len(self) < self._rows:
            dead = np.fromiter((key is None for key in self._keys), dtype=bool, count=self._rows)
            scores[:, dead] = -np.inf
        k = min(k, len(self))
        # argpartition is O(n); only the k winners get sorted.
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), np.take_along_axis(top, order, axis=1).astype(np.int64)

    def _ensure_graph(self) -> Any:
        """The HNSW graph over every row: built on first need, then extended with the rows added
        since (incremental: only the new rows are inserted)."""
        import faiss  # imported lazily: small deployments never need it loaded

        graph = self._graph
        if graph is None:
            graph = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = self.ef_construction
            self._graph = graph
        if graph.ntotal < self._rows:
            graph.add(np.ascontiguousarray(self._matrix[graph.ntotal : self._rows]))
        return graph

    def build_graph(self) -> None:
        """Bring the graph up to date now (the worker, before timing or snapshotting)."""
        with self._lock:
            self._ensure_graph()

    def _graph_search(self, queries: FloatArray, k: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        import faiss

        graph = self._ensure_graph()
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
        # A fixed beam loses recall as the graph grows: on planted neighbours in 1 M random vectors
        # efSearch 512 found 91 %, 1024 96.5 %, 2048 99.0 % (19 ms). The beam grows with N to stay
        # near 99 % (N / 480 is about 2 080 at 1 M), never below the configured floor.
        params.efSearch = max(self.ef_search, k, len(self) // 480)
        if len(self) < self._rows:
            dead = np.array([row for row in range(self._rows) if self._keys[row] is None], dtype=np.int64)
            # Both selectors must stay referenced until the search returns (faiss holds raw pointers).
            batch = faiss.IDSelectorBatch(dead)
            not_dead = faiss.IDSelectorNot(batch)
            params.sel = not_dead
        scores, rows = graph.search(queries, min(k, len(self)), params=params)
        return scores.astype(np.float32), rows.astype(np.int64)

    # --- snapshots ------------------------------------------------------------------------

    def to_snapshot(self, meta: Mapping[str, Any] | None = None) -> bytes:
        """The index as one payload: row keys (None for tombstoned rows, whose vectors are zero),
        the complete graph (every row inserted first) and `meta` (JSON: the caller's per-key data).
        Plaintext biometric data: the caller seals it."""
        import faiss

        with self._lock:
            graph = self._ensure_graph()
            header = {
                "dim": self.dim,
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "rows": self._rows,
                "keys": self._keys[: self._rows],
                "meta": dict(meta or {}),
            }
            body = faiss.serialize_index(graph)
        head = json.dumps(header, separators=(",", ":")).encode()
        # One copy of the serialised graph (at 1 M vectors about 1 GB), not two.
        return b"".join((SNAPSHOT_MAGIC, len(head).to_bytes(_HEADER_LEN_BYTES, "little"), head, body.data))

    @classmethod
    def from_snapshot(
        cls, payload: bytes | bytearray, exact_max: int = DEFAULT_EXACT_MAX, ef_search: int = 512
    ) -> tuple[VectorIndex, dict[str, Any]]:
        """The index a `to_snapshot` payload describes, and its metadata: the graph is loaded as it
        was built (no vector is inserted again) and the matrix is copied out of its storage."""
        import faiss

        view = memoryview(payload)
        start = len(SNAPSHOT_MAGIC) + _HEADER_LEN_BYTES
        if len(view) < start or bytes(view[: len(SNAPSHOT_MAGIC)]) != SNAPSHOT_MAGIC:
            raise SnapshotFormatError("not an index snapshot")
        head_len = int.from_bytes(view[len(SNAPSHOT_MAGIC) : start], "little")
        try:
            header = json.loads(bytes(view[start : start + head_len]))
            dim, rows, keys = int(header["dim"]), int(header["rows"]), list(header["keys"])
            hnsw_m, ef_construction = int(header["hnsw_m"]), int(header["ef_construction"])
            meta = dict(header["meta"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotFormatError(f"unreadable snapshot header: {exc}") from exc
        live = [key for key in keys if key is not None]
        if len(keys) != rows or len(set(live)) != len(live):
            raise SnapshotFormatError("snapshot keys do not match its rows")
        graph: Any = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8, offset=start + head_len))
        if int(graph.ntotal) != rows or int(graph.d) != dim:
            raise SnapshotFormatError(f"snapshot graph holds {graph.ntotal} x {graph.d}, header says {rows} x {dim}")
        graph.hnsw.efConstruction = ef_construction
        index = cls(dim, exact_max=exact_max, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        # Headroom so the first adds after loading do not copy the whole matrix.
        index._matrix = np.zeros((rows + max(64, rows // 8), dim), dtype=np.float32)
        index._matrix[:rows] = index._graph_vectors(graph)
        index._rows = rows
        index._keys = keys
        index._row_of = {key: row for row, key in enumerate(keys) if key is not None}
        index._graph = graph
        return index, meta
