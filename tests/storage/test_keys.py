"""Envelope encryption: the vault, master-key rotation and the conversion of pre-envelope blobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from voiceid.config import Settings
from voiceid.storage.crypto import DecryptionError, associated_data, decode_key, generate_key_text
from voiceid.storage.keys import (
    KeyShreddedError,
    MasterKey,
    MasterKeys,
    create_pending_key_file,
    master_keys_from_settings,
    rotate_master,
    speaker_owner,
    vault_from_settings,
)

V = np.random.default_rng(0).standard_normal(192).astype(np.float32)


def settings_for(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_seal_binds_owner_row_and_key(tmp_path):
    vault = vault_from_settings(settings_for(tmp_path))
    aad = associated_data("voiceprint", "s1", "m")
    blob = vault.seal_vector(speaker_owner("s1"), V, aad)
    assert V.tobytes() not in blob
    np.testing.assert_array_equal(vault.open_vector(blob, aad), V)
    with pytest.raises(DecryptionError):
        vault.open_vector(blob, associated_data("voiceprint", "s2", "m"))
    other = vault.seal_vector(speaker_owner("s2"), V, aad)
    assert vault.key_id_of(other) != vault.key_id_of(blob)  # one data key per owner
    # Swapping the key id of the header to another owner's key fails authentication.
    forged = blob[:4] + other[4:20] + blob[20:]
    with pytest.raises(DecryptionError):
        vault.open(forged, aad)
    assert vault.shred([speaker_owner("s1")])
    with pytest.raises(KeyShreddedError):
        vault.open(blob, aad)
    np.testing.assert_array_equal(vault.open_vector(other, aad), V)
    vault.close()


def test_a_wrapped_key_moved_to_another_owner_does_not_unwrap(tmp_path):
    vault = vault_from_settings(settings_for(tmp_path))
    aad = b"x"
    blob_a = vault.seal(speaker_owner("a"), b"secret a", aad)
    vault.seal(speaker_owner("b"), b"secret b", aad)
    key_a = vault.store.get_by_owner(speaker_owner("a"))
    assert key_a is not None
    # An attacker with write access to the key store relabels a's key as b's: it no longer unwraps.
    from sqlalchemy import update

    from voiceid.storage.keys import data_keys

    with vault.store.engine.begin() as conn:
        conn.execute(update(data_keys).where(data_keys.c.owner == speaker_owner("b")).values(owner="spare"))
        conn.execute(update(data_keys).where(data_keys.c.key_id == key_a[0]).values(owner=speaker_owner("b")))
    fresh = vault_from_settings(settings_for(tmp_path))
    with pytest.raises(DecryptionError):
        fresh.open(blob_a, aad)
    fresh.close()
    vault.close()


def test_rotate_master_with_the_key_file_rewraps_without_touching_ciphertexts(tmp_path):
    settings = settings_for(tmp_path)
    vault = vault_from_settings(settings)
    blobs = {owner: vault.seal(speaker_owner(owner), owner.encode(), b"aad") for owner in ("a", "b", "c")}
    old_master = vault.masters.current
    before = {row[0]: row[2] for row in vault.store.all_rows()}
    vault.close()

    result = CliRunner().invoke(_cli(), ["keys", "rotate-master"], env={"VOICEID_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rewrapped_data_keys"] == 3
    assert not Path(str(tmp_path / "encryption.key") + ".next").exists()

    after = vault_from_settings(settings)
    assert after.masters.current.key_id != old_master.key_id and after.masters.previous == ()
    rows = after.store.all_rows()
    assert {r[0] for r in rows} == set(before)  # same data keys ...
    assert all(before[r[0]] != r[2] and r[3] == after.masters.current.key_id for r in rows)  # ... wrapped anew
    for owner, blob in blobs.items():  # the unchanged blobs still open
        assert after.open(blob, b"aad") == owner.encode()
    # The old master no longer opens anything.
    stale = vault_from_settings(settings, MasterKeys(old_master))
    with pytest.raises(DecryptionError):
        stale.open(blobs["a"], b"aad")
    stale.close()
    after.close()


def _cli():
    from voiceid.cli import app
    from voiceid.config import get_settings

    get_settings.cache_clear()
    return app


def test_an_interrupted_file_rotation_keeps_working_and_finishes(tmp_path):
    settings = settings_for(tmp_path)
    vault = vault_from_settings(settings)
    blob = vault.seal(speaker_owner("a"), b"voice", b"aad")
    old = vault.masters.current
    # Crash after re-wrapping under the pending key, before the file was replaced.
    pending = create_pending_key_file(tmp_path / "encryption.key")
    vault.masters = MasterKeys(pending, (old,))
    assert vault.rewrap() == 1
    vault.close()
    restarted = vault_from_settings(settings)
    assert restarted.masters.current == old and pending in restarted.masters.previous
    assert restarted.open(blob, b"aad") == b"voice"
    restarted.close()
    count, _ = rotate_master(settings)
    assert count == 0  # already under the pending key; the file is now swapped in
    final = vault_from_settings(settings)
    assert final.masters.current == pending and final.open(blob, b"aad") == b"voice"
    final.close()


def test_rotate_master_with_environment_keys(tmp_path):
    old_text, new_text = generate_key_text(), generate_key_text()
    vault = vault_from_settings(settings_for(tmp_path, encryption_key=SecretStr(old_text)))
    blob = vault.seal(speaker_owner("a"), b"voice", b"aad")
    vault.close()
    rotated = settings_for(
        tmp_path, encryption_key=SecretStr(new_text), encryption_previous_keys=SecretStr(f" {old_text} ,")
    )
    assert rotate_master(rotated) == (1, "VOICEID_ENCRYPTION_KEY")
    only_new = vault_from_settings(settings_for(tmp_path, encryption_key=SecretStr(new_text)))
    assert only_new.open(blob, b"aad") == b"voice"
    only_new.close()
    with pytest.raises(DecryptionError, match="not configured"):
        rotate_master(settings_for(tmp_path, encryption_key=SecretStr(generate_key_text())))


def test_master_keys_from_settings_prefers_the_environment(tmp_path):
    text = generate_key_text()
    keys = master_keys_from_settings(settings_for(tmp_path, encryption_key=SecretStr(text)))
    assert keys.current == MasterKey(decode_key(text)) and not (tmp_path / "encryption.key").exists()


def test_prefetch_reads_many_keys_at_once(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    vault = vault_from_settings(settings)
    blobs = [vault.seal(speaker_owner(f"s{i}"), b"v", b"aad") for i in range(1200)]
    vault.close()
    cold = vault_from_settings(settings)
    batches: list[int] = []
    get_many = cold.store.get_many
    monkeypatch.setattr(cold.store, "get_many", lambda ids: batches.append(len(ids)) or get_many(ids))
    monkeypatch.setattr(cold.store, "get_by_id", lambda key_id: pytest.fail("a key was read one by one"))
    cold.prefetch(blobs)
    assert batches == [500, 500, 200]
    assert all(cold.open(b, b"aad") == b"v" for b in blobs)
    cold.close()
