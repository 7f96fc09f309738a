"""Real speech through the whole engine path: bytes -> front end -> ECAPA -> voiceprint -> score."""

import numpy as np
import pytest

from voiceid.evaluation.channel import through_channel
from voiceid.verify.vectors import build_voiceprint, cosine_matrix

# Two LibriSpeech and three speechocean762 speakers: both corpora, both sexes.
SPEAKERS = ["ls_1688", "ls_2414", "so762_0036", "so762_0135", "so762_0482"]


@pytest.mark.parametrize("channel", ["clean", "g711-ulaw"])
def test_same_speaker_outscores_other_speakers(engine, dev_files, channel: str) -> None:
    voiceprints, probes, probe_owner = [], [], []
    for index, speaker in enumerate(SPEAKERS):
        files = dev_files[speaker]
        enrol = [engine.analyse(*through_channel(p, channel)).vector for p in files[:3]]
        voiceprints.append(build_voiceprint(np.stack(enrol)))
        for path in files[3:5]:
            probes.append(engine.analyse(*through_channel(path, channel)).vector)
            probe_owner.append(index)
    scores = cosine_matrix(np.stack(probes), np.stack(voiceprints))
    owner = np.array(probe_owner)
    target = scores[np.arange(len(owner)), owner]
    mask = np.ones_like(scores, dtype=bool)
    mask[np.arange(len(owner)), owner] = False
    nontarget = scores[mask]
    # Every probe is closest to its own speaker's voiceprint ...
    assert np.all(np.argmax(scores, axis=1) == owner), scores.round(2)
    # ... and the two score populations are far apart.
    assert target.mean() - nontarget.mean() > 0.3
    assert np.median(target) > np.max(nontarget) - 0.05
