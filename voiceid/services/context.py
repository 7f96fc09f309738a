"""The shared things a process builds once (settings, database, cipher, clock) and hands to the small
services and to the worker's jobs, instead of each reaching into one large object.

It deliberately holds no model: `voiceid worker` and `voiceid db upgrade` never load torch. Building
it also enforces the configuration several replicas must share: with PostgreSQL (the multi-replica
deployment) the master key and the review-session secret must be set explicitly, because a key
file created per host would make replica B unable to decrypt what replica A wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.storage.db import Database
from voiceid.storage.keys import Vault, vault_from_settings
from voiceid.storage.models import utcnow


def cipher_from_settings(settings: Settings) -> Vault:
    """The envelope vault (per-owner data keys wrapped by the master key): voiceid.storage.keys."""
    return vault_from_settings(settings)


def check_shared_configuration(settings: Settings) -> None:
    """Refuse to start a replica of a shared (PostgreSQL) deployment with per-host secrets, or
    webhooks that would go out unsigned."""
    if settings.webhook_allowed_hosts and settings.webhook_secret is None:
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, "webhooks are on: set VOICEID_WEBHOOK_SECRET to sign them")
    if settings.is_sqlite:
        return
    missing = [
        name
        for name, value in (
            ("VOICEID_ENCRYPTION_KEY", settings.encryption_key),
            ("VOICEID_SESSION_SECRET", settings.session_secret),
            # The data keys (crypto-shredding) live outside the main database; a per-host key store
            # would leave each replica with keys the others cannot find.
            ("VOICEID_KEYSTORE_URL", settings.keystore_url),
        )
        if value is None
    ]
    if missing:
        raise VoiceIdError(
            ErrorCode.CONFIGURATION_ERROR,
            f"with PostgreSQL every replica must share its secrets: set {' and '.join(missing)} "
            "(a per-host key file would make one replica unable to read what another wrote)",
            hint="give every replica the same values: VOICEID_ENCRYPTION_KEY 32 random bytes in url-safe base64, "
            "VOICEID_SESSION_SECRET 32 or more random characters, VOICEID_KEYSTORE_URL a database all replicas reach",
        )
    if settings.session_secret is not None and len(settings.session_secret.get_secret_value()) < 32:
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, "VOICEID_SESSION_SECRET must be at least 32 characters")


@dataclass
class AppContext:
    settings: Settings
    db: Database
    cipher: Vault
    clock: Callable[[], datetime] = field(default=utcnow)
    # What a job keeps in this process between its ticks (the index-snapshot job's caches), by job name.
    job_state: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        """Read through here (or `clock()`) at each use: tests and the purge swap the clock later."""
        return self.clock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        check_shared_configuration(settings)
        db = Database(settings.sqlalchemy_url)
        cipher = cipher_from_settings(settings)
        # Every process that can erase (the worker's voiceprint expiry and purges included) destroys
        # the data key inside the erasing transaction; a context without this would leave erased
        # owners' keys behind, and their ciphertext readable.
        cipher.bind(db.sessions)
        return cls(settings, db, cipher)

    def close(self) -> None:
        self.db.dispose()
