"""The worker loop: run each due job under its lock, log failures, never stop on one.

The same loop runs as `voiceid worker` (its own process: PostgreSQL deployments) and as a thread
inside `voiceid serve` on SQLite, so the laptop start stays one command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from voiceid.services.context import AppContext
from voiceid.worker.locks import job_lock
from voiceid.worker.registry import Job

log = logging.getLogger(__name__)


class TickStatus(StrEnum):
    RAN = "ran"
    SKIPPED = "skipped"  # another worker held the job's lock
    FAILED = "failed"


@dataclass(frozen=True)
class TickResult:
    job: str
    status: TickStatus
    handled: int = 0


class Worker:
    def __init__(
        self, context: AppContext, jobs: Sequence[Job], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.context = context
        self.jobs = list(jobs)
        self._monotonic = monotonic
        self._due = {job.name: 0.0 for job in self.jobs}

    def tick(self, job: Job) -> TickResult:
        ctx = self.context
        try:
            with job_lock(ctx.db, job.name, ctx.settings.data_dir / "locks") as held:
                if not held:
                    return TickResult(job.name, TickStatus.SKIPPED)
                handled = job.run(ctx)
        except Exception:
            # A database hiccup or a bad row must not stop the job for good: retried next time.
            log.exception("job %s failed; retrying at its next tick", job.name)
            return TickResult(job.name, TickStatus.FAILED)
        if handled:
            log.info("job %s handled %d item(s)", job.name, handled)
        return TickResult(job.name, TickStatus.RAN, handled)

    def run_due(self) -> list[TickResult]:
        now = self._monotonic()
        results = []
        for job in self.jobs:
            if now >= self._due[job.name]:
                results.append(self.tick(job))
                self._due[job.name] = self._monotonic() + job.every(self.context.settings)
        return results

    def run(self, stop: threading.Event, max_sleep_s: float = 1.0) -> None:
        """Until `stop` is set."""
        while not stop.is_set():
            self.run_due()
            wait = min(self._due.values(), default=self._monotonic() + max_sleep_s) - self._monotonic()
            stop.wait(max(0.01, min(max_sleep_s, wait)))


class BackgroundWorker:
    """The worker loop on a daemon thread (serve on SQLite)."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=worker.run, args=(self._stop,), name="voiceid-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
