"""G.711 μ-law and A-law, both ways, as numpy lookup tables.

This is the one codec implementation in voiceid: the HTTP decoders, the telephony streams, the
IVR simulator and the phone-channel simulation in `voiceid eval` all call it. Python 3.13 removed
`audioop`, so the ITU-T G.711 segment arithmetic is written out once here and baked into tables.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_MULAW_BIAS = 0x84
_MULAW_CLIP = 8159
_MULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _build_mulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # μ-law works on 14-bit samples
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _MULAW_CLIP) + (_MULAW_BIAS >> 2)
    segment = np.searchsorted(_MULAW_SEG_END, magnitude, side="left")
    uval = (np.minimum(segment, 7) << 4) | ((magnitude >> (np.minimum(segment, 7) + 1)) & 0x0F)
    uval = np.where(segment >= 8, 0x7F, uval)
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


def _build_mulaw_decode_table() -> npt.NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # A-law works on 13-bit samples
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = np.searchsorted(_ALAW_SEG_END, magnitude, side="left")
    shift = np.where(segment < 2, 1, segment)
    aval = (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F)
    aval = np.where(segment >= 8, 0x7F, aval)
    return ((aval ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode_table() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    t = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    t = np.where(segment == 0, t + 8, t + 0x108)
    t = np.where(segment > 1, t << np.maximum(segment - 1, 0), t)
    return np.where(code & 0x80, t, -t).astype(np.int16)


_MULAW_ENCODE = _build_mulaw_encode_table()
_MULAW_DECODE = _build_mulaw_decode_table()
_ALAW_ENCODE = _build_alaw_encode_table()
_ALAW_DECODE = _build_alaw_decode_table()


def pcm16_to_ulaw(pcm: npt.NDArray[np.int16]) -> bytes:
    return _MULAW_ENCODE[pcm.astype(np.int32) + 32768].tobytes()


def ulaw_to_pcm16(data: bytes) -> npt.NDArray[np.int16]:
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcm16_to_alaw(pcm: npt.NDArray[np.int16]) -> bytes:
    return _ALAW_ENCODE[pcm.astype(np.int32) + 32768].tobytes()


def alaw_to_pcm16(data: bytes) -> npt.NDArray[np.int16]:
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def float_to_pcm16(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Full scale float [-1, 1) to int16, saturating rather than wrapping."""
    scaled = np.round(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def pcm16_to_float(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def encode(samples: npt.NDArray[np.floating], law: str) -> bytes:
    """Float samples to G.711 bytes; `law` is 'ulaw' or 'alaw'."""
    pcm = float_to_pcm16(samples)
    if law == "ulaw":
        return pcm16_to_ulaw(pcm)
    if law == "alaw":
        return pcm16_to_alaw(pcm)
    raise ValueError(f"unknown G.711 law {law!r}")


def decode(data: bytes, law: str) -> npt.NDArray[np.float32]:
    """G.711 bytes to float samples in [-1, 1)."""
    if law == "ulaw":
        return pcm16_to_float(ulaw_to_pcm16(data))
    if law == "alaw":
        return pcm16_to_float(alaw_to_pcm16(data))
    raise ValueError(f"unknown G.711 law {law!r}")
