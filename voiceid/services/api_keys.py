"""API key lifecycle: create with an optional expiry, authenticate (refusing revoked and expired
keys, recording the last use), list, revoke, and the VOICEID_ADMIN_KEY bootstrap key.

Revoked keys are kept (never deleted) so the audit trail and the score log can still name them.
"""

from __future__ import annotations

import asyncio
import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import zxcvbn
from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security.throttle import FailureThrottle, check_throttle
from voiceid.services import audit
from voiceid.services.audit import AuditAction
from voiceid.services.views import Role
from voiceid.storage import repositories as repo
from voiceid.storage.db import Database
from voiceid.storage.models import ApiKey

BOOTSTRAP_LABEL = "VOICEID_ADMIN_KEY"


@dataclass(frozen=True)
class ApiKeyView:
    key_id: str
    role: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool

    @classmethod
    def from_row(cls, row: ApiKey) -> ApiKeyView:
        return cls(
            row.id, row.role, row.label, row.created_at, row.expires_at, row.last_used_at, row.revoked_at, row.bootstrap
        )

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


# zxcvbn's matching is quadratic in the length; 72 characters of a random key are far above any
# threshold, so a longer secret is judged on its first 72 (an underestimate, never an overestimate).
ZXCVBN_MAX_CHARS = 72


def estimated_bits(secret: str) -> float:
    """A strength estimate: the lower of (a) length x log2(size of the character classes used),
    capped by the number of distinct characters (so "aaaa..." or "abab..." score low), and (b)
    zxcvbn's guess count, which knows sequences ("abcdef...0123"), keyboard walks ("qwerty..."),
    repeats, dates and common words, all of which (a) alone rates by length. A key from
    `secrets.token_urlsafe(32)` scores well above 128 bits, a typed password far less."""
    if not secret:
        return 0.0
    return min(_class_bits(secret), _pattern_bits(secret))


def _pattern_bits(secret: str) -> float:
    result = zxcvbn.zxcvbn(secret[:ZXCVBN_MAX_CHARS])
    return float(result["guesses_log10"]) * math.log2(10)


def _class_bits(secret: str) -> float:
    pool = 0
    for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits):
        if any(c in chars for c in secret):
            pool += len(chars)
    if any(not c.isalnum() for c in secret):
        pool += 33
    distinct = len(set(secret))
    return min(len(secret) * math.log2(max(pool, 2)), distinct * 8.0)


def check_admin_key_strength(secret: str, min_bits: float) -> None:
    bits = estimated_bits(secret)
    if bits < min_bits:
        raise VoiceIdError(
            ErrorCode.CONFIGURATION_ERROR,
            f"VOICEID_ADMIN_KEY is too weak (about {bits:.0f} bits; at least {min_bits:.0f} needed). Generate one "
            "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )


def bootstrap_admin(db: Database, secret: str, now: datetime, min_bits: float) -> str:
    """Make `secret` the bootstrap admin key and revoke any earlier bootstrap key (the variable was
    changed: the old value must stop working). Refuses a weak key, and refuses to bring back a
    bootstrap key an admin revoked. Returns the key id."""
    with db.transaction() as session:
        return bootstrap_admin_in(session, secret, now, min_bits)


def bootstrap_admin_in(session: Session, secret: str, now: datetime, min_bits: float) -> str:
    """`bootstrap_admin` inside the caller's transaction (`voiceid db upgrade` holds its lock)."""
    check_admin_key_strength(secret, min_bits)
    with audit.acting_as("bootstrap"):
        audit.lock_head(session)  # workers starting together must not both insert the new key
        row = repo.find_api_key(session, secret)
        if row is not None and row.revoked_at is not None:
            raise VoiceIdError(
                ErrorCode.CONFIGURATION_ERROR,
                f"VOICEID_ADMIN_KEY is the key {row.id}, which was revoked; set a new value",
            )
        if row is None:
            row = ApiKey(id=repo.new_id(), key_hash=repo.hash_key(secret), role="admin", label=BOOTSTRAP_LABEL)
            row.created_at, row.bootstrap = now, True
            session.add(row)
            session.flush()
            audit.append(session, AuditAction.API_KEY_CREATED, row.id, {"role": "admin", "bootstrap": True}, now)
        else:
            row.role, row.bootstrap, row.expires_at = "admin", True, None
        for old in session.scalars(
            select(ApiKey).where(ApiKey.bootstrap.is_(True), ApiKey.revoked_at.is_(None), ApiKey.id != row.id)
        ):
            old.revoked_at = now
            audit.append(session, AuditAction.API_KEY_REVOKED, old.id, {"reason": "VOICEID_ADMIN_KEY changed"}, now)
        return row.id


def create(
    db: Database, role: str, label: str | None, expires_at: datetime | None, now: datetime
) -> tuple[ApiKeyView, str]:
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise VoiceIdError(ErrorCode.INVALID_REQUEST, "expires_at must carry a time zone (e.g. ...Z)")
        if expires_at <= now:
            raise VoiceIdError(ErrorCode.INVALID_REQUEST, "expires_at must be in the future")
    with db.transaction() as session:
        row, secret = repo.create_api_key(session, role, label)
        row.created_at, row.expires_at = now, expires_at
        session.flush()
        audit.append(
            session,
            AuditAction.API_KEY_CREATED,
            row.id,
            {"role": role, "label": label, "expires_at": None if expires_at is None else expires_at.isoformat()},
            now,
        )
        return ApiKeyView.from_row(row), secret


def authenticate(session: Session, secret: str, now: datetime, touch_interval_s: float) -> ApiKey:
    """The key's row, or UNAUTHENTICATED. `last_used_at` is written at most once per
    `touch_interval_s`, so a busy IVR key does not turn every request into a write."""
    row = repo.find_api_key(session, secret)
    if row is None:
        raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "unknown API key")
    if row.revoked_at is not None:
        raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "this API key was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "this API key has expired")
    if row.last_used_at is None or now - row.last_used_at >= timedelta(seconds=touch_interval_s):
        row.last_used_at = now
        session.flush()
    return row


def list_keys(db: Database) -> list[ApiKeyView]:
    with db.transaction() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()
        return [ApiKeyView.from_row(r) for r in rows]


def revoke(db: Database, key_id: str, now: datetime) -> ApiKeyView:
    """Revoke a key (idempotent: revoking a revoked key changes nothing and is not logged again)."""
    with db.transaction() as session:
        row = session.get(ApiKey, key_id, with_for_update=True)
        if row is None:
            raise VoiceIdError(ErrorCode.NOT_FOUND, f"no API key {key_id!r}")
        if row.revoked_at is None:
            row.revoked_at = now
            session.flush()
            audit.append(session, AuditAction.API_KEY_REVOKED, row.id, {"role": row.role}, now)
        return ApiKeyView.from_row(row)


class ApiKeys:
    """What the adapters (HTTP auth, the review page's sign-in, the CLI) need of API keys: issue one
    and recognise one. Listing and revocation are the admin functions above."""

    def __init__(self, db: Database, clock: Callable[[], datetime], touch_interval_s: float) -> None:
        self._db = db
        self._clock = clock
        self._touch_interval_s = touch_interval_s

    def create(self, role: Role, label: str | None = None, expires_at: datetime | None = None) -> tuple[str, str]:
        """(key id, secret). The secret is shown once; only its hash is stored."""
        view, secret = create(self._db, role.value, label, expires_at, self._clock())
        return view.key_id, secret

    def authenticate(self, secret: str) -> tuple[str, Role] | None:
        """(key id, role) of a known, unrevoked, unexpired key; None otherwise."""
        try:
            with self._db.transaction() as session:
                row = authenticate(session, secret, self._clock(), self._touch_interval_s)
                return row.id, Role(row.role)
        except VoiceIdError as exc:
            if exc.code is ErrorCode.UNAUTHENTICATED:
                return None
            raise


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role


def permitted(found: tuple[str, Role], roles: tuple[Role, ...]) -> Principal:
    """The principal of an authenticated key, or FORBIDDEN when its role is not one of `roles`
    (admin may do everything)."""
    allowed = {*roles, Role.ADMIN}
    principal = Principal(*found)
    if principal.role not in allowed:
        raise VoiceIdError(
            ErrorCode.FORBIDDEN,
            f"role '{principal.role}' may not do this; needs one of: {', '.join(sorted(allowed))}",
        )
    return principal


async def authenticate_throttled(
    keys: ApiKeys, throttle: FailureThrottle | None, host: str | None, secret: str
) -> tuple[str, Role]:
    """(key id, role) of `secret`, for every transport (HTTP header, a stream's first message): a
    throttled address is refused before the key is looked up, a wrong key counts toward it. The
    lookup (a database read) runs off the event loop."""
    check_throttle(throttle, host)
    found = await asyncio.to_thread(keys.authenticate, secret)
    if found is None:
        if throttle is not None:
            throttle.failed(host)
        raise VoiceIdError(ErrorCode.UNAUTHENTICATED, "unknown API key")
    return found
