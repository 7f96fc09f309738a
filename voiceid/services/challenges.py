"""Spoken challenges, the use case: issue one, recognise a probe against it, settle it in the decision.

Issuing and settling run in the caller's transaction with the speaker row locked, so two
verifications racing on one challenge settle one after the other and the second finds it USED.
The recogniser runs on the bounded inference pool, outside any transaction, like the embedding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voiceid.audio.decode import AudioLimits, decode_audio
from voiceid.challenge.policy import (
    ChallengeCheck,
    ChallengeKind,
    ChallengePolicy,
    ChallengeStatus,
    at_risk,
    new_challenge_id,
    new_digits,
    prompt_words,
    spoken_prompt,
)
from voiceid.challenge.recogniser import DigitRecogniser, Recognition
from voiceid.engine import EmbeddedUtterance
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.decision import ChallengeEvidence
from voiceid.services.serving import ServingContext
from voiceid.services.views import check_issued_id, validate_speaker_id
from voiceid.statuses import SpeakerStatus
from voiceid.storage import repositories as repo
from voiceid.storage.models import Challenge, Speaker


@dataclass(frozen=True)
class ChallengeView:
    challenge_id: str
    speaker_id: str
    kind: ChallengeKind
    prompt: str  # what the IVR plays: "4 7 1 9 0 2"
    prompt_text: str  # words for a TTS engine: "four seven one nine zero two"
    expires_at: datetime


def check_challenge_id(challenge_id: str) -> str:
    return check_issued_id(challenge_id, "challenge_id", "returned by POST /v1/speakers/{id}/challenges")


class Challenges:
    def __init__(self, ctx: ServingContext, recogniser: DigitRecogniser | None = None) -> None:
        self.ctx = ctx
        self._recogniser = recogniser
        self._lock = threading.Lock()

    @property
    def policy(self) -> ChallengePolicy:
        return ChallengePolicy(self.ctx.settings.challenge_policy)

    @property
    def recogniser(self) -> DigitRecogniser:
        """Loaded (and its files hash-checked) on first use: a service that never sees a challenge
        pays nothing for it."""
        with self._lock:
            if self._recogniser is None:
                self._recogniser = DigitRecogniser()
            return self._recogniser

    def issue(self, speaker_id: str, api_key_id: str | None = None) -> ChallengeView:
        settings = self.ctx.settings
        with self.ctx.db.transaction() as session:
            speaker = repo.get_speaker(session, validate_speaker_id(speaker_id), for_update=True)
            if speaker is None:
                raise VoiceIdError(ErrorCode.SPEAKER_NOT_FOUND, f"no speaker {speaker_id!r}")
            if speaker.status == SpeakerStatus.OPTED_OUT:
                raise VoiceIdError(ErrorCode.SPEAKER_OPTED_OUT, "the speaker opted out of voice verification")
            now = self.ctx.now()
            open_now = session.scalar(
                select(func.count())
                .select_from(Challenge)
                .where(Challenge.speaker_ref == speaker_id, Challenge.used_at.is_(None), Challenge.expires_at > now)
            )
            if int(open_now or 0) >= settings.challenge_max_open:
                raise VoiceIdError(
                    ErrorCode.RATE_LIMITED,
                    f"this speaker already has {settings.challenge_max_open} open challenges; use one or let "
                    f"them expire ({settings.challenge_ttl_s:g} s)",
                    retry_after_s=int(settings.challenge_ttl_s),
                )
            row = Challenge(
                id=new_challenge_id(),
                speaker_ref=speaker_id,
                kind=ChallengeKind.DIGITS.value,
                prompt=new_digits(settings.challenge_digits),
                created_at=now,
                expires_at=now + timedelta(seconds=settings.challenge_ttl_s),
                api_key_id=api_key_id,
            )
            session.add(row)
            session.flush()
            return ChallengeView(
                row.id,
                speaker_id,
                ChallengeKind.DIGITS,
                spoken_prompt(row.prompt),
                prompt_words(row.prompt),
                row.expires_at,
            )

    def prompt_of(self, speaker_id: str, challenge_id: str) -> str | None:
        """The prompt to recognise against, or None when nothing is worth recognising (unknown,
        another speaker's, used or expired: the decision says which)."""
        with self.ctx.db.transaction() as session:
            row = session.get(Challenge, challenge_id)
            if row is None or row.speaker_ref != speaker_id or row.used_at is not None:
                return None
            return row.prompt if self.ctx.now() < row.expires_at else None

    def recognise(self, data: bytes, content_type: str | None, prompt: str) -> Recognition:
        """The probe's words against the prompt, on the inference pool (OVERLOADED when it is full)."""
        return self.ctx.pool.run(self._recognise, data, content_type, prompt)

    def _recognise(self, data: bytes, content_type: str | None, prompt: str) -> Recognition:
        settings = self.ctx.settings
        limits = AudioLimits(
            settings.max_upload_bytes,
            settings.max_audio_s,
            min_rate=settings.min_sample_rate,
            max_rate=settings.max_sample_rate,
            max_channels=settings.max_channels,
            max_samples=settings.max_decoded_samples,
        )
        decoded = decode_audio(data, content_type, limits)
        return self.recogniser.recognise(decoded.samples, decoded.sample_rate, prompt)

    def check(
        self,
        session: Session,
        speaker: Speaker,
        utterance: EmbeddedUtterance,
        linked: bool,
        challenge_id: str | None,
        heard: Recognition | None,
        now: datetime,
    ) -> ChallengeEvidence:
        """The challenge evidence of a call being decided: its challenge settled (consumed), or,
        without one, whether the on-risk policy finds the call risky (`services.decision` applies it)."""
        check = None if challenge_id is None else self.settle(session, speaker, challenge_id, heard, now)
        risky = False
        if check is None and self.policy is ChallengePolicy.ON_RISK:
            thresholds = self.ctx.pad.thresholds
            cm_score = None if utterance.pad is None else utterance.pad.cm_score
            cm_threshold = None if thresholds is None else thresholds.threshold(utterance.quality.channel)
            risky = at_risk(cm_score, cm_threshold, self.ctx.settings.challenge_cm_band, linked)
        return ChallengeEvidence(check, self.policy, risky)

    @staticmethod
    def link(session: Session, check: ChallengeCheck | None, verification_id: str) -> None:
        """Record which verification consumed the challenge (not for USED / UNKNOWN: not theirs)."""
        if check is None or check.status in (ChallengeStatus.USED, ChallengeStatus.UNKNOWN):
            return
        row = session.get(Challenge, check.challenge_id)
        if row is not None:
            row.verification_id = verification_id

    def settle(
        self, session: Session, speaker: Speaker, challenge_id: str, heard: Recognition | None, now: datetime
    ) -> ChallengeCheck:
        """Consume the challenge (single use, whatever the outcome) and say what it came to."""
        row = session.get(Challenge, challenge_id, with_for_update=True)
        if row is None or row.speaker_ref != speaker.speaker_ref:
            # Another speaker's challenge is unknown here, and stays usable by its own speaker.
            return ChallengeCheck(challenge_id, ChallengeStatus.UNKNOWN)
        if row.used_at is not None:
            return ChallengeCheck(challenge_id, ChallengeStatus.USED, row.prompt)
        row.used_at = now
        if now >= row.expires_at:
            return ChallengeCheck(challenge_id, ChallengeStatus.EXPIRED, row.prompt)
        if heard is None or heard.prompt != row.prompt:  # not recognised against this prompt: never a pass
            return ChallengeCheck(challenge_id, ChallengeStatus.MISMATCH, row.prompt)
        passed = heard.passes(self.ctx.settings.challenge_threshold)
        return ChallengeCheck(
            challenge_id,
            ChallengeStatus.PASSED if passed else ChallengeStatus.MISMATCH,
            row.prompt,
            heard.heard[:32],  # a free loop can hear many digits in a long call; the log keeps enough
            None if heard.score == float("-inf") else round(heard.score, 4),
        )
