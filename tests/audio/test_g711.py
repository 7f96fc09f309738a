import warnings

import numpy as np
import pytest

from voiceid.audio import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # Python 3.11 still ships it: the reference implementation to compare against

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_mulaw_encoder_matches_reference_on_every_sample() -> None:
    assert g711.pcm16_to_ulaw(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)


def test_alaw_encoder_matches_reference_on_every_sample() -> None:
    assert g711.pcm16_to_alaw(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


@pytest.mark.parametrize(
    ("ours", "ref"), [(g711.ulaw_to_pcm16, audioop.ulaw2lin), (g711.alaw_to_pcm16, audioop.alaw2lin)]
)
def test_decoders_match_reference_on_every_code(ours, ref) -> None:
    np.testing.assert_array_equal(ours(ALL_CODES), np.frombuffer(ref(ALL_CODES, 2), dtype=np.int16))


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_round_trip_error_is_within_g711_quantisation(law: str) -> None:
    t = np.arange(8000) / 8000
    signal = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    decoded = g711.decode(g711.encode(signal, law), law)
    assert decoded.shape == signal.shape
    # G.711 keeps roughly 12-bit relative precision: SNR of a full-band sine is well above 30 dB.
    snr = 10 * np.log10(np.sum(signal**2) / np.sum((signal - decoded) ** 2))
    assert snr > 30
    # Decoding a decoded-then-re-encoded signal is lossless (codes are fixed points).
    assert g711.encode(decoded, law) == g711.encode(signal, law)


def test_float_conversion_saturates_instead_of_wrapping() -> None:
    pcm = g711.float_to_pcm16(np.array([1.5, -1.5, 0.0], dtype=np.float32))
    assert pcm.tolist() == [32767, -32768, 0]


def test_unknown_law_is_rejected() -> None:
    with pytest.raises(ValueError):
        g711.encode(np.zeros(4, dtype=np.float32), "gsm")
