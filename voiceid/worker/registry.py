"""What a job is. The list of jobs the worker runs is `voiceid.worker.jobs.JOBS`: one line per job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voiceid.config import Settings
from voiceid.services.context import AppContext


@dataclass(frozen=True)
class Job:
    """A singleton task: `run` does one bounded tick of work with the context and returns how many
    items it handled; the worker calls it every `every(settings)` seconds, in one process at a time."""

    name: str
    run: Callable[[AppContext], int]
    every: Callable[[Settings], float]
