"""The periodic retention purge the server runs (the same purge as `voiceid purge`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)


async def purge_periodically(
    purge: Callable[[], int], interval_s: float, what: str = "retention purge removed %d expired attempt embeddings"
) -> None:
    """Run `purge` (or another background job) now and then every `interval_s` until cancelled. A
    failed run is logged and retried at the next tick: a database hiccup must not stop it for good."""
    while True:
        try:
            done = await run_in_threadpool(purge)
            if done:
                log.info(what, done)
        except Exception:
            log.exception("background job failed (%s); retrying in %.0f s", what, interval_s)
        await asyncio.sleep(interval_s)
