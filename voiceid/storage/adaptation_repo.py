"""Adaptation queries and writes (enrolment/adaptation.py): the kept accepted calls, the adapted
voiceprints and the score log's mark. Callers own the transaction, as in `repositories`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from voiceid.statuses import AdaptationState
from voiceid.storage.crypto import associated_data
from voiceid.storage.keys import KeyShreddedError, Vault, speaker_owner
from voiceid.storage.models import AdaptationCall, Speaker, Verification
from voiceid.verify.cohort import PHONE

FloatArray = npt.NDArray[np.float32]


def _column(channel: str) -> str:
    """The speaker column of the voiceprint adapted with calls on `channel`."""
    return "adapted_phone_voiceprint" if channel == PHONE else "adapted_voiceprint"


def add_call(
    session: Session,
    vault: Vault,
    speaker: Speaker,
    verification_id: str,
    vector: FloatArray,
    channel: str,
    model_version: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    """Keep an accepted call to adapt with, sealed under the speaker's key (erased with the speaker)."""
    blob = vault.seal_vector(
        speaker_owner(speaker.id), vector, associated_data("adaptation_call", verification_id, model_version)
    )
    session.add(
        AdaptationCall(
            verification_id=verification_id,
            speaker_id=speaker.id,
            channel=channel,
            model_version=model_version,
            ciphertext=blob,
            created_at=created_at,
            expires_at=expires_at,
        )
    )
    session.execute(
        update(Verification).where(Verification.id == verification_id).values(adaptation=AdaptationState.ADAPTED)
    )
    session.flush()


@dataclass(frozen=True)
class KeptCall:
    verification_id: str
    vector: FloatArray
    created_at: datetime


def kept_calls(
    session: Session, vault: Vault, speaker: Speaker, channel: str, model_version: str, now: datetime
) -> list[KeptCall]:
    """The unexpired kept calls of one speaker and channel, oldest first."""
    rows = session.scalars(
        select(AdaptationCall)
        .where(
            AdaptationCall.speaker_id == speaker.id,
            AdaptationCall.channel == channel,
            AdaptationCall.model_version == model_version,
            AdaptationCall.expires_at > now,
        )
        .order_by(AdaptationCall.created_at, AdaptationCall.verification_id)
    ).all()
    out = []
    for row in rows:
        try:
            vector = vault.open_vector(
                row.ciphertext, associated_data("adaptation_call", row.verification_id, row.model_version)
            )
        except KeyShreddedError:
            continue  # left by an erasure whose commit failed after its key was destroyed: erased
        out.append(KeptCall(row.verification_id, vector, row.created_at))
    return out


def calls_of(session: Session, verification_ids: Sequence[str]) -> list[AdaptationCall]:
    if not verification_ids:
        return []
    return list(
        session.scalars(select(AdaptationCall).where(AdaptationCall.verification_id.in_(list(verification_ids)))).all()
    )


def calls_of_speaker(session: Session, speaker: Speaker) -> list[AdaptationCall]:
    return list(session.scalars(select(AdaptationCall).where(AdaptationCall.speaker_id == speaker.id)).all())


def expired_calls(session: Session, now: datetime, limit: int) -> list[AdaptationCall]:
    return list(
        session.scalars(
            select(AdaptationCall)
            .where(AdaptationCall.expires_at <= now)
            .order_by(AdaptationCall.expires_at)
            .limit(limit)
        ).all()
    )


def remove_calls(session: Session, verification_ids: Sequence[str], mark: AdaptationState | None) -> None:
    """Delete kept calls; `mark` (REVERTED) goes on their score-log rows (None: leave them as they are,
    e.g. the oldest calls dropped by the count cap, which did adapt while they were kept)."""
    if not verification_ids:
        return
    ids = list(verification_ids)
    session.execute(delete(AdaptationCall).where(AdaptationCall.verification_id.in_(ids)))
    if mark is not None:
        session.execute(update(Verification).where(Verification.id.in_(ids)).values(adaptation=mark))
    session.flush()


def set_adapted_voiceprint(
    session: Session, vault: Vault, speaker: Speaker, channel: str, vector: FloatArray | None, model_version: str
) -> None:
    """The voiceprint calls on `channel` are scored against once adapted (None: the enrolment one)."""
    column = _column(channel)
    sealed = (
        None
        if vector is None
        else vault.seal_vector(speaker_owner(speaker.id), vector, associated_data(column, speaker.id, model_version))
    )
    setattr(speaker, column, sealed)
    session.flush()


def adapted_voiceprint(vault: Vault, speaker: Speaker, channel: str) -> FloatArray | None:
    """The adapted voiceprint of `channel`, None when no call adapted it (or it was erased)."""
    column = _column(channel)
    sealed: bytes | None = getattr(speaker, column)
    version = speaker.voiceprint_model_version
    if sealed is None or version is None:
        return None
    try:
        return vault.open_vector(sealed, associated_data(column, speaker.id, version))
    except KeyShreddedError:
        return None


def erase(session: Session, speaker: Speaker) -> None:
    """Part of the speaker's erasure (repositories.erase_biometrics): every kept call and adapted voiceprint."""
    session.execute(delete(AdaptationCall).where(AdaptationCall.speaker_id == speaker.id))
    speaker.adapted_voiceprint = None
    speaker.adapted_phone_voiceprint = None
