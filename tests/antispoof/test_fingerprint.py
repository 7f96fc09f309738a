"""Replay detection maths on real dev speech: a simulated re-recording of an enrolment file is caught,
another utterance of the same speaker is not."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import soundfile as sf

from voiceid.antispoof.fingerprint import Fingerprint, best_match, fingerprint, match_score
from voiceid.antispoof.replay_sim import ReplayChannel, simulate_replay
from voiceid.config import get_settings

THRESHOLD = get_settings().replay_threshold


def _read(path: Path) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(str(path), dtype="float32")
    return samples, int(rate)


def test_replayed_enrolment_matches_and_fresh_utterances_do_not(dev_files: dict[str, list[Path]]) -> None:
    rng = np.random.default_rng(7)
    speakers = sorted(dev_files)[:3]
    for speaker in speakers:
        enrol, fresh = dev_files[speaker][0], dev_files[speaker][1:4]
        wave, rate = _read(enrol)
        stored = [fingerprint(wave, rate)]
        replayed = simulate_replay(wave, rate, ReplayChannel(rt60_s=0.5, snr_db=15.0), rng)
        score, index = best_match(fingerprint(replayed, 8000), stored)
        assert score >= THRESHOLD and index == 0, (speaker, score)
        # an excerpt replayed (the middle half of the file) is caught too
        part = simulate_replay(wave[len(wave) // 4 : 3 * len(wave) // 4], rate, ReplayChannel(), rng)
        assert best_match(fingerprint(part, 8000), stored)[0] >= THRESHOLD
        for other in fresh:
            w, r = _read(other)
            assert best_match(fingerprint(w, r), stored)[0] < THRESHOLD, (speaker, other.name)
            # ... also when that fresh call comes over the phone line
            phone = simulate_replay(w, r, ReplayChannel(rt60_s=0.05, direct_to_reverb_db=20.0, snr_db=30.0), rng)
            assert best_match(fingerprint(phone, 8000), stored)[0] < THRESHOLD


def test_short_utterances_of_one_speaker_do_not_pass_for_replays(dev_files: dict[str, list[Path]]) -> None:
    """Short read sentences of one speaker share harmonics and rhythm, so their hashes line up by chance
    at several offsets; before the score measured the best offset against the others, 2-3 of these
    speakers' fresh sentences matched their own earlier files and one of them could not enrol. Every
    pair of their utterances must stay under the threshold, and a replay of them must still be caught."""
    rng = np.random.default_rng(11)
    for speaker in ("so762_5418", "so762_9645", "so762_3088"):
        waves = [_read(p) for p in dev_files[speaker]]
        prints = [fingerprint(w, r) for w, r in waves]
        for i, j in itertools.permutations(range(len(prints)), 2):
            assert match_score(prints[i], prints[j]) < THRESHOLD, (speaker, i, j)
        wave, rate = waves[0]
        replayed = fingerprint(simulate_replay(wave, rate, ReplayChannel(), rng), 8000)
        assert match_score(replayed, prints[0]) >= THRESHOLD


def test_fingerprint_round_trips_through_bytes_and_degenerate_inputs() -> None:
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    fp = fingerprint(noise, 16000)
    again = Fingerprint.from_bytes(fp.to_bytes())
    assert np.array_equal(again.hashes, fp.hashes) and np.array_equal(again.times, fp.times)
    assert match_score(fp, again) > 0.8 or len(fp) == 0
    empty = fingerprint(np.zeros(100, dtype=np.float32), 16000)
    assert len(empty) == 0
    assert match_score(empty, fp) == 0.0
    assert best_match(fp, []) == (0.0, None)
