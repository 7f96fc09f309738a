"""Consent as an append-only ledger.

Every grant, withdrawal and erasure is a new `consent_events` row with its time, the version of the
consent text, the channel it was given on and the API key that recorded it; no row is ever updated
or deleted, so re-consenting after an opt-out adds a grant after the withdrawal instead of erasing
the record of it. The ledger holds no biometric data and outlives the speaker (like the score log):
it is the evidence of the lawful basis for what was processed, and of its end.
The speaker row keeps the *current* state (`consent_granted`, ...) for fast checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.views import validate_speaker_id
from voiceid.storage.db import Database
from voiceid.storage.models import ConsentEvent

# A speaker's ledger is small (a few events per year at most); this bounds a hostile one.
MAX_EVENTS_LISTED = 1000


class ConsentAction(StrEnum):
    GRANTED = "GRANTED"
    WITHDRAWN = "WITHDRAWN"
    ERASED = "ERASED"  # the speaker was deleted: nothing is processed any more


@dataclass(frozen=True)
class ConsentEventView:
    action: str
    text_version: str | None
    channel: str | None
    api_key_id: str | None
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: ConsentEvent) -> ConsentEventView:
        return cls(row.action, row.text_version, row.channel, row.api_key_id, row.created_at)


def record(
    session: Session,
    speaker_ref: str,
    action: ConsentAction,
    text_version: str | None,
    channel: str | None,
    api_key_id: str | None,
    now: datetime,
) -> None:
    session.add(
        ConsentEvent(
            speaker_ref=speaker_ref,
            action=action.value,
            text_version=text_version,
            channel=channel,
            api_key_id=api_key_id,
            created_at=now,
        )
    )
    session.flush()


def history(session: Session, speaker_ref: str) -> Sequence[ConsentEvent]:
    """Oldest first, in the order recorded."""
    return session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.speaker_ref == speaker_ref)
        .order_by(ConsentEvent.id)
        .limit(MAX_EVENTS_LISTED)
    ).all()


def consent_history(db: Database, speaker_id: str) -> list[ConsentEventView]:
    """The ledger of `speaker_id`; SPEAKER_NOT_FOUND when there never was such a speaker."""
    validate_speaker_id(speaker_id)
    with db.transaction() as session:
        events = [ConsentEventView.from_row(row) for row in history(session, speaker_id)]
    if not events:
        raise VoiceIdError(ErrorCode.SPEAKER_NOT_FOUND, f"no consent recorded for speaker {speaker_id!r}")
    return events
