"""What a phone line makes of wideband audio: band-limited to 8 kHz and G.711-coded (pure).

One implementation for two users: the phone channel that `voiceid eval` simulates, and the phone
view the service embeds from wideband enrolment audio (`voiceid.enrolment.views`), so the phone
voiceprint is built from exactly the audio the evaluation measured.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

from voiceid.audio import g711
from voiceid.audio.resample import resample

PHONE_RATE = 8000


class Law(StrEnum):
    ULAW = "ulaw"
    ALAW = "alaw"


CONTENT_TYPES = {Law.ULAW: "audio/basic", Law.ALAW: "audio/x-alaw-basic"}


def phone_line(samples: npt.NDArray[np.floating], rate: int, law: Law = Law.ULAW) -> tuple[bytes, str]:
    """Mono float samples at `rate` as the raw G.711 bytes and content type an IVR would send."""
    narrow = resample(np.asarray(samples, dtype=np.float32), int(rate), PHONE_RATE)
    return g711.encode(narrow, law.value), CONTENT_TYPES[law]
