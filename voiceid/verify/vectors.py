"""Scoring maths: pure functions of vectors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def l2_normalise(x: npt.NDArray[np.floating]) -> FloatArray:
    """Rows (or a single vector) scaled to unit length; zero vectors stay zero."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    out: FloatArray = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out


def cosine(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> float:
    """Cosine similarity of two vectors, in [-1, 1]."""
    return float(np.dot(l2_normalise(a), l2_normalise(b)))


def cosine_matrix(probes: npt.NDArray[np.floating], references: npt.NDArray[np.floating]) -> FloatArray:
    """(n, d) x (m, d) -> (n, m) cosine scores, one matrix product."""
    return l2_normalise(np.atleast_2d(probes)) @ l2_normalise(np.atleast_2d(references)).T


def build_voiceprint(
    embeddings: npt.NDArray[np.floating], weights: npt.NDArray[np.floating] | None = None
) -> FloatArray:
    """Voiceprint = normalised (weighted) mean of normalised enrolment embeddings.

    Weights let longer enrolment utterances count for more (e.g. net speech seconds).
    """
    rows = l2_normalise(np.atleast_2d(embeddings))
    if len(rows) == 0:
        raise ValueError("a voiceprint needs at least one embedding")
    w = np.ones(len(rows), dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
    if w.shape != (len(rows),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per embedding, not all zero")
    return l2_normalise((rows * w[:, None]).sum(axis=0))
