"""Manifests and the trial protocol used by `voiceid eval` and `voiceid calibrate`.

Protocol: for each speaker the first K utterances in manifest order form the voiceprint; every
other utterance of every speaker is a trial against every voiceprint.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker_id: str
    path: Path
    extra: tuple[Path, ...] = ()  # further files joined after `path` into one probe (--probe-utts)


@dataclass(frozen=True)
class Protocol:
    enrolment: dict[str, list[Utterance]]  # speaker -> their first K utterances
    tests: list[Utterance]

    @property
    def speakers(self) -> list[str]:
        return list(self.enrolment)


def read_manifest(manifest: Path) -> list[Utterance]:
    base = manifest.parent
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"utt_id", "speaker_id", "path"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{manifest} lacks columns: {', '.join(sorted(missing))}")
    utterances = [Utterance(r["utt_id"], r["speaker_id"], base / r["path"]) for r in rows]
    absent = [u.path for u in utterances if not u.path.is_file()]
    if absent:
        # Relative paths are resolved against the manifest's own folder, wherever it is run from.
        shown = ", ".join(str(p) for p in absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        raise ValueError(
            f"{len(absent)} of {len(utterances)} audio files listed in {manifest} do not exist: {shown} "
            f"(relative paths are read from the manifest's folder, {base})"
        )
    return utterances


def build_protocol(utterances: list[Utterance], enrol_utts: int) -> Protocol:
    if enrol_utts < 1:
        raise ValueError("enrol_utts must be at least 1")
    by_speaker: OrderedDict[str, list[Utterance]] = OrderedDict()
    for utt in utterances:
        by_speaker.setdefault(utt.speaker_id, []).append(utt)
    enrolment = {spk: utts[:enrol_utts] for spk, utts in by_speaker.items()}
    tests = [u for utts in by_speaker.values() for u in utts[enrol_utts:]]
    return Protocol(enrolment, tests)


def join_tests(protocol: Protocol, probe_utts: int) -> Protocol:
    """Each speaker's test utterances joined in consecutive groups of `probe_utts` into one probe,
    as a longer call would be; a last group shorter than that is dropped."""
    if probe_utts < 1:
        raise ValueError("probe_utts must be at least 1")
    if probe_utts == 1:
        return protocol
    by_speaker: OrderedDict[str, list[Utterance]] = OrderedDict()
    for utt in protocol.tests:
        by_speaker.setdefault(utt.speaker_id, []).append(utt)
    joined = []
    for speaker, utts in by_speaker.items():
        for k in range(0, len(utts) - probe_utts + 1, probe_utts):
            group = utts[k : k + probe_utts]
            joined.append(
                Utterance("+".join(u.utt_id for u in group), speaker, group[0].path, tuple(u.path for u in group[1:]))
            )
    return Protocol(protocol.enrolment, joined)


def extend_tests(protocol: Protocol, probe_utts: int) -> dict[str, Utterance]:
    """A second chance for each probe of `join_tests(protocol, probe_utts)`: the probe's id -> the
    same call extended with the speaker's next test utterance (k + 1 utterances joined into one
    probe, as an IVR that asks for more speech and scores the whole call again would have). A probe
    with no next utterance of its speaker has no extension. `protocol` holds single-utterance tests."""
    if probe_utts < 1:
        raise ValueError("probe_utts must be at least 1")
    by_speaker: OrderedDict[str, list[Utterance]] = OrderedDict()
    for utt in protocol.tests:
        by_speaker.setdefault(utt.speaker_id, []).append(utt)
    out: dict[str, Utterance] = {}
    for speaker, utts in by_speaker.items():
        for k in range(0, len(utts) - probe_utts, probe_utts):
            group = utts[k : k + probe_utts + 1]
            probe_id = "+".join(u.utt_id for u in group[:-1])
            out[probe_id] = Utterance(
                "+".join(u.utt_id for u in group), speaker, group[0].path, tuple(u.path for u in group[1:])
            )
    return out
