"""The one place that turns audio into an enrolment step or a verification decision and its log row.

The HTTP API, the CLI and the telephony streams all call `VoiceIdService`; none of them talks to
the engine or the database on its own. Each public method is one transaction (two for audio:
a short read before inference and the write after it, so no database lock is held while the
model runs), and a method that raises has changed nothing stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from voiceid.antispoof.checks import PadChecks, PadVerdict
from voiceid.audio.quality import QualityReport
from voiceid.config import Settings
from voiceid.context import AppContext
from voiceid.engine import EmbeddedUtterance, Engine
from voiceid.enrolment.session import progress
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.checks import FraudChecks
from voiceid.fraud.links import mark_linked
from voiceid.fraud.watchlist import WatchlistHit
from voiceid.inference import InferencePool
from voiceid.models.selection import resolve_service_backend
from voiceid.population import CohortCache, refresh_all_cohorts
from voiceid.privacy import consent
from voiceid.privacy.consent import ConsentAction
from voiceid.scorelog import ScoreLog
from voiceid.security import audit
from voiceid.security.apikeys import ApiKeys
from voiceid.security.audit import AuditAction
from voiceid.storage import fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.db import Database
from voiceid.storage.envelope_upgrade import upgrade_legacy_blobs
from voiceid.storage.keys import Vault
from voiceid.storage.models import Speaker, utcnow
from voiceid.storage.upgrade import upgrade
from voiceid.verify import lockout
from voiceid.verify.decision import Decision, Outcome, Reason, Thresholds, apply_watchlist, decide
from voiceid.verify.policy import AppliedThresholds, DecisionPolicy, Scale, build_policy, build_scorer
from voiceid.verify.scorer import Scorer, ScoreResult
from voiceid.views import (
    UNUSABLE_AUDIO,
    Consent,
    EnrolmentStep,
    Preview,
    ServiceCounters,
    SpeakerStatus,
    SpeakerView,
    VerificationView,
    validate_speaker_id,
)

FloatArray = npt.NDArray[np.float32]


class VoiceIdService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        engine: Engine,
        cipher: Vault,
        pool: InferencePool,
        clock: Callable[[], datetime] = utcnow,
        counters: ServiceCounters | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.engine = engine
        self.cipher = cipher  # the envelope vault: every biometric blob is sealed through it
        cipher.bind(db.sessions)  # erasures destroy the data key inside their own transaction
        self.pool = pool
        self.clock = clock
        self.counters = counters or ServiceCounters()
        # Cohorts and calibration are loaded once; a missing or mismatched one fails start-up
        # rather than letting the service decide on thresholds that do not fit its scores.
        self.scorer = scorer or build_scorer(settings, engine.model_version)
        self.policy: DecisionPolicy = build_policy(settings, self.scorer)
        self.cohort = CohortCache(cipher, settings.change_poll_s)
        # Through self.clock, not `clock`: tests (and the purge) swap the service clock after start-up.
        self.fraud = FraudChecks(settings, cipher, lambda: self.clock())
        self.pad = PadChecks(settings, cipher, lambda: self.clock(), getattr(engine, "cm_version", None))
        # Small services over the same database and clock (DESIGN.md: one context, several services).
        self.keys = ApiKeys(db, lambda: self.clock(), settings.api_key_touch_interval_s)
        self.score_log = ScoreLog(db)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None) -> VoiceIdService:
        context = AppContext.from_settings(settings)  # refuses per-host secrets on PostgreSQL
        if settings.upgrade_on_start:
            # migrations + admin-key bootstrap (apikeys.bootstrap_admin), under a database lock
            upgrade(context.db, settings)
        upgrade_legacy_blobs(context.db, context.cipher)
        if engine is None:
            with context.db.transaction() as session:
                enrolled = repo.voiceprint_versions(session)
            choice = resolve_service_backend(settings.inference_backend, settings.model_dir, enrolled)
            settings = settings.model_copy(update={"inference_backend": choice.backend})
        return cls(
            settings,
            context.db,
            engine or Engine.from_settings(settings),
            context.cipher,
            InferencePool(settings.inference_workers, settings.inference_queue),
        )

    def close(self) -> None:
        self.pool.shutdown()
        self.db.dispose()
        self.cipher.close()

    @property
    def thresholds(self) -> Thresholds:
        """The phone channel's threshold pair (what the review page draws)."""
        return self.policy.thresholds(None).thresholds

    def refresh_cohort(self) -> bool:
        """Take a new cohort snapshot where the enrolled population's sample changed: the worker's job,
        run now (tests, `voiceid cohort refresh`)."""
        with self.db.transaction() as session:
            changed = refresh_all_cohorts(session, self.settings.cohort_size, self.clock()) > 0
        self.cohort.invalidate()
        return changed

    def _lockout_weights(self) -> lockout.Weights:
        return lockout.Weights(self.settings.lockout_inconclusive_weight, self.settings.lockout_unusable_weight)

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
        now = self.clock()
        with self.db.transaction() as session:
            # INSERT ... ON CONFLICT DO NOTHING: of two concurrent first PUTs one creates, the other
            # waits for it and then finds the row (a SELECT ... FOR UPDATE cannot lock a missing row).
            created = repo.insert_speaker_if_absent(session, speaker_id, SpeakerStatus.ENROLLING.value, now)
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
            fraud = self.fraud.screen_enrolment(session, speaker, utterance.vector, version, utterance.quality.channel)
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
                speaker.voiceprint_used_at = self.clock()  # the retention clock starts (privacy/retention.py)
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
            fraud_repo.erase_speaker_fraud_data(session, speaker.speaker_ref, self.clock())
            if speaker.status != SpeakerStatus.OPTED_OUT:
                speaker.status = SpeakerStatus.ENROLLING.value
            speaker.updated_at = self.clock()
            view = self._view(session, speaker)
        self.db.flush_erased()
        return view

    def opt_out(self, speaker_id: str, api_key_id: str | None = None) -> SpeakerView:
        now = self.clock()
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            repo.erase_biometrics(session, speaker)
            fraud_repo.erase_speaker_fraud_data(session, speaker.speaker_ref, self.clock())
            speaker.status = SpeakerStatus.OPTED_OUT.value
            speaker.consent_granted = False
            speaker.consent_withdrawn_at = now
            speaker.updated_at = now
            consent.record(session, speaker.speaker_ref, ConsentAction.WITHDRAWN, None, None, api_key_id, now)
            view = self._view(session, speaker)
        self.db.flush_erased()
        return view

    def delete_speaker(self, speaker_id: str, api_key_id: str | None = None) -> None:
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            fraud_repo.erase_speaker_fraud_data(session, speaker.speaker_ref, self.clock())
            repo.delete_speaker(session, speaker)
            audit.append(session, AuditAction.SPEAKER_DELETED, speaker.speaker_ref, now=self.clock())
            consent.record(session, speaker.speaker_ref, ConsentAction.ERASED, None, None, api_key_id, self.clock())
        self.db.flush_erased()

    def unlock(self, speaker_id: str) -> SpeakerView:
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            speaker.lockout_weight = 0.0
            speaker.locked_at = None
            speaker.updated_at = self.clock()
            audit.append(session, AuditAction.SPEAKER_UNLOCKED, speaker.speaker_ref, now=self.clock())
            return self._view(session, speaker)

    # --- verification --------------------------------------------------------------------

    def _embed(self, data: bytes, content_type: str | None) -> EmbeddedUtterance:
        started = self.clock()
        utterance = self.pool.run(self.engine.embed_bytes, data, content_type)
        self.counters.on_inference((self.clock() - started).total_seconds())
        return utterance

    @staticmethod
    def _lock_state(speaker: Speaker) -> lockout.LockState:
        return lockout.LockState(speaker.lockout_weight, speaker.locked_at)

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
        if speaker.status == SpeakerStatus.EXPIRED:
            return Outcome(Decision.NOT_ENROLLED, (Reason.VOICEPRINT_EXPIRED,))
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
        applied: AppliedThresholds | None = None,
        watchlist_hits: Sequence[WatchlistHit] = (),
        pad: PadVerdict | None = None,
    ) -> VerificationView:
        """Log a decision. Thresholds are logged only with a score: on an answer where nothing was
        scored (opted out, locked, not enrolled) a threshold would mean nothing."""
        score = None if result is None else result.score
        row = repo.add_verification(
            session,
            speaker_ref=speaker.speaker_ref,
            decision=outcome.decision.value,
            # Rounded to what the numbers can mean: an IVR needs no 16 digits.
            score=None if score is None else round(score, 3),
            raw_score=None if result is None else round(result.raw, 4),
            llr=None if result is None or result.llr is None else round(result.llr, 2),
            norm=None if result is None else result.norm,
            calibration=None if result is None else result.calibration_id,
            accept_threshold=None if result is None or applied is None else applied.thresholds.accept,
            reject_threshold=None if result is None or applied is None else applied.thresholds.reject,
            threshold_scale=None if result is None or applied is None else applied.scale.value,
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
        try:
            utterance = self._embed(data, content_type)
        except VoiceIdError as exc:
            if exc.code in UNUSABLE_AUDIO:
                self.count_unusable_attempt(speaker_id)
            raise
        return self.verify_utterance(speaker_id, utterance, api_key_id)

    def count_unusable_attempt(self, speaker_id: str) -> None:
        """An attempt refused for too little or no speech still counts toward lockout (weighted):
        otherwise short clips would be free retries for anyone probing the account."""
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            state = lockout.after_attempt(
                self._lock_state(speaker),
                lockout.Attempt.UNUSABLE,
                self.clock(),
                self.settings.lockout_rejects,
                self.settings.lockout_window_s,
                self._lockout_weights(),
            )
            speaker.lockout_weight, speaker.locked_at = state.weight, state.locked_at

    def _check_rate(self, session: Session, speaker: Speaker, now: datetime) -> None:
        since = now - timedelta(seconds=self.settings.attempt_rate_window_s)
        attempts = repo.count_verifications_since(session, speaker.speaker_ref, since)
        if attempts >= self.settings.attempt_rate_limit:
            raise VoiceIdError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.settings.attempt_rate_limit} verification attempts for this speaker within "
                f"{self.settings.attempt_rate_window_s:g} s; try again later",
                retry_after_s=int(self.settings.attempt_rate_window_s),
            )

    def verify_precheck(self, speaker_id: str, api_key_id: str | None = None) -> VerificationView | None:
        """The logged decision when no audio is needed (opted out, locked, not enrolled), else None.

        Streams call it when the call starts, so an opted-out caller's audio is never processed."""
        with self.db.transaction() as session:
            speaker = self._speaker(session, speaker_id, for_update=True)
            now = self.clock()
            self._check_rate(session, speaker, now)
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
            linked = self.fraud.check_links(
                session, utterance.vector, utterance.quality.channel, speaker.speaker_ref, utterance.model_version
            )
            outcome = mark_linked(outcome, bool(linked.alert_identities))
            state = lockout.after_decision(
                self._lock_state(speaker),
                outcome.decision,
                now,
                self.settings.lockout_rejects,
                self.settings.lockout_window_s,
                self._lockout_weights(),
            )
            speaker.lockout_weight, speaker.locked_at = state.weight, state.locked_at
            speaker.voiceprint_used_at = now  # a scored verification is a use: retention restarts
            view = self._log(
                session,
                speaker,
                outcome,
                api_key_id,
                now,
                result=result,
                utterance=utterance,
                applied=applied,
                watchlist_hits=hits,
                pad=pad,
            )
            self.fraud.keep_attempt(
                session, view.verification_id, speaker.speaker_ref, utterance.vector, utterance.model_version
            )
            self.fraud.raise_link_alert(session, view.verification_id, speaker.speaker_ref, linked)
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
        population = None
        if self.settings.score_norm != "none" and self.settings.cohort_source == "population":
            self.fraud.voiceprints.sync(session)
            population = self.cohort.members_for(
                session, utterance.model_version, exclude_id=speaker.id, alive=self.fraud.voiceprints.holds
            )
        result = self.scorer.score(utterance.vector, voiceprint, quality.channel, quality.net_speech_s, population)
        applied = self.policy.thresholds(quality.channel)
        value = result.llr if applied.scale is Scale.LLR and result.llr is not None else result.score
        outcome = decide(value, applied.thresholds, quality.net_speech_s, self.settings.verify_min_speech_s)
        hits = self.fraud.screen(session, utterance.vector, utterance.model_version, quality.channel)
        outcome = apply_watchlist(outcome, bool(hits), self.fraud.watchlist_forces_reject)
        pad = self.pad.screen(session, speaker, utterance, outcome)
        return result, applied, pad.outcome, list(hits), pad

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
