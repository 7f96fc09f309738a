"""A bounded pool for model inference.

At most `workers` inferences run at once and at most `queue` more may wait; beyond that the
caller gets OVERLOADED at once. An IVR would rather hear "try again" quickly than wait behind
an unbounded backlog while its caller listens to silence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from voiceid.errors import ErrorCode, VoiceIdError

P = ParamSpec("P")
T = TypeVar("T")

RETRY_AFTER_S = 1


class InferencePool:
    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voiceid-inference")
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Inferences running or waiting right now."""
        return self._admitted

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on a worker and wait for it; OVERLOADED when the pool and its queue are full."""
        if not self._slots.acquire(blocking=False):
            raise VoiceIdError(
                ErrorCode.OVERLOADED,
                "the service is at capacity; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        with self._lock:
            self._admitted += 1
        try:
            return self._executor.submit(fn, *args, **kwargs).result()
        finally:
            with self._lock:
                self._admitted -= 1
            self._slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
