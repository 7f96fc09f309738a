"""The score-normalisation cohort drawn from the operator's own enrolled population.

Two halves, so that the cost of a verification does not grow with the number of enrolled speakers
and no score jumps when one person enrols:

- `refresh_cohort` (a background job: the worker, or the single SQLite server) writes a snapshot of
  up to C member *ids*: the enrolled voiceprints of the current model with the smallest (random)
  primary keys, a stable bottom-k sample, so one more enrolment changes at most one member.
- `CohortCache` (each serving process) holds the decrypted member voiceprints of the newest
  snapshot and reloads only when a new snapshot appears. A member erased since the snapshot is
  dropped as soon as the change feed reports it (the voiceprint cache no longer holds it), so no
  copy of a voiceprint outlives its erasure; the shipped cohort tops the rest up to C (see
  `Scorer.cohort_for`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from voiceid.statuses import SpeakerStatus
from voiceid.storage import repositories as repo
from voiceid.storage.keys import Vault
from voiceid.storage.models import CohortSnapshot, SelfCalibrationSnapshot, Speaker
from voiceid.verify.cohort import PHONE

FloatArray = npt.NDArray[np.float32]
KEEP_SNAPSHOTS = 3  # older snapshots are deleted; a replica mid-reload can still read the previous one


@dataclass(frozen=True)
class CohortState:
    snapshot_id: int | None
    digest: str | None
    member_ids: tuple[str, ...]
    vectors: FloatArray  # (n, d) in member order
    # What a phone call meets of each member: the phone view of a wideband enrolment where the member
    # has one (voiceid.enrolment.views), else the voiceprint. A phone call scored against a phone-view
    # voiceprint must be normalised against phone-view voiceprints too, or every score comes out high.
    phone_vectors: FloatArray | None = None

    def for_channel(self, channel: str | None, phone_view: bool) -> FloatArray:
        if phone_view and channel == PHONE and self.phone_vectors is not None:
            return self.phone_vectors
        return self.vectors


def _digest(members: list[str]) -> str:
    return hashlib.sha256("\n".join(members).encode()).hexdigest()


Snapshot = TypeVar("Snapshot", CohortSnapshot, SelfCalibrationSnapshot)


def latest_snapshot(session: Session, table: type[Snapshot], model_version: str) -> Snapshot | None:
    """The newest snapshot of a model version (cohort members, or a self-calibration fit)."""
    return session.scalars(
        select(table).where(table.model_version == model_version).order_by(table.id.desc()).limit(1)
    ).first()


def add_snapshot(session: Session, snapshot: Snapshot, keep: int) -> Snapshot:
    """Store a new snapshot and delete all but the newest `keep` of its model version (a replica in the
    middle of a reload can still read the previous one)."""
    table = type(snapshot)
    session.add(snapshot)
    session.flush()
    old = select(table.id).where(table.model_version == snapshot.model_version).order_by(table.id.desc()).offset(keep)
    session.execute(delete(table).where(table.id.in_(old.scalar_subquery())))
    return snapshot


def refresh_cohort(session: Session, model_version: str, size: int, now: datetime) -> CohortSnapshot | None:
    """Write a new snapshot when the sample changed; None when it did not. O(C) with the primary key
    index: the sample is the first C enrolled voiceprints by id, and ids are random."""
    members = list(
        session.scalars(
            select(Speaker.id)
            .where(
                Speaker.voiceprint_model_version == model_version,
                Speaker.voiceprint.is_not(None),
                Speaker.status == SpeakerStatus.ENROLLED,
            )
            .order_by(Speaker.id)
            .limit(size)
        )
    )
    digest = _digest(members)
    latest = latest_snapshot(session, CohortSnapshot, model_version)
    if latest is not None and latest.digest == digest:
        return None
    snapshot = CohortSnapshot(
        model_version=model_version, members=members, size=len(members), digest=digest, created_at=now
    )
    return add_snapshot(session, snapshot, KEEP_SNAPSHOTS)


def follow_enrolment(session: Session, model_version: str, size: int, now: datetime) -> bool:
    """After an enrolment: while the population is smaller than the cohort, every enrolled voiceprint is
    a member, so the snapshot is refreshed in the enrolment's own transaction instead of waiting for
    the worker's interval. The first callers of a deployment are then normalised against each other
    at once, in the regime the calibration of that population size was fitted on (issue 19: with a
    300 s refresh the first 30 callers were scored against the shipped cohort alone and 8.7 % of
    impostor calls were accepted). Once the cohort is full the periodic job keeps it; one enrolment
    then changes at most one member. True when a new snapshot was written."""
    latest = latest_snapshot(session, CohortSnapshot, model_version)
    if latest is not None and latest.size >= size:
        return False
    return refresh_cohort(session, model_version, size, now) is not None


def refresh_all_cohorts(session: Session, size: int, now: datetime) -> int:
    """Refresh the snapshot of every model version that has voiceprints; the number of new snapshots."""
    versions = session.scalars(
        select(Speaker.voiceprint_model_version).where(Speaker.voiceprint_model_version.is_not(None)).distinct()
    ).all()
    return sum(refresh_cohort(session, v, size, now) is not None for v in versions if v is not None)


class CohortCache:
    """Per-process: the newest snapshot's member voiceprints, decrypted once per snapshot.

    Which snapshot is newest is read at most every `poll_s` per model version (the change feed's
    poll interval), not on every scored call: snapshots change once per refresh interval, and a
    replica takes a new one within the same delay as any other shared change. `invalidate` makes
    the next call look at once (after this process took a snapshot itself)."""

    def __init__(self, cipher: Vault, poll_s: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cipher = cipher
        self._poll_s = poll_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._states: dict[str, CohortState] = {}
        self._checked_at: dict[str, float] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = {}

    def current(self, session: Session, model_version: str) -> CohortState:
        now = self._monotonic()
        with self._lock:
            state = self._states.get(model_version)
            if state is not None and now - self._checked_at.get(model_version, float("-inf")) < self._poll_s:
                return state
        latest_id = session.scalar(
            select(func.max(CohortSnapshot.id)).where(CohortSnapshot.model_version == model_version)
        )
        if state is None or state.snapshot_id != latest_id:
            state = self._load(session, model_version, latest_id)
        with self._lock:
            self._states[model_version] = state
            self._checked_at[model_version] = now
        return state

    def _load(self, session: Session, model_version: str, snapshot_id: int | None) -> CohortState:
        snapshot = None if snapshot_id is None else session.get(CohortSnapshot, snapshot_id)
        if snapshot is None:
            return CohortState(None, None, (), np.zeros((0, 0), dtype=np.float32))
        order = {sid: k for k, sid in enumerate(snapshot.members)}
        found: list[tuple[int, str, FloatArray, FloatArray]] = []
        for speaker in session.scalars(select(Speaker).where(Speaker.id.in_(snapshot.members))):
            vector = repo.get_voiceprint(self._cipher, speaker)
            phone = repo.voiceprint_for_channel(self._cipher, speaker, PHONE, phone_view=True)
            if vector is not None and phone is not None and speaker.voiceprint_model_version == model_version:
                found.append((order[speaker.id], speaker.id, vector, phone))
        found.sort(key=lambda item: item[0])
        empty = np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([v for _, _, v, _ in found]) if found else empty
        phones = np.stack([p for _, _, _, p in found]) if found else empty
        return CohortState(snapshot.id, snapshot.digest, tuple(sid for _, sid, _, _ in found), vectors, phones)

    def held(self) -> dict[str, dict[str, object]]:
        """The cohort snapshot this process scores with, per model version (for /readyz)."""
        with self._lock:
            return {
                version: {"snapshot": state.snapshot_id, "digest": state.digest, "members": len(state.member_ids)}
                for version, state in self._states.items()
            }

    def members_for(
        self,
        session: Session,
        model_version: str,
        exclude_id: str,
        alive: Callable[[str], bool],
        channel: str | None = None,
        phone_view: bool = False,
    ) -> FloatArray | None:
        """The population part of a trial's cohort: members in sampling order, less the claimed
        speaker, less anyone erased since the snapshot (`alive`: the change-fed voiceprint cache, so
        an erasure on any replica is honoured here within the feed's poll interval, with no
        per-call query over the members)."""
        state = self.current(session, model_version)
        keep = [k for k, sid in enumerate(state.member_ids) if sid != exclude_id and alive(sid)]
        return state.for_channel(channel, phone_view)[keep] if keep else None
