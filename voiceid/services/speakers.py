"""Speakers: creation with a consent record, status, opt-out, reset, erasure and unlock.

Each public method is one transaction, and a method that raises has changed nothing stored. The
enrolment and verification services find speakers through `load` and describe them with `view`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services import audit, consent
from voiceid.services.audit import AuditAction
from voiceid.services.consent import ConsentAction
from voiceid.services.serving import ServingContext
from voiceid.services.views import Consent, SpeakerView, validate_speaker_id
from voiceid.statuses import SpeakerStatus
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.models import Speaker
from voiceid.verify import lockout


def lock_state(speaker: Speaker) -> lockout.LockState:
    return lockout.LockState(speaker.lockout_weight, speaker.locked_at)


def _erase_biometrics(session: Session, speaker: Speaker, now: datetime) -> None:
    """Reset and opt-out keep the speaker's row but nothing of their voice: embeddings, voiceprint,
    fingerprints and attempt embeddings go (data key shredded at commit), open review items close."""
    repo.erase_biometrics(session, speaker)
    fraud_repo.erase_speaker_fraud_data(session, speaker.speaker_ref, now)


class Speakers:
    def __init__(self, ctx: ServingContext) -> None:
        self.ctx = ctx

    def load(self, session: Session, speaker_id: str, for_update: bool = False) -> Speaker:
        speaker = repo.get_speaker(session, validate_speaker_id(speaker_id), for_update=for_update)
        if speaker is None:
            raise VoiceIdError(ErrorCode.SPEAKER_NOT_FOUND, f"no speaker {speaker_id!r}")
        return speaker

    def view(self, session: Session, speaker: Speaker) -> SpeakerView:
        settings = self.ctx.settings
        return SpeakerView(
            speaker_id=speaker.speaker_ref,
            status=speaker.status,
            net_speech_s=round(repo.enrolment_speech_s(session, speaker, self.ctx.model_version), 3),
            required_speech_s=settings.enrol_min_speech_s,
            model_version=speaker.voiceprint_model_version,
            consent=Consent(
                granted=speaker.consent_granted,
                text_version=speaker.consent_text_version,
                channel=speaker.consent_channel,
                granted_at=speaker.consent_at,
                withdrawn_at=speaker.consent_withdrawn_at,
            ),
            created_at=speaker.created_at,
            locked=lockout.is_locked(lock_state(speaker), self.ctx.now(), settings.lockout_window_s),
        )

    def put(
        self,
        speaker_id: str,
        granted: bool | None,
        text_version: str | None,
        channel: str | None,
        api_key_id: str | None = None,
    ) -> tuple[SpeakerView, bool]:
        """Create the speaker with its consent record; (view, created). Idempotent for an
        existing speaker, and the way an opted-out speaker gives consent again."""
        validate_speaker_id(speaker_id)
        if granted is not True:
            raise VoiceIdError(
                ErrorCode.CONSENT_REQUIRED, "explicit consent (consent.granted = true) is required to enrol a voice"
            )
        if not text_version:
            raise VoiceIdError(ErrorCode.CONSENT_REQUIRED, "consent.text_version must name the consent text agreed to")
        now = self.ctx.now()
        with self.ctx.db.transaction() as session:
            # INSERT ... ON CONFLICT DO NOTHING: of two concurrent first PUTs one creates, the other
            # waits for it and then finds the row (a SELECT ... FOR UPDATE cannot lock a missing row).
            created = repo.insert_speaker_if_absent(session, speaker_id, SpeakerStatus.ENROLLING, now)
            speaker = repo.get_speaker(session, speaker_id, for_update=True)
            if speaker is None:  # deleted between the two statements by a concurrent DELETE
                raise VoiceIdError(ErrorCode.CONFLICT, f"speaker {speaker_id!r} changed concurrently; retry")
            if created or speaker.status == SpeakerStatus.OPTED_OUT or speaker.consent_text_version != text_version:
                speaker.consent_granted = True
                speaker.consent_text_version = text_version
                speaker.consent_channel = channel
                speaker.consent_at = now
                speaker.consent_withdrawn_at = None
                consent.record(session, speaker_id, ConsentAction.GRANTED, text_version, channel, api_key_id, now)
            if speaker.status == SpeakerStatus.OPTED_OUT:
                speaker.status = SpeakerStatus.ENROLLING
            speaker.updated_at = now
            session.flush()
            return self.view(session, speaker), created

    def get(self, speaker_id: str) -> SpeakerView:
        with self.ctx.db.transaction() as session:
            return self.view(session, self.load(session, speaker_id))

    def reset_enrolment(self, speaker_id: str) -> SpeakerView:
        now = self.ctx.now()
        with self.ctx.db.transaction() as session:
            speaker = self.load(session, speaker_id, for_update=True)
            _erase_biometrics(session, speaker, now)
            if speaker.status != SpeakerStatus.OPTED_OUT:
                speaker.status = SpeakerStatus.ENROLLING
            speaker.updated_at = now
            view = self.view(session, speaker)
        self.ctx.db.flush_erased()
        return view

    def opt_out(self, speaker_id: str, api_key_id: str | None = None) -> SpeakerView:
        now = self.ctx.now()
        with self.ctx.db.transaction() as session:
            speaker = self.load(session, speaker_id, for_update=True)
            _erase_biometrics(session, speaker, now)
            speaker.status = SpeakerStatus.OPTED_OUT
            speaker.consent_granted = False
            speaker.consent_withdrawn_at = now
            speaker.updated_at = now
            consent.record(session, speaker.speaker_ref, ConsentAction.WITHDRAWN, None, None, api_key_id, now)
            view = self.view(session, speaker)
        self.ctx.db.flush_erased()
        return view

    def delete(self, speaker_id: str, api_key_id: str | None = None) -> None:
        now = self.ctx.now()
        with self.ctx.db.transaction() as session:
            speaker = self.load(session, speaker_id, for_update=True)
            fraud_repo.erase_speaker_fraud_data(session, speaker.speaker_ref, now)
            repo.delete_speaker(session, speaker)
            audit.append(session, AuditAction.SPEAKER_DELETED, speaker.speaker_ref, now=now)
            consent.record(session, speaker.speaker_ref, ConsentAction.ERASED, None, None, api_key_id, now)
        self.ctx.db.flush_erased()

    def unlock(self, speaker_id: str) -> SpeakerView:
        now = self.ctx.now()
        with self.ctx.db.transaction() as session:
            speaker = self.load(session, speaker_id, for_update=True)
            speaker.lockout_weight = 0.0
            speaker.locked_at = None
            speaker.updated_at = now
            audit.append(session, AuditAction.SPEAKER_UNLOCKED, speaker.speaker_ref, now=now)
            return self.view(session, speaker)
