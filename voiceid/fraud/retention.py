"""The periodic retention purge the server runs (the same purge as `voiceid purge`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)


async def purge_periodically(purge: Callable[[], int], interval_s: float) -> None:
    """Run `purge` now and then every `interval_s` until cancelled. A failed run is logged and
    retried at the next tick: a database hiccup must not stop retention for good."""
    while True:
        try:
            removed = await run_in_threadpool(purge)
            if removed:
                log.info("retention purge %s removed %d rows", getattr(purge, "__name__", "job"), removed)
        except Exception:
            log.exception("retention purge failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
