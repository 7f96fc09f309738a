"""The audit trail: every administrative and analyst action, appended to a hash chain.

Each row stores the hash of the previous row and SHA-256(previous hash + its own canonical
content), so editing a row (its content no longer matches its hash, or the next row's link
breaks), deleting one (a gap in the sequence and a broken link) or cutting the tail (the head row
no longer matches the last row) is found by `verify`. Appends take a row lock on `audit_head`,
so concurrent appenders on PostgreSQL cannot fork the chain (SQLite serialises writers anyway),
and they run inside the transaction of the action they record: no action without its row.

Someone able to rewrite the whole table *and* the head can forge a consistent chain; `voiceid
audit verify` prints the head hash so that it can be kept elsewhere and checked with
`--expect-head` (docs/security.md).

Who acted comes from a context variable set once per request by the API's authentication
dependency (`key:<id>`), by the review page (`review:<key id>`) or by the CLI (`cli:<user>`), so
the core services record actions without every signature growing an actor argument.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceid.storage.db import Database
from voiceid.storage.models import AuditEvent, AuditHead, utcnow

HEAD = "audit"
GENESIS = "0" * 64
_actor: ContextVar[str] = ContextVar("voiceid_audit_actor", default="system")


class AuditAction(StrEnum):
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    MASTER_KEY_ROTATED = "MASTER_KEY_ROTATED"
    SPEAKER_DELETED = "SPEAKER_DELETED"
    SPEAKER_UNLOCKED = "SPEAKER_UNLOCKED"
    SPEAKER_EXPIRED = "SPEAKER_EXPIRED"
    WATCHLIST_ADDED = "WATCHLIST_ADDED"
    WATCHLIST_DELETED = "WATCHLIST_DELETED"
    REVIEW_RESOLVED = "REVIEW_RESOLVED"
    SCORE_LOG_EXPORTED = "SCORE_LOG_EXPORTED"
    VOICEPRINT_ADAPTED = "VOICEPRINT_ADAPTED"  # an accepted call joined its voiceprint (services/adaptation.py)
    ADAPTATION_REVERTED = "ADAPTATION_REVERTED"  # calls removed from it (an analyst, retention), voiceprint rebuilt


def set_actor(actor: str) -> None:
    _actor.set(actor)


def current_actor() -> str:
    return _actor.get()


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def canonical(seq: int, created_at: datetime, actor: str, action: str, target: str | None, details: Any) -> str:
    # Microseconds and UTC are what both databases store; sorted keys and fixed separators make the
    # text the same wherever it is recomputed.
    return json.dumps(
        {
            "seq": seq,
            "created_at": created_at.isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def lock_head(session: Session) -> AuditHead:
    """Take the chain's row lock now (PostgreSQL; SQLite writers are serialised anyway): also used to
    serialise start-up work of several processes, such as the bootstrap admin key."""
    return session.scalars(select(AuditHead).where(AuditHead.name == HEAD).with_for_update()).one()


def append(
    session: Session,
    action: AuditAction,
    target: str | None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Append one event inside the caller's transaction."""
    head = lock_head(session)
    when = (now or utcnow()).astimezone(UTC)
    who = actor or current_actor()
    body = json.loads(json.dumps(details or {}, default=str))  # exactly what JSON storage gives back
    seq = head.seq + 1
    content = canonical(seq, when, who, action.value, target, body)
    row = AuditEvent(
        seq=seq,
        created_at=when,
        actor=who,
        action=action.value,
        target=target,
        details=body,
        prev_hash=head.hash,
        hash=chain_hash(head.hash, content),
    )
    session.add(row)
    head.seq, head.hash = seq, row.hash
    session.flush()
    return row


def record(db: Database, action: AuditAction, target: str | None, details: dict[str, Any] | None = None) -> AuditEvent:
    """Append in a transaction of its own: for actions that change nothing stored (exports)."""
    with db.transaction() as session:
        return append(session, action, target, details)


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # EDITED | BROKEN_LINK | MISSING | HEAD_MISMATCH | HEAD_MISSING | EMPTY
    detail: str


@dataclass(frozen=True)
class Verdict:
    rows: int
    head_seq: int
    head_hash: str
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, batch: int = 1000) -> Verdict:
    """Walk the whole chain (in batches, so memory stays bounded) and report every break."""
    problems: list[Problem] = []
    expected_seq, prev_hash, rows, last_seq = 1, GENESIS, 0, 0
    after = 0
    while True:
        chunk = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not chunk:
            break
        for row in chunk:
            rows += 1
            if row.seq != expected_seq:
                problems.append(Problem(expected_seq, "MISSING", f"rows {expected_seq}..{row.seq - 1} are gone"))
            if row.prev_hash != prev_hash:
                problems.append(Problem(row.seq, "BROKEN_LINK", "prev_hash does not match the previous row"))
            content = canonical(row.seq, row.created_at, row.actor, row.action, row.target, row.details)
            if chain_hash(row.prev_hash, content) != row.hash:
                problems.append(Problem(row.seq, "EDITED", "the row's content does not match its hash"))
            expected_seq, prev_hash, last_seq = row.seq + 1, row.hash, row.seq
        after = chunk[-1].seq
    if rows == 0:
        # Every running service records at least its admin key's creation: an empty trail was
        # never used or was wiped, and either way it vouches for nothing.
        problems.append(Problem(0, "EMPTY", "the audit trail holds no rows: nothing was recorded, or it was wiped"))
    head = session.scalars(select(AuditHead).where(AuditHead.name == HEAD)).one_or_none()
    if head is None:
        if rows:
            problems.append(Problem(last_seq, "HEAD_MISSING", f"the chain ends at row {last_seq} but its head is gone"))
        return Verdict(rows, 0, GENESIS, problems)
    if head.seq != last_seq or head.hash != prev_hash:
        problems.append(
            Problem(head.seq, "HEAD_MISMATCH", f"the head says row {head.seq}, the chain ends at row {last_seq}")
        )
    return Verdict(rows, head.seq, head.hash, problems)


def list_events(
    session: Session, limit: int, before_seq: int | None = None, action: str | None = None
) -> list[AuditEvent]:
    """Newest first, keyset-paginated on the sequence number."""
    query = select(AuditEvent)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit)).all())


def events_on(session: Session, action: AuditAction, targets: Sequence[str], since: datetime) -> list[AuditEvent]:
    """The `action` entries about `targets` from `since` on, oldest first (a bounded read: a few
    speakers over the days an alert spans)."""
    if not targets:
        return []
    query = select(AuditEvent).where(
        AuditEvent.action == action.value, AuditEvent.target.in_(list(targets)), AuditEvent.created_at >= since
    )
    return list(session.scalars(query.order_by(AuditEvent.seq)).all())
