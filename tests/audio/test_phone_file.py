"""`python -m voiceid.audio.phone_file`: the raw G.711 bytes the README's phone example sends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceid.audio.decode import AudioLimits, decode_audio
from voiceid.audio.phone_file import main

LIMITS = AudioLimits(max_bytes=16 * 1024 * 1024, max_seconds=180.0)


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("law", "content_type", "codec"), [("ulaw", "audio/basic", "ULAW"), ("alaw", "audio/x-alaw-basic", "ALAW")]
)
def test_a_wideband_file_becomes_8_khz_g711_the_api_decodes(tmp_path: Path, capsys, law, content_type, codec):
    source = tmp_path / "call.flac"
    sf.write(source, _tone(2.0, 16000), 16000, format="FLAC")
    target = tmp_path / "call.g711"
    main([str(source), str(target), "--law", law])
    assert capsys.readouterr().out.strip() == content_type
    data = target.read_bytes()
    assert len(data) == 2 * 8000  # one byte per sample at 8 kHz
    decoded = decode_audio(data, content_type, LIMITS)
    assert (decoded.sample_rate, decoded.codec) == (8000, codec)
    reference = _tone(2.0, 8000)
    # G.711 keeps the waveform to within its quantisation error (about 38 dB SNR for this tone).
    error = decoded.samples[100:-100] - reference[100:-100]
    assert 10 * np.log10(np.mean(reference**2) / np.mean(error**2)) > 30


def test_stereo_is_mixed_to_mono(tmp_path: Path, capsys):
    source = tmp_path / "stereo.wav"
    left = _tone(1.0, 8000)
    sf.write(source, np.stack([left, -left], axis=1), 8000)  # the mix is silence
    target = tmp_path / "out.ulaw"
    main([str(source), str(target)])
    decoded = decode_audio(target.read_bytes(), capsys.readouterr().out.strip(), LIMITS)
    assert np.max(np.abs(decoded.samples)) < 1e-3
