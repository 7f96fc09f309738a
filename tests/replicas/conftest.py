"""The API fixtures of tests/api (SQLite and PostgreSQL databases of their own)."""

from __future__ import annotations

from tests.api.conftest import db, db_url, make_api  # noqa: F401  (re-exported fixtures)
