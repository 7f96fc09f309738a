"""The API database of tests/conftest.py with the fraud tables emptied too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, update

from voiceid.fraud.scale import Channel, load_fraud_scale
from voiceid.storage import models as m
from voiceid.storage.db import Database


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    with database.transaction() as session:
        for table in (
            m.AttemptEmbedding,
            m.WatchlistSample,
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


def llr_at(cosine: float, channel: Channel = Channel.PHONE) -> float:
    """The calibrated LLR a raw cosine maps to on `channel` (scripted test engines report phone
    audio): tests state their scripted geometry in cosines and their thresholds on the LLR scale."""
    return float(load_fraud_scale().scales[channel].llr(cosine))
