"""The persisted ANN index at 100 k and 1 M voiceprints, on real embeddings (issue 11).

    VOICEID_DEV_DATA_DIR=/work/shared/data PYTHONPATH=. python bench/ann_index.py --sizes 100000 1000000

Real vectors: every utterance of the dev sets (dev, dev_8k, dev_cohort) embedded by the product
(`voiceid_embedder`, the default backend; cached under the data dir, so a second run embeds nothing).
Each real speaker's first utterance is planted as an enrolment-like voiceprint; the rest of the N
rows are drawn from a Gaussian fitted to the real embeddings (mean and full covariance), then
unit-normalised: anisotropic and clustered like real voiceprints, a harder case for a graph than
isotropic random vectors, where everything is far from everything. Probes: the planted speakers'
*other* utterances (a genuine caller) and fresh draws of the fitted Gaussian.

Per N it reports what the worker and a replica pay, through the product's own code paths:
- worker build: incremental `VectorIndex.add` in batches of 10 k then the graph completed
  (`build_graph`): the per-process build a replica used to pay on every cold start;
- snapshot: size, and serialise (`FeedCache`-free `VectorIndex.to_snapshot`) + seal + store time
  (`index_repo.write_snapshot`, 8 MiB chunks; SQLite in a temporary directory, or with `--postgres`
  a PostgreSQL database of its own, created and dropped by the run as the test suite's are);
- replica load: read + open + verify SHA-256 (`index_repo.read_payload`) + deserialise
  (`VectorIndex.from_snapshot`), against the alternative of a full reload (decrypting every vector:
  `decrypt_s`, measured on 20 k vectors and scaled) plus the worker's build time;
- search p50/p95 of a single probe (k = 5) on the loaded index, recall@5 against the exact oracle,
  and the share of genuine probes whose own speaker is top-1 by HNSW and by the exact search.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: this checkout's voiceid

from voiceid.config import get_settings
from voiceid.fraud.index import VectorIndex
from voiceid.storage import index_repo
from voiceid.storage.changes import ChangeKind
from voiceid.storage.crypto import associated_data
from voiceid.storage.db import Database
from voiceid.storage.keys import KeyStore, MasterKey, MasterKeys, Vault, speaker_owner
from voiceid.storage.models import utcnow
from voiceid.testkit.postgres import postgres_database  # one helper makes test and bench databases

DIM = 192
SETS = ("dev", "dev_8k", "dev_cohort")


def real_embeddings() -> dict[str, list[np.ndarray]]:
    """speaker -> unit embeddings of their utterances (manifest order), through the product."""
    from voiceid.evaluation.embedders import voiceid_embedder
    from voiceid.evaluation.protocol import read_manifest
    from voiceid.evaluation.runner import EmbeddingCache, embed_utterances

    settings = get_settings()
    cache = EmbeddingCache.for_embedder(settings, "voiceid")
    embed_fn: Any = None
    by_speaker: dict[str, list[np.ndarray]] = {}
    for name in SETS:
        utterances = read_manifest(settings.dev_data_dir / name / "manifest.csv")

        def embed(data: bytes, content_type: str) -> np.ndarray:
            nonlocal embed_fn
            if embed_fn is None:  # the model loads only when something is not cached yet
                embed_fn, _ = voiceid_embedder(settings)
            return np.asarray(embed_fn(data, content_type))

        vectors, _failures = embed_utterances(utterances, "clean", embed, cache)
        for utt in utterances:
            if utt.utt_id in vectors:
                v = vectors[utt.utt_id].astype(np.float32)
                by_speaker.setdefault(f"{name}/{utt.speaker_id}", []).append(v / np.linalg.norm(v))
    return by_speaker


def fitted_gaussian(real: np.ndarray, rng: np.random.Generator, n: int, chunk: int = 100_000) -> np.ndarray:
    mean = real.mean(axis=0)
    cov = np.cov(real, rowvar=False) + 1e-6 * np.eye(DIM)
    factor = np.linalg.cholesky(cov).astype(np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        z = rng.standard_normal((min(chunk, n - start), DIM), dtype=np.float32)
        block = mean.astype(np.float32) + z @ factor.T
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def vault_in(directory: Path) -> Vault:
    return Vault(KeyStore(f"sqlite:///{directory / 'keystore.db'}"), MasterKeys(MasterKey(os.urandom(32))))


def decrypt_rate(vault: Vault, vectors: np.ndarray, n: int = 2_000) -> float:
    """Seconds per vector of a full reload's decryption (one data key per speaker, prefetched)."""
    blobs = [
        (vault.seal_vector(speaker_owner(f"s{i}"), vectors[i], associated_data("voiceprint", f"s{i}", "v")), f"s{i}")
        for i in range(min(n, len(vectors)))
    ]
    started = time.perf_counter()
    vault.prefetch(b for b, _ in blobs)
    for blob, sid in blobs:
        vault.open_vector(blob, associated_data("voiceprint", sid, "v"))
    return (time.perf_counter() - started) / len(blobs)


@contextlib.contextmanager
def database(workdir: Path, size: int, postgres: bool) -> Iterator[Database]:
    """SQLite in `workdir`, or a PostgreSQL database of its own, created and dropped by the helper
    the tests use too (voiceid.testkit.postgres; server from VOICEID_TEST_POSTGRES_DSN, default the local one)."""
    if postgres:
        with postgres_database("voiceid_bench_ann") as url:
            db = Database(url)
            try:
                yield db
            finally:
                db.dispose()
        return
    db = Database(f"sqlite:///{workdir / f'ann-{size}.db'}")
    try:
        yield db
    finally:
        db.dispose()


def run(
    size: int,
    speakers: dict[str, list[np.ndarray]],
    queries: int,
    seed: int,
    workdir: Path,
    db: Database,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    names = sorted(speakers)
    planted = np.stack([speakers[s][0] for s in names])
    real = np.stack([v for s in names for v in speakers[s]])
    background = fitted_gaussian(real, rng, size - len(planted))
    keys = [f"spk:{s}" for s in names] + [f"bg:{i}" for i in range(len(background))]
    matrix = np.concatenate([planted, background])
    order = rng.permutation(size)  # planted rows spread through the insertion order
    matrix, keys = matrix[order], [keys[i] for i in order]

    # Worker: incremental adds, then the graph completed (exact_max 0: always the graph).
    index = VectorIndex(DIM, exact_max=0)
    started = time.perf_counter()
    for start in range(0, size, 10_000):
        index.add(keys[start : start + 10_000], matrix[start : start + 10_000])
    index.build_graph()
    build_s = time.perf_counter() - started

    db.migrate()
    vault = vault_in(workdir)
    started = time.perf_counter()
    payload = index.to_snapshot({"bench": True})
    serialise_s = time.perf_counter() - started
    started = time.perf_counter()
    info = index_repo.write_snapshot(
        db, vault, ChangeKind.VOICEPRINT, "bench", 1, len(index), payload, 8 * 1024 * 1024, utcnow()
    )
    store_s = time.perf_counter() - started
    del payload

    # Replica: a fresh vault (no cached data key) reads, opens, verifies and deserialises.
    replica_vault = Vault(vault.store, vault.masters, cache_keys=0)
    started = time.perf_counter()
    with db.transaction() as session:
        (latest,) = index_repo.latest_complete(session, ChangeKind.VOICEPRINT)
        read = index_repo.read_payload(session, replica_vault, latest)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    loaded, _meta = VectorIndex.from_snapshot(read, exact_max=0)
    deserialise_s = time.perf_counter() - started
    del read
    decrypt_s = decrypt_rate(vault, matrix) * size

    # Probes: genuine callers (other utterances of planted speakers) and fitted-Gaussian draws.
    genuine = [(f"spk:{s}", v) for s in names for v in speakers[s][1:]]
    pick = rng.choice(len(genuine), min(queries, len(genuine)), replace=False)
    genuine = [genuine[i] for i in pick]
    random_probes = fitted_gaussian(real, rng, queries)
    probes = np.concatenate([np.stack([v for _, v in genuine]), random_probes])
    latencies, hits, total = [], 0, 0
    top1_graph = top1_exact = 0
    for i, probe in enumerate(probes):
        t = time.perf_counter()
        approx = loaded.search(probe, 5)[0]
        latencies.append(time.perf_counter() - t)
        exact = loaded.exact_search(probe, 5)[0]
        truth = {n.key for n in exact}
        hits += len(truth & {n.key for n in approx})
        total += len(truth)
        if i < len(genuine):
            top1_graph += bool(approx) and approx[0].key == genuine[i][0]
            top1_exact += bool(exact) and exact[0].key == genuine[i][0]
    vault.close()
    return {
        "n": size,
        "store": db.engine.dialect.name,
        "real_speakers": len(names),
        "real_vectors": len(real),
        "build_s": round(build_s, 2),
        "snapshot_mb": round(info.byte_size / 2**20, 1),
        "serialise_s": round(serialise_s, 2),
        "seal_store_s": round(store_s, 2),
        "replica_read_open_verify_s": round(read_s, 2),
        "replica_deserialise_s": round(deserialise_s, 2),
        "replica_load_s": round(read_s + deserialise_s, 2),
        "full_reload_decrypt_s": round(decrypt_s, 1),
        "full_reload_and_build_s": round(decrypt_s + build_s, 1),
        "search_p50_ms": round(pct(latencies, 50), 2),
        "search_p95_ms": round(pct(latencies, 95), 2),
        "recall_at_5": round(hits / total, 4),
        "genuine_probes": len(genuine),
        "genuine_top1_hnsw": round(top1_graph / len(genuine), 4),
        "genuine_top1_exact": round(top1_exact / len(genuine), 4),
        "ef_search": max(loaded.ef_search, 5, size // 480),
        "hnsw_m": loaded.hnsw_m,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=300, help="genuine probes, and as many Gaussian ones")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="store the snapshot in a PostgreSQL database of its own (VOICEID_TEST_POSTGRES_DSN, default the "
        "local server); default SQLite",
    )
    parser.add_argument("--embed-only", action="store_true", help="fill the embedding cache and stop")
    args = parser.parse_args()
    speakers = real_embeddings()
    print(f"real embeddings: {sum(map(len, speakers.values()))} of {len(speakers)} speakers", file=sys.stderr)
    if args.embed_only:
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores", file=sys.stderr)
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="voiceid-ann-") as tmp, database(Path(tmp), size, args.postgres) as db:
            print(json.dumps(run(size, speakers, args.queries, args.seed, Path(tmp), db)), flush=True)


if __name__ == "__main__":
    main()
