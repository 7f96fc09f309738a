"""The score log: every logged verification, read back as views (the API's /v1/verifications, the
fraud desk's lists and exports). Read-only; the verification path writes the rows."""

from __future__ import annotations

from collections.abc import Sequence

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.views import VerificationPage, VerificationView
from voiceid.storage import repositories as repo
from voiceid.storage.db import Database


class ScoreLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, verification_id: str) -> VerificationView:
        with self._db.transaction() as session:
            row = repo.get_verification(session, verification_id)
            if row is None:
                raise VoiceIdError(ErrorCode.VERIFICATION_NOT_FOUND, f"no verification {verification_id!r}")
            return VerificationView.from_row(row)

    def page(self, filters: repo.VerificationFilter, limit: int, cursor: str | None) -> VerificationPage:
        """One page, newest first; `cursor` is the opaque one the previous page returned."""
        after = None
        if cursor:
            try:
                after = repo.decode_cursor(cursor)
            except (ValueError, UnicodeDecodeError) as exc:
                raise VoiceIdError(ErrorCode.INVALID_REQUEST, "cursor is not one this service issued") from exc
        with self._db.transaction() as session:
            rows, next_cursor = repo.list_verifications(session, filters, limit, after)
            return VerificationPage([VerificationView.from_row(r) for r in rows], next_cursor)

    def all(self, filters: repo.VerificationFilter) -> Sequence[VerificationView]:
        with self._db.transaction() as session:
            return [VerificationView.from_row(r) for r in repo.iter_verifications(session, filters)]
