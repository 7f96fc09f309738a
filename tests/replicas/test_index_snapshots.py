"""Persisted index snapshots: the worker writes them (above a threshold, when the population moved),
replicas load them and apply the change feed on top; erased voices leave them; unreadable ones fall
back to the full load. SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from voiceid.config import Settings
from voiceid.models.files import MODEL_VERSION
from voiceid.services.context import AppContext
from voiceid.services.index_caches import VoiceprintCache
from voiceid.storage import fraud_repo, index_repo
from voiceid.storage import repositories as repo
from voiceid.storage.changes import FEED, ChangeKind
from voiceid.storage.crypto import generate_key_text
from voiceid.storage.db import Database
from voiceid.storage.keys import KeyStore, MasterKey, MasterKeys, Vault, index_snapshot_owner
from voiceid.storage.models import ChangeCounter, IndexSnapshotChunk, utcnow
from voiceid.testkit.engines import ScriptedEngine
from voiceid.worker.index_snapshots import snapshot_indexes

VERSION = "ecapa-test"
EXACT_MAX = 50  # the graph answers above 50 vectors: HNSW is exercised with a few hundred


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(192).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass
class World:
    db: Database
    vault: Vault
    ctx: AppContext

    def enrol(self, refs: list[str], seed: int = 0) -> None:
        with self.db.transaction() as session:
            for i, ref in enumerate(refs):
                repo.insert_speaker_if_absent(session, ref, "ENROLLED", utcnow())
                speaker = repo.get_speaker(session, ref)
                assert speaker is not None
                repo.set_voiceprint(session, self.vault, speaker, unit(seed + i), VERSION)

    def erase(self, ref: str) -> None:
        with self.db.transaction() as session:
            speaker = repo.get_speaker(session, ref, for_update=True)
            assert speaker is not None
            repo.erase_biometrics(session, speaker)

    def replica(self, **kwargs: bool) -> VoiceprintCache:
        """A replica's cold start."""
        cache = VoiceprintCache(self.vault, EXACT_MAX, **kwargs)
        with self.db.transaction() as session:
            cache.sync(session)
        return cache

    def top(self, cache: VoiceprintCache, vector: np.ndarray, k: int = 3) -> list[str]:
        with self.db.transaction() as session:
            index, refs = cache.current(session, VERSION, exclude_id="")
            return [refs[n.key] for n in index.search(vector, k)[0]]

    def snapshots(self) -> list[index_repo.SnapshotInfo]:
        with self.db.transaction() as session:
            return index_repo.list_snapshots(session)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request, tmp_path: Path, fresh_postgres, settings: Settings) -> Iterator[World]:
    url = f"sqlite:///{tmp_path / 'v.db'}" if request.param == "sqlite" else fresh_postgres()
    db = Database(url)
    db.migrate()
    vault = Vault(KeyStore(f"sqlite:///{tmp_path / 'keys.db'}"), MasterKeys(MasterKey(os.urandom(32))))
    vault.bind(db.sessions)  # erasures destroy the speaker's data key, as in the service
    cfg = settings.model_copy(
        update={
            "database_url": url,
            "data_dir": tmp_path,
            "search_exact_max": EXACT_MAX,
            "index_snapshot_min_vectors": 100,
            "index_snapshot_chunk_bytes": 16 * 1024,  # several chunks per snapshot
        }
    )
    yield World(db, vault, AppContext(cfg, db, vault))
    vault.close()
    db.dispose()


def refs(n: int) -> list[str]:
    return [f"caller-{i}" for i in range(n)]


def test_the_job_writes_nothing_below_the_threshold_nor_when_nothing_moved(world: World):
    world.enrol(refs(60))
    assert snapshot_indexes(world.ctx) == 0 and world.snapshots() == []
    world.enrol([f"more-{i}" for i in range(60)], seed=1000)
    assert snapshot_indexes(world.ctx) == 1
    (first,) = world.snapshots()
    assert first.state is index_repo.SnapshotState.COMPLETE and first.vectors == 120
    assert first.kind is ChangeKind.VOICEPRINT and first.model_version == VERSION
    assert snapshot_indexes(world.ctx) == 0  # the revision did not move
    # A watchlist change moves the revision but not the voiceprints: no new voiceprint snapshot.
    with world.db.transaction() as session:
        fraud_repo.add_watchlist_entry(session, world.vault, unit(5000), VERSION, label="fraud", source="audio")
    assert snapshot_indexes(world.ctx) == 0 and [s.id for s in world.snapshots()] == [first.id]


def test_a_replica_loads_the_snapshot_then_applies_later_adds_and_erasures(world: World):
    world.enrol(refs(150))
    assert snapshot_indexes(world.ctx) == 1
    (snap,) = world.snapshots()
    world.enrol(["late-caller"], seed=9000)  # committed after the snapshot
    world.erase("caller-7")

    cache = world.replica()
    assert cache.loaded_snapshots == {VERSION: (snap.id, snap.revision)}
    index = cache._indexes[VERSION]
    assert index._graph is not None and index._graph.ntotal >= 150  # loaded, not built
    assert len(index) == 150  # 150 - caller-7 + late-caller
    assert world.top(cache, unit(9000))[0] == "late-caller"
    assert "caller-7" not in world.top(cache, unit(7), k=10)  # the erased speaker is never returned
    assert world.top(cache, unit(8))[0] == "caller-8"
    assert cache.revision is not None and cache.revision > snap.revision
    # Same answers as a replica that loaded everything itself.
    full = world.replica(load_snapshots=False)
    assert full.loaded_snapshots == {}
    for seed in (0, 8, 42, 149, 9000):
        assert world.top(cache, unit(seed), 1) == world.top(full, unit(seed), 1)


def test_the_next_snapshot_holds_no_erased_voice_and_the_old_one_is_shredded(world: World):
    world.enrol(refs(120))
    assert snapshot_indexes(world.ctx) == 1
    (old,) = world.snapshots()
    erased = VoiceprintCache(world.vault, EXACT_MAX)
    with world.db.transaction() as session:
        held, _ = erased.current(session, VERSION, exclude_id="")
        ids = {r: i for i, r in erased._names.items()}
        stored = held._index.vectors([ids["caller-3"]])[0].astype("<f4").tobytes()
        kept = held._index.vectors([ids["caller-4"]])[0].astype("<f4").tobytes()
        assert stored in index_repo.read_payload(session, world.vault, old)  # the check can fail
    world.erase("caller-3")
    assert snapshot_indexes(world.ctx) == 1
    (new,) = world.snapshots()
    assert new.id != old.id and new.revision > old.revision
    with world.db.transaction() as session:
        payload = index_repo.read_payload(session, world.vault, new)
        assert stored not in payload and kept in payload
        assert b'"caller-3"' not in payload and b'"caller-4"' in payload  # nor its reference
        assert session.scalars(select(IndexSnapshotChunk).where(IndexSnapshotChunk.snapshot_id == old.id)).all() == []
    assert world.vault.store.get_by_owner(index_snapshot_owner(old.id)) is None  # its data key destroyed
    assert world.vault.store.get_by_owner(index_snapshot_owner(new.id)) is not None


def test_an_index_fallen_below_the_threshold_loses_its_snapshot(world: World):
    world.enrol(refs(101))
    assert snapshot_indexes(world.ctx) == 1
    (old,) = world.snapshots()
    world.erase("caller-0")  # 100 left: still at the threshold
    world.erase("caller-1")  # 99: below it, and the last snapshot holds both voices
    assert snapshot_indexes(world.ctx) == 1
    assert world.snapshots() == []
    assert world.vault.store.get_by_owner(index_snapshot_owner(old.id)) is None


@pytest.mark.parametrize("damage", ["tampered-chunk", "shredded-key", "feed-pruned"])
def test_an_unusable_snapshot_falls_back_to_the_full_load(world: World, damage: str, caplog):
    world.enrol(refs(120))
    assert snapshot_indexes(world.ctx) == 1
    (snap,) = world.snapshots()
    world.enrol(["late-caller"], seed=9000)
    with world.db.transaction() as session:
        if damage == "tampered-chunk":
            sealed = session.scalar(
                select(IndexSnapshotChunk.data).where(
                    IndexSnapshotChunk.snapshot_id == snap.id, IndexSnapshotChunk.seq == 1
                )
            )
            assert sealed is not None
            flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
            session.execute(
                update(IndexSnapshotChunk)
                .where(IndexSnapshotChunk.snapshot_id == snap.id, IndexSnapshotChunk.seq == 1)
                .values(data=flipped)
            )
        elif damage == "feed-pruned":
            horizon = snap.revision + 2  # the feed no longer holds the changes right after the snapshot
            session.execute(update(ChangeCounter).where(ChangeCounter.name == FEED).values(pruned_below=horizon))
    if damage == "shredded-key":
        world.vault.shred([index_snapshot_owner(snap.id)])
    with caplog.at_level(logging.WARNING, logger="voiceid.services.index_caches"):
        cache = world.replica()
    assert cache.loaded_snapshots == {}
    assert "index snapshot" in caplog.text
    assert len(cache._indexes[VERSION]) == 121
    assert world.top(cache, unit(9000))[0] == "late-caller"
    assert world.top(cache, unit(5))[0] == "caller-5"


def test_readyz_reports_the_snapshot_a_replica_started_from(make_api):
    engine = ScriptedEngine()
    shared = {
        "encryption_key": SecretStr(generate_key_text()),
        "score_norm": "none",
        "search_exact_max": 5,
        "index_snapshot_min_vectors": 8,
    }
    first = make_api(engine=engine, **shared)
    assert first.client.get("/readyz").json()["index_snapshots"] == {"voiceprints": {}, "watchlist": {}}
    for i in range(10):
        first.seed_voiceprint(f"caller-{i}", unit(i))
    service = first.service
    assert snapshot_indexes(AppContext(service.settings, service.db, service.cipher)) == 1
    (snap,) = [s for s in index_repo_list(service.db) if s.kind is ChangeKind.VOICEPRINT]
    second = make_api(engine=engine, **shared)  # a replica starting now
    report = second.client.get("/readyz").json()["index_snapshots"]
    assert report == {"voiceprints": {MODEL_VERSION: {"id": snap.id, "revision": snap.revision}}, "watchlist": {}}


def index_repo_list(db: Database) -> list[index_repo.SnapshotInfo]:
    with db.transaction() as session:
        return index_repo.list_snapshots(session)
