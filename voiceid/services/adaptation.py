"""Voiceprints that follow the caller: keeping high-confidence accepted calls and rebuilding the adapted
voiceprint of their channel from the enrolment voiceprint and the calls still kept (the rule, its bounds
and guards: voiceid/enrolment/adaptation.py).

- `adapt`: run by `Verifications.decide` in the call's transaction, after the decision is logged, so it
  never changes the decision of the call that triggers it; it only affects later calls.
- `revert_verification` / `revert_speaker`: an analyst takes a call (or all of a speaker's calls) out.
  A call flagged later leaves by itself (`RevertReason`): flagged to the watchlist (services/fraud_desk.py)
  or part of a linked-voice alert (`revert_flagged`, run by `Verifications.decide` once its alert is
  committed). The voiceprint is rebuilt from what remains, so it equals the voiceprint that would exist
  had the call never adapted it.
- `restore_dismissed`: an analyst dismisses a linked-voice alert as no fraud: the calls that alert took
  out go back in, each re-checked by the same rule as if decided now without the alert (its logged
  decision facts, the floor to the enrolment voiceprint, the count cap).
- `purge_expired`: kept calls expire with the attempt embeddings (VOICEID_ATTEMPT_RETENTION_DAYS).

Every adaptation and reversion appends to the audit trail; the score log's `adaptation` column says
which calls adapted a voiceprint (ADAPTED) and which were taken out again (REVERTED). The kept calls are
sealed under the speaker's data key and go with every erasure (repositories.erase_biometrics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceid.challenge.policy import ChallengeStatus
from voiceid.config import Settings
from voiceid.enrolment.adaptation import (
    AdaptationLimits,
    CallFacts,
    Refusal,
    adapted_voiceprint,
    kept_calls,
    refusal_of,
    share_of,
)
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.services.context import AppContext
from voiceid.statuses import AdaptationState, CmCheck, ReviewKind
from voiceid.storage import adaptation_repo, fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.models import AdaptationCall, Speaker, Verification
from voiceid.verify.cohort import PHONE, WIDEBAND
from voiceid.verify.decision import Decision, Reason
from voiceid.verify.policy import Scale
from voiceid.verify.vectors import cosine

FloatArray = npt.NDArray[np.float32]
PURGE_BATCH = 500


def limits_from(settings: Settings) -> AdaptationLimits:
    return AdaptationLimits(
        max_share=settings.adaptation_max_share,
        call_share=settings.adaptation_call_share,
        max_calls=settings.adaptation_max_calls,
        min_cosine=settings.adaptation_min_cosine,
        llr_margin=settings.adaptation_llr_margin,
        min_speech_s=settings.adaptation_min_speech_s,
    )


class RevertReason(StrEnum):
    """Why calls were taken out of a voiceprint (the ADAPTATION_REVERTED audit entry's `why`)."""

    ANALYST = "analyst"  # POST /v1/verifications/{id}/unadapt, /v1/speakers/{id}/adaptation/revert
    FLAGGED = "flagged"  # flagged as fraud to the watchlist
    LINKED_VOICE_ALERT = "linked_voice_alert"  # its voice was heard on other identities (review item LINKED_VOICE)
    RETENTION = "retention"  # kept past VOICEID_ATTEMPT_RETENTION_DAYS


@dataclass(frozen=True)
class Adapted:
    """What `adapt` did with one decided call."""

    refusal: Refusal | None  # None: the call adapted the voiceprint of its channel
    cosine_to_enrolment: float | None = None
    kept_calls: int = 0


@dataclass(frozen=True)
class Reverted:
    """What a reversion removed: the calls, by speaker; the voiceprints were rebuilt without them."""

    verification_ids: list[str]
    speakers: list[str]


class Adaptation:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    @property
    def limits(self) -> AdaptationLimits:
        return limits_from(self.ctx.settings)

    def _anchor(self, speaker: Speaker, channel: str) -> FloatArray | None:
        """The enrolment voiceprint calls on `channel` are held to (never an adapted one)."""
        return repo.voiceprint_for_channel(self.ctx.cipher, speaker, channel, self.ctx.settings.enrol_phone_view)

    def _same_channel(self, session: Session, speaker: Speaker, channel: str) -> bool:
        """Whether the enrolment voiceprint a call on `channel` meets is of that channel: the phone view
        for a phone call, else the channel most of the enrolment audio came through."""
        if channel == PHONE and self.ctx.settings.enrol_phone_view and speaker.phone_voiceprint is not None:
            return True
        return fraud_repo.voiceprint_channels(session, [speaker.id]).get(speaker.id) == channel

    def adapt(
        self,
        session: Session,
        speaker: Speaker,
        verification_id: str,
        vector: FloatArray,
        channel: str,
        model_version: str,
        facts: CallFacts,
    ) -> Adapted:
        """Keep the call and rebuild its channel's voiceprint when it passes every guard (the caller
        has logged the decision already; this never changes it)."""
        if not self.ctx.settings.adaptation:
            return Adapted(Refusal.DISABLED)
        anchor = self._anchor(speaker, channel)
        if anchor is None or model_version != speaker.voiceprint_model_version:
            return Adapted(Refusal.NO_VOICEPRINT)  # not scored against a voiceprint of this model
        now = self.ctx.now()
        expires = now + timedelta(days=self.ctx.settings.attempt_retention_days)
        return self._keep(session, speaker, verification_id, vector, channel, model_version, facts, anchor, expires)

    def _keep(
        self,
        session: Session,
        speaker: Speaker,
        verification_id: str,
        vector: FloatArray,
        channel: str,
        model_version: str,
        facts: CallFacts,
        anchor: FloatArray,
        expires: datetime,
        **details: str,
    ) -> Adapted:
        """The rule's guards, then the call kept and its voiceprint rebuilt and audited (`details`: why,
        for a restored call)."""
        similarity = cosine(vector, anchor)
        facts = replace(facts, same_channel=self._same_channel(session, speaker, channel))
        refusal = refusal_of(facts, similarity, self.limits)
        if refusal is not None:
            return Adapted(refusal, similarity)
        now = self.ctx.now()
        adaptation_repo.add_call(
            session, self.ctx.cipher, speaker, verification_id, vector, channel, model_version, now, expires
        )
        kept = self.rebuild(session, speaker, channel)
        audit.append(
            session,
            AuditAction.VOICEPRINT_ADAPTED,
            speaker.speaker_ref,
            {
                "verification_id": verification_id,
                "channel": channel,
                "llr": facts.llr,
                "cosine_to_enrolment": round(similarity, 4),
                "kept_calls": kept,
                "share": share_of(kept, self.limits),
                **details,
            },
            now,
        )
        return Adapted(None, similarity, kept)

    def rebuild(self, session: Session, speaker: Speaker, channel: str) -> int:
        """The adapted voiceprint of `channel` from the enrolment voiceprint and the calls still kept;
        calls the rule no longer keeps (past the count cap, the oldest first) are deleted. The number kept."""
        version = speaker.voiceprint_model_version
        anchor = self._anchor(speaker, channel)
        if anchor is None or version is None:
            adaptation_repo.set_adapted_voiceprint(session, self.ctx.cipher, speaker, channel, None, version or "")
            return 0
        calls = adaptation_repo.kept_calls(session, self.ctx.cipher, speaker, channel, version, self.ctx.now())
        keep = set(kept_calls(anchor, [c.vector for c in calls], self.limits))
        dropped = [c.verification_id for i, c in enumerate(calls) if i not in keep]
        adaptation_repo.remove_calls(session, dropped, None)
        kept = [c.vector for i, c in enumerate(calls) if i in keep]
        adapted = adapted_voiceprint(anchor, kept, self.limits) if kept else None
        adaptation_repo.set_adapted_voiceprint(session, self.ctx.cipher, speaker, channel, adapted, version)
        return len(kept)

    def rebuild_all(self, session: Session, speaker: Speaker) -> None:
        """Both channels: the enrolment voiceprint changed (more enrolment audio)."""
        for channel in (PHONE, WIDEBAND):
            self.rebuild(session, speaker, channel)

    def revert(self, session: Session, rows: list[AdaptationCall], why: RevertReason, **details: str) -> Reverted:
        """Remove kept calls (marked REVERTED in the score log), rebuild each voiceprint they were in and
        audit it, one entry per speaker (`details`: what flagged them, e.g. the review item)."""
        by_speaker: dict[str, list[AdaptationCall]] = defaultdict(list)
        for row in rows:
            by_speaker[row.speaker_id].append(row)
        refs = []
        for speaker_id, calls in sorted(by_speaker.items()):
            speaker = session.scalars(select(Speaker).where(Speaker.id == speaker_id).with_for_update()).one()
            ids = sorted(c.verification_id for c in calls)
            adaptation_repo.remove_calls(session, ids, AdaptationState.REVERTED)
            kept = {channel: self.rebuild(session, speaker, channel) for channel in sorted({c.channel for c in calls})}
            audit.append(
                session,
                AuditAction.ADAPTATION_REVERTED,
                speaker.speaker_ref,
                {"verification_ids": ids, "why": why.value, **details, "kept_calls": kept},
                self.ctx.now(),
            )
            refs.append(speaker.speaker_ref)
        return Reverted(sorted(r.verification_id for r in rows), refs)

    def revert_flagged(self, verification_ids: Sequence[str], why: RevertReason, **details: str) -> Reverted:
        """Take calls flagged after they adapted out of their voiceprints, in a transaction of its own: it
        locks the speakers they adapted, which the flagging transaction (another speaker's call, holding
        that speaker's lock) must not wait for. Idempotent: calls already out are left as they are."""
        with self.ctx.db.transaction() as session:
            return self.revert(session, adaptation_repo.calls_of(session, verification_ids), why, **details)

    def revert_alerted(self) -> int:
        """The worker's sweep (`adaptation-alert-sweep`): every call held by an open linked-voice alert is
        out of the voiceprint it adapted. `decide` does this as the alert is raised; the sweep catches a
        revert that failed there (the caller's decision stood) and alerts raised by older code. Idempotent;
        the number of calls taken out."""
        since = self.ctx.now() - timedelta(days=self.ctx.settings.link_alert_days)
        with self.ctx.db.transaction() as session:
            alerts = [
                (item.id, list(item.details.get("verification_ids", [])))
                for item in fraud_repo.open_items_of_kind(session, ReviewKind.LINKED_VOICE, since)
            ]
        reverted = [
            self.revert_flagged(calls, RevertReason.LINKED_VOICE_ALERT, review_item_id=item_id)
            for item_id, calls in alerts
        ]
        return sum(len(r.verification_ids) for r in reverted)

    def restore_dismissed(self, review_item_id: str) -> list[str]:
        """An analyst dismissed linked-voice alert `review_item_id` (not fraud): the calls it took out of
        their voiceprints (its ADAPTATION_REVERTED entries) go back in where they still pass the rule,
        decided as their logged facts say, now without the alert; the calls it restored. A call an analyst
        took out, another open alert holds, expired, or whose speaker was erased or re-enrolled on
        another model stays out. In a transaction of its own, after the dismissal is committed (it
        locks the speakers, as `revert_flagged` does). Idempotent: a restored call is ADAPTED again."""
        ctx = self.ctx
        restored: list[str] = []
        with ctx.db.transaction() as session:
            item = fraud_repo.get_review_item(session, review_item_id)
            if item is None or item.kind != ReviewKind.LINKED_VOICE:
                return restored
            calls = [str(v) for v in item.details.get("verification_ids", [])]
            rows = {v.id: v for v in (repo.get_verification(session, c) for c in calls) if v is not None}
            taken = {
                vid
                for event in audit.events_on(
                    session,
                    AuditAction.ADAPTATION_REVERTED,
                    sorted({v.speaker_ref for v in rows.values()}),
                    item.created_at,
                )
                if event.details.get("why") == RevertReason.LINKED_VOICE_ALERT.value
                and event.details.get("review_item_id") == review_item_id
                for vid in event.details.get("verification_ids", [])
            }
            since = ctx.now() - timedelta(days=ctx.settings.link_alert_days)
            held = {
                str(v)
                for other in fraud_repo.open_items_of_kind(session, ReviewKind.LINKED_VOICE, since)
                for v in other.details.get("verification_ids", [])
            }
            for vid in sorted(taken - held):
                row = rows.get(vid)
                if row is None or row.adaptation != AdaptationState.REVERTED:
                    continue
                if self._restore(session, row, review_item_id):
                    restored.append(vid)
        return restored

    def _restore(self, session: Session, row: Verification, review_item_id: str) -> bool:
        speaker = repo.get_speaker(session, row.speaker_ref, for_update=True)
        attempt = fraud_repo.get_attempt_embedding(session, row.id, self.ctx.now())
        if speaker is None or attempt is None or row.channel is None:
            return False
        anchor = self._anchor(speaker, row.channel)
        if anchor is None or attempt.model_version != speaker.voiceprint_model_version:
            return False
        facts = CallFacts(
            decision=Decision(row.decision),
            llr=row.llr,
            accept_threshold=row.accept_threshold if row.threshold_scale == Scale.LLR else None,
            cm_check=None if row.cm_check is None else CmCheck(row.cm_check),
            replay_suspected=Reason.REPLAY_SUSPECTED.value in row.reasons,
            watchlist_hit=bool(row.watchlist_hits),
            linked=False,  # the one fact the analyst's dismissal changed
            challenge_failed=row.challenge_status not in (None, ChallengeStatus.PASSED.value),
            net_speech_s=row.net_speech_s or 0.0,
        )
        vector = fraud_repo.attempt_vector(self.ctx.cipher, attempt)
        adapted = self._keep(
            session,
            speaker,
            row.id,
            vector,
            row.channel,
            attempt.model_version,
            facts,
            anchor,
            attempt.expires_at,  # as long as the call's own embedding is kept, not longer
            restored_after=review_item_id,
        )
        if adapted.refusal is not None:
            return False
        row.adaptation = AdaptationState.ADAPTED
        return True

    def revert_verification(self, verification_id: str, why: RevertReason = RevertReason.ANALYST) -> Reverted:
        """An analyst takes one call out of the voiceprint it adapted (`POST /v1/verifications/{id}/unadapt`)."""
        with self.ctx.db.transaction() as session:
            if repo.get_verification(session, verification_id) is None:
                raise VoiceIdError(ErrorCode.VERIFICATION_NOT_FOUND, f"no verification {verification_id!r}")
            return self.revert(session, adaptation_repo.calls_of(session, [verification_id]), why)

    def revert_speaker(self, speaker_ref: str, why: RevertReason = RevertReason.ANALYST) -> Reverted:
        """An analyst takes every kept call of a speaker out: the voiceprints are the enrolment ones again."""
        with self.ctx.db.transaction() as session:
            speaker = repo.get_speaker(session, speaker_ref, for_update=True)
            if speaker is None:
                raise VoiceIdError(ErrorCode.SPEAKER_NOT_FOUND, f"no speaker {speaker_ref!r}")
            return self.revert(session, adaptation_repo.calls_of_speaker(session, speaker), why)

    def purge_expired(self, now: datetime | None = None) -> int:
        """Drop kept calls past their retention and rebuild the voiceprints they were in; the number dropped."""
        removed = 0
        with audit.acting_as("retention"):
            while True:
                with self.ctx.db.transaction() as session:
                    rows = adaptation_repo.expired_calls(session, now or self.ctx.now(), PURGE_BATCH)
                    self.revert(session, rows, RevertReason.RETENTION)
                removed += len(rows)
                if len(rows) < PURGE_BATCH:
                    return removed
