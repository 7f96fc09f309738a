"""What the shipped decision policy does to a trial set: ACCEPT / INCONCLUSIVE / REJECT counts and
rates for genuine and impostor trials, overall and per net-speech band of the probe (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.verify.calibration import Calibration, band_labels, band_of
from voiceid.verify.decision import Decision, Thresholds, decide_many

OUTCOMES = (Decision.ACCEPT, Decision.INCONCLUSIVE, Decision.REJECT)


def _counts(decisions: npt.NDArray[np.str_]) -> dict[str, Any]:
    n = int(decisions.size)
    out: dict[str, Any] = {"n": n}
    for outcome in OUTCOMES:
        k = int(np.count_nonzero(decisions == outcome.value))
        out[outcome.value.lower()] = k
        out[f"{outcome.value.lower()}_rate"] = round(k / n, 6) if n else None
    return out


def trial_llrs(
    scores: npt.NDArray[np.floating],
    probe_s: npt.NDArray[np.float64],
    calibration: Calibration,
) -> npt.NDArray[np.float64]:
    """(n_tests, n_speakers) LLRs of a trial matrix."""
    return calibration.llrs(scores, probe_s[:, None])


def operating_point(
    llr: npt.NDArray[np.float64],
    is_target: npt.NDArray[np.bool_],
    probe_s: npt.NDArray[np.float64],
    thresholds: Thresholds,
    min_speech_s: float,
) -> dict[str, Any]:
    """The `policy` section of an evaluation report."""
    speech = np.broadcast_to(probe_s[:, None], llr.shape)
    decisions = decide_many(llr, thresholds, speech, min_speech_s)
    bands = band_of(speech)
    genuine, impostor = _counts(decisions[is_target]), _counts(decisions[~is_target])
    per_band = []
    for k, label in enumerate(band_labels()):
        in_band = bands == k
        per_band.append(
            {
                "band": label,
                "genuine": _counts(decisions[in_band & is_target]),
                "impostor": _counts(decisions[in_band & ~is_target]),
            }
        )
    return {
        "accept_threshold": thresholds.accept,
        "reject_threshold": thresholds.reject,
        "min_speech_s": min_speech_s,
        "genuine_accept_rate": genuine["accept_rate"],
        "genuine_inconclusive_rate": genuine["inconclusive_rate"],
        "genuine_reject_rate": genuine["reject_rate"],
        "impostor_accept_rate": impostor["accept_rate"],
        "impostor_inconclusive_rate": impostor["inconclusive_rate"],
        "impostor_reject_rate": impostor["reject_rate"],
        "genuine": genuine,
        "impostor": impostor,
        "bands": per_band,
    }


def format_accepts(point: dict[str, Any], between: str = " / ") -> str:
    """`genuine ACCEPT % <between> impostors accepted of n (rate %)`: a table cell of the bench scripts."""
    impostor = point["impostor"]
    return (
        f"{point['genuine_accept_rate'] * 100:.1f} %{between}{impostor['accept']} of {impostor['n']} "
        f"({point['impostor_accept_rate'] * 100:.3f} %)"
    )


def format_table(policy: dict[str, Any]) -> str:
    """A plain-text table of the policy section, for the terminal."""
    lines = [
        f"policy: accept if LLR >= {policy['accept_threshold']}, reject if LLR < {policy['reject_threshold']}",
        f"{'band':>8} {'genuine n':>9} {'ACCEPT':>7} {'INCONC':>7} {'REJECT':>7} {'impostor n':>10} {'ACCEPT':>8}",
    ]
    rows = [{"band": "all", "genuine": policy["genuine"], "impostor": policy["impostor"]}, *policy["bands"]]
    for row in rows:
        g, i = row["genuine"], row["impostor"]

        def pct(value: float | None, digits: int = 1) -> str:
            return "-" if value is None else f"{100 * value:.{digits}f}%"

        lines.append(
            f"{row['band']:>8} {g['n']:>9} {pct(g['accept_rate']):>7} {pct(g['inconclusive_rate']):>7} "
            f"{pct(g['reject_rate']):>7} {i['n']:>10} {pct(i['accept_rate'], 3):>8}"
        )
    return "\n".join(lines)
