"""What the commands run on: the database-only context (no model, no torch) for the commands that
manage keys, the audit trail, retention and cohorts, and the whole service for the ones that embed
audio. Both are built from the settings exactly as a serving process builds them."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from voiceid.config import get_settings
from voiceid.services.context import AppContext
from voiceid.services.upgrade import upgrade
from voiceid.storage.envelope_upgrade import upgrade_legacy_blobs

if TYPE_CHECKING:
    from voiceid.services.root import VoiceIdService

_CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".ul": "audio/basic",
    ".ulaw": "audio/basic",
    ".al": "audio/x-alaw-basic",
    ".alaw": "audio/x-alaw-basic",
}


def content_type(path: Path) -> str | None:
    # Unknown extensions are left to the decoder to sniff (containers carry their own header).
    return _CONTENT_TYPES.get(path.suffix.lower())


def cli_actor() -> str:
    """Who the audit trail records for an action taken from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


@contextmanager
def database() -> Iterator[AppContext]:
    """The database, vault and clock without the model: what `VoiceIdService.from_settings` sets up
    before it loads the model (migrations and the admin-key bootstrap unless
    VOICEID_UPGRADE_ON_START=false, legacy blobs re-wrapped; `AppContext.from_settings` binds the shredding)."""
    settings = get_settings()
    context = AppContext.from_settings(settings)
    try:
        if settings.upgrade_on_start:
            upgrade(context.db, settings)
        upgrade_legacy_blobs(context.db, context.cipher)
        yield context
    finally:
        context.close()
        context.cipher.close()


@contextmanager
def service() -> Iterator[VoiceIdService]:
    """The whole service, model loaded: the same object the HTTP API serves from."""
    # Imported here: it loads torch, which the database-only commands never need.
    from voiceid.services.root import VoiceIdService

    running = VoiceIdService.from_settings(get_settings())
    try:
        yield running
    finally:
        running.close()
