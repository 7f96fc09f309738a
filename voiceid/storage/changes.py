"""The change feed: a database revision for the biometric population (voiceprints, watchlist).

Every transaction that changes a speaker's voiceprint (set, erased, speaker deleted) or adds or
removes a watchlist entry takes the next revision from `change_counters` and writes one
`change_feed` row per changed object, in its own transaction. It is recorded by a SQLAlchemy
`before_flush` hook rather than by each writer, so a new code path that touches voiceprints (a
retention job, an erasure) cannot forget it; bulk `DELETE` statements bypass the hook and must
call `record` themselves.

Why a counter row and not a sequence: the `UPDATE ... SET revision = revision + 1` holds that row's
lock until commit, so revisions commit in order. A reader that reads revision R (committed) knows
every change numbered R or below is visible, and pulls `change_feed WHERE revision > held` without
ever missing a late commit. The price is that biometric writes (enrolment completions, erasures,
watchlist edits: a small share of the traffic; verifications write none) are serialised.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, event, func, inspect, select, update
from sqlalchemy.orm import Session, SessionTransaction

from voiceid.storage.models import ChangeCounter, ChangeEntry, Speaker, WatchlistEntry, utcnow

FEED = "biometrics"
_REVISION = "voiceid.revision"  # session.info: the revision this transaction took
_CHANGED = "voiceid.changed"  # session.info: ids this transaction changed (uncommitted for others)

# Bumped after every local commit that took a revision: caches of this process re-check the
# database at once instead of waiting for their poll interval (read without a lock: an int read
# is atomic and a missed increment only delays a sync by one poll).
_local_commits = itertools.count(1)
local_commit_epoch = 0


class ChangeKind(StrEnum):
    VOICEPRINT = "voiceprint"
    WATCHLIST = "watchlist"


@dataclass(frozen=True)
class FeedState:
    revision: int
    pruned_below: int


def _changes(session: Session) -> list[tuple[ChangeKind, str]]:
    found: list[tuple[ChangeKind, str]] = []
    for obj in session.new:
        if isinstance(obj, Speaker) and obj.voiceprint is not None:
            found.append((ChangeKind.VOICEPRINT, obj.id))
        elif isinstance(obj, WatchlistEntry):
            found.append((ChangeKind.WATCHLIST, obj.id))
    for obj in session.dirty:
        if isinstance(obj, Speaker):
            state = inspect(obj)
            if any(
                state.attrs[name].history.has_changes()
                for name in ("voiceprint", "voiceprint_model_version", "speaker_ref")
            ):
                found.append((ChangeKind.VOICEPRINT, obj.id))
        elif isinstance(obj, WatchlistEntry):
            found.append((ChangeKind.WATCHLIST, obj.id))
    for obj in session.deleted:
        if isinstance(obj, Speaker):
            found.append((ChangeKind.VOICEPRINT, obj.id))
        elif isinstance(obj, WatchlistEntry):
            found.append((ChangeKind.WATCHLIST, obj.id))
    return found


def take_revision(session: Session) -> int:
    """This transaction's revision (taken once, on first use; the counter row stays locked until
    the transaction ends)."""
    revision = session.info.get(_REVISION)
    if revision is None:
        revision = int(
            session.execute(
                update(ChangeCounter)
                .where(ChangeCounter.name == FEED)
                .values(revision=ChangeCounter.revision + 1)
                .returning(ChangeCounter.revision)
            ).scalar_one()
        )
        session.info[_REVISION] = revision
    return int(revision)


def record(session: Session, changes: Sequence[tuple[ChangeKind, str]]) -> None:
    """Add feed rows for `changes` at this transaction's revision."""
    if not changes:
        return
    revision = take_revision(session)
    changed: set[str] = session.info.setdefault(_CHANGED, set())
    now = utcnow()
    for kind, object_id in dict.fromkeys(changes):
        if object_id in changed:
            continue
        changed.add(object_id)
        session.add(ChangeEntry(revision=revision, kind=kind.value, object_id=object_id, created_at=now))


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    record(session, _changes(session))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    global local_commit_epoch
    if session.info.pop(_REVISION, None) is not None:
        local_commit_epoch = next(_local_commits)
    session.info.pop(_CHANGED, None)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: SessionTransaction) -> None:
    session.info.pop(_REVISION, None)
    session.info.pop(_CHANGED, None)


def own_revision(session: Session) -> int | None:
    """The revision this session's open transaction took, if it changed anything."""
    revision = session.info.get(_REVISION)
    return None if revision is None else int(revision)


def own_changes(session: Session) -> set[str]:
    return set(session.info.get(_CHANGED, ()))


def state(session: Session) -> FeedState:
    row = session.execute(
        select(ChangeCounter.revision, ChangeCounter.pruned_below).where(ChangeCounter.name == FEED)
    ).one()
    return FeedState(int(row.revision), int(row.pruned_below))


def changed_since(session: Session, kind: ChangeKind, after: int, upto: int) -> list[str]:
    """Ids of `kind` changed at revisions in (after, upto], each once."""
    rows = session.scalars(
        select(ChangeEntry.object_id)
        .where(ChangeEntry.kind == kind.value, ChangeEntry.revision > after, ChangeEntry.revision <= upto)
        .order_by(ChangeEntry.revision)
    ).all()
    return list(dict.fromkeys(rows))


def any_changed(session: Session, kind: ChangeKind, after: int, upto: int) -> bool:
    """Whether an object of `kind` changed at a revision in (after, upto]; True when the feed no
    longer reaches back to `after` (it cannot tell)."""
    if upto <= after:
        return False
    if after < state(session).pruned_below - 1:
        return True
    found = session.scalar(
        select(ChangeEntry.id)
        .where(ChangeEntry.kind == kind.value, ChangeEntry.revision > after, ChangeEntry.revision <= upto)
        .limit(1)
    )
    return found is not None


def prune(session: Session, older_than: datetime) -> int:
    """Drop feed rows older than `older_than` (the worker's job); caches holding a revision below
    the new horizon reload in full."""
    horizon = session.scalar(select(func.max(ChangeEntry.revision)).where(ChangeEntry.created_at < older_than))
    if horizon is None:
        return 0
    result = session.execute(delete(ChangeEntry).where(ChangeEntry.revision <= horizon))
    session.execute(
        update(ChangeCounter)
        .where(ChangeCounter.name == FEED, ChangeCounter.pruned_below < horizon + 1)
        .values(pruned_below=horizon + 1)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
