"""The one voice retry of an INCONCLUSIVE verification (`?retry_of=`, issue 19 item 4).

An INCONCLUSIVE answer for lack of evidence (`SCORE_BETWEEN_THRESHOLDS`, `INSUFFICIENT_SPEECH`) tells
the IVR to ask the caller for more speech once and verify the whole call again (docs/decision-policy.md,
"What the IVR does with INCONCLUSIVE"). That second try is a second chance for an impostor as well, so
the service decides it at a stricter false-match rate (`VOICEID_RETRY_FMR_FACTOR`, thresholds in
`verify.policy.retry_pair`), and only where more speech is the right answer:

- the verification retried is this speaker's, INCONCLUSIVE with evidence reasons only: a call a check
  flagged (countermeasure, replay, watchlist, linked voice), one that needs a challenge and a REJECT are
  never retried with more speech, which would only give an attacker another try;
- at most `VOICEID_RETRY_WINDOW_S` old (the same call, not a later one);
- retried once, and a retry is not retried again (still INCONCLUSIVE: another factor).

A retry counts toward the lockout like any attempt. An IVR that sends the second try without
`retry_of` gets it decided as a fresh attempt at the normal thresholds: the marker is how an honest IVR
keeps the two-step policy inside the false-match target, not a gate an attacker must pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.views import check_issued_id
from voiceid.storage import repositories as repo
from voiceid.storage.models import Verification
from voiceid.verify.decision import Decision, Reason

RETRYABLE_REASONS = frozenset({Reason.SCORE_BETWEEN_THRESHOLDS.value, Reason.INSUFFICIENT_SPEECH.value})
# The score's own reason rides along with INSUFFICIENT_SPEECH (which way a too-short call leaned).
SCORE_REASONS = frozenset({Reason.SCORE_ABOVE_ACCEPT_THRESHOLD.value, Reason.SCORE_BELOW_REJECT_THRESHOLD.value})


def check_retry_id(retry_of: str) -> str:
    """A malformed id is a 422 before the body is read."""
    return check_issued_id(retry_of, "retry_of", "of a verification_id")


def why_not_retryable(row: Verification, now: datetime, window_s: float, retried_by: str | None) -> str | None:
    """Why `row` cannot be retried (None: it can). Pure: the caller has loaded the row and its retry."""
    if row.retry_of is not None:
        return "it is itself a retry: a caller still INCONCLUSIVE after one retry needs another factor"
    if row.decision != Decision.INCONCLUSIVE.value:
        return f"it was {row.decision}, not INCONCLUSIVE"
    flagged = sorted(set(row.reasons) - RETRYABLE_REASONS - SCORE_REASONS)
    if flagged or not set(row.reasons) & RETRYABLE_REASONS:
        return (
            f"it was INCONCLUSIVE for {', '.join(flagged or row.reasons)}, not for lack of evidence: "
            "never retried with more speech (an agent and a non-voice factor)"
        )
    if now - row.created_at > timedelta(seconds=window_s):
        return f"it is older than VOICEID_RETRY_WINDOW_S ({window_s:g} s)"
    if retried_by is not None:
        return f"it was retried already (verification {retried_by})"
    return None


def check_retry(session: Session, speaker_ref: str, retry_of: str, now: datetime, window_s: float) -> None:
    """Raise unless `retry_of` is a verification of `speaker_ref` that may be retried now. Another
    speaker's verification is 'not found' (an id says nothing about other accounts)."""
    row = repo.get_verification(session, retry_of)
    if row is None or row.speaker_ref != speaker_ref:
        raise VoiceIdError(ErrorCode.VERIFICATION_NOT_FOUND, f"no verification {retry_of!r} of this speaker")
    why = why_not_retryable(row, now, window_s, repo.retry_of_verification(session, retry_of))
    if why is not None:
        raise VoiceIdError(ErrorCode.RETRY_NOT_ALLOWED, f"verification {retry_of} cannot be retried: {why}")
