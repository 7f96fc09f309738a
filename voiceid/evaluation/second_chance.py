"""What a second chance does to INCONCLUSIVE calls (pure).

The IVR's answer to INCONCLUSIVE (docs/decision-policy.md): keep the caller talking and score the
whole call again. The evaluation imitates it with the next utterance of the same speaker: a probe
INCONCLUSIVE on its first k utterances is decided again on k + 1 utterances joined, against the
same claimed voiceprint, with the same policy. An impostor gets the same second chance, so the
impostor ACCEPT after it is what the two-step policy lets through (first ACCEPT, or INCONCLUSIVE
then ACCEPT).

Only probes that have a next utterance are counted, before and after alike, so the two columns
describe the same calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.evaluation.runner import TrialScores
from voiceid.verify.calibration import Calibration
from voiceid.verify.decision import Decision, Thresholds, decide_many

Decisions = npt.NDArray[np.str_]
_INCONCLUSIVE = Decision.INCONCLUSIVE.value


def _counts(decisions: Decisions) -> dict[str, Any]:
    n = int(decisions.size)
    out: dict[str, Any] = {"n": n}
    for outcome in (Decision.ACCEPT, Decision.INCONCLUSIVE, Decision.REJECT):
        k = int(np.count_nonzero(decisions == outcome.value))
        out[outcome.value.lower()] = k
        out[f"{outcome.value.lower()}_rate"] = round(k / n, 6) if n else None
    return out


def after_second_chance(first: Decisions, second: Decisions) -> Decisions:
    """The final decisions: `second` (the extended probe's) where `first` was INCONCLUSIVE."""
    if first.shape != second.shape:
        raise ValueError(f"decision matrices differ in shape: {first.shape} and {second.shape}")
    return np.where(first == _INCONCLUSIVE, second, first)


def second_chance_report(first: Decisions, second: Decisions, is_target: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Before / after counts for genuine and impostor trials (rows: probes that have an extension,
    columns: claimed voiceprints), and how many trials the second chance was given to."""
    final = after_second_chance(first, second)
    retried = first == _INCONCLUSIVE
    report: dict[str, Any] = {}
    for name, mask in (("genuine", is_target), ("impostor", ~is_target)):
        report[name] = {
            "before": _counts(first[mask]),
            "after": _counts(final[mask]),
            "second_chances": int(np.count_nonzero(retried & mask)),
            "accepted_on_second_chance": int(np.count_nonzero(retried & mask & (final == Decision.ACCEPT.value))),
        }
    report["genuine_accept_rate_before"] = report["genuine"]["before"]["accept_rate"]
    report["genuine_accept_rate_after"] = report["genuine"]["after"]["accept_rate"]
    report["genuine_inconclusive_rate_after"] = report["genuine"]["after"]["inconclusive_rate"]
    report["impostor_accept_rate_before"] = report["impostor"]["before"]["accept_rate"]
    report["impostor_accept_rate_after"] = report["impostor"]["after"]["accept_rate"]
    return report


def format_second_chance(report: dict[str, Any]) -> str:
    g, i = report["genuine"], report["impostor"]

    def pct(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{100 * value:.{digits}f}%"

    return "\n".join(
        [
            f"second chance (INCONCLUSIVE probe + the call's next utterance, decided at accept LLR >= "
            f"{report['retry_accept_threshold']}), {g['before']['n']} genuine / "
            f"{i['before']['n']} impostor trials with a next utterance:",
            f"  genuine ACCEPT {pct(g['before']['accept_rate'])} -> {pct(g['after']['accept_rate'])}  "
            f"INCONCLUSIVE {pct(g['before']['inconclusive_rate'])} -> {pct(g['after']['inconclusive_rate'])}  "
            f"REJECT {pct(g['before']['reject_rate'])} -> {pct(g['after']['reject_rate'])}  "
            f"({g['second_chances']} retried, {g['accepted_on_second_chance']} accepted)",
            f"  impostor ACCEPT {i['before']['accept']} -> {i['after']['accept']} of {i['before']['n']} "
            f"({pct(i['before']['accept_rate'], 3)} -> {pct(i['after']['accept_rate'], 3)}; "
            f"{i['second_chances']} retried)",
        ]
    )


def policy_decisions(
    trials: TrialScores,
    rows: npt.NDArray[np.int64],
    calibration: Calibration,
    thresholds: Thresholds,
    min_speech_s: float,
) -> Decisions:
    """The policy's decision on every trial of the given probe rows (columns: all voiceprints)."""
    if trials.probe_speech_s is None:
        raise ValueError("the policy needs each probe's net speech")
    speech = trials.probe_speech_s[rows][:, None]
    llr = calibration.llrs(trials.scores[rows], speech)
    return decide_many(llr, thresholds, np.broadcast_to(speech, llr.shape), min_speech_s)


def second_chance_of(
    first: TrialScores,
    second: TrialScores,
    extension_of: dict[str, str],
    calibration: Calibration,
    thresholds: Thresholds,
    min_speech_s: float,
    retry_thresholds: Thresholds | None = None,
) -> dict[str, Any]:
    """`second_chance_report` of a trial set (`first`) and the trials of its extended probes
    (`second`, probe ids mapped by `extension_of`), decided by one calibration; the extended probes
    by `retry_thresholds` when given (a stricter pair, so that two tries together let fewer impostors
    through), else by the same pair as the first try."""
    if first.speakers != second.speakers:
        raise ValueError("the extended probes were scored against other voiceprints")
    index = {probe_id: i for i, probe_id in enumerate(second.test_ids)}
    pairs = [(i, index[extension_of[p]]) for i, p in enumerate(first.test_ids) if extension_of.get(p) in index]
    if not pairs:
        raise ValueError("no probe has an extension to give a second chance with")
    rows_first = np.array([a for a, _ in pairs], dtype=np.int64)
    rows_second = np.array([b for _, b in pairs], dtype=np.int64)
    before = policy_decisions(first, rows_first, calibration, thresholds, min_speech_s)
    retry_pair = retry_thresholds or thresholds
    retry = policy_decisions(second, rows_second, calibration, retry_pair, min_speech_s)
    report = second_chance_report(before, retry, first.is_target[rows_first])
    report["accept_threshold"], report["reject_threshold"] = thresholds.accept, thresholds.reject
    report["retry_accept_threshold"], report["retry_reject_threshold"] = retry_pair.accept, retry_pair.reject
    return report
