"""Per-process indexes of the voiceprints and the watchlist, kept in step through the change feed.

A replica holds the database revision its index reflects. At most every `change_poll_s` (and at
once after a local commit that changed the population) it reads the one-row counter; only when the
revision moved does it read the feed and load the few objects that changed. Nothing per call
scans the population: a scored call costs one primary-key read at most, and usually none.

A cold start (or a cache left behind the feed's pruning horizon) first looks for the worker's
persisted index snapshots (storage/index_repo.py): each complete one reflects revision R, so the
cache loads it (no decryption per vector, no graph build), full-loads only the model versions that
have none, and then applies `changed_since(R)` like any sync. A snapshot that cannot be read (a
shredded key, a tampered chunk, a hash mismatch) or that is behind the pruning horizon is skipped
with a warning and the population is loaded in full, as without snapshots: never a failed call.

Reads happen in the caller's transaction (on SQLite a second connection would wait for the
caller's write lock). A transaction that itself changed the population has taken revision R
(and holds the counter's lock), so everything below R has committed: the cache syncs up to R - 1
and leaves the objects this transaction touched for the next sync, so nothing uncommitted (or
later rolled back) ever enters a shared index.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceid.fraud.index import Neighbour, SnapshotFormatError, VectorIndex
from voiceid.storage import changes, fraud_repo, index_repo
from voiceid.storage import repositories as repo
from voiceid.storage.changes import ChangeKind
from voiceid.storage.crypto import DecryptionError
from voiceid.storage.keys import Vault
from voiceid.storage.models import Speaker, WatchlistEntry

FloatArray = npt.NDArray[np.float32]
EMBEDDING_DIM = 192
CHUNK = 1000  # ids per IN (...) query
log = logging.getLogger(__name__)
T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class IndexView:
    """An index seen without one key (the claimed or enrolling speaker, who trivially matches
    themselves): what AS-norm's population cohort and duplicate detection search."""

    def __init__(self, index: VectorIndex, exclude: str | None) -> None:
        self._index = index
        self._exclude = exclude

    def _hidden(self) -> bool:
        return self._exclude is not None and self._exclude in self._index

    def __len__(self) -> int:
        return len(self._index) - int(self._hidden())

    def search(self, probes: npt.NDArray[np.floating], k: int) -> list[list[Neighbour]]:
        rows = self._index.search(probes, k + int(self._hidden()))
        return [[n for n in row if n.key != self._exclude][:k] for row in rows]


class FeedCache:
    """Shared sync logic; subclasses load and drop their objects. Beside each vector the cache keeps
    the object's name (a speaker's reference, a watchlist entry's label) and channel."""

    kind: ChangeKind
    names_key: ClassVar[str]  # what the names are called in a snapshot's metadata (kept stable)

    def __init__(
        self,
        cipher: Vault,
        exact_max: int,
        poll_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        load_snapshots: bool = True,
    ) -> None:
        self._cipher = cipher
        self._exact_max = exact_max
        self._poll_s = poll_s
        self._monotonic = monotonic
        self._load_snapshots = load_snapshots
        # model version -> (snapshot id, revision) loaded at the last cold start ({} when none was).
        self.loaded_snapshots: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._checked_at = float("-inf")
        self._epoch = -1
        self._recheck: set[str] = set()
        self._indexes: dict[str, VectorIndex] = {}
        self._versions: dict[str, str] = {}  # object id -> model version of its vector
        self._names: dict[str, str] = {}
        self.channels: dict[str, str | None] = {}  # object id -> channel of its audio

    @property
    def revision(self) -> int | None:
        """The database revision this cache reflects (None before the first sync)."""
        return self._revision

    def _new_index(self) -> VectorIndex:
        return VectorIndex(EMBEDDING_DIM, exact_max=self._exact_max)

    def holds(self, object_id: str) -> bool:
        """Whether the object is in the cache as of its last sync (erased ones leave with the feed)."""
        with self._lock:
            return object_id in self._versions

    def invalidate(self) -> None:
        """Check the database on the next use (a change committed by this process)."""
        with self._lock:
            self._checked_at = float("-inf")

    def sync(self, session: Session) -> None:
        own = changes.own_revision(session)
        with self._lock:
            fresh = self._monotonic() - self._checked_at < self._poll_s
            if own is None and self._revision is not None and fresh and self._epoch == changes.local_commit_epoch:
                return
            epoch = changes.local_commit_epoch  # read first: a commit during the sync forces another
            feed = changes.state(session)
            target = feed.revision if own is None else own - 1
            skip = changes.own_changes(session)
            behind = self._revision is None or self._revision < feed.pruned_below - 1
            if behind and not self._from_snapshots(session, feed, target, skip):
                self._reload(session, skip)
            else:
                assert self._revision is not None
                ids = (
                    changes.changed_since(session, self.kind, self._revision, target) if target > self._revision else []
                )
                pending = [i for i in dict.fromkeys([*ids, *self._recheck]) if i not in skip]
                if pending:
                    self._apply(session, pending)
            # Objects this transaction changed are read again once it has committed (or rolled back).
            self._recheck = set(skip)
            self._revision = max(target, self._revision or 0)
            if own is None:
                self._checked_at = self._monotonic()
                self._epoch = epoch

    def _drop(self, object_id: str) -> None:
        version = self._versions.pop(object_id, None)
        if version is not None:
            self._indexes[version].remove([object_id])
        self._forget(object_id)

    def _put(self, object_id: str, version: str, vector: FloatArray) -> None:
        self._drop(object_id)
        self._indexes.setdefault(version, self._new_index()).add([object_id], vector)
        self._versions[object_id] = version

    def _reload(self, session: Session, skip: set[str]) -> None:
        self._indexes, self._versions = {}, {}
        self.loaded_snapshots = {}
        self._clear()
        self._load_all(session, skip, frozenset())

    def _from_snapshots(self, session: Session, feed: changes.FeedState, target: int, skip: set[str]) -> bool:
        """Load the newest complete snapshot of each model version and set the revision to the
        oldest of them (the caller then applies the feed after it); False when there is none to use
        or one cannot be read, leaving the cache as it was for the full reload."""
        if not self._load_snapshots:
            return False
        found = index_repo.latest_complete(session, self.kind)
        # The feed must still hold every change after the snapshot, and a snapshot newer than what
        # this transaction may see (it cannot be, but never trust it) would skip changes.
        usable = [info for info in found if feed.pruned_below - 1 <= info.revision <= target]
        if len(usable) < len(found):
            log.warning(
                "%s index snapshot(s) of %s are behind the change-feed horizon; those versions load in full",
                len(found) - len(usable),
                self.kind.value,
            )
        if not usable:
            return False
        indexes: dict[str, VectorIndex] = {}
        metas: list[dict[str, Any]] = []
        try:
            for info in usable:
                payload = index_repo.read_payload(session, self._cipher, info)
                index, meta = VectorIndex.from_snapshot(payload, exact_max=self._exact_max)
                del payload
                indexes[info.model_version] = index
                metas.append(meta)
        except (index_repo.SnapshotUnreadable, SnapshotFormatError) as exc:
            log.warning("index snapshot of %s unusable (%s); loading the population in full", self.kind.value, exc)
            return False
        self._indexes = indexes
        self._versions = {key: version for version, index in indexes.items() for key in index.live_keys()}
        self._clear()
        for meta in metas:
            self._restore(meta)
        # Versions without a usable snapshot (small ones, below the snapshot threshold) load in full.
        self._load_all(session, skip, frozenset(indexes))
        self.loaded_snapshots = {info.model_version: (info.id, info.revision) for info in usable}
        self._revision = min(info.revision for info in usable)
        return True

    # --- the worker's side: what a snapshot holds --------------------------------------------

    def live_counts(self) -> dict[str, int]:
        """Model version -> live vectors held."""
        with self._lock:
            return {version: len(index) for version, index in self._indexes.items()}

    def export_snapshot(self, model_version: str) -> bytes | None:
        """The payload of a snapshot of `model_version`'s index (graph completed first) with the
        per-object data a replica needs besides the vectors; None when no such index is held."""
        with self._lock:
            index = self._indexes.get(model_version)
            if index is None:
                return None
            return index.to_snapshot(self._meta(index.live_keys()))

    # --- per kind ---------------------------------------------------------------------------

    def _apply(self, session: Session, ids: list[str]) -> None:
        raise NotImplementedError

    def _load_all(self, session: Session, skip: set[str], exclude_versions: frozenset[str]) -> None:
        raise NotImplementedError

    def _meta(self, ids: Sequence[str]) -> dict[str, Any]:
        """What besides the vectors the cache holds for `ids` (JSON), stored in their snapshot."""
        return {self.names_key: {i: self._names[i] for i in ids}, "channels": {i: self.channels.get(i) for i in ids}}

    def _restore(self, meta: dict[str, Any]) -> None:
        self._names.update(meta[self.names_key])
        self.channels.update(meta["channels"])

    def _forget(self, object_id: str) -> None:
        self._names.pop(object_id, None)
        self.channels.pop(object_id, None)

    def _clear(self) -> None:
        self._names = {}
        self.channels = {}


class VoiceprintCache(FeedCache):
    kind = ChangeKind.VOICEPRINT
    names_key = "refs"  # speaker id -> the customer's reference

    def current(self, session: Session, model_version: str, exclude_id: str) -> tuple[IndexView, dict[str, str]]:
        """Every enrolled voiceprint of `model_version` except `exclude_id`'s, and id -> reference."""
        self.sync(session)
        with self._lock:
            index = self._indexes.setdefault(model_version, self._new_index())
        return IndexView(index, exclude_id), self._names

    def _store(self, speaker: Speaker, channel: str | None = None) -> None:
        try:
            vector = repo.get_voiceprint(self._cipher, speaker)
        except DecryptionError:
            # Sealed under a master key this process does not hold (a misconfigured replica) or a
            # destroyed data key: unusable here, and it must not fail the call that synced the cache.
            log.warning("voiceprint of speaker %s cannot be decrypted here; left out of the search", speaker.id)
            vector = None
        if vector is None or speaker.voiceprint_model_version is None:
            self._drop(speaker.id)
            return
        self._put(speaker.id, speaker.voiceprint_model_version, vector)
        self._names[speaker.id] = speaker.speaker_ref
        self.channels[speaker.id] = channel  # the channel most of the enrolment audio came through

    def _apply(self, session: Session, ids: list[str]) -> None:
        found: set[str] = set()
        for chunk in _chunks(ids):
            speakers = session.scalars(select(Speaker).where(Speaker.id.in_(chunk))).all()
            # One key-store read per chunk instead of one per voiceprint (storage/keys.py).
            self._prefetch(speakers)
            channels = fraud_repo.voiceprint_channels(session, [s.id for s in speakers])
            for speaker in speakers:
                found.add(speaker.id)
                self._store(speaker, channels.get(speaker.id))
        for gone in set(ids) - found:
            self._drop(gone)

    def _load_all(self, session: Session, skip: set[str], exclude_versions: frozenset[str]) -> None:
        query = select(Speaker).where(Speaker.voiceprint_model_version.is_not(None))
        if exclude_versions:
            query = query.where(Speaker.voiceprint_model_version.not_in(sorted(exclude_versions)))
        for chunk in session.scalars(query.execution_options(yield_per=2000)).partitions():
            speakers = [s for s in chunk if s.id not in skip]
            self._prefetch(speakers)
            channels = fraud_repo.voiceprint_channels(session, [s.id for s in speakers])
            for speaker in speakers:
                self._store(speaker, channels.get(speaker.id))

    def _prefetch(self, speakers: Sequence[Speaker]) -> None:
        """One key-store read for many voiceprints; an unreadable one is reported by `_store`."""
        with contextlib.suppress(DecryptionError):
            self._cipher.prefetch(s.voiceprint for s in speakers if s.voiceprint is not None)


class WatchlistCache(FeedCache):
    kind = ChangeKind.WATCHLIST
    names_key = "labels"  # entry id -> its label

    def current(self, session: Session, model_version: str) -> tuple[VectorIndex | None, dict[str, str]]:
        self.sync(session)
        with self._lock:
            return self._indexes.get(model_version), self._names

    # The fraud desk calls these after its commits; the feed carries the change, so they only make
    # the next screen look at the database at once.
    def added(self, row: WatchlistEntry, vector: FloatArray, generation: int) -> None:
        self.invalidate()

    def removed(self, entry_id: str, generation: int) -> None:
        self.invalidate()

    def _store(self, row: WatchlistEntry) -> None:
        self._put(row.id, row.model_version, fraud_repo.watchlist_vector(self._cipher, row))
        self._names[row.id] = row.label
        self.channels[row.id] = row.channel

    def _apply(self, session: Session, ids: list[str]) -> None:
        found: set[str] = set()
        for chunk in _chunks(ids):
            for row in session.scalars(select(WatchlistEntry).where(WatchlistEntry.id.in_(chunk))):
                found.add(row.id)
                self._store(row)
        for gone in set(ids) - found:
            self._drop(gone)

    def _load_all(self, session: Session, skip: set[str], exclude_versions: frozenset[str]) -> None:
        query = select(WatchlistEntry)
        if exclude_versions:
            query = query.where(WatchlistEntry.model_version.not_in(sorted(exclude_versions)))
        for row in session.scalars(query.execution_options(yield_per=2000)):
            if row.id not in skip:
                self._store(row)
