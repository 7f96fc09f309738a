"""The presentation-attack checks the enrolment and verification services run inside their transactions.

- Verification: the countermeasure score against its channel's threshold (SPOOF_SUSPECTED) and the
  probe's fingerprint against the speaker's stored ones (REPLAY_SUSPECTED); either makes the call
  INCONCLUSIVE, or REJECT with VOICEID_CM_ACTION=reject, never ACCEPT. The probe's fingerprint is then
  kept as long as its attempt embedding, so a recording of this call replayed later is caught too.
- Enrolment: audio either check flags is refused (ENROLMENT_SPOOF_SUSPECTED) and nothing is stored;
  accepted audio's fingerprint is kept with the enrolment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from voiceid.antispoof import fingerprint as fp
from voiceid.antispoof.policy import PadAction, PadThresholds, apply_pad_flag, load_thresholds
from voiceid.antispoof.stage import PadEvidence
from voiceid.config import Settings
from voiceid.engine import EmbeddedUtterance
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.storage import fingerprint_repo
from voiceid.storage.keys import Vault
from voiceid.storage.models import Speaker
from voiceid.verify.decision import Outcome, Reason


@dataclass(frozen=True)
class PadVerdict:
    outcome: Outcome
    log_fields: dict[str, Any] = field(default_factory=dict)  # verifications columns (score log)


class PadChecks:
    def __init__(
        self, settings: Settings, cipher: Vault, clock: Callable[[], datetime], cm_version: str | None
    ) -> None:
        self.settings = settings
        self.cipher = cipher
        self.clock = clock
        self.action = PadAction(settings.cm_action)
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

    def _replay_score(self, session: Session, speaker: Speaker, evidence: PadEvidence) -> float | None:
        if not self.settings.replay_enabled or evidence.fingerprint is None:
            return None
        stored = fingerprint_repo.speaker_fingerprints(
            session, self.cipher, speaker, fp.VERSION, self.clock(), self.settings.replay_max_fingerprints
        )
        score, _ = fp.best_match(evidence.fingerprint, [s for _, s in stored])
        return score

    def screen(self, session: Session, speaker: Speaker, utterance: EmbeddedUtterance, outcome: Outcome) -> PadVerdict:
        evidence = utterance.pad
        if evidence is None:
            return PadVerdict(outcome)
        channel = utterance.quality.channel
        outcome = apply_pad_flag(outcome, self._cm_flagged(evidence, channel), Reason.SPOOF_SUSPECTED, self.action)
        replay = self._replay_score(session, speaker, evidence)
        replayed = replay is not None and replay >= self.settings.replay_threshold
        outcome = apply_pad_flag(outcome, replayed, Reason.REPLAY_SUSPECTED, self.action)
        fields = {
            "cm_score": None if evidence.cm_score is None else round(evidence.cm_score, 4),
            "cm_version": evidence.cm_version,
            "replay_score": None if replay is None else round(replay, 4),
        }
        return PadVerdict(outcome, fields)

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

    def check_enrolment(self, session: Session, speaker: Speaker, utterance: EmbeddedUtterance) -> None:
        """Raise ENROLMENT_SPOOF_SUSPECTED for audio that must not become part of a voiceprint."""
        evidence = utterance.pad
        if evidence is None:
            return
        if self._cm_flagged(evidence, utterance.quality.channel):
            raise VoiceIdError(
                ErrorCode.ENROLMENT_SPOOF_SUSPECTED,
                "the countermeasure flags this audio as synthetic or converted speech; it was not enrolled",
                cm_score=None if evidence.cm_score is None else round(evidence.cm_score, 4),
                reason=str(Reason.SPOOF_SUSPECTED),
            )
        replay = self._replay_score(session, speaker, evidence)
        if replay is not None and replay >= self.settings.replay_threshold:
            raise VoiceIdError(
                ErrorCode.ENROLMENT_SPOOF_SUSPECTED,
                "this audio replays a recording already heard for this speaker; it was not enrolled",
                replay_score=round(replay, 4),
                reason=str(Reason.REPLAY_SUSPECTED),
            )

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
