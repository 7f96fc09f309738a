"""The one decoder entry point: bytes + content type -> mono float samples at their own rate.

Containers (WAV in any PCM/float/G.711 flavour, FLAC, OGG) go through libsndfile via soundfile;
headerless telephone audio (G.711 μ-law / A-law, 16-bit linear PCM) is decoded here with the
project's G.711 tables. Limits are checked before the bulk of the work where the header allows.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf

from voiceid.audio import g711
from voiceid.errors import ErrorCode, VoiceIdError

FloatArray = npt.NDArray[np.float32]

CONTAINER_TYPES = {
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/vnd.wave",
    "audio/flac",
    "audio/x-flac",
    "audio/ogg",
    "application/ogg",
    "audio/opus",
}
MULAW_TYPES = {"audio/basic", "audio/pcmu", "audio/x-mulaw", "audio/mulaw", "audio/x-ulaw"}
ALAW_TYPES = {"audio/x-alaw-basic", "audio/pcma", "audio/x-alaw", "audio/alaw"}
L16_TYPES = {"audio/l16"}
SNIFF_TYPES = {"", "application/octet-stream"}

SUPPORTED_CONTENT_TYPES = (
    "audio/wav, audio/flac, audio/ogg, audio/basic (G.711 μ-law, 8 kHz), "
    "audio/x-alaw-basic (G.711 A-law, 8 kHz), audio/L16;rate=N (16-bit big-endian PCM; "
    "add ;endian=little for little-endian)"
)

# A sample at or beyond this magnitude is counted as clipped.
CLIP_LEVEL = 0.999


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int
    max_seconds: float


@dataclass(frozen=True)
class DecodedAudio:
    samples: FloatArray  # mono, float32, at `sample_rate`
    sample_rate: int
    codec: str  # e.g. "PCM_16", "ULAW", "ALAW", "VORBIS", "FLOAT"
    channels: int  # channel count before downmixing
    clipping_ratio: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def is_narrowband(self) -> bool:
        """Telephone audio: 8 kHz or less, or G.711 coded."""
        return self.sample_rate <= 8000 or self.codec in {"ULAW", "ALAW"}


def parse_content_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    parts = [p.strip() for p in content_type.split(";")]
    params: dict[str, str] = {}
    for part in parts[1:]:
        if "=" in part:
            key, value = part.split("=", 1)
            params[key.strip().lower()] = value.strip().strip('"')
    return parts[0].lower(), params


def _int_param(params: dict[str, str], name: str, default: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise VoiceIdError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"content type parameter '{name}' is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise VoiceIdError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"'{name}={raw}' is not an integer") from None
    if not 1 <= value <= (384_000 if name == "rate" else 32):
        raise VoiceIdError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"'{name}={raw}' is out of range")
    return value


def _finish(frames: npt.NDArray[np.floating], rate: int, codec: str, limits: AudioLimits) -> DecodedAudio:
    """Shared checks for every format: non-empty, finite, within the time limit; then downmix."""
    if frames.ndim == 1:
        frames = frames[:, None]
    if frames.shape[0] == 0:
        raise VoiceIdError(ErrorCode.EMPTY_AUDIO, "the audio contains no samples")
    if frames.shape[0] / rate > limits.max_seconds:
        raise VoiceIdError(
            ErrorCode.AUDIO_TOO_LONG,
            f"audio is {frames.shape[0] / rate:.1f} s long; the limit is {limits.max_seconds:.0f} s",
        )
    if not np.all(np.isfinite(frames)):
        raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "the audio contains NaN or infinite samples")
    clipping = float(np.mean(np.abs(frames) >= CLIP_LEVEL))
    mono = frames.mean(axis=1, dtype=np.float64).astype(np.float32)
    return DecodedAudio(mono, rate, codec, int(frames.shape[1]), clipping)


def _check_seconds(n_frames: int, rate: int, limits: AudioLimits) -> None:
    if rate > 0 and n_frames / rate > limits.max_seconds:
        raise VoiceIdError(
            ErrorCode.AUDIO_TOO_LONG,
            f"audio is {n_frames / rate:.1f} s long; the limit is {limits.max_seconds:.0f} s",
        )


def _decode_container(data: bytes, limits: AudioLimits) -> DecodedAudio:
    try:
        info = sf.info(io.BytesIO(data))
        _check_seconds(info.frames, info.samplerate, limits)
        frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except VoiceIdError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise VoiceIdError(
            ErrorCode.UNSUPPORTED_AUDIO,
            f"could not decode the audio ({exc}); supported: {SUPPORTED_CONTENT_TYPES}",
        ) from None
    return _finish(frames, int(rate), str(info.subtype), limits)


def _decode_raw(data: bytes, kind: str, params: dict[str, str], limits: AudioLimits) -> DecodedAudio:
    if kind == "l16":
        rate = _int_param(params, "rate", None)
        channels = _int_param(params, "channels", 1)
        little = params.get("endian", "big").lower() == "little"
        if len(data) % (2 * channels):
            raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "L16 body length is not a whole number of 16-bit frames")
        _check_seconds(len(data) // (2 * channels), rate, limits)
        pcm = np.frombuffer(data, dtype="<i2" if little else ">i2").astype(np.int16)
        samples = g711.pcm16_to_float(pcm).reshape(-1, channels)
        return _finish(samples, rate, "PCM_16", limits)
    rate = _int_param(params, "rate", 8000)
    channels = _int_param(params, "channels", 1)
    if len(data) % channels:
        raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "G.711 body length is not a whole number of frames")
    _check_seconds(len(data) // channels, rate, limits)
    samples = g711.decode(data, kind).reshape(-1, channels)
    return _finish(samples, rate, kind.replace("ulaw", "ULAW").replace("alaw", "ALAW"), limits)


def decode_audio(data: bytes, content_type: str | None, limits: AudioLimits) -> DecodedAudio:
    """Decode an upload. Raises VoiceIdError with a stable code on anything unusable."""
    if len(data) > limits.max_bytes:
        raise VoiceIdError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"upload is {len(data)} bytes; the limit is {limits.max_bytes} bytes",
        )
    if len(data) == 0:
        raise VoiceIdError(ErrorCode.EMPTY_AUDIO, "the request body is empty")
    media_type, params = parse_content_type(content_type)
    if media_type in CONTAINER_TYPES or media_type in SNIFF_TYPES:
        return _decode_container(data, limits)
    if media_type in MULAW_TYPES:
        return _decode_raw(data, "ulaw", params, limits)
    if media_type in ALAW_TYPES:
        return _decode_raw(data, "alaw", params, limits)
    if media_type in L16_TYPES:
        return _decode_raw(data, "l16", params, limits)
    raise VoiceIdError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"content type '{content_type}' is not supported; use one of: {SUPPORTED_CONTENT_TYPES}",
    )


def from_samples(samples: npt.NDArray[np.floating], rate: int, codec: str, limits: AudioLimits) -> DecodedAudio:
    """Wrap already-decoded samples (telephony streams) with the same checks as an upload."""
    return _finish(np.asarray(samples, dtype=np.float32), rate, codec, limits)
