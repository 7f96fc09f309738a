"""`voiceid eval-challenge`: does the recogniser pass the right words and fail the wrong ones?

For every manifest row with a `text`, one genuine trial (the prompt is the row's own text) and up
to `mismatch_per_row` mismatch trials (the prompt is another row's text of the same kind, rows of
the same speaker first: a replay of the customer saying something else). A text of digits only
is of kind `digits`; other texts are not scored (there is no phrase kind yet).

Each probe goes through the channel the API would see (`evaluation.channel`) and the API's own
decoder before the recogniser hears it. With `fit_speakers`, the threshold is chosen on those
speakers' trials only (false-pass rate not above `target_false_pass`, placed in the middle of the
gap between the fit speakers' classes: `fit_threshold`) and every figure is reported on the other
speakers, so the threshold never saw the audio it is judged on.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiceid.audio.decode import AudioLimits, decode_audio
from voiceid.challenge.recogniser import DigitRecogniser, Recognition
from voiceid.evaluation.channel import through_channel

DIGITS = "digits"


@dataclass(frozen=True)
class TextRow:
    utt_id: str
    speaker_id: str
    path: Path
    text: str  # digits without spaces for the digits kind

    @property
    def kind(self) -> str:
        return DIGITS


@dataclass(frozen=True)
class Trial:
    utt_id: str
    speaker_id: str
    prompt: str
    genuine: bool
    heard: str
    score: float


def read_text_rows(manifest: Path) -> list[TextRow]:
    """Rows whose text is a digit string (spaces allowed, "3 2 9 4 9 4")."""
    base = manifest.parent
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "text" not in rows[0]:
        raise ValueError(f"{manifest} has no `text` column")
    out = []
    for row in rows:
        digits = "".join((row.get("text") or "").split())
        if digits.isdigit():
            out.append(TextRow(row["utt_id"], row["speaker_id"], base / row["path"], digits))
    return out


def mismatch_prompts(row: TextRow, rows: list[TextRow], per_row: int) -> list[str]:
    """Other rows' texts of the same kind, the same speaker's first, never the row's own text."""
    same = [r.text for r in rows if r.speaker_id == row.speaker_id and r.text != row.text and r.kind == row.kind]
    other = [r.text for r in rows if r.speaker_id != row.speaker_id and r.text != row.text and r.kind == row.kind]
    chosen: list[str] = []
    for text in same + other:
        if text not in chosen:
            chosen.append(text)
        if len(chosen) == per_row:
            break
    return chosen


def run_trials(
    rows: list[TextRow],
    recogniser: DigitRecogniser,
    channel: str,
    mismatch_per_row: int,
    limits: AudioLimits,
    progress: Callable[[Iterable[TextRow]], Iterable[TextRow]] = lambda rows: rows,
) -> tuple[list[Trial], float]:
    """All trials, and the real-time factor (recogniser CPU seconds per second of audio, per call)."""
    trials: list[Trial] = []
    busy = 0.0
    audio_s = 0.0
    for row in progress(rows):
        data, content_type = through_channel(row.path, channel)
        decoded = decode_audio(data, content_type, limits)
        # The genuine trial is timed as the service runs it (free loop + one alignment): that is
        # the cost per call. The mismatch trials reuse the free-loop pass of the same audio.
        started = time.process_time()
        genuine = recogniser.recognise(decoded.samples, decoded.sample_rate, row.text)
        busy += time.process_time() - started
        audio_s += decoded.duration_s
        others = mismatch_prompts(row, rows, mismatch_per_row)
        results: list[Recognition] = [genuine, *recogniser.recognise_many(decoded.samples, decoded.sample_rate, others)]
        for result, is_genuine in zip(results, [True] + [False] * len(others), strict=True):
            trials.append(Trial(row.utt_id, row.speaker_id, result.prompt, is_genuine, result.heard, result.score))
    return trials, (busy / audio_s if audio_s else 0.0)


def fit_threshold(trials: list[Trial], target_false_pass: float) -> float:
    """A threshold whose mismatch pass rate is at most `target_false_pass` and whose genuine pass
    rate is the highest that target allows, placed in the middle of the gap that separates the
    fit trials there (max margin) rather than on its edge.

    Every threshold from just above the (allowed+1)-th highest mismatch score up to the lowest
    genuine score above it passes the same genuine trials; its lowest point sits on the fit
    speaker's hardest mismatch, so another speaker's slightly harder one passes. The middle
    passes the same genuine fit trials and at most the same mismatches."""
    mismatch = np.sort(np.array([t.score for t in trials if not t.genuine], dtype=np.float64))
    finite = mismatch[np.isfinite(mismatch)]
    genuine = np.array([t.score for t in trials if t.genuine and math.isfinite(t.score)], dtype=np.float64)
    if finite.size == 0:
        return float(genuine.min()) if genuine.size else 0.0
    allowed = math.floor(target_false_pass * mismatch.size)  # how many mismatches may pass
    # Passing means score >= threshold: the lowest admissible one is just above the (allowed+1)-th highest.
    ordered = finite[::-1]
    if allowed >= ordered.size:
        return float(ordered[-1])
    lowest = float(np.nextafter(ordered[allowed], math.inf))
    above = genuine[genuine >= lowest]
    if above.size == 0:
        return lowest
    return max(lowest, (float(ordered[allowed]) + float(above.min())) / 2)


def summarise(trials: list[Trial], threshold: float) -> dict[str, Any]:
    genuine = [t for t in trials if t.genuine]
    mismatch = [t for t in trials if not t.genuine]
    return {
        "genuine_pass_rate": _rate(sum(t.score >= threshold for t in genuine), len(genuine)),
        "mismatch_pass_rate": _rate(sum(t.score >= threshold for t in mismatch), len(mismatch)),
        "n_genuine": len(genuine),
        "n_mismatch": len(mismatch),
        "genuine_heard_exact_rate": _rate(sum(t.heard == t.prompt for t in genuine), len(genuine)),
    }


def _rate(k: int, n: int) -> float | None:
    return None if n == 0 else round(k / n, 4)


def split_speakers(rows: list[TextRow]) -> tuple[list[str], list[str]]:
    """Speakers in manifest order, the first half (rounded down, at least one) to fit on."""
    speakers = list(dict.fromkeys(r.speaker_id for r in rows))
    cut = max(1, len(speakers) // 2)
    return speakers[:cut], speakers[cut:]


def evaluate(
    rows: list[TextRow],
    recogniser: DigitRecogniser,
    channel: str,
    threshold: float,
    mismatch_per_row: int,
    limits: AudioLimits,
    fit_speakers: list[str] | None = None,
    target_false_pass: float = 0.01,
    progress: Callable[[Iterable[TextRow]], Iterable[TextRow]] = lambda rows: rows,
) -> dict[str, Any]:
    trials, rtf = run_trials(rows, recogniser, channel, mismatch_per_row, limits, progress)
    report: dict[str, Any] = {"channel": channel, "recogniser": recogniser.name}
    scored = trials
    if fit_speakers:
        fit = [t for t in trials if t.speaker_id in fit_speakers]
        scored = [t for t in trials if t.speaker_id not in fit_speakers]
        threshold = fit_threshold(fit, target_false_pass)
        report["fit"] = {
            "speakers": sorted(fit_speakers),
            "target_false_pass": target_false_pass,
            **summarise(fit, threshold),
        }
        report["reported_speakers"] = sorted({t.speaker_id for t in scored})
    report["threshold"] = threshold
    kind = summarise(scored, threshold)
    kind["real_time_factor"] = round(rtf, 4)
    report["kinds"] = {DIGITS: kind} if trials else {}
    report["trials"] = [
        {
            "utt_id": t.utt_id,
            "prompt": t.prompt,
            "genuine": t.genuine,
            "heard": t.heard,
            "score": None if not math.isfinite(t.score) else round(t.score, 4),
        }
        for t in trials
    ]
    return report
