"""Thresholds fitted on genuine callers from several sources, eval-pad's report at fixed thresholds,
bona-fide-only manifests, and files that cannot be scored as they are (no model: scripted scores)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceid.antispoof.calibration import BonafideScore, fit_thresholds, held_out_speakers
from voiceid.antispoof.countermeasure import CmOutput
from voiceid.antispoof.policy import ChannelThreshold, PadThresholds, enrolment_doubt
from voiceid.audio.decode import AudioLimits
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.audio.vad import VadConfig
from voiceid.evaluation.pad import (
    CmCache,
    PadItem,
    arrival_channel,
    at_thresholds,
    pad_report,
    read_pad_manifest,
    score_items,
)


def _scores(source: str, channel: str, values: list[float], speakers: int = 10) -> list[BonafideScore]:
    return [
        BonafideScore(f"{source}|{channel}|{i}", f"{source}-spk{i % speakers}", source, "clean", channel, v)
        for i, v in enumerate(values)
    ]


def test_each_source_gets_at_most_the_target_bpcer_on_the_fitted_speakers() -> None:
    # Source A: 200 genuine calls scoring 0..199; source B (e.g. native 8 kHz, which the CM dislikes):
    # 100 calls scoring -100..-1. Pooled, a 1 % threshold would flag most of B; per source it does not.
    a = _scores("A", "phone", [float(v) for v in range(200)])
    b = _scores("B", "phone", [float(v) for v in range(-100, 0)])
    thresholds, report = fit_thresholds(a + b, "cm-x", 0.01, holdout_share=0.0)
    # B alone: floor(0.01 * 100) = 1 call may fall below -> the 2nd lowest score (index 1) = -99
    assert thresholds.threshold("phone") == -99.0
    rows = report["per_source"]
    assert rows["A [clean]"]["bpcer_fit"] == 0.0 and rows["B [clean]"]["bpcer_fit"] == 0.01
    assert thresholds.channels["phone"].n_bonafide == 300 and thresholds.channels["phone"].bpcer_held_out is None


def test_a_source_too_small_for_its_own_threshold_only_counts_in_the_pooled_fit() -> None:
    big = _scores("A", "wideband", [float(v) for v in range(100)])
    tiny = _scores("T", "wideband", [-50.0, -40.0, 10.0])  # 3 files: no threshold of its own
    thresholds, _ = fit_thresholds(big + tiny, "cm-x", 0.01, holdout_share=0.0, min_source_files=20)
    pooled = np.array([s.score for s in big + tiny])
    # pooled: floor(0.01 * 103) = 1 below -> -40; A alone: 1 below -> 1.0; the most lenient wins
    assert thresholds.threshold("wideband") == min(np.sort(pooled)[1], 1.0) == -40.0


def test_held_out_speakers_are_kept_out_of_the_fit_and_reported() -> None:
    scores = _scores("A", "phone", [float(v) for v in range(400)], speakers=40)
    thresholds, report = fit_thresholds(scores, "cm-x", 0.05, holdout_share=0.3)
    kept_out = held_out_speakers({(s.source, s.speaker_id) for s in scores}, 0.3)
    held = [s for s in scores if (s.source, s.speaker_id) in kept_out]
    fit = [s for s in scores if (s.source, s.speaker_id) not in kept_out]
    assert len({s.speaker_id for s in held}) == 12  # round(0.3 x 40)
    assert {s.speaker_id for s in held}.isdisjoint({s.speaker_id for s in fit})  # whole speakers
    expected = np.sort([s.score for s in fit])[int(0.05 * len(fit))]
    assert thresholds.threshold("phone") == expected
    row = report["per_channel"]["phone"]
    assert row["n_fit"] == len(fit) and row["n_held_out"] == len(held)
    assert row["bpcer_held_out"] == pytest.approx(np.mean([s.score < expected for s in held]), abs=1e-4)
    assert thresholds.channels["phone"].n_held_out == len(held)
    # the file round-trips with the held-out figures
    again = PadThresholds.from_dict(thresholds.to_dict())
    assert again.channels["phone"].bpcer_held_out == thresholds.channels["phone"].bpcer_held_out


def test_a_small_source_still_has_one_speaker_held_out() -> None:
    six = {("8k", f"spk{i}") for i in range(6)}
    assert len(held_out_speakers(six, 0.05)) == 1  # round(0.05 x 6) = 0, raised to 1
    assert held_out_speakers({("x", "a"), ("x", "b")}, 0.3) == set()  # two speakers: both needed to fit
    assert held_out_speakers(six, 0.0) == set()


def _item(utt: str, label: str, attack: str = "bonafide", source: str = "s") -> PadItem:
    return PadItem(utt, label, attack, "spk", Path(f"/x/{utt}.wav"), source)


def test_report_at_fixed_thresholds_judges_each_file_by_its_channel() -> None:
    items = [
        _item("b1", "bonafide", source="wb"),
        _item("b2", "bonafide", source="8k"),
        _item("s1", "spoof", "tts"),
        _item("s2", "spoof", "tts"),
    ]
    scores = {"b1": -0.5, "b2": -0.5, "s1": -3.0, "s2": 0.5}
    channels = {"b1": "wideband", "b2": "phone", "s1": "wideband", "s2": "wideband"}
    thresholds = PadThresholds(
        "cm", {"wideband": ChannelThreshold(0.0, 0.01, 0.0, 1), "phone": ChannelThreshold(-1.0, 0.01, 0.0, 1)}
    )
    out = at_thresholds(items, scores, channels, thresholds)
    assert (out["bpcer"], out["apcer"], out["n_bonafide"], out["n_spoof"]) == (0.5, 0.5, 2, 2)
    assert out["bpcer_per_source"] == {"8k": {"bpcer": 0.0, "n": 1}, "wb": {"bpcer": 1.0, "n": 1}}
    assert out["apcer_per_attack"] == {"tts": {"apcer": 0.5, "n": 2}}
    only_bona = at_thresholds(items[:2], scores, channels, thresholds)
    assert only_bona["apcer"] is None and only_bona["bpcer"] == 0.5


def test_a_bona_fide_only_manifest_has_no_eer_or_apcer() -> None:
    items = [_item(f"b{i}", "bonafide") for i in range(10)]
    report = pad_report(items, {i.utt_id: float(k) for k, i in enumerate(items)})
    assert report["n_bonafide"] == 10 and report["n_spoof"] == 0
    assert report["eer"] is None and report["apcer_at_bpcer_1pct"] is None and report["per_attack"] == {}


def _wav(path: Path, seconds: float, rate: int) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


def test_speaker_verification_manifests_read_as_bona_fide_with_absolute_paths(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "a.wav", 1.0, 8000)
    manifest = tmp_path / "dev_8k" / "manifest.csv"
    manifest.parent.mkdir()
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utt_id", "speaker_id", "path", "duration_s", "source"])
        writer.writerow(["u1", "spk1", str(wav), "1.0", "FSDD"])
    [item] = read_pad_manifest(manifest)
    assert item.is_bonafide and item.path == wav and item.source == "dev_8k/FSDD"
    assert arrival_channel(wav, "clean") == "phone" and arrival_channel(wav, "g711-ulaw") == "phone"
    assert arrival_channel(_wav(tmp_path / "w.wav", 1.0, 16000), "clean") == "wideband"


class _CountingCm:
    """Scores every window 1.0; remembers the longest audio it was given."""

    def __init__(self) -> None:
        self.longest = 0.0

    def score(self, wave: np.ndarray, sample_rate: int) -> CmOutput:
        self.longest = max(self.longest, len(wave) / sample_rate)
        return CmOutput(1.0, (1.0,), None, "counting")


def test_one_file_never_ends_a_run(tmp_path: Path) -> None:
    """Too long: scored on the part the service accepts and listed; undecodable: skipped and listed."""
    items = [
        PadItem("long", "bonafide", "bonafide", "s", _wav(tmp_path / "long.wav", 12.0, 16000), "x"),
        PadItem("ok", "bonafide", "bonafide", "s", _wav(tmp_path / "ok.wav", 2.0, 16000), "x"),
        PadItem("bad", "bonafide", "bonafide", "s", tmp_path / "missing.wav", "x"),
    ]
    config = FrontEndConfig(AudioLimits(max_bytes=1 << 24, max_seconds=5.0), VadConfig(), 0.5, 1.0)
    cm = _CountingCm()
    problems: list = []
    out = score_items(items, "clean", cm, FrontEnd(config), CmCache(None, "v"), problems=problems)  # type: ignore[arg-type]
    assert set(out) == {"long", "ok"}
    assert cm.longest <= 5.0
    assert [(p.utt_id, p.action) for p in problems] == [("long", "truncated"), ("bad", "skipped")]
    assert problems[0].code == "AUDIO_TOO_LONG"


def test_fewer_windows_are_derived_from_a_wider_cache(tmp_path: Path) -> None:
    wide = CmCache(tmp_path, "cap4")
    wide.put(b"call", "clean", CmOutput(2.5, (1.0, 2.0, 3.0, 4.0), np.ones(3, dtype=np.float32), "cap4"))
    one = CmCache(tmp_path, "cap1", 1, ["cap4"]).get(b"call", "clean")
    two = CmCache(tmp_path, "cap2", 2, ["cap4"]).get(b"call", "clean")
    assert one is not None and one.window_scores == (1.0,) and one.embedding is None
    assert two is not None and two.window_scores == (1.0, 4.0) and two.score == 2.5
    assert CmCache(tmp_path, "cap3", 3, ["cap4"]).get(b"call", "clean") is None  # not a subset: re-score


def test_enrolment_evidence_is_the_mean_margin() -> None:
    assert enrolment_doubt([]) is None
    assert enrolment_doubt([-1.0, 4.0]) == 1.5
    assert enrolment_doubt([-9.0, -9.0, 4.0]) < 0
