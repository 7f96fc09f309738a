"""Review-page sessions held in the database (see `ReviewSessionRow`): created at sign-in,
checked on every page, deleted at sign-out. A signed cookie alone cannot be revoked."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from voiceid.services.context import AppContext
from voiceid.storage import fraud_repo


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ReviewSessions:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def open(self, key_id: str) -> str:
        """A new session id for `key_id` (to put in the signed cookie); expired rows are swept."""
        session_id = secrets.token_urlsafe(32)
        now = self.ctx.now()
        expires_at = now + timedelta(seconds=self.ctx.settings.review_session_max_age_s)
        with self.ctx.db.transaction() as session:
            fraud_repo.add_review_session(session, _hash(session_id), key_id, now, expires_at)
        return session_id

    def is_live(self, session_id: str, key_id: str) -> bool:
        """The session exists, has not expired, belongs to `key_id`, and that key still exists and is
        still usable: a session ends with its key's revocation or expiry, not only at its own."""
        now = self.ctx.now()
        with self.ctx.db.transaction() as session:
            found = fraud_repo.review_session_and_key(session, _hash(session_id))
            if found is None:
                return False
            row, key = found
            return (
                row.key_id == key_id
                and row.expires_at > now
                and key.revoked_at is None
                and (key.expires_at is None or key.expires_at > now)
            )

    def close(self, session_id: str) -> None:
        with self.ctx.db.transaction() as session:
            fraud_repo.delete_review_session(session, _hash(session_id))
