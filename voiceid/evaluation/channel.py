"""Channel simulation: what the audio looks like when it reaches us.

`clean` sends the file as it is. The G.711 channels imitate a phone line: band-limit and
resample to 8 kHz, G.711-encode, and hand over the raw bytes with the content type an IVR would
send (`audio/basic` or `audio/x-alaw-basic`), so they go through exactly the decoder and
resampler the API uses.
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from voiceid.audio.phone_file import read_joined
from voiceid.audio.phone_line import Law, phone_line

CHANNELS = ("clean", "g711-ulaw", "g711-alaw")
# The channel of the phone view the service embeds from wideband enrolment audio (μ-law).
PHONE_VIEW_CHANNEL = "g711-ulaw"
_CONTAINER_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}
_G711 = {"g711-ulaw": Law.ULAW, "g711-alaw": Law.ALAW}


def through_channel(path: Path, channel: str, extra: tuple[Path, ...] = ()) -> tuple[bytes, str]:
    """The bytes and content type that `path` (followed by `extra` files, as one call) would
    arrive as over `channel`."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose from {', '.join(CHANNELS)}")
    if channel == "clean" and not extra:
        return path.read_bytes(), _CONTAINER_TYPES.get(path.suffix.lower(), "application/octet-stream")
    samples, rate = read_joined((path, *extra))
    if channel == "clean":
        import io

        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue(), "audio/wav"
    return phone_line(samples, rate, _G711[channel])
