"""DET curve and score histograms as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from voiceid.verify.metrics import Scores, det_points

_TICKS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]


def plot_det(
    curves: dict[str, tuple[Scores, Scores]],
    path: Path,
    title: str,
    axis_labels: tuple[str, str] = ("False match rate (%)", "False non-match rate (%)"),
) -> Path:
    fig, ax = plt.subplots(figsize=(6, 6))
    for label, (tar, non) in curves.items():
        fmr, fnmr = det_points(tar, non)
        clip = np.clip
        ax.plot(norm.ppf(clip(fmr, 1e-5, 1 - 1e-5)), norm.ppf(clip(fnmr, 1e-5, 1 - 1e-5)), label=label)
    ticks = norm.ppf(_TICKS)
    labels = [f"{t * 100:g}" for t in _TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(norm.ppf(0.0005), norm.ppf(0.5))
    ax.set_ylim(norm.ppf(0.0005), norm.ppf(0.5))
    ax.plot([-5, 5], [-5, 5], color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histogram(target: Scores, nontarget: Scores, path: Path, title: str, xlabel: str = "score") -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    lo = float(min(np.min(target), np.min(nontarget)))
    hi = float(max(np.max(target), np.max(nontarget)))
    bins = np.linspace(lo, hi, 80).tolist()
    ax.hist(nontarget, bins=bins, density=True, alpha=0.6, label=f"different speaker (n={len(nontarget)})")
    ax.hist(target, bins=bins, density=True, alpha=0.6, label=f"same speaker (n={len(target)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
