"""The `index-snapshot` job: the worker keeps the 1:N indexes of the voiceprints and the watchlist
in memory, in step with the change feed (incremental: a new vector goes into the existing graph),
and persists a snapshot of each large one whose population changed, so replicas load the graph
instead of building it (voiceid/services/index_caches.py, voiceid/storage/index_repo.py).

Several workers are safe: the tick runs under the job's lock in one of them at a time; each keeps
its own caches, and whether a snapshot is due is decided from the database (the newest snapshot's
revision against the feed), not from what this process wrote last.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from voiceid.config import Settings
from voiceid.services.context import AppContext
from voiceid.services.index_caches import FeedCache, VoiceprintCache, WatchlistCache
from voiceid.storage import changes, index_repo
from voiceid.storage.db import Database
from voiceid.storage.keys import Vault

JOB_NAME = "index-snapshot"
log = logging.getLogger(__name__)


class IndexSnapshotter:
    """The worker's own caches (one per kind) and the snapshot rule."""

    def __init__(self, settings: Settings, cipher: Vault) -> None:
        self.settings = settings
        self.cipher = cipher
        # Their first sync loads the newest snapshots too: a restarted worker does not rebuild.
        self.caches: tuple[FeedCache, ...] = (
            VoiceprintCache(cipher, settings.search_exact_max),
            WatchlistCache(cipher, settings.search_exact_max),
        )

    def _due(self, session: Session, cache: FeedCache) -> tuple[list[str], list[str]]:
        """(versions to snapshot, versions whose snapshots must go because the index fell below
        the threshold while it changed)."""
        revision = cache.revision
        assert revision is not None
        latest = {info.model_version: info for info in index_repo.latest_complete(session, cache.kind)}
        counts = cache.live_counts()
        write, drop = [], []
        for version in sorted(set(counts) | set(latest)):
            last = latest.get(version)
            if last is not None and not changes.any_changed(session, cache.kind, last.revision, revision):
                continue  # nothing of this kind changed since the snapshot
            if counts.get(version, 0) >= self.settings.snapshot_min_vectors:
                write.append(version)
            elif last is not None:
                drop.append(version)
        return write, drop

    def run(self, db: Database, now: datetime) -> int:
        """One tick: the snapshots written (or deleted)."""
        handled = 0
        for cache in self.caches:
            with db.transaction() as session:
                cache.sync(session)
                write, drop = self._due(session, cache)
                for version in drop:
                    handled += index_repo.delete_snapshots(session, self.cipher, cache.kind, version)
            revision = cache.revision
            assert revision is not None
            # No one else syncs these caches, so they still reflect `revision` while serialising.
            counts = cache.live_counts()
            for version in write:
                payload = cache.export_snapshot(version)
                if payload is None:
                    continue
                info = index_repo.write_snapshot(
                    db,
                    self.cipher,
                    cache.kind,
                    version,
                    revision,
                    counts[version],
                    payload,
                    self.settings.index_snapshot_chunk_bytes,
                    now,
                )
                del payload
                log.info(
                    "index snapshot %s: %s %s, %d vectors at revision %d, %d bytes",
                    info.id,
                    info.kind.value,
                    version,
                    info.vectors,
                    info.revision,
                    info.byte_size,
                )
                handled += 1
        return handled


def snapshot_indexes(ctx: AppContext) -> int:
    """The job's tick: the snapshotter lives in the context, so its caches persist between ticks."""
    snapshotter = ctx.job_state.get(JOB_NAME)
    if not isinstance(snapshotter, IndexSnapshotter):
        snapshotter = ctx.job_state[JOB_NAME] = IndexSnapshotter(ctx.settings, ctx.cipher)
    return snapshotter.run(ctx.db, ctx.clock())
