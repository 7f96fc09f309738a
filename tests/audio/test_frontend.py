import numpy as np
import pytest
import soundfile as sf

from voiceid.audio import g711
from voiceid.audio.frontend import FrontEnd, FrontEndConfig
from voiceid.audio.quality import estimate_snr_db
from voiceid.audio.resample import resample
from voiceid.audio.vad import VadConfig, speech_segments
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.testkit.audio import tone, wav_bytes


@pytest.fixture(scope="module")
def front_end(settings) -> FrontEnd:
    return FrontEnd(FrontEndConfig.from_settings(settings))


@pytest.fixture(scope="module")
def speech(dev_files) -> np.ndarray:
    samples, rate = sf.read(str(dev_files["ls_1688"][0]), dtype="float32")
    assert rate == 16000
    return samples


def test_vad_finds_no_speech_in_silence_or_noise() -> None:
    rng = np.random.default_rng(0)
    assert speech_segments(np.zeros(32000, dtype=np.float32), VadConfig()) == []
    assert speech_segments((0.01 * rng.standard_normal(32000)).astype(np.float32), VadConfig()) == []


def test_vad_finds_speech_and_not_the_padding_around_it(speech: np.ndarray) -> None:
    padded = np.concatenate([np.zeros(48000, np.float32), speech[:80000], np.zeros(48000, np.float32)])
    segments = speech_segments(padded, VadConfig())
    assert segments, "speech must be detected"
    assert segments[0][0] >= 44000  # not in the 3 s of leading silence (minus padding)
    assert segments[-1][1] <= 48000 + 80000 + 4000
    net = sum(e - s for s, e in segments) / 16000
    assert 2.0 < net <= 5.3


def test_prepare_drops_silence_and_reports_quality(front_end: FrontEnd, speech: np.ndarray) -> None:
    padded = np.concatenate([np.zeros(32000, np.float32), speech, np.zeros(32000, np.float32)])
    prepared = front_end.prepare(wav_bytes(padded, 16000), "audio/wav")
    q = prepared.quality
    assert q.duration_s == pytest.approx(len(padded) / 16000)
    assert q.net_speech_s <= len(prepared.speech) / 16000
    assert q.net_speech_s < len(speech) / 16000
    # The 2 s silences at each end are shortened to the 1 s pause limit.
    assert len(prepared.speech) <= len(speech) + 2 * 16000 < len(padded)
    assert q.snr_db > 30  # digital silence around clean read speech
    assert q.channel == "wideband" and q.sample_rate == 16000 and q.clipping_ratio == 0.0


def test_snr_estimate_tracks_added_noise(front_end: FrontEnd, speech: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(len(speech)).astype(np.float32)
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2)) / 10 ** (10 / 20)  # 10 dB below the speech
    clean = front_end.prepare(wav_bytes(speech, 16000, "FLOAT"), "audio/wav").quality.snr_db
    noisy = front_end.prepare(wav_bytes(speech + noise, 16000, "FLOAT"), "audio/wav").quality.snr_db
    assert noisy < clean
    assert 5 < noisy < 20


def test_snr_estimate_on_known_mask() -> None:
    rate = 16000
    loud = np.ones(rate, np.float32) * 0.1
    quiet = np.ones(rate, np.float32) * 0.001
    mask = np.concatenate([np.ones(rate, bool), np.zeros(rate, bool)])
    assert estimate_snr_db(np.concatenate([loud, quiet]), mask, rate) == pytest.approx(40.0, abs=0.01)


def test_phone_audio_is_upsampled_and_marked_phone(front_end: FrontEnd, speech: np.ndarray) -> None:
    data = g711.encode(resample(speech, 16000, 8000), "ulaw")
    prepared = front_end.prepare(data, "audio/basic")
    assert prepared.quality.sample_rate == 8000
    assert prepared.quality.channel == "phone" and prepared.quality.codec == "ULAW"
    assert prepared.quality.net_speech_s > 5


def test_silence_is_no_speech(front_end: FrontEnd) -> None:
    with pytest.raises(VoiceIdError) as info:
        front_end.prepare(wav_bytes(np.zeros(48000, np.float32), 16000), "audio/wav")
    assert info.value.code == ErrorCode.NO_SPEECH


def test_a_pure_tone_is_no_speech(front_end: FrontEnd) -> None:
    with pytest.raises(VoiceIdError) as info:
        front_end.prepare(wav_bytes(tone(3.0), 16000), "audio/wav")
    assert info.value.code == ErrorCode.NO_SPEECH


def test_one_sample_is_too_short(front_end: FrontEnd) -> None:
    with pytest.raises(VoiceIdError) as info:
        front_end.prepare(wav_bytes(np.array([0.2], np.float32), 16000), "audio/wav")
    assert info.value.code == ErrorCode.AUDIO_TOO_SHORT


def test_half_a_second_of_speech_is_too_short(front_end: FrontEnd, speech: np.ndarray) -> None:
    segments = speech_segments(speech, VadConfig())
    start = segments[0][0]
    clip = np.concatenate([np.zeros(16000, np.float32), speech[start : start + 8000], np.zeros(16000, np.float32)])
    with pytest.raises(VoiceIdError) as info:
        front_end.prepare(wav_bytes(clip, 16000), "audio/wav")
    assert info.value.code == ErrorCode.AUDIO_TOO_SHORT


def test_resample_rates() -> None:
    x = tone(1.0, 8000)
    assert len(resample(x, 8000, 16000)) == 16000
    assert len(resample(tone(1.0, 48000), 48000, 16000)) == 16000
    assert resample(x, 8000, 8000) is not None


def test_shorten_pauses_keeps_short_gaps_and_edges_of_long_ones() -> None:
    from voiceid.audio.vad import shorten_pauses

    speech = np.array([0] * 10 + [1] * 5 + [0] * 3 + [1] * 5 + [0] * 2, dtype=bool)
    keep = shorten_pauses(speech, max_pause=4)
    # Leading 10 silent samples -> first 2 and last 2 kept; the 3-sample pause stays whole;
    # the 2 trailing samples stay.
    assert keep.tolist() == [1, 1] + [0] * 6 + [1, 1] + [1] * 5 + [1] * 3 + [1] * 5 + [1] * 2
    assert shorten_pauses(np.ones(5, bool), 4).all()
    assert shorten_pauses(np.zeros(9, bool), 4).sum() == 4


def test_long_silences_are_shortened_before_embedding(front_end: FrontEnd, speech: np.ndarray) -> None:
    silence = np.zeros(5 * 16000, np.float32)
    with_gap = np.concatenate([silence, speech[:48000], silence, speech[48000:96000], silence])
    prepared = front_end.prepare(wav_bytes(with_gap, 16000), "audio/wav")
    assert len(prepared.speech) < len(with_gap) - 12 * 16000  # three 5 s silences cut to <= 1 s each
    assert len(prepared.speech) >= prepared.quality.net_speech_s * 16000
