"""The API fixtures of tests/api (SQLite and PostgreSQL), with the fraud tables emptied too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, update

from tests.api.conftest import db_url, make_api  # noqa: F401  (re-exported fixtures)
from voiceid.storage import models as m
from voiceid.storage.db import Database


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:  # noqa: F811
    database = Database(db_url)
    with database.transaction() as session:
        for table in (
            m.AttemptEmbedding,
            m.WatchlistEntry,
            m.ReviewItem,
            m.EnrolmentEmbedding,
            m.Verification,
            m.Speaker,
            m.ApiKey,
            m.PinnedDecisionData,
        ):
            session.execute(delete(table))
        # A change of generation makes every process cache reload, as after any watchlist change.
        session.execute(update(m.FraudGeneration).values(generation=m.FraudGeneration.generation + 1))
    yield database
    database.dispose()
