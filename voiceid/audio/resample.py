"""Sample-rate conversion to the model's 16 kHz (torchaudio's windowed-sinc resampler).

torchaudio builds a polyphase kernel of new' x (orig' + 2 x width) taps, where orig'/new' is the
rate ratio in lowest terms, and spends orig' + 2 x width multiplications per output sample. For
the usual rates the terms are small (44 100 -> 16 000 is 441/160), but a rate sharing no factor
with 16 000 (12 001 Hz, 383 999 Hz) asked for kernels of gigabytes. Ratios whose terms exceed
`MAX_TERM` are therefore replaced by the closest fraction with terms in bounds; over every integer
rate from 4 kHz to 192 kHz that changes the playback speed by at most 0.1 % (1.7 cents of pitch),
far below what moves a speaker embedding, and it bounds the kernel to a few MB and the cost to
about 530 multiplications per output sample for any rate.
"""

from __future__ import annotations

from fractions import Fraction
from math import gcd

import numpy as np
import numpy.typing as npt
import torch
import torchaudio.functional as AF

MODEL_RATE = 16_000
# 512 keeps every common rate exact (8, 11.025, 12, 16, 22.05, 24, 32, 44.1, 48, 88.2, 96, 176.4,
# 192 kHz all reduce to terms <= 441 against 16 kHz).
MAX_TERM = 512


def ratio_terms(orig_rate: int, new_rate: int, max_term: int = MAX_TERM) -> tuple[int, int]:
    """(orig', new'): the conversion ratio in lowest terms, or its closest approximation whose
    source term is at most `max_term` (the target term then stays below max_term x new/orig)."""
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError("sample rates must be positive")
    g = gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    if orig <= max_term and new <= 2 * max_term:
        return orig, new
    approx = Fraction(new_rate, orig_rate).limit_denominator(max_term)
    if approx.numerator == 0:
        raise ValueError(f"cannot resample {orig_rate} Hz to {new_rate} Hz")
    return approx.denominator, approx.numerator


def resample(samples: npt.NDArray[np.floating], orig_rate: int, new_rate: int = MODEL_RATE) -> npt.NDArray[np.float32]:
    if orig_rate == new_rate:
        return np.asarray(samples, dtype=np.float32)
    orig, new = ratio_terms(orig_rate, new_rate)
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        out: npt.NDArray[np.float32] = AF.resample(tensor, orig, new).numpy()
        return out
