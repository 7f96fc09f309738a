"""Issue 10, finding 5: erasure leaves ciphertext behind. The attack, replayed on both backends:
a concurrent reader holds a snapshot (SQLite: it pins the WAL; PostgreSQL: it pins the old tuples
against VACUUM) while the speaker is erased; afterwards the reader still gets the old ciphertext,
and the database files / WAL still hold it. What must hold: nothing can decrypt it any more, even
with the master key, because the speaker's data key is gone from every file that remains."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import select

from voiceid.config import Settings
from voiceid.storage import models as m
from voiceid.storage import repositories as repo
from voiceid.storage.crypto import Cipher, DecryptionError, associated_data
from voiceid.storage.envelope_upgrade import upgrade_legacy_blobs
from voiceid.storage.keys import KeyShreddedError, MasterKey, Vault, speaker_owner, unwrap, vault_from_settings
from voiceid.testkit.engines import ScriptedEngine, unit
from voiceid.testkit.postgres import POSTGRES_ADMIN_DSN

LEGACY_VOICE = unit(99)
VOICES = {"victim": unit(1), "bystander": unit(2), "again": unit(3), "kept": unit(4)}


def name(role: str) -> str:
    """A fresh speaker id: the session's database keeps other tests' attempt rows."""
    return f"{role}-{uuid.uuid4().hex[:8]}"


def enrol_and_verify(api, engine: ScriptedEngine, speaker: str) -> None:
    """Two enrolment steps (embeddings + voiceprint) and one verification (kept attempt embedding)."""
    api.put_speaker(speaker)
    for i in range(2):
        body = engine.register(f"{speaker}-enrol-{i}".encode(), VOICES[speaker.split("-")[0]], net_speech_s=3.0)
        r = api.client.post(
            f"/v1/speakers/{speaker}/enrolment-audio",
            content=body,
            headers={**api.h("enrolment"), "Content-Type": "audio/basic"},
        )
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "ENROLLED"
    got = api.verify(
        speaker, engine.register(f"{speaker}-probe".encode(), VOICES[speaker.split("-")[0]]), "audio/basic"
    )
    assert got["decision"] == "ACCEPT"


def biometric_rows(api, speaker: str) -> tuple[str, list[tuple[bytes, bytes]]]:
    """(internal speaker id, [(ciphertext, associated data)]) of every biometric row of `speaker`."""
    with api.service.db.transaction() as session:
        sp = session.scalars(select(m.Speaker).where(m.Speaker.speaker_ref == speaker)).one()
        rows = [(sp.voiceprint, associated_data("voiceprint", sp.id, sp.voiceprint_model_version))]
        for e in session.scalars(select(m.EnrolmentEmbedding).where(m.EnrolmentEmbedding.speaker_id == sp.id)):
            rows.append((e.ciphertext, associated_data("enrolment_embedding", e.id, e.model_version)))
        for a in session.scalars(select(m.AttemptEmbedding).where(m.AttemptEmbedding.speaker_ref == speaker)):
            rows.append((a.ciphertext, associated_data("attempt_embedding", a.verification_id, a.model_version)))
        return sp.id, rows


def key_material(vault: Vault, owner: str) -> tuple[str, bytes, bytes]:
    found = vault.store.get_by_owner(owner)
    assert found is not None
    key_id, wrapped, master_id = found
    master = vault.masters.find(master_id)
    assert master is not None
    return key_id, wrapped, unwrap(master, owner, key_id, wrapped)


def assert_undecryptable(vault: Vault, leftovers: list[tuple[bytes, bytes]], key_id: str) -> None:
    """Neither the service nor an attacker holding the master key and every remaining data key
    can decrypt the leftover blobs."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    assert vault.store.get_by_id(key_id) is None
    remaining = [
        unwrap(vault.masters.find(mid) or MasterKey(b"\0" * 32), owner, kid, wrapped)
        for kid, owner, wrapped, mid in vault.store.all_rows()
    ]
    for blob, aad in leftovers:
        with pytest.raises(KeyShreddedError):
            vault.open(blob, aad)
        body = blob[20:]
        for data_key in remaining:
            with pytest.raises(Exception):  # noqa: B017 - InvalidTag: any success would be the failure
                AESGCM(data_key).decrypt(body[:12], body[12:], aad)


def keystore_files(api) -> bytes:
    path = Path(api.service.cipher.store.url.removeprefix("sqlite:///"))
    raw = b""
    for suffix in ("", "-journal", "-wal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            raw += candidate.read_bytes()
    return raw


ERASURES = {
    "delete": lambda api, s: api.client.delete(f"/v1/speakers/{s}", headers=api.h("enrolment")),
    "opt-out": lambda api, s: api.client.post(f"/v1/speakers/{s}/opt-out", headers=api.h("enrolment")),
    "reset": lambda api, s: api.client.post(f"/v1/speakers/{s}/enrolment/reset", headers=api.h("enrolment")),
}


@pytest.mark.parametrize("erasure", sorted(ERASURES))
def test_erasure_with_a_concurrent_reader_leaves_nothing_decryptable(make_api, db_url, erasure):
    engine = ScriptedEngine()
    api = make_api(engine=engine, enrol_min_speech_s=5.0)
    start_lsn = None
    if not db_url.startswith("sqlite"):
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            start_lsn = admin.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    victim, bystander = name("victim"), name("bystander")
    enrol_and_verify(api, engine, victim)
    enrol_and_verify(api, engine, bystander)
    speaker_id, rows = biometric_rows(api, victim)
    assert len(rows) == 4  # voiceprint, two enrolment embeddings, one attempt embedding
    vault = api.service.cipher
    key_id, wrapped, data_key = key_material(vault, speaker_owner(speaker_id))
    assert {vault.key_id_of(blob) for blob, _ in rows} == {key_id}

    # The attacker's reader: a snapshot taken before the erasure and held through it.
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        reader: sqlite3.Connection | psycopg.Connection = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM speakers").fetchone()
        snapshot_query = "SELECT voiceprint FROM speakers WHERE id = ?"
    else:
        reader = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM speakers").fetchone()
        snapshot_query = "SELECT voiceprint FROM speakers WHERE id = %s"

    try:
        r = ERASURES[erasure](api, victim)
        assert r.status_code in (200, 204), r.text

        # The attack works as reported: the old ciphertext is still there to be read ...
        old = reader.execute(snapshot_query, (speaker_id,)).fetchone()  # type: ignore[union-attr]
        assert old is not None and bytes(old[0]) == rows[0][0]
        if db_url.startswith("sqlite"):
            files = Path(path).read_bytes() + (
                Path(path + "-wal").read_bytes() if Path(path + "-wal").exists() else b""
            )
            assert any(blob in files for blob, _ in rows)
        else:
            files = pg_wal_since(start_lsn)
            assert any(blob in files for blob, _ in rows)  # the WAL still holds the ciphertext
        # ... but its key is not: not in the key store (overwritten, not just unlinked), and it never
        # went into the database, its pages or its WAL, wrapped or not.
        for raw in (keystore_files(api), files):
            assert wrapped not in raw and data_key not in raw
        assert_undecryptable(vault, rows, key_id)
    finally:
        reader.close()

    # The bystander is untouched and still verifies.
    _, theirs = biometric_rows(api, bystander)
    for blob, aad in theirs:
        np.testing.assert_allclose(vault.open_vector(blob, aad), VOICES["bystander"], atol=1e-5)
    again = engine.register(b"bystander-again", VOICES["bystander"])
    assert api.verify(bystander, again, "audio/basic")["decision"] == "ACCEPT"


def pg_wal_since(start_lsn: str) -> bytes:
    """The WAL segments written since `start_lsn`, read as a superuser would (pg_read_binary_file),
    after a CHECKPOINT and a VACUUM, as in the report."""
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute("CHECKPOINT")
        first = admin.execute("SELECT pg_walfile_name(%s::pg_lsn)", (start_lsn,)).fetchone()[0]
        last = admin.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        names = [
            row[0]
            for row in admin.execute(
                "SELECT name FROM pg_ls_waldir() WHERE name >= %s AND name <= %s ORDER BY name", (first, last)
            )
        ]
        return b"".join(
            bytes(admin.execute("SELECT pg_read_binary_file(%s)", (f"pg_wal/{n}",)).fetchone()[0]) for n in names
        )


def test_reset_then_reenrol_uses_a_new_key(make_api):
    engine = ScriptedEngine()
    api = make_api(engine=engine, enrol_min_speech_s=5.0)
    again = name("again")
    enrol_and_verify(api, engine, again)
    speaker_id, _ = biometric_rows(api, again)
    first = api.service.cipher.store.get_by_owner(speaker_owner(speaker_id))
    assert api.client.post(f"/v1/speakers/{again}/enrolment/reset", headers=api.h("enrolment")).status_code == 200
    assert api.service.cipher.store.get_by_owner(speaker_owner(speaker_id)) is None
    enrol_and_verify(api, engine, again)
    second = api.service.cipher.store.get_by_owner(speaker_owner(speaker_id))
    assert first is not None and second is not None and first[0] != second[0]


def test_a_failed_erasure_destroys_nothing(make_api, monkeypatch):
    """The key store refuses: the database transaction rolls back, the speaker keeps everything."""
    engine = ScriptedEngine()
    api = make_api(engine=engine, enrol_min_speech_s=5.0)
    kept = name("kept")
    enrol_and_verify(api, engine, kept)

    def fail(owners):
        raise DecryptionError("key store unavailable")

    monkeypatch.setattr(api.service.cipher.store, "delete_owners", fail)
    with pytest.raises(DecryptionError):
        api.service.speakers.delete(kept)
    monkeypatch.undo()
    _, rows = biometric_rows(api, kept)
    assert len(rows) == 4
    assert api.verify(kept, engine.register(b"kept-again", VOICES["kept"]), "audio/basic")["decision"] == "ACCEPT"


def test_watchlist_entries_have_their_own_keys(make_api):
    """Not a speaker's data: each entry is keyed on its own and shredded when it is deleted, never
    with a speaker (docs/security.md)."""
    engine = ScriptedEngine()
    api = make_api(engine=engine, enrol_min_speech_s=5.0)
    victim = name("victim")
    enrol_and_verify(api, engine, victim)
    vid = api.client.get("/v1/verifications", headers=api.h("analyst")).json()["items"][0]["verification_id"]
    r = api.client.post("/v1/watchlist", json={"verification_id": vid, "label": "fraud"}, headers=api.h("analyst"))
    assert r.status_code == 201, r.text
    entry_id = r.json()["entry_id"]
    with api.service.db.transaction() as session:
        blob = session.get(m.WatchlistEntry, entry_id).ciphertext
    owner_key = api.service.cipher.store.get_by_owner(f"watchlist:{entry_id}")
    assert owner_key is not None and api.service.cipher.key_id_of(blob) == owner_key[0]
    assert api.client.delete(f"/v1/speakers/{victim}", headers=api.h("enrolment")).status_code == 204
    assert api.service.cipher.store.get_by_owner(f"watchlist:{entry_id}") is not None
    assert api.client.delete(f"/v1/watchlist/{entry_id}", headers=api.h("analyst")).status_code == 204
    assert api.service.cipher.store.get_by_owner(f"watchlist:{entry_id}") is None


def test_pre_envelope_blobs_are_converted_once(db, tmp_path):
    """On both backends (the unmarked rows are found with substr() on a SQLite blob and a bytea)."""
    vault = vault_from_settings(Settings(data_dir=tmp_path))  # type: ignore[call-arg]
    sid, ref = uuid.uuid4().hex, name("old-caller")
    legacy = Cipher(vault.masters.current.key)
    with db.transaction() as session:
        speaker = m.Speaker(id=sid, speaker_ref=ref, status="ENROLLED", consent_granted=True)
        session.add(speaker)
        session.flush()
        speaker.voiceprint = legacy.encrypt_vector(LEGACY_VOICE, associated_data("voiceprint", sid, "mv"))
        speaker.voiceprint_model_version = "mv"
        session.add(
            m.EnrolmentEmbedding(
                id=sid[:30] + "e1",
                speaker_id=sid,
                model_version="mv",
                ciphertext=legacy.encrypt_vector(
                    LEGACY_VOICE, associated_data("enrolment_embedding", sid[:30] + "e1", "mv")
                ),
                net_speech_s=5.0,
                quality={},
            )
        )
    assert upgrade_legacy_blobs(db, vault) == 2
    assert upgrade_legacy_blobs(db, vault) == 0
    with db.transaction() as session:
        speaker = session.scalars(select(m.Speaker).where(m.Speaker.id == sid)).one()
        assert speaker.voiceprint is not None and vault.key_id_of(speaker.voiceprint)
        np.testing.assert_array_equal(repo.get_voiceprint(vault, speaker), LEGACY_VOICE)
        assert len(repo.enrolment_samples(session, vault, speaker, "mv")) == 1
        # Erasure now shreds what used to be under the master key.
        vault.bind(db.sessions)
    with db.transaction() as session:
        repo.erase_biometrics(session, session.scalars(select(m.Speaker).where(m.Speaker.id == sid)).one())
    assert vault.store.get_by_owner(speaker_owner(sid)) is None
    vault.close()


def _raw_pages(dsn: str, relation: str) -> bytes:
    """Every block of `relation` as stored on disk, read with pageinspect (as the probe did)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        blocks = conn.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::int", (relation,))
        count = int(blocks.fetchone()[0])  # type: ignore[index]
        return b"".join(
            bytes(conn.execute("SELECT get_raw_page(%s, %s)", (relation, n)).fetchone()[0])  # type: ignore[index]
            for n in range(count)
        )


def test_postgresql_key_store_pages_hold_no_erased_key(make_api):
    """Issue 20: on a PostgreSQL key store the destroyed data key stayed in `data_keys` as a dead
    tuple (and, after a plain VACUUM, in the page's free space), and unwrapped with the master key
    it decrypted the erased voiceprint. After an erasure - and after an index snapshot's key is
    superseded - no page of the key store holds the key, wrapped or not."""
    from tests.conftest import postgres_database
    from voiceid.storage.keys import index_snapshot_owner

    with postgres_database("voiceid_keystore") as keystore_url:
        engine = ScriptedEngine()
        api = make_api(engine=engine, enrol_min_speech_s=5.0, keystore_url=keystore_url)
        vault = api.service.cipher
        assert vault.store.is_postgresql
        dsn = keystore_url.replace("postgresql+psycopg://", "postgresql://")
        # Keys created at different times sit at different places in the page: erase the first,
        # a middle one and the newest (the newest is the one a plain VACUUM leaves in free space).
        speakers = [name("victim"), name("bystander"), name("again")]
        for speaker in speakers:
            enrol_and_verify(api, engine, speaker)
        snapshot = index_snapshot_owner(uuid.uuid4().hex)
        vault.seal(snapshot, b"raw embeddings of a whole population", b"aad")
        erased = [speakers[0], speakers[2]]
        materials = []
        for speaker in erased:
            speaker_id, rows = biometric_rows(api, speaker)
            materials.append((rows, *key_material(vault, speaker_owner(speaker_id))))
        snapshot_key = key_material(vault, snapshot)
        assert all(wrapped in _raw_pages(dsn, "data_keys") for _, _, wrapped, _ in materials)  # the probe sees them

        for speaker in erased:
            assert api.client.delete(f"/v1/speakers/{speaker}", headers=api.h("enrolment")).status_code == 204
        vault.shred([snapshot])  # what storage/index_repo.py does when a snapshot is superseded

        pages = _raw_pages(dsn, "data_keys")
        assert pages  # the table has pages, and the bystander's key is in them ...
        _, rest = biometric_rows(api, speakers[1])
        assert vault.open(*rest[0])
        for rows, key_id, wrapped, data_key in [*materials, (None, *snapshot_key)]:
            assert wrapped not in pages and data_key not in pages  # ... no erased one is
            if rows is not None:
                assert_undecryptable(vault, rows, key_id)
        with psycopg.connect(dsn) as conn:
            dead = conn.execute(
                "SELECT count(*) FROM generate_series(0, pg_relation_size('data_keys') / 8192 - 1) AS b, "
                "LATERAL heap_page_items(get_raw_page('data_keys', b::int)) WHERE t_xmax <> 0"
            ).fetchone()
            assert dead is not None and dead[0] == 0
        api.service.close()
