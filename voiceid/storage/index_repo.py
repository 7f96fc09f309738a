"""Persisted 1:N index snapshots: sealed chunks in the main database, so replicas on other hosts
(which share only the database) load the worker's graph instead of building their own.

A snapshot is written in several short transactions (one row per chunk: a 1 GB index must not hold
the SQLite write lock, or a PostgreSQL transaction, for its whole upload), under state WRITING, and
becomes visible to readers only when a last transaction marks it COMPLETE and deletes the older ones
of its (kind, model version). Only the `index-snapshot` job writes, under its job lock, so a WRITING
row of the same kind and version found at the start of a write was left by a crashed writer.

Every chunk is sealed with the vault under the snapshot's own data key (`index:<id>`; associated data
binds it to the snapshot and its position), and deleting a snapshot destroys that key before the
deleting transaction commits: copies of its pages left in WAL, heap or backups can no longer be read.
Since an erased vector is zeroed in the worker's index (fraud/index.py), an erased voice leaves the
persisted snapshots at most one snapshot interval (VOICEID_INDEX_SNAPSHOT_INTERVAL_S) after its
erasure: the next snapshot no longer holds it and the previous one is shredded.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from voiceid.storage.changes import ChangeKind
from voiceid.storage.crypto import DecryptionError
from voiceid.storage.db import Database
from voiceid.storage.keys import Vault, index_snapshot_owner
from voiceid.storage.models import IndexSnapshotChunk, IndexSnapshotRow
from voiceid.storage.repositories import new_id


class SnapshotState(StrEnum):
    WRITING = "writing"
    COMPLETE = "complete"


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    kind: ChangeKind
    model_version: str
    revision: int
    vectors: int
    byte_size: int
    sha256: str
    state: SnapshotState
    created_at: datetime


class SnapshotUnreadable(Exception):
    """A snapshot that cannot be used (shredded key, tampered or missing chunk, hash mismatch): the
    reader falls back to a full load."""


def _info(row: IndexSnapshotRow) -> SnapshotInfo:
    return SnapshotInfo(
        row.id,
        ChangeKind(row.kind),
        row.model_version,
        int(row.revision),
        int(row.vectors),
        int(row.byte_size),
        row.sha256,
        SnapshotState(row.state),
        row.created_at,
    )


def chunk_aad(snapshot_id: str, seq: int) -> bytes:
    return f"voiceid|index_snapshot|{snapshot_id}|{seq}".encode()


def _delete(session: Session, vault: Vault, ids: list[str]) -> None:
    """Delete snapshots and destroy their keys just before the caller's transaction commits (as
    erasures do: if the key store fails nothing is deleted; if the commit then fails the rows
    stay but can no longer be opened, and the next write deletes them)."""
    if not ids:
        return
    session.execute(delete(IndexSnapshotChunk).where(IndexSnapshotChunk.snapshot_id.in_(ids)))
    session.execute(delete(IndexSnapshotRow).where(IndexSnapshotRow.id.in_(ids)))
    session.flush()
    vault.shred(index_snapshot_owner(i) for i in ids)


def write_snapshot(
    db: Database,
    vault: Vault,
    kind: ChangeKind,
    model_version: str,
    revision: int,
    vectors: int,
    payload: bytes,
    chunk_bytes: int,
    now: datetime,
) -> SnapshotInfo:
    """Store `payload` (the plaintext index) as the newest complete snapshot of (kind, model version)
    at `revision`, then delete the older ones. The caller holds the `index-snapshot` job lock."""
    snapshot_id = new_id()
    owner = index_snapshot_owner(snapshot_id)
    with db.transaction() as session:
        stale = session.scalars(
            select(IndexSnapshotRow.id).where(
                IndexSnapshotRow.kind == kind.value,
                IndexSnapshotRow.model_version == model_version,
                IndexSnapshotRow.state == SnapshotState.WRITING.value,
            )
        ).all()
        _delete(session, vault, list(stale))
        session.add(
            IndexSnapshotRow(
                id=snapshot_id,
                kind=kind.value,
                model_version=model_version,
                revision=revision,
                vectors=vectors,
                byte_size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest(),
                state=SnapshotState.WRITING.value,
                created_at=now,
            )
        )
    view = memoryview(payload)
    for seq, start in enumerate(range(0, len(payload), chunk_bytes)):
        sealed = vault.seal(owner, view[start : start + chunk_bytes].tobytes(), chunk_aad(snapshot_id, seq))
        with db.transaction() as session:
            session.add(IndexSnapshotChunk(snapshot_id=snapshot_id, seq=seq, data=sealed))
    with db.transaction() as session:
        session.execute(
            update(IndexSnapshotRow)
            .where(IndexSnapshotRow.id == snapshot_id)
            .values(state=SnapshotState.COMPLETE.value)
        )
        older = session.scalars(
            select(IndexSnapshotRow.id).where(
                IndexSnapshotRow.kind == kind.value,
                IndexSnapshotRow.model_version == model_version,
                IndexSnapshotRow.id != snapshot_id,
            )
        ).all()
        _delete(session, vault, list(older))
        row = session.get(IndexSnapshotRow, snapshot_id)
        assert row is not None
        return _info(row)


def delete_snapshots(session: Session, vault: Vault, kind: ChangeKind, model_version: str) -> int:
    """Delete every snapshot of (kind, model version) and destroy their keys at once (an index
    that fell below the snapshot threshold: its last snapshot must not outlive the erasures since)."""
    ids = list(
        session.scalars(
            select(IndexSnapshotRow.id).where(
                IndexSnapshotRow.kind == kind.value, IndexSnapshotRow.model_version == model_version
            )
        )
    )
    _delete(session, vault, ids)
    return len(ids)


def list_snapshots(session: Session, kind: ChangeKind | None = None) -> list[SnapshotInfo]:
    """Every snapshot row (complete and being written), newest first."""
    query = select(IndexSnapshotRow).order_by(IndexSnapshotRow.revision.desc(), IndexSnapshotRow.created_at.desc())
    if kind is not None:
        query = query.where(IndexSnapshotRow.kind == kind.value)
    return [_info(row) for row in session.scalars(query)]


def latest_complete(session: Session, kind: ChangeKind) -> list[SnapshotInfo]:
    """The newest complete snapshot of each model version of `kind`."""
    newest: OrderedDict[str, SnapshotInfo] = OrderedDict()
    for info in list_snapshots(session, kind):
        if info.state is SnapshotState.COMPLETE:
            newest.setdefault(info.model_version, info)
    return list(newest.values())


def read_payload(session: Session, vault: Vault, info: SnapshotInfo) -> bytearray:
    """The snapshot's plaintext, every chunk opened and the whole checked against its size and
    SHA-256; `SnapshotUnreadable` otherwise. Chunks are streamed, not all held sealed at once."""
    out = bytearray(info.byte_size)
    digest = hashlib.sha256()
    position = 0
    query = (
        select(IndexSnapshotChunk.seq, IndexSnapshotChunk.data)
        .where(IndexSnapshotChunk.snapshot_id == info.id)
        .order_by(IndexSnapshotChunk.seq)
        .execution_options(yield_per=4)
    )
    for expected, (seq, sealed) in enumerate(session.execute(query)):
        if seq != expected:
            raise SnapshotUnreadable(f"snapshot {info.id}: chunk {expected} missing")
        try:
            plain = vault.open(sealed, chunk_aad(info.id, seq))
        except DecryptionError as exc:  # KeyShreddedError included: a deleted snapshot
            raise SnapshotUnreadable(f"snapshot {info.id}: chunk {seq} cannot be opened ({exc})") from exc
        if position + len(plain) > info.byte_size:
            raise SnapshotUnreadable(f"snapshot {info.id}: more data than its recorded size")
        out[position : position + len(plain)] = plain
        digest.update(plain)
        position += len(plain)
    if position != info.byte_size or digest.hexdigest() != info.sha256:
        raise SnapshotUnreadable(f"snapshot {info.id}: content does not match its recorded size and SHA-256")
    return out
