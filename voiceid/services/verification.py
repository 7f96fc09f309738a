"""Verification: a probe -> a score, an outcome, the lockout state and the score log row.

The API, the telephony streams and the CLI all decide through `Verifications`. Audio takes two
transactions (a short pre-check before inference, the decision after it), so no database lock is
held while the model runs; streams embed once and call `preview` for interims, `decide` at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from voiceid.challenge.policy import ChallengeCheck
from voiceid.challenge.recogniser import Recognition
from voiceid.engine import EmbeddedUtterance
from voiceid.enrolment.adaptation import CallFacts
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.fraud.watchlist import WatchlistHit
from voiceid.services.adaptation import Adaptation, RevertReason
from voiceid.services.calibration import SelfCalibrationCache
from voiceid.services.challenges import Challenges, check_challenge_id
from voiceid.services.cohort import CohortCache
from voiceid.services.decision import Evidence, VoiceEvidence, compose
from voiceid.services.pad_checks import PadFindings
from voiceid.services.retries import check_retry, check_retry_id
from voiceid.services.serving import ServingContext
from voiceid.services.speakers import Speakers, lock_state
from voiceid.services.views import UNUSABLE_AUDIO, Preview, VerificationView
from voiceid.statuses import AdaptationState, CmCheck, SpeakerStatus
from voiceid.storage import repositories as repo
from voiceid.storage.models import Speaker
from voiceid.verify import lockout
from voiceid.verify.decision import Decision, Outcome, Reason
from voiceid.verify.policy import AppliedThresholds, DecisionPolicy, Scale
from voiceid.verify.scorer import Scorer, ScoreResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """A probe scored against its claimed voiceprint, with the checks that run on every scored call."""

    result: ScoreResult
    applied: AppliedThresholds
    hits: list[WatchlistHit]
    pad: PadFindings
    evidence: Evidence  # what `compose` decides on (the challenge and links are added when deciding)


class Verifications:
    def __init__(
        self,
        ctx: ServingContext,
        speakers: Speakers,
        scorer: Scorer,
        policy: DecisionPolicy,
        cohort: CohortCache,
        self_calibration: SelfCalibrationCache | None = None,
        challenges: Challenges | None = None,
        adaptation: Adaptation | None = None,
    ) -> None:
        self.ctx = ctx
        self.speakers = speakers
        self.scorer = scorer
        self.policy = policy
        self.cohort = cohort
        self.self_calibration = self_calibration or SelfCalibrationCache(ctx.settings.change_poll_s)
        self.challenges = challenges or Challenges(ctx)
        self.adaptation = adaptation or Adaptation(ctx)

    def verify(
        self,
        speaker_id: str,
        data: bytes,
        content_type: str | None,
        api_key_id: str | None = None,
        challenge_id: str | None = None,
        retry_of: str | None = None,
    ) -> VerificationView:
        """`retry_of`: the INCONCLUSIVE verification of this call that this one retries with more speech
        (services/retries.py): checked before the audio is touched, decided at the stricter thresholds."""
        if challenge_id is not None:
            check_challenge_id(challenge_id)  # a malformed id is a 422 before anything is logged
        if retry_of is not None:
            check_retry_id(retry_of)
        early = self.precheck(speaker_id, api_key_id, retry_of)
        if early is not None:
            return early
        try:
            utterance = self.ctx.analyse(data, content_type, defer_cm=True)
        except VoiceIdError as exc:
            if exc.code in UNUSABLE_AUDIO:
                self.count_unusable_attempt(speaker_id)
            raise
        if utterance.cm_pending:
            # The countermeasure only runs where its answer can change the decision: a call that is
            # REJECT without it (voice, watchlist, replay) stays REJECT, so its score log row shows
            # cm_score null and cm_check SKIPPED. Every call that could be ACCEPT is scored.
            preview = self.preview(speaker_id, utterance, retry_of)
            needed = preview.score is not None and preview.outcome.decision != Decision.REJECT
            utterance = self.ctx.complete_cm(utterance, needed)
        heard = self.hear(speaker_id, challenge_id, data, content_type)
        return self.decide(speaker_id, utterance, api_key_id, challenge_id, heard, retry_of=retry_of)

    def hear(
        self, speaker_id: str, challenge_id: str | None, data: bytes, content_type: str | None
    ) -> Recognition | None:
        """The probe's words against its challenge's prompt (None: no challenge, or one that
        `decide` will refuse anyway, so nothing is worth recognising)."""
        prompt = None if challenge_id is None else self.challenges.prompt_of(speaker_id, challenge_id)
        return None if prompt is None else self.challenges.recognise(data, content_type, prompt)

    def precheck(
        self, speaker_id: str, api_key_id: str | None = None, retry_of: str | None = None
    ) -> VerificationView | None:
        """The logged decision when no audio is needed (opted out, locked, not enrolled), else None;
        a `retry_of` that cannot be retried is refused here, before any inference, with nothing stored.

        Streams call it when the call starts, so an opted-out caller's audio is never processed."""
        with self.ctx.db.transaction() as session:
            speaker = self.speakers.load(session, speaker_id, for_update=True)
            now = self.ctx.now()
            self._check_rate(session, speaker, now)
            early = self._without_audio(speaker, now)
            if early is not None:
                return self._log(session, speaker, early, api_key_id, now)
            if retry_of is not None:
                check_retry(session, speaker.speaker_ref, retry_of, now, self.ctx.settings.retry_window_s)
        return None

    def decide(
        self,
        speaker_id: str,
        utterance: EmbeddedUtterance,
        api_key_id: str | None = None,
        challenge_id: str | None = None,
        heard: Recognition | None = None,
        abandoned: bool = False,
        retry_of: str | None = None,
    ) -> VerificationView:
        """Decide on an already embedded probe (and its words, when it answers a challenge), update
        the lockout state and log the decision. `abandoned`: a stream that ended before its decision
        (`verify.decision.abandon`). `retry_of`: checked again under the speaker's lock (a concurrent
        retry of the same call may have taken it during inference), then the retry's thresholds apply.
        A linked-voice alert it raises takes the alert's calls out of the voiceprints they adapted
        (services/adaptation.py)."""
        ctx = self.ctx
        with ctx.db.transaction() as session:
            speaker = self.speakers.load(session, speaker_id, for_update=True)
            now = ctx.now()
            # The state may have moved during inference (a concurrent REJECT locked the speaker,
            # an opt-out, a re-enrolment); the decision is taken on the state as it is now.
            early = self._without_audio(speaker, now)
            if early is not None:
                return self._log(session, speaker, early, api_key_id, now, utterance=utterance)
            if retry_of is not None:
                check_retry(session, speaker.speaker_ref, retry_of, now, ctx.settings.retry_window_s)
            scored = self._gather(session, speaker, utterance, retry_of)
            linked = ctx.fraud.check_links(
                session, utterance.vector, utterance.quality.channel, speaker.speaker_ref, utterance.model_version
            )
            alert = bool(linked.alert_identities)
            challenge_evidence = self.challenges.check(session, speaker, utterance, alert, challenge_id, heard, now)
            challenge = challenge_evidence.check
            evidence = replace(scored.evidence, challenge=challenge_evidence, linked=alert, abandoned=abandoned)
            outcome = compose(evidence).outcome
            failed_challenge = challenge is not None and challenge.failed
            state = lockout.after_attempt(
                lock_state(speaker),
                lockout.Attempt.CHALLENGE_FAILED if failed_challenge else lockout.attempt_of(outcome.decision),
                now,
                ctx.settings.lockout_rejects,
                ctx.settings.lockout_window_s,
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
                result=scored.result,
                utterance=utterance,
                applied=scored.applied,
                watchlist_hits=scored.hits,
                pad=scored.pad,
                challenge=challenge,
                retry_of=retry_of,
            )
            self.challenges.link(session, challenge, view.verification_id)
            ctx.fraud.keep_attempt(
                session, view.verification_id, speaker.speaker_ref, utterance.vector, utterance.model_version
            )
            raised = ctx.fraud.raise_link_alert(session, view.verification_id, speaker.speaker_ref, linked)
            ctx.pad.keep_attempt(session, speaker, view.verification_id, utterance)
            # After the decision is taken and logged: adaptation only ever affects later calls.
            if outcome.decision is Decision.ACCEPT:
                adapted = self.adaptation.adapt(
                    session,
                    speaker,
                    view.verification_id,
                    utterance.vector,
                    utterance.quality.channel,
                    utterance.model_version,
                    self._facts(outcome, scored, alert, challenge, utterance),
                )
                if adapted.refusal is None:
                    view = replace(view, adaptation=AdaptationState.ADAPTED.value)
        if raised is not None:
            # Earlier calls of this voice that adapted a voiceprint come out of it. Once the alert is
            # committed, in a transaction of its own: it locks other identities' speakers, and two calls
            # of one voice on two identities each holding its own speaker's lock would deadlock.
            # The decision is logged and stands: a failure here must not turn it into an error for the
            # IVR. The worker's `adaptation-alert-sweep` reverts whatever an open alert still holds.
            try:
                self.adaptation.revert_flagged(
                    raised.verification_ids, RevertReason.LINKED_VOICE_ALERT, review_item_id=raised.review_item_id
                )
            except Exception:
                log.exception(
                    "reverting the adaptation of linked-voice alert %s failed; the worker retries",
                    raised.review_item_id,
                )
        return view

    def preview(self, speaker_id: str, utterance: EmbeddedUtterance, retry_of: str | None = None) -> Preview:
        """What `decide` would decide now, with nothing logged and no lockout counted: a stream's
        interim score, and how it knows it may decide early (`retry_of`: as a retry of that call)."""
        with self.ctx.db.transaction() as session:
            speaker = self.speakers.load(session, speaker_id)
            early = self._without_audio(speaker, self.ctx.now())
            if early is not None:
                return Preview(None, early)
            scored = self._gather(session, speaker, utterance, retry_of)
            return Preview(scored.result.score, compose(scored.evidence).outcome)

    def count_unusable_attempt(self, speaker_id: str) -> None:
        """An attempt refused for too little or no speech still counts toward lockout (weighted):
        otherwise short clips would be free retries for anyone probing the account."""
        settings = self.ctx.settings
        with self.ctx.db.transaction() as session:
            speaker = self.speakers.load(session, speaker_id, for_update=True)
            state = lockout.after_attempt(
                lock_state(speaker),
                lockout.Attempt.UNUSABLE,
                self.ctx.now(),
                settings.lockout_rejects,
                settings.lockout_window_s,
                self._lockout_weights(),
            )
            speaker.lockout_weight, speaker.locked_at = state.weight, state.locked_at

    # --- the steps ------------------------------------------------------------------------

    def _lockout_weights(self) -> lockout.Weights:
        settings = self.ctx.settings
        return lockout.Weights(
            settings.lockout_inconclusive_weight, settings.lockout_unusable_weight, settings.challenge_lockout_weight
        )

    def _without_audio(self, speaker: Speaker, now: datetime) -> Outcome | None:
        """A decision that needs no audio, or None when the probe must be scored.

        Audio of an opted-out speaker is not even decoded: with consent withdrawn there is no
        basis for processing their voice at all.
        """
        if speaker.status == SpeakerStatus.OPTED_OUT:
            return Outcome(Decision.OPTED_OUT, (Reason.SPEAKER_OPTED_OUT,))
        if lockout.is_locked(lock_state(speaker), now, self.ctx.settings.lockout_window_s):
            return Outcome(Decision.LOCKED, (Reason.LOCKED_OUT,))
        if speaker.status == SpeakerStatus.REVIEW_REQUIRED:
            return Outcome(Decision.NOT_ENROLLED, (Reason.ENROLMENT_UNDER_REVIEW,))
        if speaker.status == SpeakerStatus.EXPIRED:
            return Outcome(Decision.NOT_ENROLLED, (Reason.VOICEPRINT_EXPIRED,))
        if speaker.voiceprint is None:
            return Outcome(Decision.NOT_ENROLLED, (Reason.NO_VOICEPRINT,))
        if speaker.voiceprint_model_version != self.ctx.model_version:
            # Vectors of two models live in different spaces; comparing them would be meaningless.
            return Outcome(Decision.NOT_ENROLLED, (Reason.MODEL_VERSION_MISMATCH,))
        return None

    @staticmethod
    def _facts(
        outcome: Outcome, scored: Scored, linked: bool, challenge: ChallengeCheck | None, utterance: EmbeddedUtterance
    ) -> CallFacts:
        """What the adaptation guards read of a decided call (enrolment/adaptation.py)."""
        applied = scored.applied
        cm_check = scored.pad.log_fields.get("cm_check")
        return CallFacts(
            decision=outcome.decision,
            llr=scored.result.llr,
            accept_threshold=applied.thresholds.accept if applied.scale is Scale.LLR else None,
            cm_check=None if cm_check is None else CmCheck(cm_check),
            replay_suspected=scored.pad.replay_suspected,
            watchlist_hit=bool(scored.hits),
            linked=linked,
            challenge_failed=challenge is not None and challenge.failed,
            net_speech_s=utterance.quality.net_speech_s,
        )

    def _check_rate(self, session: Session, speaker: Speaker, now: datetime) -> None:
        settings = self.ctx.settings
        since = now - timedelta(seconds=settings.attempt_rate_window_s)
        attempts = repo.count_verifications_since(session, speaker.speaker_ref, since)
        if attempts >= settings.attempt_rate_limit:
            raise VoiceIdError(
                ErrorCode.RATE_LIMITED,
                f"more than {settings.attempt_rate_limit} verification attempts for this speaker within "
                f"{settings.attempt_rate_window_s:g} s; try again later",
                retry_after_s=int(settings.attempt_rate_window_s),
            )

    def _gather(
        self, session: Session, speaker: Speaker, utterance: EmbeddedUtterance, retry_of: str | None = None
    ) -> Scored:
        """The evidence every decision and stream interim needs, each piece from its own service:
        the calibrated voice score, the watchlist screen and the presentation-attack checks. A retry
        (`retry_of`) meets the stricter retry thresholds, and its replay check leaves out the first
        try's fingerprint (the retry sends the call so far, first try included). The decision itself
        is composed from it in one place, `services.decision.compose`."""
        ctx = self.ctx
        quality = utterance.quality
        # A phone call meets the phone view of a wideband enrolment (voiceid.enrolment.views), when on.
        # With adaptation on, the voiceprint adapted with that channel's accepted calls (services/adaptation.py).
        voiceprint = repo.voiceprint_for_channel(
            ctx.cipher, speaker, quality.channel, ctx.settings.enrol_phone_view, adapted=ctx.settings.adaptation
        )
        if voiceprint is None:  # _without_audio guarantees a voiceprint; this keeps the types honest
            raise VoiceIdError(ErrorCode.INTERNAL_ERROR, "voiceprint vanished")
        population, correction = None, None
        if ctx.settings.score_norm != "none" and ctx.settings.cohort_source == "population":
            ctx.fraud.voiceprints.sync(session)
            population = self.cohort.members_for(
                session,
                utterance.model_version,
                exclude_id=speaker.id,
                alive=ctx.fraud.voiceprints.holds,
                channel=quality.channel,
                phone_view=ctx.settings.enrol_phone_view,
            )
        if ctx.settings.self_calibration:
            correction = self.self_calibration.current(session, utterance.model_version)
        # voice score: the cohort's regime picks the calibration, the population's own fit corrects it
        result = self.scorer.score(
            utterance.vector, voiceprint, quality.channel, quality.net_speech_s, population, correction
        )
        applied = self.policy.thresholds(quality.channel, result.calibration_id, retry=retry_of is not None)
        value = result.llr if applied.scale is Scale.LLR and result.llr is not None else result.score
        hits = list(ctx.fraud.screen(session, utterance.vector, utterance.model_version, quality.channel))
        pad = ctx.pad.inspect(session, speaker, utterance, own_call=retry_of)
        evidence = Evidence(
            VoiceEvidence(value, applied.thresholds, quality.net_speech_s, ctx.settings.verify_min_speech_s),
            watchlist_hit=bool(hits),
            watchlist_forces_reject=ctx.fraud.watchlist_forces_reject,
            spoof_suspected=pad.spoof_suspected,
            replay_suspected=pad.replay_suspected,
            pad_action=ctx.pad.action,
        )
        return Scored(result, applied, hits, pad, evidence)

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
        pad: PadFindings | None = None,
        challenge: ChallengeCheck | None = None,
        retry_of: str | None = None,
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
            calibration=None if result is None else result.logged_calibration,
            accept_threshold=None if result is None or applied is None else applied.thresholds.accept,
            reject_threshold=None if result is None or applied is None else applied.thresholds.reject,
            threshold_scale=None if result is None or applied is None else applied.scale.value,
            net_speech_s=None if utterance is None else round(utterance.quality.net_speech_s, 3),
            reasons=[r.value for r in outcome.reasons],
            model_version=self.ctx.model_version if utterance is None else utterance.model_version,
            channel=None if utterance is None else utterance.quality.channel,
            quality=None if utterance is None else utterance.quality.to_dict(),
            api_key_id=api_key_id,
            created_at=now,
            watchlist_hits=[h.to_dict() for h in watchlist_hits] or None,
            **(pad.log_fields if pad is not None else {}),
            **(challenge.log_fields if challenge is not None else {}),
            retry_of=retry_of,
        )
        self.ctx.counters.on_decision(outcome.decision.value)
        return VerificationView.from_row(row)
