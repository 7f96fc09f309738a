"""The one decoder entry point: bytes + content type -> mono float samples at their own rate.

Containers (WAV in any PCM/float/G.711 flavour, FLAC, OGG) go through libsndfile via soundfile;
headerless telephone audio (G.711 μ-law / A-law, 16-bit linear PCM) is decoded here with the
project's G.711 tables. Limits are checked before the bulk of the work where the header allows.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import soundfile as sf

from voiceid.audio import g711
from voiceid.audio.sniff import Container, byte_order_swapped, container_of
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
RAW_DESCRIPTIONS = (
    dict.fromkeys(MULAW_TYPES, "headerless G.711 μ-law")
    | dict.fromkeys(ALAW_TYPES, "headerless G.711 A-law")
    | dict.fromkeys(L16_TYPES, "headerless 16-bit PCM")
)
CONTAINER_LABELS = {
    Container.WAV: "audio/wav",
    Container.FLAC: "audio/flac",
    Container.OGG: "audio/ogg",
    Container.AU: "audio/basic (the .au type) or application/octet-stream",
}

SUPPORTED_CONTENT_TYPES = (
    "audio/wav, audio/flac, audio/ogg, audio/basic (G.711 μ-law, 8 kHz), "
    "audio/x-alaw-basic (G.711 A-law, 8 kHz), audio/L16;rate=N (16-bit big-endian PCM; "
    "add ;endian=little for little-endian)"
)

# A sample at or beyond this magnitude is counted as clipped.
CLIP_LEVEL = 0.999


@dataclass(frozen=True)
class AudioLimits:
    """What one upload may cost. Decoding cost is rate x channels x duration, so each is bounded and
    checked from the header before the samples are decoded (defaults match config.py)."""

    max_bytes: int
    max_seconds: float
    # Out of the repr: the evaluation embedding cache is keyed by the front end's repr, and bounds on
    # what may be decoded do not change the embedding of audio that is decoded.
    min_rate: int = field(default=4000, repr=False)
    max_rate: int = field(default=192_000, repr=False)
    max_channels: int = field(default=2, repr=False)
    max_samples: int = field(default=12_000_000, repr=False)  # frames x channels


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
    # Digits only, and few of them: int() would accept "1_000" or spend time on 10 000 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        raise VoiceIdError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"'{name}={raw[:20]}' is not a positive integer")
    return int(raw)


def check_header(rate: int, channels: int, frames: int | None, limits: AudioLimits) -> None:
    """Refuse, before decoding, any stream whose declared rate, channels or size is out of bounds."""
    if not limits.min_rate <= rate <= limits.max_rate:
        raise VoiceIdError(
            ErrorCode.UNSUPPORTED_SAMPLE_RATE,
            f"sample rate {rate} Hz is outside the accepted {limits.min_rate}-{limits.max_rate} Hz",
            sample_rate=rate,
        )
    if not 1 <= channels <= limits.max_channels:
        raise VoiceIdError(
            ErrorCode.TOO_MANY_CHANNELS,
            f"the audio has {channels} channels; at most {limits.max_channels} are accepted",
            channels=channels,
        )
    if frames is not None:
        _check_size(frames, rate, channels, limits)


def _check_size(frames: int, rate: int, channels: int, limits: AudioLimits) -> None:
    if frames / rate > limits.max_seconds:
        raise VoiceIdError(
            ErrorCode.AUDIO_TOO_LONG,
            f"audio is {frames / rate:.1f} s long; the limit is {limits.max_seconds:.0f} s",
        )
    if frames * channels > limits.max_samples:
        raise VoiceIdError(
            ErrorCode.DECODED_AUDIO_TOO_LARGE,
            f"audio decodes to {frames * channels} samples ({frames / rate:.1f} s x {rate} Hz x {channels} channels); "
            f"the limit is {limits.max_samples}",
        )


def _frame_budget(rate: int, channels: int, limits: AudioLimits) -> int:
    """Most frames the limits allow at this rate and channel count."""
    return max(0, min(int(limits.max_seconds * rate), limits.max_samples // channels))


def _finish(frames: npt.NDArray[np.floating], rate: int, codec: str, limits: AudioLimits) -> DecodedAudio:
    """Shared checks for every format: non-empty, finite, within the limits; then downmix."""
    if frames.ndim == 1:
        frames = frames[:, None]
    if frames.shape[0] == 0:
        raise VoiceIdError(ErrorCode.EMPTY_AUDIO, "the audio contains no samples")
    check_header(rate, int(frames.shape[1]), int(frames.shape[0]), limits)
    if not np.isfinite(frames).all():
        raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "the audio contains NaN or infinite samples")
    clipping = float(np.count_nonzero(np.abs(frames) >= CLIP_LEVEL)) / frames.size
    if frames.shape[1] == 1:
        mono = np.asarray(frames[:, 0], dtype=np.float32)
    else:
        mono = frames.mean(axis=1, dtype=np.float64).astype(np.float32)
    return DecodedAudio(mono, rate, codec, int(frames.shape[1]), clipping)


def _decode_container(data: bytes, limits: AudioLimits) -> DecodedAudio:
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            rate, channels, subtype = int(handle.samplerate), int(handle.channels), str(handle.subtype)
            # A header may understate its length (or leave it unknown), so the declared size is
            # checked first and the read itself is capped one frame past what the limits allow.
            declared = int(handle.frames) if 0 < handle.frames < 2**62 else None
            check_header(rate, channels, declared, limits)
            budget = _frame_budget(rate, channels, limits)
            frames = handle.read(frames=budget + 1, dtype="float32", always_2d=True)
    except VoiceIdError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError, MemoryError) as exc:
        raise VoiceIdError(
            ErrorCode.UNSUPPORTED_AUDIO,
            f"could not decode the audio ({_reason(exc)}); supported: {SUPPORTED_CONTENT_TYPES}",
        ) from None
    if frames.shape[0] > budget:
        _check_size(frames.shape[0], rate, channels, limits)
    return _finish(frames, rate, subtype, limits)


def _reason(exc: Exception) -> str:
    """The library's words, without object reprs (addresses, buffers) that mean nothing to a caller."""
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the upload", text)[:200]


def _refuse_container(data: bytes, media_type: str) -> None:
    """Headerless audio has no magic number: a known container under a raw label is a mistake."""
    found = container_of(data)
    if found is None:
        return
    if found is Container.AU and media_type == "audio/basic":
        return  # audio/basic is also the registered type of .au files (RFC 2046): decoded as one
    raise VoiceIdError(
        ErrorCode.CONTENT_TYPE_MISMATCH,
        f"the body is a {found.value} file but was labelled '{media_type}' ({RAW_DESCRIPTIONS[media_type]}); "
        f"send it as {CONTAINER_LABELS[found]}",
        found=found.value,
        content_type=media_type,
    )


def _decode_raw(data: bytes, kind: str, params: dict[str, str], limits: AudioLimits) -> DecodedAudio:
    if kind == "l16":
        rate = _int_param(params, "rate", None)
        channels = _int_param(params, "channels", 1)
        little = params.get("endian", "big").lower() == "little"
        check_header(rate, channels, None, limits)
        if len(data) % (2 * channels):
            raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "L16 body length is not a whole number of 16-bit frames")
        check_header(rate, channels, len(data) // (2 * channels), limits)
        if byte_order_swapped(data, little):
            order, fix = ("little", "drop ;endian=little") if little else ("big", "add ;endian=little")
            raise VoiceIdError(
                ErrorCode.CONTENT_TYPE_MISMATCH,
                f"the body reads as 16-bit PCM in the other byte order than the {order}-endian its label "
                f"'audio/L16' declares (RFC 2586 L16 is big-endian); {fix}",
            )
        pcm = np.frombuffer(data, dtype="<i2" if little else ">i2").astype(np.int16)
        samples = g711.pcm16_to_float(pcm).reshape(-1, channels)
        return _finish(samples, rate, "PCM_16", limits)
    rate = _int_param(params, "rate", 8000)
    channels = _int_param(params, "channels", 1)
    check_header(rate, channels, None, limits)
    if len(data) % channels:
        raise VoiceIdError(ErrorCode.UNSUPPORTED_AUDIO, "G.711 body length is not a whole number of frames")
    check_header(rate, channels, len(data) // channels, limits)
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
    if media_type in MULAW_TYPES | ALAW_TYPES | L16_TYPES:
        _refuse_container(data, media_type)
        if media_type == "audio/basic" and container_of(data) is Container.AU:
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
