"""The PAD back-end: CM outputs (and optionally the speaker embedding) -> calibrated bona fide LLR.

A logistic regression on named feature groups, fitted by `bench/pad_backend.py` on dev_spoof and
shipped as a small JSON file with its provenance. Its output is a log-likelihood ratio in nats,
ln p(x | bona fide) / p(x | spoof): the fitted log-odds minus the training prior log-odds, so 0 means
"the audio says nothing either way" and the threshold for a target BPCER is set per channel by
`voiceid calibrate-pad`. With only the `aasist_score` group it is a plain affine calibration of AASIST.
(Pure: arrays in, arrays out; file I/O only in `load_backend` / `save_backend`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiceid.antispoof.json_files import read_json_file, write_json_file
from voiceid.errors import ErrorCode, VoiceIdError

FloatArray = npt.NDArray[np.float64]
DEFAULT_BACKEND = Path(__file__).parent / "data" / "cm_backend.json"


class FeatureGroup(StrEnum):
    AASIST_SCORE = "aasist_score"  # mean window logit difference (1)
    AASIST_SPREAD = "aasist_spread"  # min and max window score (2): a partly synthetic call
    AASIST_EMBEDDING = "aasist_embedding"  # AASIST last hidden layer, window mean (160)
    ECAPA_EMBEDDING = "ecapa_embedding"  # the speaker embedding (192): SASV-style fusion


def features(
    groups: Sequence[FeatureGroup],
    window_scores: Sequence[float],
    cm_embedding: npt.NDArray[np.floating] | None,
    speaker_embedding: npt.NDArray[np.floating] | None,
) -> FloatArray:
    """One call's feature vector, groups concatenated in the given order."""
    parts: list[FloatArray] = []
    w = np.asarray(window_scores, dtype=np.float64)
    for group in groups:
        if group == FeatureGroup.AASIST_SCORE:
            parts.append(np.array([w.mean()]))
        elif group == FeatureGroup.AASIST_SPREAD:
            parts.append(np.array([w.min(), w.max()]))
        elif group == FeatureGroup.AASIST_EMBEDDING:
            if cm_embedding is None:
                raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, "the PAD back-end needs the CM embedding output")
            parts.append(np.asarray(cm_embedding, dtype=np.float64).reshape(-1))
        else:
            if speaker_embedding is None:
                raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, "the PAD back-end needs the speaker embedding")
            parts.append(np.asarray(speaker_embedding, dtype=np.float64).reshape(-1))
    return np.concatenate(parts)


def fit_logistic(
    x: FloatArray, y: npt.NDArray[np.integer], l2: float, iterations: int = 50
) -> tuple[FloatArray, float]:
    """L2-regularised logistic regression by Newton's method (IRLS); y = 1 for bona fide.

    Classes are weighted to count equally (the dev set has twice as many spoofs), so the bias is the
    log-odds at equal priors and the output is directly an LLR."""
    n, d = x.shape
    yf = y.astype(np.float64)
    n_pos, n_neg = yf.sum(), n - yf.sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("need both bona fide and spoof examples")
    sample_w = np.where(yf == 1, n / (2 * n_pos), n / (2 * n_neg))
    xa = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xa @ beta, -30, 30)))
        grad = xa.T @ (sample_w * (p - yf)) + reg * beta
        hess = (xa * (sample_w * p * (1 - p))[:, None]).T @ xa + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


@dataclass(frozen=True)
class PadBackend:
    groups: tuple[FeatureGroup, ...]
    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    bias: float
    cm_version: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{'+'.join(self.groups)}@{self.cm_version}"

    def llr(self, x: FloatArray) -> FloatArray:
        """(n, d) or (d,) features -> calibrated bona fide LLR(s), nats."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return np.asarray(z @ self.weights + self.bias, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [str(g) for g in self.groups],
            "cm_version": self.cm_version,
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "bias": round(self.bias, 6),
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PadBackend:
        try:
            return cls(
                groups=tuple(FeatureGroup(g) for g in data["groups"]),
                mean=np.asarray(data["mean"], dtype=np.float64),
                scale=np.asarray(data["scale"], dtype=np.float64),
                weights=np.asarray(data["weights"], dtype=np.float64),
                bias=float(data["bias"]),
                cm_version=str(data["cm_version"]),
                provenance=dict(data.get("provenance") or {}),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"PAD back-end file is invalid: {exc}") from exc


def fit_backend(
    groups: Sequence[FeatureGroup],
    x: FloatArray,
    y: npt.NDArray[np.integer],
    l2: float,
    cm_version: str,
    provenance: dict[str, Any] | None = None,
) -> PadBackend:
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    weights, bias = fit_logistic((x - mean) / scale, y, l2)
    return PadBackend(tuple(groups), mean, scale, weights, bias, cm_version, dict(provenance or {}))


def load_backend(path: Path | None = None) -> PadBackend:
    path = path or DEFAULT_BACKEND
    return PadBackend.from_dict(read_json_file(path, "the PAD back-end"))


def save_backend(backend: PadBackend, path: Path) -> None:
    write_json_file(path, backend.to_dict(), indent=1)
