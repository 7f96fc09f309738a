"""Mutual exclusion for one job tick across every worker process (leader per tick).

PostgreSQL: a session-level advisory lock taken with `pg_try_advisory_lock` on a connection of its
own; the worker that gets it runs the tick, the others skip it. If a worker dies mid-tick its
connection closes and PostgreSQL releases the lock, so no job is left stuck behind a dead leader.
SQLite (one host): an exclusive non-blocking `flock` on a file beside the database, released by
the kernel when the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text

from voiceid.services.upgrade import lock_key
from voiceid.storage.db import Database


@contextlib.contextmanager
def job_lock(db: Database, name: str, lock_dir: Path) -> Iterator[bool]:
    """Yields True when this process holds the job's lock for the block, False when another does."""
    if db.is_sqlite:
        lock_dir.mkdir(parents=True, exist_ok=True)
        with (lock_dir / f"job-{name}.lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    key = lock_key(f"job:{name}")
    with db.engine.connect() as raw:
        conn = raw.execution_options(isolation_level="AUTOCOMMIT")
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        try:
            yield got
        finally:
            if got:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except Exception:
                    # Do not hand a connection that may still hold the lock back to the pool.
                    raw.invalidate()
                    raise
