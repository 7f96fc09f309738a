"""Impostor cohorts for score normalisation, per model version and channel.

A cohort is a matrix of embeddings of speakers who are nobody's claimed identity. It must pass
through the same channel as the call (a phone-line cohort for phone calls) and the same front
end and model as the probes, so each cohort file records the model version and front-end
configuration it was built with, and is only used when both match.

Where cohorts come from, in order:
1. `VOICEID_COHORT_DIR` (default `<data dir>/cohorts`): built by `voiceid cohort build`
2. the cohorts shipped in the package (`voiceid/verify/data/`), built from
   `../shared/data/dev_cohort` (LibriSpeech train-clean-100, 125 speakers, CC BY 4.0) with the
   same command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

PHONE = "phone"
WIDEBAND = "wideband"
SERVICE_CHANNELS = (PHONE, WIDEBAND)
BUILTIN_DIR = Path(__file__).parent / "data"

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Cohort:
    channel: str
    model_version: str
    front_end: str
    embeddings: FloatArray  # (n, 192), unit rows
    source: str


def service_channel(eval_channel: str, sample_rate: int) -> str:
    """The service's channel name for an evaluation channel: G.711 or <= 8 kHz audio is 'phone'."""
    return PHONE if eval_channel.startswith("g711") or sample_rate <= 8000 else WIDEBAND


def cohort_file(directory: Path, model_version: str, channel: str) -> Path:
    return directory / f"cohort_{model_version}_{channel}.npz"


def save_cohort(directory: Path, cohort: Cohort) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = cohort_file(directory, cohort.model_version, cohort.channel)
    meta = {
        "channel": cohort.channel,
        "model_version": cohort.model_version,
        "front_end": cohort.front_end,
        "source": cohort.source,
    }
    with path.open("wb") as handle:
        np.savez(handle, embeddings=cohort.embeddings.astype(np.float32), meta=np.array(json.dumps(meta)))
    return path


def read_cohort(path: Path) -> Cohort:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return Cohort(
            channel=meta["channel"],
            model_version=meta["model_version"],
            front_end=meta["front_end"],
            embeddings=data["embeddings"].astype(np.float32),
            source=meta["source"],
        )


def find_cohort(directories: list[Path], model_version: str, channel: str, front_end: str) -> Cohort | None:
    """The first cohort file that matches model, channel and front end exactly."""
    for directory in directories:
        path = cohort_file(directory, model_version, channel)
        if path.is_file():
            cohort = read_cohort(path)
            if cohort.front_end == front_end:
                return cohort
    return None


def sample_order(ids: list[str]) -> list[int]:
    """The order in which population members enter the cohort: by a hash of their id.

    A bottom-k sample by hash is stable: adding or removing one person changes at most one member
    of the first k, so scores move by one member's worth, never all at once (the service orders by
    its random primary keys, which is the same sampling rule without hashing)."""
    import hashlib

    return sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())


def assemble_cohort(population: FloatArray, shipped: FloatArray, size: int) -> FloatArray:
    """The fixed-size cohort: the first `size` population members (already in sampling order),
    topped up from the shipped cohort while the population is smaller than `size`.

    As the population grows each new member replaces one shipped member, so the cohort changes
    by one row per enrolment and is entirely the operator's own callers once it is full."""
    taken = population[:size]
    top_up = shipped[: max(0, size - len(taken))]
    if len(taken) == 0:
        return top_up
    return np.concatenate([taken, top_up]) if len(top_up) else taken
