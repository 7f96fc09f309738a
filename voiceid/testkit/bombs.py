"""The hostile uploads of issue 10, built the way the attacker built them (shared by tests and bench)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def mulaw_odd_rate(n_bytes: int = 14_000, rate: int = 12001) -> tuple[bytes, str]:
    """14 kB of μ-law labelled with a rate sharing no factor with 16 kHz (was: 10.6 s CPU, +3.1 GB)."""
    body = np.random.default_rng(12001).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    return body, f"audio/basic;rate={rate}"


def l16_odd_rate(n_bytes: int = 57_000, rate: int = 24001) -> tuple[bytes, str]:
    """57 kB of L16 at 24 001 Hz (was: 7.3 GB); with rate=383999, single 24-64 GB allocations."""
    body = np.random.default_rng(24001).integers(-3000, 3000, n_bytes // 2, dtype=np.int16).astype(">i2").tobytes()
    return body, f"audio/L16;rate={rate}"


def _patch_flac_total_samples(data: bytes, total: int) -> bytes:
    """Rewrite the 36-bit total-samples field of FLAC's STREAMINFO (bytes 18-25 of the file hold
    rate:20, channels-1:3, bits-1:5, total:36)."""
    assert data[:4] == b"fLaC"
    field = int.from_bytes(data[18:26], "big")
    field = (field & ~((1 << 36) - 1)) | (total & ((1 << 36) - 1))
    return data[:18] + field.to_bytes(8, "big") + data[26:]


def flac_bomb(rate: int = 655_350, channels: int = 8, declared_s: float = 179.0, real_s: float = 0.05) -> bytes:
    """A FLAC whose header declares `declared_s` seconds of `channels` x `rate` (179 s x 8 x 655 350 Hz =
    939 M samples, 3.8 GB as float32; the original 1 MB bomb took 29.5 s and 9.2 GB). Only `real_s`
    seconds are actually encoded, to keep the test fast; the decoder must refuse from the header."""
    buf = io.BytesIO()
    frames = np.zeros((int(real_s * rate), channels), dtype=np.int16)
    sf.write(buf, frames, rate, format="FLAC", subtype="PCM_16")
    return _patch_flac_total_samples(buf.getvalue(), int(declared_s * rate))


def flac_unknown_length(seconds: float = 200.0, rate: int = 16_000) -> bytes:
    """A FLAC longer than the limit whose header says its length is unknown (total samples 0)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="FLAC", subtype="PCM_16")
    return _patch_flac_total_samples(buf.getvalue(), 0)


def real_flac_bomb(seconds: float = 179.0, rate: int = 655_350, channels: int = 8) -> bytes:
    """The full-size bomb, as sent in the attack (about 1 MB; takes several seconds to encode)."""
    buf = io.BytesIO()
    block = np.zeros((rate, channels), dtype=np.int16)
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as handle:
        for _ in range(int(seconds)):
            handle.write(block)
    return buf.getvalue()
