"""PocketSphinx front-end and search variants on dev_8k: how many digits does its free loop get right?

    python bench/challenge_sphinx_variants.py --every 3 < variants.jsonl

Each stdin line is one variant as JSON: `opts` (decoder options), `fp` (front-end parameters written
to a feat.params file: the model's own feat.params overrides front-end options given to the decoder,
so `upperf`, `cmn`, ... only change through this), `pad` (seconds of digital silence added at both
ends), `noise` (std of white noise added after upsampling, full scale 1), `fold` (gain of the 0-4 kHz
mirror image put into 4-8 kHz), `rate` (8000: decode at 8 kHz, needs `opts.nfft` 256). Prints exact
string matches and the digit error rate (edit distance / digits) of the free digit loop, and the
real-time factor. Audio is upsampled with scipy's polyphase filter, as the figures in
docs/challenge.md were.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfiltfilt

from voiceid.challenge.sphinx import FREE_LOOP, default_model_dir, digits_of, verify_recogniser_files

MODEL_FEAT = {
    "lowerf": "130",
    "upperf": "6800",
    "nfilt": "25",
    "transform": "dct",
    "lifter": "22",
    "feat": "1s_c_d_dd",
    "svspec": "0-12/13-25/26-38",
    "agc": "none",
    "cmn": "batch",
    "varnorm": "no",
    "model": "ptm",
    "remove_noise": "yes",
}


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[:], i
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
    return row[-1]


def decoder(variant: dict[str, Any], workdir: Path) -> Any:
    from pocketsphinx import Decoder

    model = default_model_dir()
    dictionary = verify_recogniser_files(model)
    options = dict(variant.get("opts", {}))
    if variant.get("fp"):
        params = {**MODEL_FEAT, **{k: str(v) for k, v in variant["fp"].items()}}
        text = "".join(f"-{k} {v}\n" for k, v in params.items())
        path = workdir / f"feat-{hashlib.sha256(text.encode()).hexdigest()[:8]}.params"
        path.write_text(text)
        options["featparams"] = str(path)
    dec = Decoder(
        hmm=str(model), dict=str(dictionary), lm=None, loglevel="FATAL", samprate=variant.get("rate", 16000), **options
    )
    dec.add_jsgf_string("loop", FREE_LOOP)
    return dec


def prepare(x: np.ndarray, variant: dict[str, Any]) -> bytes:
    pad = int(variant.get("pad", 0) * 8000)
    if pad:
        x = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    if variant.get("rate", 16000) == 16000:
        up = resample_poly(x, 2, 1)
        if variant.get("fold") is not None:
            zero_stuffed = np.zeros(2 * len(x))
            zero_stuffed[::2] = 2 * x
            up = up + variant["fold"] * sosfiltfilt(butter(8, 4000, "high", fs=16000, output="sos"), zero_stuffed)
        x = up
        if variant.get("noise"):
            x = x + np.random.default_rng(0).standard_normal(len(x)) * variant["noise"]
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16).tobytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/dev_8k/manifest.csv"))
    parser.add_argument("--every", type=int, default=3)
    args = parser.parse_args()
    with args.manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:: args.every]
    with tempfile.TemporaryDirectory() as tmp:
        for line in sys.stdin:
            if not line.strip() or line.startswith("#"):
                continue
            variant = json.loads(line)
            dec = decoder(variant, Path(tmp))
            exact = errors = digits = 0
            busy = audio = 0.0
            for row in rows:
                x, _ = sf.read(args.manifest.parent / row["path"], dtype="float64")
                text = "".join(row["text"].split())
                pcm = prepare(x, variant)
                started = time.process_time()
                dec.activate_search("loop")
                dec.start_utt()
                dec.process_raw(pcm, full_utt=True)
                dec.end_utt()
                busy += time.process_time() - started
                audio += len(x) / 8000
                hyp = dec.hyp()
                heard = digits_of(hyp.hypstr) if hyp else ""
                exact += heard == text
                errors += edit_distance(heard, text)
                digits += len(text)
            print(
                json.dumps(variant),
                f"exact {exact}/{len(rows)}  digit error rate {errors / digits:.3f}  rtf {busy / audio:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
