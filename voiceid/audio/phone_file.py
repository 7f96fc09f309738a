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
import soundfile as sf

from voiceid.audio.phone_line import Law, phone_line


def to_phone_bytes(source: Path, law: Law = Law.ULAW, then: tuple[Path, ...] = ()) -> tuple[bytes, str]:
    """The file's audio (channels mixed to mono; `then`'s files appended) as raw G.711 bytes at 8 kHz,
    and their content type."""
    parts, rates = [], set()
    for path in (source, *then):
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
        parts.append(np.mean(samples, axis=1))
        rates.add(int(rate))
    if len(rates) > 1:
        raise SystemExit(f"the files to join have different sample rates ({sorted(rates)}): convert them first")
    return phone_line(np.concatenate(parts), rates.pop(), law)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("source", type=Path, help="audio file soundfile can read (WAV, FLAC, OGG)")
    parser.add_argument("target", type=Path, help="where to write the raw G.711 bytes")
    parser.add_argument("--law", type=Law, choices=list(Law), default=Law.ULAW)
    parser.add_argument("--then", type=Path, action="append", default=[], help="a file appended to the call")
    args = parser.parse_args(argv)
    data, content_type = to_phone_bytes(args.source, args.law, tuple(args.then))
    args.target.write_bytes(data)
    print(content_type)


if __name__ == "__main__":
    main()
