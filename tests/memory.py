"""Peak resident memory of this process around a block of code (Linux: VmHWM reset via clear_refs).

tracemalloc misses torch's allocator, which is where the resampler bombs allocated, so the kernel's
own high-water mark is read instead; it counts every allocator and every thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _status_mb(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak(pid: int | str = "self") -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # "5": reset the peak RSS to the current RSS


def peak_mb(pid: int | str = "self") -> float:
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int | str = "self") -> float:
    return _status_mb(pid, "VmRSS")


@dataclass
class Growth:
    mb: float = 0.0


@contextlib.contextmanager
def peak_growth() -> Iterator[Growth]:
    """Yields a Growth whose `mb` is, after the block, the peak RSS above the RSS at its start."""
    try:
        reset_peak()
        start = rss_mb()
    except OSError as exc:  # not Linux, or /proc without clear_refs
        pytest.skip(f"peak RSS cannot be measured here: {exc}")
    growth = Growth()
    yield growth
    growth.mb = peak_mb() - start
