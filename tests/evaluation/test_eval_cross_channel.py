"""`voiceid eval --enrol-channel / --phone-view / --second-chance` on a tiny synthetic manifest.

The embedder is a stand-in (a spectrum of the decoded audio, shifted by a fixed offset when the
audio arrives G.711-coded, so the channel matters as it does for the network): these tests are
about what each option feeds where, not about the network's accuracy (bench/cross_channel.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from voiceid.config import get_settings

RATE = 16000
N_SPEAKERS, N_UTTS = 4, 6  # 3 enrol, 3 tests: 2 of them have a next utterance
_OFFSET = np.random.default_rng(7).standard_normal(192)


def _write_speakers(folder: Path, prefix: str, n_speakers: int, n_utts: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    t = np.arange(int(1.5 * RATE)) / RATE
    for s in range(n_speakers):
        tones = rng.uniform(200, 3000, size=3)
        for k in range(n_utts):
            x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in tones) / 4
            x = (x + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
            path = folder / f"{prefix}{s}" / f"{prefix}{s}-{k}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x, RATE, subtype="PCM_16")
            rows.append({"utt_id": path.stem, "speaker_id": f"{prefix}{s}", "path": str(path.relative_to(folder))})
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["utt_id", "speaker_id", "path"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture
def fake_eval(monkeypatch, tmp_path):
    monkeypatch.setenv("VOICEID_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    from voiceid.audio.frontend import FrontEnd, FrontEndConfig
    from voiceid.audio.resample import resample
    from voiceid.evaluation import embedders

    front = FrontEnd(FrontEndConfig.from_settings(get_settings()))
    seen: list[tuple[int, str]] = []

    def fake_embedder(settings):
        def embed(data: bytes, content_type: str) -> np.ndarray:
            decoded = front.decode(data, content_type)
            seen.append((len(data), content_type))
            x = resample(decoded.samples, decoded.sample_rate, 8000)[:8000]
            v = np.abs(np.fft.rfft(x, n=382))[:192]
            v = v / np.linalg.norm(v)
            if content_type == "audio/basic":
                v = v + 0.5 * _OFFSET / np.linalg.norm(_OFFSET)
            return (v / np.linalg.norm(v)).astype(np.float32)

        return embed, None

    monkeypatch.setattr(embedders, "voiceid_embedder", fake_embedder)
    monkeypatch.setattr(embedders, "speech_meter", lambda settings: lambda data, content_type: 4.0)
    manifest = _write_speakers(tmp_path / "dev", "s", N_SPEAKERS, N_UTTS, seed=1)
    cohort = _write_speakers(tmp_path / "cohort", "c", 6, 1, seed=2)
    yield manifest, cohort, seen
    get_settings.cache_clear()


def _eval(manifest: Path, cohort: Path, out: Path, *options: str) -> dict:
    from voiceid.cli import app

    args = ["eval", "--manifest", str(manifest), "--cohort-manifest", str(cohort), "--out", str(out), *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_cross_channel_eval_embeds_enrolment_and_probes_through_their_channels(fake_eval, tmp_path) -> None:
    manifest, cohort, seen = fake_eval
    report = _eval(
        manifest, cohort, tmp_path / "r.json", "--enrol-channel", "clean", "--channel", "g711-ulaw", "--no-phone-view"
    )
    assert report["enrol_channel"] == "clean" and report["channel"] == "g711-ulaw"
    # the service decides a phone call with the phone cohort and calibration, whatever the enrolment
    assert report["service_channel"] == "phone" and report["phone_view_voiceprint"] is False
    assert report["policy"]["calibration"].startswith("phone")
    types = [content_type for _, content_type in seen]
    assert types.count("audio/flac") == N_SPEAKERS * 3  # the enrolment audio, as it is
    # the probes and the (phone) cohort over G.711
    assert types.count("audio/basic") == N_SPEAKERS * (N_UTTS - 3) + 6

    seen.clear()
    viewed = _eval(manifest, cohort, tmp_path / "v.json", "--enrol-channel", "clean", "--channel", "g711-ulaw")
    assert viewed["phone_view_voiceprint"] is True  # the service's default (VOICEID_ENROL_PHONE_VIEW)
    assert viewed["n_target"] == report["n_target"] and viewed["eer"] <= report["eer"]
    # only the enrolment audio's G.711 views were new: every other embedding came from the cache
    assert [t for _, t in seen] == ["audio/basic"] * (N_SPEAKERS * 3)

    same = _eval(manifest, cohort, tmp_path / "s.json", "--channel", "g711-ulaw")
    assert same["enrol_channel"] == "g711-ulaw" and same["phone_view_voiceprint"] is False


def test_second_chance_counts_only_probes_with_a_next_utterance(fake_eval, tmp_path) -> None:
    manifest, cohort, _ = fake_eval
    report = _eval(manifest, cohort, tmp_path / "r.json", "--channel", "g711-ulaw", "--second-chance")
    chance = report["second_chance"]
    g, i = chance["genuine"], chance["impostor"]
    extendable = N_SPEAKERS * (N_UTTS - 3 - 1)
    assert g["before"]["n"] == g["after"]["n"] == extendable
    assert i["before"]["n"] == extendable * (N_SPEAKERS - 1)
    # a second chance only replaces INCONCLUSIVE decisions
    assert g["after"]["accept"] >= g["before"]["accept"] and g["after"]["reject"] >= g["before"]["reject"]
    assert g["second_chances"] == g["before"]["inconclusive"]
    assert g["after"]["inconclusive"] <= g["before"]["inconclusive"]
    assert (chance["accept_threshold"], chance["reject_threshold"]) == (
        report["policy"]["accept_threshold"],
        report["policy"]["reject_threshold"],
    )
    assert chance["retry_accept_threshold"] == chance["accept_threshold"]
    stricter = _eval(
        manifest,
        cohort,
        tmp_path / "x.json",
        "--channel",
        "g711-ulaw",
        "--second-chance",
        "--second-chance-fmr",
        "0.0005",
    )["second_chance"]
    assert stricter["retry_accept_threshold"] > stricter["accept_threshold"] == chance["accept_threshold"]
    assert stricter["genuine"]["before"] == g["before"]  # the first try is the same policy
    assert stricter["genuine"]["after"]["accept"] <= g["after"]["accept"]
    assert stricter["impostor"]["after"]["accept"] <= i["after"]["accept"]
    three = _eval(manifest, cohort, tmp_path / "t.json", "--probe-utts", "2", "--second-chance")
    assert three["second_chance"]["genuine"]["before"]["n"] == N_SPEAKERS  # probe 3+4 extended by 5


def test_second_chance_needs_a_policy(fake_eval, tmp_path) -> None:
    from voiceid.cli import app

    manifest, cohort, _ = fake_eval
    empty = tmp_path / "calibration.json"  # no calibration for this channel and model: no policy
    empty.write_text('{"calibrations": []}')
    args = ["eval", "--manifest", str(manifest), "--cohort-manifest", str(cohort), "--calibration", str(empty)]
    result = CliRunner().invoke(app, [*args, "--second-chance"])
    assert result.exit_code == 2 and "--second-chance needs a calibration" in result.output
