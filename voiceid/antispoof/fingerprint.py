"""Acoustic fingerprints for replay detection: spectral-peak landmark hashing (pure functions).

A replayed recording keeps the *time-frequency positions* of its strongest spectral peaks even after a
loudspeaker, a room and a phone line have changed its colour, level and noise; a new utterance of the
same words by the same person does not (its peaks fall elsewhere and at other relative times). So:
1. everything is analysed at 8 kHz between 300 and 3400 Hz (all that a phone line keeps);
2. the log-magnitude spectrogram's local maxima (the strongest few per second) are the landmarks;
3. each landmark is paired with a few later ones; a pair gives a hash (f1, f2, dt), kept with the
   anchor's time t1;
4. two recordings match when many of the probe's hashes occur in the stored one *at one common time
   offset* (a histogram of t_stored - t_probe over the shared hashes has a tall bin).
The match score is that bin's count, less the tallest bin at any other offset (what chance alignments
of the same voice reach), over the smaller of the two hash counts: the share of the shorter recording
that lines up beyond chance, so an excerpt replayed from a long enrolment still scores high.
(Landmark hashing as in Wang, "An Industrial-Strength Audio Search Algorithm", ISMIR 2003.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter
from scipy.signal import stft

from voiceid.audio.resample import resample

FP_RATE = 8000
N_FFT = 256  # 32 ms at 8 kHz: 31.25 Hz bins
HOP = 128  # 16 ms frames
F_LO_HZ, F_HI_HZ = 300.0, 3400.0
PEAK_NEIGHBOURHOOD = (9, 11)  # (freq bins, frames) a landmark must dominate: 280 Hz x 176 ms
PEAKS_PER_SECOND = 30
FAN_OUT = 6  # later landmarks paired with each anchor
PAIR_DT = (2, 48)  # frames between the two landmarks of a pair: 32..768 ms
PAIR_DF = 24  # at most this many bins (750 Hz) between them
F_QUANT = 3  # frequency bins per hash cell (94 Hz): tolerates peaks moved by the room and the line
DT_QUANT = 2  # frames per hash cell of the pair interval (32 ms): tolerates reverberation smearing
MIN_ALIGNED = 10  # fewer hashes at the best offset than this are scaled down: chance alignments of short audio
T_TOLERANCE = 2  # frames either side of the best offset still counted as aligned
CONTRAST_GUARD = 6  # frames (96 ms) either side of the best offset that are not "another offset"
VERSION = "lmk1"  # stored with each fingerprint: a changed recipe must not be compared with an old one

U32 = npt.NDArray[np.uint32]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Fingerprint:
    hashes: U32  # (n,) landmark-pair hashes
    times: I32  # (n,) anchor frame of each hash

    def __len__(self) -> int:
        return int(self.hashes.size)

    def to_bytes(self) -> bytes:
        return np.concatenate([self.hashes.astype("<u4"), self.times.astype("<i4").view("<u4")]).tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Fingerprint:
        data = np.frombuffer(blob, dtype="<u4")
        n = data.size // 2
        return cls(data[:n].astype(np.uint32), data[n:].view("<i4").astype(np.int32))


def landmarks(wave: npt.NDArray[np.floating], rate: int) -> tuple[I32, I32]:
    """(frame, bin) of the spectral peaks used as landmarks, sorted by frame."""
    x = resample(np.asarray(wave, dtype=np.float32), rate, FP_RATE)
    if x.size < N_FFT * 2:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    _, _, spec = stft(x, fs=FP_RATE, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)
    freqs = np.arange(spec.shape[0]) * FP_RATE / N_FFT
    band = (freqs >= F_LO_HZ) & (freqs <= F_HI_HZ)
    logmag = np.log(np.abs(spec[band]) + 1e-6)  # (bins, frames)
    # Level and colour of the channel: remove each band's median so a loudspeaker's or a line's
    # frequency response does not decide which peaks win.
    logmag = logmag - np.median(logmag, axis=1, keepdims=True)
    is_peak = (logmag == maximum_filter(logmag, size=PEAK_NEIGHBOURHOOD, mode="nearest")) & (logmag > 0)
    bins, frames = np.nonzero(is_peak)
    if bins.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    seconds = logmag.shape[1] * HOP / FP_RATE
    keep = int(max(1, round(PEAKS_PER_SECOND * seconds)))
    strongest = np.argsort(-logmag[bins, frames], kind="stable")[:keep]
    bins, frames = bins[strongest], frames[strongest]
    order = np.lexsort((bins, frames))
    first_bin = int(np.argmax(band))
    return frames[order].astype(np.int32), (bins[order] + first_bin).astype(np.int32)


def fingerprint(wave: npt.NDArray[np.floating], rate: int) -> Fingerprint:
    frames, bins = landmarks(wave, rate)
    hashes: list[int] = []
    times: list[int] = []
    n = frames.size
    for i in range(n):
        paired = 0
        for j in range(i + 1, n):
            dt = int(frames[j] - frames[i])
            if dt > PAIR_DT[1]:
                break
            if dt < PAIR_DT[0] or abs(int(bins[j] - bins[i])) > PAIR_DF:
                continue
            f1, f2 = int(bins[i]) // F_QUANT, int(bins[j]) // F_QUANT
            hashes.append((f1 << 16) | (f2 << 8) | (dt // DT_QUANT))
            times.append(int(frames[i]))
            paired += 1
            if paired == FAN_OUT:
                break
    return Fingerprint(np.asarray(hashes, dtype=np.uint32), np.asarray(times, dtype=np.int32))


def match_score(probe: Fingerprint, stored: Fingerprint) -> float:
    """Share of the shorter fingerprint's hashes that occur in the other at one common time offset."""
    if len(probe) == 0 or len(stored) == 0:
        return 0.0
    common = np.intersect1d(probe.hashes, stored.hashes)
    if common.size == 0:
        return 0.0
    p_sel = np.isin(probe.hashes, common)
    s_sel = np.isin(stored.hashes, common)
    p_h, p_t = probe.hashes[p_sel], probe.times[p_sel]
    s_h, s_t = stored.hashes[s_sel], stored.times[s_sel]
    # All (probe, stored) pairs with the same hash, by sorting the stored side once.
    order = np.argsort(s_h, kind="stable")
    s_h, s_t = s_h[order], s_t[order]
    lo = np.searchsorted(s_h, p_h, side="left")
    hi = np.searchsorted(s_h, p_h, side="right")
    counts = hi - lo
    probe_idx = np.repeat(np.arange(p_h.size), counts)
    starts = np.repeat(lo, counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    offsets = s_t[starts + within] - p_t[probe_idx]
    base = int(offsets.min())
    histogram = np.bincount(offsets - base)
    if T_TOLERANCE > 0:
        width = 2 * T_TOLERANCE + 1
        histogram = np.convolve(histogram, np.ones(width, dtype=np.int64), mode="same")
    peak = int(histogram.argmax())
    # Two utterances of one speaker share many hashes (the same harmonics, the same rhythm), which pile
    # up at several offsets at once; a replay lines up at one offset only. So the evidence is how far the
    # best offset stands above the best *other* offset (CONTRAST_GUARD frames away or more), not its
    # height alone: on dev same-speaker pairs this cut chance matches at 0.035 from 0.2 % of pairs to
    # 0.005 % while keeping 98-100 % of simulated replays in typical rooms (docs/antispoof.md, "Replay").
    elsewhere = histogram.copy()
    elsewhere[max(0, peak - CONTRAST_GUARD) : peak + CONTRAST_GUARD + 1] = 0
    best = float(histogram[peak] - elsewhere.max())
    # A handful of hashes can line up by chance between two short recordings; only a run of them is
    # evidence, so the share is scaled down below MIN_ALIGNED aligned hashes.
    return max(0.0, min(1.0, best / min(len(probe), len(stored)) * min(1.0, best / MIN_ALIGNED)))


def best_match(probe: Fingerprint, stored: list[Fingerprint]) -> tuple[float, int | None]:
    """The highest match score against `stored` and the index of that recording (None if empty)."""
    if not stored:
        return 0.0, None
    scores = [match_score(probe, s) for s in stored]
    i = int(np.argmax(scores))
    return scores[i], i
