import io

import numpy as np
import pytest
import soundfile as sf

from voiceid.audio import g711
from voiceid.audio.decode import AudioLimits, decode_audio, parse_content_type
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.testkit.audio import tone, wav_bytes

LIMITS = AudioLimits(max_bytes=5_000_000, max_seconds=30.0)


def _code(data: bytes, content_type: str | None, limits: AudioLimits = LIMITS) -> ErrorCode:
    with pytest.raises(VoiceIdError) as info:
        decode_audio(data, content_type, limits)
    return info.value.code


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"])
def test_wav_subtypes_decode_to_the_same_signal(subtype: str) -> None:
    signal = tone(0.5, 16000)
    decoded = decode_audio(wav_bytes(signal, 16000, subtype), "audio/wav", LIMITS)
    assert decoded.sample_rate == 16000
    assert decoded.codec == subtype
    assert decoded.samples.dtype == np.float32
    tolerance = {"PCM_U8": 0.01, "ULAW": 0.01, "ALAW": 0.01}.get(subtype, 1e-4)
    np.testing.assert_allclose(decoded.samples, signal, atol=tolerance)


@pytest.mark.parametrize(
    ("fmt", "subtype", "ctype"), [("FLAC", "PCM_16", "audio/flac"), ("OGG", "VORBIS", "audio/ogg")]
)
def test_compressed_containers(fmt: str, subtype: str, ctype: str) -> None:
    signal = tone(1.0, 16000)
    decoded = decode_audio(wav_bytes(signal, 16000, subtype, fmt), ctype, LIMITS)
    assert decoded.duration_s == pytest.approx(1.0, abs=0.01)
    # Vorbis is lossy: compare energy, not samples.
    assert np.sqrt(np.mean(decoded.samples**2)) == pytest.approx(np.sqrt(np.mean(signal**2)), rel=0.05)


def test_stereo_is_downmixed_and_channel_count_reported() -> None:
    left, right = tone(0.5, 16000, 200), tone(0.5, 16000, 300)
    decoded = decode_audio(wav_bytes(np.stack([left, right], axis=1), 16000), "audio/wav", LIMITS)
    assert decoded.channels == 2
    np.testing.assert_allclose(decoded.samples, (left + right) / 2, atol=1e-4)


@pytest.mark.parametrize("rate", [8000, 48000, 44100])
def test_native_rates_are_kept_and_reported(rate: int) -> None:
    decoded = decode_audio(wav_bytes(tone(0.5, rate), rate), "audio/wav", LIMITS)
    assert decoded.sample_rate == rate
    assert decoded.is_narrowband == (rate <= 8000)


@pytest.mark.parametrize(("law", "ctype"), [("ulaw", "audio/basic"), ("alaw", "audio/x-alaw-basic")])
def test_raw_g711(law: str, ctype: str) -> None:
    signal = tone(0.5, 8000)
    decoded = decode_audio(g711.encode(signal, law), ctype, LIMITS)
    assert decoded.sample_rate == 8000
    assert decoded.is_narrowband
    np.testing.assert_allclose(decoded.samples, signal, atol=0.01)


def test_raw_l16_big_endian_by_default_and_little_on_request() -> None:
    signal = tone(0.25, 8000)
    pcm = g711.float_to_pcm16(signal)
    big = decode_audio(pcm.astype(">i2").tobytes(), "audio/L16;rate=8000", LIMITS)
    little = decode_audio(pcm.astype("<i2").tobytes(), "audio/L16; rate=8000; endian=little", LIMITS)
    np.testing.assert_allclose(big.samples, signal, atol=1e-4)
    np.testing.assert_allclose(little.samples, signal, atol=1e-4)


def test_l16_stereo() -> None:
    pcm = g711.float_to_pcm16(np.stack([tone(0.25, 8000), tone(0.25, 8000)], axis=1)).astype(">i2")
    decoded = decode_audio(pcm.tobytes(), "audio/L16;rate=8000;channels=2", LIMITS)
    assert decoded.channels == 2 and len(decoded.samples) == 2000


def test_l16_needs_a_rate() -> None:
    assert _code(b"\x00\x01" * 100, "audio/L16") == ErrorCode.UNSUPPORTED_MEDIA_TYPE


def test_l16_odd_length_is_refused() -> None:
    assert _code(b"\x00\x01\x02", "audio/L16;rate=8000") == ErrorCode.UNSUPPORTED_AUDIO


def test_missing_content_type_sniffs_the_container() -> None:
    decoded = decode_audio(wav_bytes(tone(0.5, 16000), 16000, "PCM_16", "FLAC"), None, LIMITS)
    assert decoded.codec == "PCM_16"


@pytest.mark.parametrize("data", [b"RIFF\x00\x00garbage", b"\x00" * 1000, b"not audio at all, just text"])
def test_corrupt_bytes(data: bytes) -> None:
    assert _code(data, "audio/wav") == ErrorCode.UNSUPPORTED_AUDIO


def test_truncated_wav_header() -> None:
    assert _code(wav_bytes(tone(0.5, 16000), 16000)[:30], "audio/wav") == ErrorCode.UNSUPPORTED_AUDIO


def test_zero_bytes() -> None:
    assert _code(b"", "audio/wav") == ErrorCode.EMPTY_AUDIO
    assert _code(b"", "audio/basic") == ErrorCode.EMPTY_AUDIO


def test_header_without_samples() -> None:
    assert _code(wav_bytes(np.zeros(0, dtype=np.float32), 16000), "audio/wav") == ErrorCode.EMPTY_AUDIO


def test_one_sample_decodes_but_is_one_sample_long() -> None:
    decoded = decode_audio(wav_bytes(np.array([0.1], dtype=np.float32), 16000), "audio/wav", LIMITS)
    assert len(decoded.samples) == 1


def test_nan_samples() -> None:
    signal = tone(0.1, 16000)
    signal[10] = np.nan
    assert _code(wav_bytes(signal, 16000, "FLOAT"), "audio/wav") == ErrorCode.UNSUPPORTED_AUDIO


def test_unknown_content_type() -> None:
    assert _code(b"\x00" * 10, "video/mp4") == ErrorCode.UNSUPPORTED_MEDIA_TYPE


def test_too_many_bytes() -> None:
    small = AudioLimits(max_bytes=100, max_seconds=30)
    assert _code(b"\x00" * 101, "audio/basic", small) == ErrorCode.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize("ctype", ["audio/wav", "audio/basic"])
def test_too_many_seconds(ctype: str) -> None:
    short = AudioLimits(max_bytes=10_000_000, max_seconds=1.0)
    data = wav_bytes(tone(2.0, 8000), 8000) if ctype == "audio/wav" else g711.encode(tone(2.0, 8000), "ulaw")
    assert _code(data, ctype, short) == ErrorCode.AUDIO_TOO_LONG


def test_clipping_ratio() -> None:
    signal = tone(1.0, 16000, amp=0.5)
    signal[:1600] = 1.0
    decoded = decode_audio(wav_bytes(signal, 16000, "FLOAT"), "audio/wav", LIMITS)
    assert decoded.clipping_ratio == pytest.approx(0.1, abs=0.001)


def test_parse_content_type() -> None:
    assert parse_content_type('Audio/L16; rate="8000"; channels=1') == ("audio/l16", {"rate": "8000", "channels": "1"})
    assert parse_content_type(None) == ("", {})


def test_sf_reader_is_not_fooled_by_extension_less_bytes() -> None:
    buf = io.BytesIO()
    sf.write(buf, tone(0.2, 16000), 16000, format="WAV", subtype="PCM_16")
    assert decode_audio(buf.getvalue(), "application/octet-stream", LIMITS).sample_rate == 16000
