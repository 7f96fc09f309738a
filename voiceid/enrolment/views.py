"""Voiceprints per channel: the phone view of a wideband enrolment (pure).

A caller who enrols on a good line (a mobile app, a wideband SIP trunk) and later calls over G.711
is scored against a voiceprint of audio the call never resembles: the 3.4 kHz band-limit and the
codec move the embedding, and the phone calibration was fitted on phone-to-phone trials. So each
wideband enrolment utterance is also embedded as a phone line carries it (`voiceid.audio.phone_line`,
the same simulation `voiceid eval` measures with), and phone calls are scored against the voiceprint
of those views (docs/decision-policy.md, cross-channel). Nothing can add the missing band back, so a
phone enrolment has no wideband view: wideband calls are scored against the voiceprint itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voiceid.verify.cohort import PHONE, WIDEBAND
from voiceid.verify.vectors import build_voiceprint


@dataclass(frozen=True)
class ChannelSample:
    vector: npt.NDArray[np.float32]  # the embedding of the audio as it arrived
    channel: str  # the channel it arrived on: "phone" or "wideband"
    phone_view: npt.NDArray[np.float32] | None  # the embedding of its G.711 view (wideband audio only)


def phone_voiceprint(samples: Sequence[ChannelSample]) -> npt.NDArray[np.float32] | None:
    """The voiceprint phone calls are scored against, built like the voiceprint (the normalised
    mean) from each utterance's phone-channel embedding: its own when it came over the phone, its
    G.711 view when it came wideband. None when no wideband utterance has a view: the voiceprint
    itself is then the phone voiceprint. A wideband utterance without a view (enrolled before views
    existed, or no speech left in the view) keeps its own embedding, so no enrolment audio is lost."""
    if not any(s.channel == WIDEBAND and s.phone_view is not None for s in samples):
        return None
    vectors = [s.phone_view if s.phone_view is not None and s.channel != PHONE else s.vector for s in samples]
    return build_voiceprint(np.stack(vectors))
