"""What envelope encryption costs per operation: sealing a blob for a new owner (creates a data key),
opening one with a cold and a warm key cache and after a batched prefetch (how the voiceprint index
is loaded), and shredding an owner's key.

Usage: python bench/keystore_cost.py [--owners 2000] [--dir /tmp/keystore-bench]
Runs against a throw-away SQLite key store; prints one JSON object (microseconds per operation).
Timings on a shared machine are noisy: compare orders of magnitude, not digits.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from voiceid.config import Settings
from voiceid.storage.keys import speaker_owner, vault_from_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="keystore-bench-"))
    try:
        settings = Settings(data_dir=directory, keystore_cache_keys=args.owners * 2)
        vault = vault_from_settings(settings)
        vector = np.random.default_rng(0).standard_normal(192).astype(np.float32)
        owners = [speaker_owner(f"s{i}") for i in range(args.owners)]

        def timed(fn: object) -> float:
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            return (time.perf_counter() - start) / len(owners) * 1e6

        blobs: list[bytes] = []
        seal_new = timed(lambda: blobs.extend(vault.seal_vector(o, vector, b"aad") for o in owners))
        seal_existing = timed(lambda: [vault.seal_vector(o, vector, b"aad") for o in owners])
        open_warm = timed(lambda: [vault.open_vector(b, b"aad") for b in blobs])
        cold = vault_from_settings(settings)
        open_cold = timed(lambda: [cold.open_vector(b, b"aad") for b in blobs])
        prefetched = vault_from_settings(settings)
        open_prefetched = timed(
            lambda: (prefetched.prefetch(blobs), [prefetched.open_vector(b, b"aad") for b in blobs])
        )
        shred = timed(lambda: [vault.shred([o]) for o in owners])
        print(
            json.dumps(
                {
                    "owners": args.owners,
                    "us_per_seal_new_owner": round(seal_new, 1),
                    "us_per_seal_existing_owner": round(seal_existing, 1),
                    "us_per_open_warm_cache": round(open_warm, 1),
                    "us_per_open_cold_cache": round(open_cold, 1),
                    "us_per_open_after_prefetch": round(open_prefetched, 1),
                    "us_per_shred": round(shred, 1),
                }
            )
        )
        vault.close()
        cold.close()
        prefetched.close()
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
