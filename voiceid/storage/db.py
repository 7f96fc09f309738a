"""Database engine, transactions and start-up migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from voiceid.storage import changes  # noqa: F401  (registers the change-feed hook on every Session)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _enable_wal(cursor: Any, attempts: int = 50) -> None:
    """Switch a new database file to WAL. Connections opening a fresh file together (replicas or
    upgrade jobs started at once) can get SQLITE_BUSY here at once: SQLite does not call the busy
    handler for this lock, so the wait is ours, bounded (about 5 s)."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


def _configure_sqlite(engine: SqlEngine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling issues BEGIN lazily and deferred; we take it over
        # so that every transaction starts with BEGIN IMMEDIATE (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        # Erasure must really erase: deleted content is overwritten, not left in free pages.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY when another
        # writer got there first (busy_timeout does not help with that upgrade); taking the write
        # lock up front serialises writers cleanly. Transactions are short: no inference inside.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> SqlEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: SqlEngine) -> None:
    """Bring the schema to the latest revision (idempotent; runs at every start-up)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back entirely on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def flush_erased(self) -> None:
        """After an erasure on SQLite, move WAL frames into the main file and truncate the WAL,
        so that the old pages holding ciphertext do not linger in the log."""
        if self.is_sqlite:
            # On the raw connection: inside a transaction (SQLAlchemy's autobegin) the checkpoint
            # could not reset the log.
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                # Best effort: a reader holding an old snapshot blocks the truncation, and waiting
                # the full busy timeout for it would let any lingering reader stall every erasure.
                # What makes the erasure final is the destroyed data key (storage/keys.py), not this.
                cursor.execute("PRAGMA busy_timeout=200")
                try:
                    cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    cursor.execute("PRAGMA busy_timeout=30000")
            finally:
                raw.close()

    def dispose(self) -> None:
        self.engine.dispose()
