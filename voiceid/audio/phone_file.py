"""Make the raw G.711 bytes an IVR would send from any audio file (WAV, FLAC, OGG):

    python -m voiceid.audio.phone_file IN.flac OUT.ulaw [--law ulaw|alaw] [--then MORE.flac ...]

`--then` appends more files to the first, as one call (the call so far, when an IVR retries an
INCONCLUSIVE verification with more speech).

It prints the Content-Type to send the bytes with (`audio/basic` for μ-law, `audio/x-alaw-basic`
for A-law). The bytes come from the same phone-line simulation (`phone_line`: resample to 8 kHz,
G.711-encode with `voiceid.audio.g711`) that `voiceid eval --channel g711-ulaw` and the enrolment's
phone view use, so nothing outside the project (Python 3.13 removed `audioop`) is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from voiceid.audio.phone_line import Law, phone_line


def read_joined(paths: tuple[Path, ...]) -> tuple[npt.NDArray[np.float32], int]:
    """Mono samples (channels mixed) of several files played one after the other (one longer call)."""
    parts: list[npt.NDArray[np.float32]] = []
    rate: int | None = None
    for path in paths:
        samples, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
        if rate is not None and file_rate != rate:
            raise ValueError(f"cannot join {path} ({file_rate} Hz) to audio at {rate} Hz")
        rate = int(file_rate)
        parts.append(samples.mean(axis=1))
    if rate is None:
        raise ValueError("nothing to join")
    return np.concatenate(parts), rate


def to_phone_bytes(source: Path, law: Law = Law.ULAW, then: tuple[Path, ...] = ()) -> tuple[bytes, str]:
    """The file's audio (channels mixed to mono; `then`'s files appended) as raw G.711 bytes at 8 kHz,
    and their content type."""
    return phone_line(*read_joined((source, *then)), law)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("source", type=Path, help="audio file soundfile can read (WAV, FLAC, OGG)")
    parser.add_argument("target", type=Path, help="where to write the raw G.711 bytes")
    parser.add_argument("--law", type=Law, choices=list(Law), default=Law.ULAW)
    parser.add_argument("--then", type=Path, action="append", default=[], help="a file appended to the call")
    args = parser.parse_args(argv)
    try:
        data, content_type = to_phone_bytes(args.source, args.law, tuple(args.then))
    except ValueError as exc:  # files at different sample rates
        raise SystemExit(f"{exc}: convert them to one rate first") from None
    args.target.write_bytes(data)
    print(content_type)


if __name__ == "__main__":
    main()
