"""The decision of a verification, composed in one place (pure): every step that can change it, in order.

    voice score ─▶ policy ─▶ watchlist ─▶ countermeasure ─▶ replay ─▶ challenge ─▶ links ─▶ (abandoned)

`verification.py` gathers the evidence (the calibrated voice score, the 1:N watchlist screen, the
countermeasure score, the replay fingerprint match, the spoken challenge, the linked-voice alert),
each from its own service and inside the call's transaction; nothing here reads a database or runs a
model. Each step is the pure rule of the package that owns it, and `compose` applies them in the order
above, so a reader sees in one screen what can turn a voice ACCEPT into something else and why:

| step | rule | what it can do |
|---|---|---|
| policy | `verify.decision.decide` | the LLR against the channel's thresholds; too little speech: INCONCLUSIVE |
| watchlist | `verify.decision.apply_watchlist` | adds WATCHLIST_MATCH; REJECT when the setting forces it |
| countermeasure | `antispoof.policy.apply_pad_flag` | SPOOF_SUSPECTED: never ACCEPT (REJECT if CM_ACTION=reject) |
| replay | `antispoof.policy.apply_pad_flag` | REPLAY_SUSPECTED: likewise |
| challenge | `challenge.policy.apply_challenge` | wrong words: REJECT; none where one is required: INCONCLUSIVE |
| links | `fraud.links.mark_linked` | adds LINKED_VOICE (the decision stands; analysts get an alert) |
| abandoned | `verify.decision.abandon` | a stream that ended before its decision is never ACCEPT |

The policy step's thresholds are chosen with the evidence (`Verifications._gather`): the channel's pair,
or the retry's stricter pair when the call retries an INCONCLUSIVE one (`?retry_of=`, services/retries.py).

A stream's interim (`Verifications.preview`) composes the steps up to replay: its challenge is settled
and its links are checked only once, when the call is decided.

Nothing after `compose` changes the outcome. Once it is logged, a call that ended ACCEPT and passed every
check with a margin may adapt its speaker's voiceprint for *later* calls (services/adaptation.py, the
rule in enrolment/adaptation.py): the voiceprint a call is scored against may be an adapted one, but the
call that adapts it was decided before.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from voiceid.antispoof.policy import PadAction, apply_pad_flag
from voiceid.challenge.policy import ChallengeCheck, ChallengePolicy, apply_challenge
from voiceid.fraud.links import mark_linked
from voiceid.verify.decision import Outcome, Reason, Thresholds, abandon, apply_watchlist, decide


class Step(StrEnum):
    """The steps in the order they apply (the README's diagram draws the same order)."""

    POLICY = "policy"
    WATCHLIST = "watchlist"
    COUNTERMEASURE = "countermeasure"
    REPLAY = "replay"
    CHALLENGE = "challenge"
    LINKS = "links"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class VoiceEvidence:
    value: float  # what the thresholds are on: the calibrated LLR, or the score where no calibration applies
    thresholds: Thresholds
    net_speech_s: float
    min_speech_s: float


@dataclass(frozen=True)
class ChallengeEvidence:
    check: ChallengeCheck | None  # the call's challenge, settled; None when it sent none
    policy: ChallengePolicy
    risky: bool  # on-risk: the countermeasure passed the call narrowly, or its voice is linked


@dataclass(frozen=True)
class Evidence:
    """Everything the decision depends on, gathered before it is taken."""

    voice: VoiceEvidence
    watchlist_hit: bool = False
    watchlist_forces_reject: bool = False
    spoof_suspected: bool = False  # the countermeasure scored the call below its channel's threshold
    replay_suspected: bool = False  # the call matches a recording already heard for this speaker
    pad_action: PadAction = PadAction.INCONCLUSIVE
    challenge: ChallengeEvidence | None = None  # None: not composed (a stream's interim)
    linked: bool | None = None  # None: not checked (a stream's interim)
    abandoned: bool = False


@dataclass(frozen=True)
class Composition:
    outcome: Outcome
    # The outcome after each step that ran, in order: which step changed what (tests, debugging).
    trail: tuple[tuple[Step, Outcome], ...]

    def after(self, step: Step) -> Outcome | None:
        return next((outcome for s, outcome in self.trail if s is step), None)


def compose(evidence: Evidence) -> Composition:
    """The outcome of a scored call: the steps of the module docstring, in that order."""
    voice = evidence.voice
    outcome = decide(voice.value, voice.thresholds, voice.net_speech_s, voice.min_speech_s)
    trail: list[tuple[Step, Outcome]] = [(Step.POLICY, outcome)]

    def then(step: Step, new: Outcome) -> None:
        nonlocal outcome
        outcome = new
        trail.append((step, new))

    then(Step.WATCHLIST, apply_watchlist(outcome, evidence.watchlist_hit, evidence.watchlist_forces_reject))
    then(
        Step.COUNTERMEASURE,
        apply_pad_flag(outcome, evidence.spoof_suspected, Reason.SPOOF_SUSPECTED, evidence.pad_action),
    )
    then(Step.REPLAY, apply_pad_flag(outcome, evidence.replay_suspected, Reason.REPLAY_SUSPECTED, evidence.pad_action))
    if evidence.challenge is not None:
        challenge = evidence.challenge
        then(Step.CHALLENGE, apply_challenge(outcome, challenge.check, challenge.policy, challenge.risky))
    if evidence.linked is not None:
        then(Step.LINKS, mark_linked(outcome, evidence.linked))
    if evidence.abandoned:
        then(Step.ABANDONED, abandon(outcome))
    return Composition(outcome, tuple(trail))
