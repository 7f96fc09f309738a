"""What a new operator needs to hear when the server starts with no API key at all: how to get the
first admin key. Without one, every endpoint answers 401 and nothing says why."""

from __future__ import annotations

import sys
from typing import TextIO

from sqlalchemy import func, select

from voiceid.services.root import VoiceIdService
from voiceid.storage.models import ApiKey


def first_start_message(service: VoiceIdService) -> str | None:
    """The instructions, or None once any key exists."""
    with service.db.transaction() as session:
        keys = int(session.scalar(select(func.count()).select_from(ApiKey)) or 0)
    if keys:
        return None
    return (
        "voiceid: no API key exists yet, so every request will get 401 UNAUTHENTICATED.\n"
        "  Create the first admin key (same VOICEID_* settings as this server, e.g. the same\n"
        "  VOICEID_DATA_DIR or VOICEID_DATABASE_URL), in another terminal:\n"
        "      voiceid keys create --role admin --label first-admin\n"
        "  It prints the key once. Or restart with VOICEID_ADMIN_KEY=<a long secret> set.\n"
        "  With the admin key, POST /v1/api-keys creates ivr, enrolment and analyst keys; /docs lists every route."
    )


def announce(service: VoiceIdService, stream: TextIO | None = None) -> None:
    message = first_start_message(service)
    if message is not None:
        print(message, file=stream or sys.stderr, flush=True)
