"""Spoken challenges, the pure part: prompts, statuses, and the challenge step of the decision.

The decision is composed in voiceid/services/decision.py in the order voice policy -> watchlist ->
countermeasure -> replay -> challenge -> links; `apply_challenge` is the challenge step.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from voiceid.challenge.recogniser import DIGIT_WORDS
from voiceid.verify.decision import Decision, Outcome, Reason

# A challenge id is 128 random bits in hex (secrets.token_hex): anything else is refused before a
# database is asked, so a malformed id is a clear 422 rather than CHALLENGE_UNKNOWN.
CHALLENGE_ID = re.compile(r"^[0-9a-f]{32}$")


class ChallengeKind(StrEnum):
    DIGITS = "digits"


class ChallengePolicy(StrEnum):
    OFF = "off"  # challenges are checked when sent, never asked for
    ON_RISK = "on-risk"  # a would-be ACCEPT the countermeasure is unsure of, or a linked voice, needs one
    ALWAYS = "always"  # nothing is ACCEPT without a passed challenge


class ChallengeStatus(StrEnum):
    PASSED = "PASSED"
    MISMATCH = "MISMATCH"  # the words did not match the prompt (or could not be recognised at all)
    EXPIRED = "EXPIRED"
    USED = "USED"  # single use: a second verification with the same challenge
    UNKNOWN = "UNKNOWN"  # no such challenge for this speaker


STATUS_REASON = {
    ChallengeStatus.PASSED: Reason.CHALLENGE_PASSED,
    ChallengeStatus.MISMATCH: Reason.CHALLENGE_MISMATCH,
    ChallengeStatus.EXPIRED: Reason.CHALLENGE_EXPIRED,
    ChallengeStatus.USED: Reason.CHALLENGE_USED,
    ChallengeStatus.UNKNOWN: Reason.CHALLENGE_UNKNOWN,
}


@dataclass(frozen=True)
class ChallengeCheck:
    """What the challenge of one verification came to (logged, and returned as `challenge`)."""

    challenge_id: str
    status: ChallengeStatus
    prompt: str | None = None  # digits, e.g. "471902"; None when the challenge is unknown
    heard: str | None = None  # what the recogniser's free digit loop heard
    confidence: float | None = None  # the recogniser's score (per-frame LLR, nats); passes at >= threshold

    @property
    def failed(self) -> bool:
        return self.status is not ChallengeStatus.PASSED

    @property
    def log_fields(self) -> dict[str, Any]:
        """The score log's columns: analysts see prompt against heard on the attempt page."""
        return {
            "challenge_id": self.challenge_id,
            "challenge_status": self.status.value,
            "challenge_prompt": self.prompt,
            "challenge_heard": self.heard,
            "challenge_score": self.confidence,
        }


def new_challenge_id() -> str:
    return secrets.token_hex(16)


def new_digits(length: int) -> str:
    """A prompt from the operating system's CSPRNG: an attacker cannot have recorded it beforehand."""
    return "".join(secrets.choice("0123456789") for _ in range(length))


def spoken_prompt(digits: str) -> str:
    """What the IVR plays, digit by digit: "4 7 1 9 0 2"."""
    return " ".join(digits)


def prompt_words(digits: str) -> str:
    """The prompt as words, for a TTS engine: "four seven one nine zero two"."""
    return " ".join(DIGIT_WORDS[int(d)] for d in digits)


def at_risk(cm_score: float | None, cm_threshold: float | None, band: float, linked: bool) -> bool:
    """The call looks risky enough to need a challenge: the countermeasure passed it, but by less
    than `band` (nats) above its threshold, or the fraud checks linked the voice to other identities."""
    near = cm_score is not None and cm_threshold is not None and cm_score < cm_threshold + band
    return near or linked


def apply_challenge(outcome: Outcome, check: ChallengeCheck | None, policy: ChallengePolicy, risky: bool) -> Outcome:
    """The outcome after the challenge step.

    With a challenge: PASSED adds CHALLENGE_PASSED and changes nothing else (the voice still has
    to match). Words that do not match make the call REJECT: it is the replay of the customer
    saying something else that the challenge exists to catch. An expired, used or unknown
    challenge says nothing about the words, so a would-be ACCEPT becomes INCONCLUSIVE (the IVR may
    ask for a fresh one); a REJECT stays REJECT either way.

    Without one: under `always`, and under `on-risk` when the call is risky, a would-be ACCEPT or
    INCONCLUSIVE becomes INCONCLUSIVE with CHALLENGE_REQUIRED. A REJECT stays a REJECT: asking a
    voice that does not match for a challenge would only give an attacker a free retry.
    """
    if check is not None:
        reasons = (*outcome.reasons, STATUS_REASON[check.status])
        if check.status is ChallengeStatus.PASSED:
            return Outcome(outcome.decision, reasons)
        if check.status is ChallengeStatus.MISMATCH:
            return Outcome(Decision.REJECT, reasons)
        decision = Decision.INCONCLUSIVE if outcome.decision is Decision.ACCEPT else outcome.decision
        return Outcome(decision, reasons)
    required = policy is ChallengePolicy.ALWAYS or (policy is ChallengePolicy.ON_RISK and risky)
    if not required:
        return outcome
    if policy is ChallengePolicy.ON_RISK and outcome.decision is not Decision.ACCEPT:
        return outcome  # on-risk only steps up what would have been accepted
    if outcome.decision not in (Decision.ACCEPT, Decision.INCONCLUSIVE):
        return outcome
    return Outcome(Decision.INCONCLUSIVE, (*outcome.reasons, Reason.CHALLENGE_REQUIRED))
