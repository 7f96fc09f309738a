"""The presentation-attack checks the enrolment and verification services run inside their transactions.

- Verification: the countermeasure score against its channel's threshold (SPOOF_SUSPECTED) and the
  probe's fingerprint against the speaker's stored ones (REPLAY_SUSPECTED); either makes the call
  INCONCLUSIVE, or REJECT with VOICEID_CM_ACTION=reject, never ACCEPT. The probe's fingerprint is then
  kept as long as its attempt embedding, so a recording of this call replayed later is caught too.
- Enrolment: the countermeasure alone never refuses a file nor ends an enrolment. Each file's CM
  score is stored with it; the enrolment is judged on all its files together (`enrolment_doubt`): a
  flagged file stays out of the voiceprint while the whole enrolment is in doubt, the caller is asked
  for more speech, and a voiceprint built while in doubt is held for an analyst (review item
  SPOOF_SUSPECTED, speaker REVIEW_REQUIRED). A replay of audio already heard for the speaker is still
  refused (ENROLMENT_SPOOF_SUSPECTED) and nothing is stored. Accepted audio's fingerprint is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from voiceid.antispoof import fingerprint as fp
from voiceid.antispoof.policy import PadAction, PadThresholds, enrolment_doubt, load_thresholds
from voiceid.antispoof.stage import PadEvidence
from voiceid.config import Settings
from voiceid.engine import EmbeddedUtterance
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.statuses import CmCheck, ReviewKind, ReviewStatus, SpeakerStatus
from voiceid.storage import fingerprint_repo, fraud_repo
from voiceid.storage import repositories as repo
from voiceid.storage.keys import Vault
from voiceid.storage.models import Speaker
from voiceid.verify.decision import Reason


@dataclass(frozen=True)
class EnrolmentCm:
    """The countermeasure's view of one enrolment step (all zero / None when the CM is off)."""

    cm_score: float | None = None
    threshold: float | None = None
    flagged: bool = False  # this file alone is below its channel's threshold
    pooled_margin: float | None = None  # enrolment_doubt over all the enrolment's files, this one included
    n_flagged: int = 0  # flagged files in the enrolment, this one included

    @property
    def doubtful(self) -> bool:
        return self.pooled_margin is not None and self.pooled_margin < 0

    @property
    def used(self) -> bool:
        """Whether this file counts toward the voiceprint now."""
        return not self.flagged or not self.doubtful

    def stored_fields(self) -> dict[str, Any]:
        """Kept in the enrolment file's quality record, so later steps can pool the evidence."""
        if self.cm_score is None or self.threshold is None:
            return {}
        return {
            "cm_score": round(self.cm_score, 4),
            "cm_margin": round(self.cm_score - self.threshold, 4),
            "cm_flagged": self.flagged,
        }

    def to_dict(self) -> dict[str, Any] | None:
        """The step body's `countermeasure` block (None when the CM is off)."""
        if self.cm_score is None:
            return None
        return {
            "cm_score": round(self.cm_score, 4),
            "cm_threshold": None if self.threshold is None else round(self.threshold, 4),
            "flagged": self.flagged,
            "used": self.used,
            "enrolment_margin": None if self.pooled_margin is None else round(self.pooled_margin, 4),
            "enrolment_flagged": self.doubtful,
            "flagged_files": self.n_flagged,
        }


@dataclass(frozen=True)
class PadFindings:
    """What the presentation-attack checks found on a call; `services.decision.compose` applies it."""

    spoof_suspected: bool = False  # countermeasure score below the channel's threshold
    replay_suspected: bool = False  # fingerprint matches audio already heard for this speaker
    log_fields: dict[str, Any] = field(default_factory=dict)  # verifications columns (score log)


class PadChecks:
    def __init__(
        self, settings: Settings, cipher: Vault, clock: Callable[[], datetime], cm_version: str | None
    ) -> None:
        self.settings = settings
        self.cipher = cipher
        self.clock = clock
        # Loaded once at start-up: a missing, malformed or mismatched file fails the service, not a call.
        self.thresholds: PadThresholds | None = None
        if settings.cm_enabled:
            self.thresholds = load_thresholds(settings.cm_thresholds_file)
            if cm_version is not None and self.thresholds.backend_id != cm_version:
                raise VoiceIdError(
                    ErrorCode.CONFIGURATION_ERROR,
                    f"PAD thresholds were fitted for {self.thresholds.backend_id}, the engine scores with "
                    f"{cm_version}; run `voiceid calibrate-pad` and set VOICEID_CM_THRESHOLDS_FILE",
                )

    def _cm_flagged(self, evidence: PadEvidence, channel: str) -> bool:
        if self.thresholds is None or evidence.cm_score is None:
            return False
        return self.thresholds.flagged(evidence.cm_score, channel)

    def _replay_score(
        self, session: Session, speaker: Speaker, evidence: PadEvidence, own_call: str | None = None
    ) -> float | None:
        """`own_call`: a verification whose audio this probe is expected to contain (the first try of a
        retry, which sends the call so far), left out of the comparison."""
        if not self.settings.replay_enabled or evidence.fingerprint is None:
            return None
        stored = fingerprint_repo.speaker_fingerprints(
            session, self.cipher, speaker, fp.VERSION, self.clock(), self.settings.replay_max_fingerprints
        )
        others = [s for row, s in stored if own_call is None or row.verification_id != own_call]
        score, _ = fp.best_match(evidence.fingerprint, others)
        return score

    @property
    def action(self) -> PadAction:
        return PadAction(self.settings.cm_action)

    def inspect(
        self, session: Session, speaker: Speaker, utterance: EmbeddedUtterance, own_call: str | None = None
    ) -> PadFindings:
        """The countermeasure score against its channel's threshold and the probe's fingerprint
        against the speaker's stored ones (but `own_call`'s: the first try of a retry, whose audio the
        retry repeats by design); the decision step itself is `services.decision`."""
        evidence = utterance.pad
        if evidence is None:
            return PadFindings()
        channel = utterance.quality.channel
        cm_flagged = self._cm_flagged(evidence, channel)
        replay = self._replay_score(session, speaker, evidence, own_call)
        replayed = replay is not None and replay >= self.settings.replay_threshold
        check = None
        if self.thresholds is not None:
            if evidence.cm_skipped:
                check = CmCheck.SKIPPED
            elif evidence.cm_score is not None:
                check = CmCheck.FLAGGED if cm_flagged else CmCheck.PASSED
        fields = {
            "cm_score": None if evidence.cm_score is None else round(evidence.cm_score, 4),
            "cm_version": evidence.cm_version,
            "replay_score": None if replay is None else round(replay, 4),
            # Every decision carries its thresholds: the CM's too, so an analyst sees how close it was.
            "cm_threshold": None if self.thresholds is None else round(self.thresholds.threshold(channel), 4),
            "cm_check": check,
        }
        return PadFindings(cm_flagged, replayed, fields)

    def keep_attempt(
        self, session: Session, speaker: Speaker, verification_id: str, utterance: EmbeddedUtterance
    ) -> None:
        if utterance.pad is None or utterance.pad.fingerprint is None:
            return
        now = self.clock()
        fingerprint_repo.add_fingerprint(
            session,
            self.cipher,
            speaker,
            utterance.pad.fingerprint,
            fp.VERSION,
            fingerprint_repo.ATTEMPT,
            created_at=now,
            expires_at=now + timedelta(days=self.settings.attempt_retention_days),
            verification_id=verification_id,
        )

    def check_enrolment(self, session: Session, speaker: Speaker, utterance: EmbeddedUtterance) -> EnrolmentCm:
        """The CM's view of this file and of the whole enrolment with it; raises ENROLMENT_SPOOF_SUSPECTED
        only for a replay of audio already heard for this speaker (the CM alone never refuses)."""
        evidence = utterance.pad
        if evidence is None:
            return EnrolmentCm()
        replay = self._replay_score(session, speaker, evidence)
        if replay is not None and replay >= self.settings.replay_threshold:
            raise VoiceIdError(
                ErrorCode.ENROLMENT_SPOOF_SUSPECTED,
                "this audio replays a recording already heard for this speaker; it was not enrolled",
                replay_score=round(replay, 4),
                reason=str(Reason.REPLAY_SUSPECTED),
            )
        if self.thresholds is None or evidence.cm_score is None:
            return EnrolmentCm()
        threshold = self.thresholds.threshold(utterance.quality.channel)
        flagged = evidence.cm_score < threshold
        stored = [q for q in repo.enrolment_qualities(session, speaker, utterance.model_version) if "cm_margin" in q]
        margins = [float(q["cm_margin"]) for q in stored] + [evidence.cm_score - threshold]
        return EnrolmentCm(
            evidence.cm_score,
            threshold,
            flagged,
            enrolment_doubt(margins),
            sum(bool(q.get("cm_flagged")) for q in stored) + int(flagged),
        )

    def hold_doubtful(self, session: Session, speaker: Speaker, cm: EnrolmentCm) -> SpeakerStatus | None:
        """Called once a voiceprint is built: an enrolment the CM doubts as a whole is held for an
        analyst (REVIEW_REQUIRED, one OPEN review item) instead of failing the caller."""
        if not cm.doubtful or cm.pooled_margin is None:
            return None
        fraud_repo.upsert_review_item(
            session,
            kind=ReviewKind.SPOOF_SUSPECTED,
            status=ReviewStatus.OPEN,
            speaker_ref=speaker.speaker_ref,
            matched_ref=speaker.speaker_ref,
            score=cm.pooled_margin,
            details={"countermeasure": cm.to_dict(), "scale": "cm_margin_nats"},
            created_at=self.clock(),
        )
        return SpeakerStatus.REVIEW_REQUIRED

    def keep_enrolment(self, session: Session, speaker: Speaker, utterance: EmbeddedUtterance) -> None:
        if utterance.pad is None or utterance.pad.fingerprint is None:
            return
        fingerprint_repo.add_fingerprint(
            session,
            self.cipher,
            speaker,
            utterance.pad.fingerprint,
            fp.VERSION,
            fingerprint_repo.ENROLMENT,
            created_at=self.clock(),
        )
