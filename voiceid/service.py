"""The one place that turns audio into an enrolment step or a verification decision and its log row.

The HTTP API, the CLI and the telephony streams all call `VoiceIdService`; none of them talks to
the engine or the database on its own. Each public method is one transaction (two for audio:
a short read before inference and the write after it, so no database lock is held while the
model runs), and a method that raises has changed nothing stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from voiceid.antispoof.checks import PadChecks, PadVerdict
from voiceid.audio.quality import QualityReport
from voiceid.config import Settings
from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.enrolment.session import progress
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.checks import FraudChecks
from voiceid.fraud.watchlist import WatchlistHit
from voiceid.inference import InferencePool
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import Cipher, decode_key, load_or_create_key_file
from voiceid.storage.db import Database
from voiceid.storage.models import Speaker, Verification, utcnow
from voiceid.verify import lockout
from voiceid.verify.decision import Decision, Outcome, Reason, Thresholds, apply_watchlist, decide
from voiceid.verify.policy import AppliedThresholds, DecisionPolicy, build_policy, build_scorer
from voiceid.verify.scorer import CohortScores, Scorer, ScoreResult

FloatArray = npt.NDArray[np.float32]
SPEAKER_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
KEY_FILE_NAME = "encryption.key"


class Role(StrEnum):
    IVR = "ivr"
    ENROLMENT = "enrolment"
    ANALYST = "analyst"
    ADMIN = "admin"


class SpeakerStatus(StrEnum):
    ENROLLING = "ENROLLING"
    ENROLLED = "ENROLLED"
    OPTED_OUT = "OPTED_OUT"
    REVIEW_REQUIRED = "REVIEW_REQUIRED"  # voiceprint built but held: it matches another speaker's


@dataclass(frozen=True)
class Consent:
    granted: bool
    text_version: str | None
    channel: str | None
    granted_at: datetime | None = None
    withdrawn_at: datetime | None = None


@dataclass(frozen=True)
class SpeakerView:
    speaker_id: str
    status: str
    net_speech_s: float
    required_speech_s: float
    model_version: str | None
    consent: Consent
    created_at: datetime
    locked: bool


@dataclass(frozen=True)
class EnrolmentStep:
    status: str
    net_speech_s: float
    required_speech_s: float
    quality: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    watchlist_hits: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class VerificationView:
    verification_id: str
    speaker_id: str
    decision: str
    score: float | None
    accept_threshold: float
    reject_threshold: float
    net_speech_s: float | None
    reasons: list[str]
    model_version: str
    channel: str | None
    quality: dict[str, Any] | None
    created_at: datetime
    raw_score: float | None = None
    llr: float | None = None
    norm: str | None = None
    calibration: str | None = None
    watchlist_hits: list[dict[str, Any]] = field(default_factory=list)
    cm_score: float | None = None  # calibrated bona fide LLR (nats), higher = more likely bona fide
    cm_version: str | None = None
    replay_score: float | None = None  # best fingerprint match with earlier audio of the speaker (0..1)

    @classmethod
    def from_row(cls, row: Verification) -> VerificationView:
        return cls(
            verification_id=row.id,
            speaker_id=row.speaker_ref,
            decision=row.decision,
            score=row.score,
            accept_threshold=row.accept_threshold,
            reject_threshold=row.reject_threshold,
            net_speech_s=row.net_speech_s,
            reasons=list(row.reasons),
            model_version=row.model_version,
            channel=row.channel,
            quality=row.quality,
            created_at=row.created_at,
            raw_score=row.raw_score,
            llr=row.llr,
            norm=row.norm,
            calibration=row.calibration,
            watchlist_hits=list(row.watchlist_hits or []),
            cm_score=row.cm_score,
            cm_version=row.cm_version,
            replay_score=row.replay_score,
        )


@dataclass(frozen=True)
class VerificationPage:
    items: list[VerificationView]
    next_cursor: str | None


@dataclass(frozen=True)
class Preview:
    """A score and the outcome it would lead to, not logged (streaming interims)."""

    score: float | None
    outcome: Outcome


@dataclass
class ServiceCounters:
    """Hooks for metrics; the API wires Prometheus in, the CLI leaves them as no-ops."""

    on_decision: Callable[[str], None] = field(default=lambda decision: None)
    on_inference: Callable[[float], None] = field(default=lambda seconds: None)


def validate_speaker_id(speaker_id: str) -> str:
    if not SPEAKER_ID_PATTERN.match(speaker_id):
        raise VoiceIdError(ErrorCode.INVALID_SPEAKER_ID, "speaker_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return speaker_id


def cipher_from_settings(settings: Settings) -> Cipher:
    if settings.encryption_key is not None:
        return Cipher(decode_key(settings.encryption_key.get_secret_value()))
    return Cipher(load_or_create_key_file(settings.data_dir / KEY_FILE_NAME))


class VoiceIdService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        engine: Engine,
        cipher: Cipher,
        pool: InferencePool,
        clock: Callable[[], datetime] = utcnow,
        counters: ServiceCounters | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.engine = engine
        self.cipher = cipher
        self.pool = pool
        self.clock = clock
        self.counters = counters or ServiceCounters()
        # Cohorts and calibration are loaded once; a missing or mismatched one fails start-up
        # rather than letting the service decide on thresholds that do not fit its scores.
        self.scorer = scorer or build_scorer(settings, engine.model_version)
        self.policy: DecisionPolicy = build_policy(settings, self.scorer)
        # Through self.clock, not `clock`: tests (and the purge) swap the service clock after start-up.
        self.fraud = FraudChecks(settings, cipher, lambda: self.clock())
        self.pad = PadChecks(settings, cipher, lambda: self.clock(), getattr(engine, "cm_version", None))

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> VoiceIdService:
        db = Database(settings.sqlalchemy_url)
        db.migrate()
        service = cls(
            settings,
            db,
            engine or Engine.from_settings(settings),
            cipher_from_settings(settings),
            InferencePool(settings.inference_workers, settings.inference_queue),
        )
        if settings.admin_key is not None:
            service.ensure_api_key(settings.admin_key.get_secret_value(), Role.ADMIN, "VOICEID_ADMIN_KEY")
        return service

    def close(self) -> None:
        self.pool.shutdown()
        self.db.dispose()

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds logged with decisions taken without audio (phone channel, good quality)."""
        return self.policy.thresholds(None).thresholds

    # --- API keys ------------------------------------------------------------------------

    def create_api_key(self, role: Role, label: str | None = None) -> tuple[str, str]:
        """(key id, secret). The secret is shown once; only its hash is stored."""
        with self.db.transaction() as session:
            row, secret = repo.create_api_key(session, role.value, label)
            return row.id, secret

    def ensure_api_key(self, secret: str, role: Role, label: str) -> None:
        with self.db.transaction() as session:
            repo.ensure_api_key(session, secret, role.value, label)

    def authenticate(self, secret: str) -> tuple[str, Role] | None:
        with self.db.transaction() as session:
            row = repo.find_api_key(session, secret)
            return None if row is None else (row.id, Role(row.role))

    # --- speakers ------------------------------------------------------------------------

    def _speaker(self, session: Session, speaker_id: str, for_update: bool = False) -> Speaker:
        speaker = repo.get_speaker(session, validate_speaker_id(speaker_id), for_update=for_update)
        if speaker is None:
            raise VoiceIdError(ErrorCode.SPEAKER_NOT_FOUND, f"no speaker {speaker_id!r}")
        return speaker

    def _view(self, session: Session, speaker: Speaker) -> SpeakerView:
        return SpeakerView(
            speaker_id=speaker.speaker_ref,
            status=speaker.status,
            net_speech_s=round(repo.enrolment_speech_s(session, speaker, self.engine.model_version), 3),
            required_speech_s=self.settings.enrol_min_speech_s,
            model_version=speaker.voiceprint_model_version,
            consent=Consent(
                granted=speaker.consent_granted,
                text_version=speaker.consent_text_version,
                channel=speaker.consent_channel,
                granted_at=speaker.consent_at,
                withdrawn_at=speaker.consent_withdrawn_at,
            ),
            created_at=speaker.created_at,
            locked=lockout.is_locked(self._lock_state(speaker), self.clock(), self.settings.lockout_window_s),
        )

    def put_speaker(
        self, speaker_id: str, granted: bool | None, text_version: str | None, channel: str | None
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
        now = self.clock()
        with self.db.transaction() as session:
            speaker = repo.get_speaker(session, speaker_id, for_update=True)
            created = speaker is None
            if speaker is None:
                speaker = Speaker(
                    id=repo.new_id(),
                    speaker_ref=speaker_id,
                    status=SpeakerStatus.ENROLLING.value,
                    consent_granted=True,
                    consecutive_rejects=0,
                    created_at=now,
                )
                session.add(speaker)
            if created or speaker.status == SpeakerStatus.OPTED_OUT or speaker.consent_text_version != text_version:
                speaker.consent_granted = True
                speaker.consent_text_version = text_version
                speaker.consent_channel = channel
                speaker.consent_at = now
                speaker.consent_withdrawn_at = None
            if speaker.status == SpeakerStatus.OPTED_OUT:
                speaker.status = SpeakerStatus.ENROLLING.value
            speaker.updated_at = now
            session.flush()
            return self._view(session, speaker), created

    def get_speaker(self, speaker_id: str) -> SpeakerView:
        with self.db.transaction() as session:
            return self._view(session, self._speaker(session, speaker_id))

    def _check_can_enrol(self, speaker: Speaker) -> None:
        if speaker.status == SpeakerStatus.OPTED_OUT or not speaker.consent_granted:
            raise VoiceIdError(
                ErrorCode.CONSENT_REQUIRED,
                "the speaker has opted out; record a new consent (PUT the speaker) before enrolling again",
            )

    def add_enrolment_audio(self, speaker_id: str, data: bytes, content_type: str | None) -> EnrolmentStep:
        with self.db.transaction() as session:
            self._check_can_enrol(self._speaker(session, speaker_id))
        utterance = self._embed(data, content_type)
        with self.db.transaction() as session:
            # Re-read under lock: the speaker may have opted out or been deleted during inference.
            speaker = self._speaker(session, speaker_id, for_update=True)
            self._check_can_enrol(speaker)
            self.pad.check_enrolment(session, speaker, utterance)  # raises: flagged audio is not enrolled
            version = utterance.model_version
            # A refusal by the fraud checks is raised after this transaction commits: the review
            # item recording it must stay even though the enrolment step does not.
            fraud = self.fraud.screen_enrolment(session, speaker, utterance.vector, version)
            if fraud.refusal is None:
                repo.add_enrolment_embedding(
                    session,
                    self.cipher,
                    speaker,
                    utterance.vector,
                    version,
                    utterance.quality.net_speech_s,
                    utterance.quality.to_dict(),
                )
                self.pad.keep_enrolment(session, speaker, utterance)
            state = progress(
                repo.enrolment_samples(session, self.cipher, speaker, version), self.settings.enrol_min_speech_s
            )
            if state.voiceprint is not None and fraud.refusal is None:
                repo.set_voiceprint(session, self.cipher, speaker, state.voiceprint, version)
                held = self.fraud.check_duplicates(session, speaker, state.voiceprint, version, fraud)
                if speaker.status != SpeakerStatus.REVIEW_REQUIRED:  # only an analyst releases a hold
                    speaker.status = held or SpeakerStatus.ENROLLED.value
            speaker.updated_at = self.clock()
            step = EnrolmentStep(
                status=speaker.status,
                net_speech_s=round(state.net_speech_s, 3),
                required_speech_s=state.required_speech_s,
                quality=utterance.quality.to_dict(),
                reasons=fraud.reasons,
                watchlist_hits=[h.to_dict() for h in fraud.watchlist_hits],
            )
        if fraud.refusal is not None:
            raise fraud.refusal
        return step

    def reset_enrolment(self, speaker_id: str) -> SpeakerView:
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            repo.erase_biometrics(session, speaker)
            fraud_repo.erase_attempts(session, speaker.speaker_ref)
            if speaker.status != SpeakerStatus.OPTED_OUT:
                speaker.status = SpeakerStatus.ENROLLING.value
            speaker.updated_at = self.clock()
            view = self._view(session, speaker)
        self.db.flush_erased()
        return view

    def opt_out(self, speaker_id: str) -> SpeakerView:
        now = self.clock()
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            repo.erase_biometrics(session, speaker)
            fraud_repo.erase_attempts(session, speaker.speaker_ref)
            speaker.status = SpeakerStatus.OPTED_OUT.value
            speaker.consent_granted = False
            speaker.consent_withdrawn_at = now
            speaker.updated_at = now
            view = self._view(session, speaker)
        self.db.flush_erased()
        return view

    def delete_speaker(self, speaker_id: str) -> None:
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            fraud_repo.erase_attempts(session, speaker.speaker_ref)
            repo.delete_speaker(session, speaker)
        self.db.flush_erased()

    def unlock(self, speaker_id: str) -> SpeakerView:
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            speaker.consecutive_rejects = 0
            speaker.locked_at = None
            speaker.updated_at = self.clock()
            return self._view(session, speaker)

    # --- verification --------------------------------------------------------------------

    def _embed(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        started = self.clock()
        utterance = self.pool.run(self.engine.embed_bytes, data, content_type)
        self.counters.on_inference((self.clock() - started).total_seconds())
        return utterance

    @staticmethod
    def _lock_state(speaker: Speaker) -> lockout.LockState:
        return lockout.LockState(speaker.consecutive_rejects, speaker.locked_at)

    def _precheck(self, speaker: Speaker, now: datetime) -> Outcome | None:
        """A decision that needs no audio, or None when the probe must be scored.

        Audio of an opted-out speaker is not even decoded: with consent withdrawn there is no
        basis for processing their voice at all.
        """
        if speaker.status == SpeakerStatus.OPTED_OUT:
            return Outcome(Decision.OPTED_OUT, (Reason.SPEAKER_OPTED_OUT,))
        if lockout.is_locked(self._lock_state(speaker), now, self.settings.lockout_window_s):
            return Outcome(Decision.LOCKED, (Reason.LOCKED_OUT,))
        if speaker.status == SpeakerStatus.REVIEW_REQUIRED:
            return Outcome(Decision.NOT_ENROLLED, (Reason.ENROLMENT_UNDER_REVIEW,))
        if speaker.voiceprint is None:
            return Outcome(Decision.NOT_ENROLLED, (Reason.NO_VOICEPRINT,))
        if speaker.voiceprint_model_version != self.engine.model_version:
            # Vectors of two models live in different spaces; comparing them would be meaningless.
            return Outcome(Decision.NOT_ENROLLED, (Reason.MODEL_VERSION_MISMATCH,))
        return None

    def _log(
        self,
        session: Session,
        speaker: Speaker,
        outcome: Outcome,
        api_key_id: str | None,
        now: datetime,
        result: ScoreResult | None = None,
        utterance: EmbeddedUtterance | None = None,
        thresholds: Thresholds | None = None,
        watchlist_hits: Sequence[WatchlistHit] = (),
        pad: PadVerdict | None = None,
    ) -> VerificationView:
        thresholds = thresholds or self.thresholds
        score = None if result is None else result.score
        row = repo.add_verification(
            session,
            speaker_ref=speaker.speaker_ref,
            decision=outcome.decision.value,
            score=None if score is None else round(score, 6),
            raw_score=None if result is None else round(result.raw, 6),
            llr=None if result is None or result.llr is None else round(result.llr, 4),
            norm=None if result is None else result.norm,
            calibration=None if result is None else result.calibration_id,
            accept_threshold=thresholds.accept,
            reject_threshold=thresholds.reject,
            net_speech_s=None if utterance is None else round(utterance.quality.net_speech_s, 3),
            reasons=[r.value for r in outcome.reasons],
            model_version=self.engine.model_version if utterance is None else utterance.model_version,
            channel=None if utterance is None else utterance.quality.channel,
            quality=None if utterance is None else utterance.quality.to_dict(),
            api_key_id=api_key_id,
            created_at=now,
            watchlist_hits=[h.to_dict() for h in watchlist_hits] or None,
            **(pad.log_fields if pad is not None else {}),
        )
        self.counters.on_decision(outcome.decision.value)
        return VerificationView.from_row(row)

    def verify(
        self, speaker_id: str, data: bytes, content_type: str | None, api_key_id: str | None = None
    ) -> VerificationView:
        early = self.verify_precheck(speaker_id, api_key_id)
        if early is not None:
            return early
        return self.verify_utterance(speaker_id, self._embed(data, content_type), api_key_id)

    def verify_precheck(self, speaker_id: str, api_key_id: str | None = None) -> VerificationView | None:
        """The logged decision when no audio is needed (opted out, locked, not enrolled), else None.

        Streams call it when the call starts, so an opted-out caller's audio is never processed."""
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            now = self.clock()
            early = self._precheck(speaker, now)
            if early is not None:
                return self._log(session, speaker, early, api_key_id, now)
        return None

    def verify_utterance(
        self, speaker_id: str, utterance: EmbeddedUtterance, api_key_id: str | None = None
    ) -> VerificationView:
        """Decide on an already embedded probe, update the lockout state and log the decision."""
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            now = self.clock()
            # The state may have moved during inference (a concurrent REJECT locked the speaker,
            # an opt-out, a re-enrolment); the decision is taken on the state as it is now.
            early = self._precheck(speaker, now)
            if early is not None:
                return self._log(session, speaker, early, api_key_id, now, utterance=utterance)
            result, applied, outcome, hits, pad = self._score(session, speaker, utterance)
            state = lockout.after_decision(
                self._lock_state(speaker),
                outcome.decision,
                now,
                self.settings.lockout_rejects,
                self.settings.lockout_window_s,
            )
            speaker.consecutive_rejects, speaker.locked_at = state.consecutive_rejects, state.locked_at
            view = self._log(
                session,
                speaker,
                outcome,
                api_key_id,
                now,
                result=result,
                utterance=utterance,
                thresholds=applied.thresholds,
                watchlist_hits=hits,
                pad=pad,
            )
            self.fraud.keep_attempt(
                session, view.verification_id, speaker.speaker_ref, utterance.vector, utterance.model_version
            )
            self.pad.keep_attempt(session, speaker, view.verification_id, utterance)
            return view

    def _score(
        self, session: Session, speaker: Speaker, utterance: EmbeddedUtterance
    ) -> tuple[ScoreResult, AppliedThresholds, Outcome, list[WatchlistHit], PadVerdict]:
        """The one place a probe becomes a score and an outcome (final decisions and stream previews),
        watchlist screen and presentation-attack checks included."""
        voiceprint = repo.get_voiceprint(self.cipher, speaker)
        if voiceprint is None:  # _precheck guarantees a voiceprint; this keeps the types honest
            raise VoiceIdError(ErrorCode.INTERNAL_ERROR, "voiceprint vanished")
        quality = utterance.quality
        population = self._population_scores(session, speaker, voiceprint, utterance)
        result = self.scorer.score(utterance.vector, voiceprint, quality.channel, population)
        applied = self.policy.thresholds(quality.channel, quality)
        outcome = decide(
            result.score,
            applied.thresholds,
            quality.net_speech_s,
            self.settings.verify_min_speech_s,
            low_quality=applied.low_quality,
        )
        hits = self.fraud.screen(session, utterance.vector, utterance.model_version)
        outcome = apply_watchlist(outcome, bool(hits), self.fraud.watchlist_forces_reject)
        pad = self.pad.screen(session, speaker, utterance, outcome)
        return result, applied, pad.outcome, list(hits), pad

    def _population_scores(
        self, session: Session, speaker: Speaker, voiceprint: FloatArray, utterance: EmbeddedUtterance
    ) -> CohortScores | None:
        """The claimed voiceprint and the probe scored against every other enrolled voiceprint.

        The enrolled population is the cohort that looks most like the callers (same language,
        same lines, same handsets); on the dev set it halves the phone-channel EER where the
        shipped LibriSpeech cohort made it worse. AS-norm needs only the top-N scores of each side,
        which the voiceprint index answers as a 1:N search, so this scales with the population.
        """
        if self.settings.score_norm == "none" or self.settings.cohort_source != "population":
            return None
        index, _ = self.fraud.voiceprints.current(session, utterance.model_version, exclude_id=speaker.id)
        members = len(index)
        if members == 0:
            return None
        k = self.settings.score_top_n if self.settings.score_norm == "as-norm" else members
        enrol_hits, test_hits = index.search(np.stack([voiceprint, utterance.vector]), k)
        return CohortScores(np.array([h.score for h in enrol_hits]), np.array([h.score for h in test_hits]), members)

    # --- streams (telephony) -------------------------------------------------------------

    def embed_probe(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        """Embed audio on the bounded inference pool (OVERLOADED when it is full)."""
        return self._embed(data, content_type)

    def preview_verification(self, speaker_id: str, utterance: EmbeddedUtterance) -> Preview:
        """What `verify_utterance` would decide now, with nothing logged and no lockout counted:
        a stream's interim score, and how it knows it may decide early."""
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id)
            early = self._precheck(speaker, self.clock())
            if early is not None:
                return Preview(None, early)
            result, _, outcome, _, _ = self._score(session, speaker, utterance)
            return Preview(result.score, outcome)

    def measure_speech(self, data: bytes, content_type: str | None) -> QualityReport:
        """Net speech and quality of audio without embedding it (enrolment stream progress)."""
        front_end = self.engine.front_end
        return self.pool.run(lambda: front_end.analyse(front_end.decode(data, content_type))[2])

    def check_can_enrol(self, speaker_id: str) -> SpeakerView:
        """Raise unless the speaker exists and has consented; a stream checks before taking audio."""
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id)
            self._check_can_enrol(speaker)
            return self._view(session, speaker)

    # --- the score log -------------------------------------------------------------------

    def get_verification(self, verification_id: str) -> VerificationView:
        with self.db.transaction() as session:
            row = repo.get_verification(session, verification_id)
            if row is None:
                raise VoiceIdError(ErrorCode.VERIFICATION_NOT_FOUND, f"no verification {verification_id!r}")
            return VerificationView.from_row(row)

    def list_verifications(self, filters: repo.VerificationFilter, limit: int, cursor: str | None) -> VerificationPage:
        after = None
        if cursor:
            try:
                after = repo.decode_cursor(cursor)
            except (ValueError, UnicodeDecodeError) as exc:
                raise VoiceIdError(ErrorCode.INVALID_REQUEST, "cursor is not one this service issued") from exc
        with self.db.transaction() as session:
            rows, next_cursor = repo.list_verifications(session, filters, limit, after)
            return VerificationPage([VerificationView.from_row(r) for r in rows], next_cursor)

    def all_verifications(self, filters: repo.VerificationFilter) -> Sequence[VerificationView]:
        with self.db.transaction() as session:
            return [VerificationView.from_row(r) for r in repo.iter_verifications(session, filters)]
