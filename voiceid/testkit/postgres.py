"""Throw-away PostgreSQL databases for tests and benches: one uniquely named database per use, so
two runs (or two pytest-xdist workers) on one machine never share tables."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

POSTGRES_ADMIN_DSN = os.environ.get(
    "VOICEID_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server answers at POSTGRES_ADMIN_DSN (tests skip on it, benches stop with it)."""


@contextlib.contextmanager
def postgres_database(prefix: str = "voiceid_test", durable: bool = True) -> Iterator[str]:
    """A PostgreSQL database of its own (unique name), dropped on exit even if connections remain.
    Yields its SQLAlchemy URL; raises PostgresUnavailable when no server can be reached.

    `durable=False` sets the database's synchronous_commit to off: a commit returns before its WAL
    record reaches the disk (a crash may lose the last commits, never corrupt), so tests that are not
    about durability stop waiting on fsync. Benches keep the default: their figures are production's."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(f"PostgreSQL not reachable ({POSTGRES_ADMIN_DSN}): {str(exc).strip()}") from exc
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    info = admin.info
    admin.execute(f'CREATE DATABASE "{name}"')
    if not durable:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield f"postgresql+psycopg://{info.user}@{info.host}:{info.port}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
