"""Channel simulation: what the audio looks like when it reaches us.

`clean` sends the file as it is. The G.711 channels imitate a phone line: band-limit and
resample to 8 kHz, G.711-encode, and hand over the raw bytes with the content type an IVR would
send (`audio/basic` or `audio/x-alaw-basic`), so they go through exactly the decoder and
resampler the API uses.
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from voiceid.audio import g711
from voiceid.audio.resample import resample

CHANNELS = ("clean", "g711-ulaw", "g711-alaw")
PHONE_RATE = 8000
_CONTAINER_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}
_G711 = {"g711-ulaw": ("ulaw", "audio/basic"), "g711-alaw": ("alaw", "audio/x-alaw-basic")}


def through_channel(path: Path, channel: str) -> tuple[bytes, str]:
    """The bytes and content type that `path` would arrive as over `channel`."""
    if channel == "clean":
        return path.read_bytes(), _CONTAINER_TYPES.get(path.suffix.lower(), "application/octet-stream")
    if channel not in _G711:
        raise ValueError(f"unknown channel {channel!r}; choose from {', '.join(CHANNELS)}")
    law, content_type = _G711[channel]
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    narrow = resample(samples.mean(axis=1), int(rate), PHONE_RATE)
    return g711.encode(narrow, law), content_type
