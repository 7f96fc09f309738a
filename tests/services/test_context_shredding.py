"""Every process's context destroys an erased owner's data key in the erasing transaction: the
worker's voiceprint expiry and purges run on `AppContext.from_settings`, not on the serving root."""

from __future__ import annotations

from pathlib import Path

import pytest

from voiceid.config import Settings
from voiceid.services.context import AppContext
from voiceid.services.upgrade import upgrade
from voiceid.storage.keys import mark_for_shredding


def test_an_app_context_shreds_marked_owners_on_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEID_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    context = AppContext.from_settings(settings)
    try:
        upgrade(context.db, settings)
        blob = context.cipher.seal("speaker:ada", b"voiceprint", b"aad")
        assert context.cipher.open(blob, b"aad") == b"voiceprint"
        assert context.cipher.store.get_by_owner("speaker:ada") is not None
        with context.db.transaction() as session:
            mark_for_shredding(session, "speaker:ada")
        assert context.cipher.store.get_by_owner("speaker:ada") is None
        # The serving root binds too: a second bind must not listen twice.
        context.cipher.bind(context.db.sessions)
        context.cipher.seal("speaker:bob", b"voiceprint", b"aad")
        with context.db.transaction() as session:
            mark_for_shredding(session, "speaker:bob")
        assert context.cipher.store.get_by_owner("speaker:bob") is None
    finally:
        context.close()
        context.cipher.close()
