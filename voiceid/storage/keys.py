"""Envelope encryption of biometric data, and erasure by destroying keys (crypto-shredding).

Every biometric blob (enrolment embeddings, the voiceprint, kept attempt embeddings, and any later
per-speaker biometric row) is encrypted under a *data key of its owner* - one per speaker, one per
watchlist entry - and each data key is stored wrapped (AES-256-GCM) by the *master key*, with the
owner and the key id as associated data, so a wrapped key copied onto another owner does not unwrap.

Why the data keys do not live in the main database: an erased row leaves copies behind that the
service cannot reach - old WAL frames held by a concurrent reader, PostgreSQL heap pages and WAL
segments, replicas, backups. If the wrapped data key sat in the same database, the very same copies
would hold it, and copy + master key would still decrypt. So the data keys live in a separate key
store (`VOICEID_KEYSTORE_URL`, by default `keystore.db` next to the master key file) that is never
part of a database backup, and whose deleted rows are overwritten on commit (SQLite
`secure_delete` with a rollback journal: a writer waits for readers instead of leaving old pages in
a log). Destroying the data key makes every copy of the ciphertext, wherever it lingers, unreadable.

Erasure and the database transaction: `mark_for_shredding(session, owner)` records the owner on the
SQLAlchemy session, and the hook installed by `Vault.bind` destroys the marked keys *inside* the
same transaction, just before its COMMIT. If the key store fails, the database transaction rolls
back and nothing was erased; if the COMMIT itself then fails, the rows stay but can no longer be
decrypted - erased all the same (readers treat such rows as absent, a retried erasure deletes them).

A key store on PostgreSQL (VOICEID_KEYSTORE_URL=postgresql://...) is an MVCC table: a DELETE leaves
the row as a dead tuple in its page, and even after a plain VACUUM the bytes of a removed tuple can
stay in the page's free space. So every destruction (and every master-key re-wrap) is followed, once
the DELETE has committed, by `VACUUM (FULL)` of `data_keys`: the table is rewritten from its live
rows alone into a new file and the old one is unlinked, so no page of the key store holds a
destroyed key (tests/api/test_erasure_shredding.py reads them with `pageinspect`). A transaction
holding an older snapshot in the key-store database would keep the dead row alive through the
rewrite, which is why the key store belongs in a database of its own. What stays outside the
service's reach (WAL segments until recycled, archived WAL, replicas, backups, the unlinked file's
blocks) and what the operator configures for it is in docs/security.md.

Watchlist entries are not a speaker's: each entry has a data key of its own (owner
`watchlist:<entry id>`), destroyed when the entry is deleted, and none is erased with a speaker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table, create_engine, delete, event, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.storage.crypto import (
    KEY_BYTES,
    KEY_FILE_NAME,
    NONCE_BYTES,
    DecryptionError,
    decode_key,
    generate_key_text,
    load_or_create_key_file,
)

# Envelope blobs start with this marker, then the 16-byte data key id, the nonce and the ciphertext.
# Blobs written before envelope encryption (nonce first, under the master key) are converted at
# start-up by `upgrade_legacy_blobs`.
MAGIC = b"VIDE"
KEY_ID_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES
SHRED_INFO_KEY = "voiceid_shred_owners"

log = logging.getLogger(__name__)
NEXT_SUFFIX = ".next"


class KeyShreddedError(DecryptionError):
    """The blob's data key was destroyed: its owner was erased. The blob is gone for every purpose."""


def speaker_owner(speaker_id: str) -> str:
    """The data-key owner of a speaker's biometric rows (the internal speaker id, not the client's
    reference: a speaker deleted and created again under the same reference gets a new key)."""
    return f"speaker:{speaker_id}"


def watchlist_owner(entry_id: str) -> str:
    return f"watchlist:{entry_id}"


def index_snapshot_owner(snapshot_id: str) -> str:
    """A persisted index snapshot holds raw embeddings of many speakers: it has a data key of its own,
    destroyed when the snapshot is superseded (storage/index_repo.py)."""
    return f"index:{snapshot_id}"


def mark_for_shredding(session: Session, owner: str) -> None:
    """Destroy `owner`'s data key when `session`'s transaction commits (see the module notes)."""
    session.info.setdefault(SHRED_INFO_KEY, set()).add(owner)


# --- master keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKey:
    key: bytes

    @property
    def key_id(self) -> str:
        # A fingerprint names which master wrapped a data key, so rotation can proceed row by row
        # and survive a crash half-way. A hash of a 256-bit random key reveals nothing of it.
        return hashlib.sha256(b"voiceid-master-key-id|" + self.key).hexdigest()[:16]


@dataclass(frozen=True)
class MasterKeys:
    """The master key new data keys are wrapped under, and older ones that may still unwrap."""

    current: MasterKey
    previous: tuple[MasterKey, ...] = ()

    def find(self, key_id: str) -> MasterKey | None:
        for master in (self.current, *self.previous):
            if master.key_id == key_id:
                return master
        return None


def _wrap_aad(owner: str, key_id: str) -> bytes:
    return f"voiceid|data-key|{owner}|{key_id}".encode()


def wrap(master: MasterKey, owner: str, key_id: str, data_key: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master.key).encrypt(nonce, data_key, _wrap_aad(owner, key_id))


def unwrap(master: MasterKey, owner: str, key_id: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(master.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(owner, key_id))
    except InvalidTag as exc:
        raise DecryptionError(f"data key {key_id} does not unwrap for {owner} under its master key") from exc


# --- the key store -------------------------------------------------------------------------

_metadata = MetaData()
data_keys = Table(
    "data_keys",
    _metadata,
    Column("key_id", String(32), primary_key=True),
    Column("owner", String(160), nullable=False, unique=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("master_id", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
)


def _keystore_engine(url: str, busy_timeout_s: float, writer: bool = True) -> SqlEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # A rollback journal, not WAL: with WAL a reader that holds a snapshot stops the checkpoint
        # and the destroyed key survives in the log; with a rollback journal the writer waits for
        # readers, then overwrites the page in place (secure_delete) and removes the journal.
        cursor.execute("PRAGMA journal_mode=DELETE")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    if writer:
        # Writers take the write lock up front; readers (a separate engine) run each SELECT in
        # autocommit, holding only a brief shared lock, so reads never queue behind each other.
        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class KeyStore:
    """Wrapped data keys by owner. Every write is its own short transaction."""

    def __init__(self, url: str, busy_timeout_s: float = 30.0, checkpoint_after_erase: bool = False) -> None:
        self.url = url
        self.engine = _keystore_engine(url, busy_timeout_s)
        self._reader = _keystore_engine(url, busy_timeout_s, writer=False)
        self._checkpoint = checkpoint_after_erase
        _metadata.create_all(self.engine)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def compact(self) -> None:
        """PostgreSQL: rewrite `data_keys` from its live rows (see the module notes), then, when
        configured, CHECKPOINT so the WAL segments that held destroyed keys can be removed."""
        if not self.is_postgresql:
            return  # SQLite: secure_delete overwrote the rows in place at commit
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # A plain VACUUM first: measured on PostgreSQL 15, a VACUUM FULL straight after the DELETE
            # copied the just-deleted row into the new file as "recently dead", while a plain VACUUM
            # removes it; the FULL rewrite then leaves no trace of it in the table's pages.
            conn.exec_driver_sql(f"VACUUM {data_keys.name}")
            conn.exec_driver_sql(f"VACUUM (FULL) {data_keys.name}")
            if self._checkpoint:
                try:
                    conn.exec_driver_sql("CHECKPOINT")
                except DBAPIError as exc:  # needs superuser or pg_checkpoint (PostgreSQL 15+)
                    log.warning("key store: CHECKPOINT after erasure refused: %s", exc.orig)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def get_by_owner(self, owner: str) -> tuple[str, bytes, str] | None:
        with self._reader.connect() as conn:
            row = conn.execute(
                select(data_keys.c.key_id, data_keys.c.wrapped, data_keys.c.master_id).where(data_keys.c.owner == owner)
            ).first()
        return None if row is None else (row.key_id, row.wrapped, row.master_id)

    def get_by_id(self, key_id: str) -> tuple[str, bytes, str] | None:
        with self._reader.connect() as conn:
            row = conn.execute(
                select(data_keys.c.owner, data_keys.c.wrapped, data_keys.c.master_id).where(
                    data_keys.c.key_id == key_id
                )
            ).first()
        return None if row is None else (row.owner, row.wrapped, row.master_id)

    def get_many(self, key_ids: list[str]) -> list[tuple[str, str, bytes, str]]:
        """(key id, owner, wrapped, master id) of those of `key_ids` that exist."""
        with self._reader.connect() as conn:
            return [
                (r.key_id, r.owner, r.wrapped, r.master_id)
                for r in conn.execute(
                    select(data_keys.c.key_id, data_keys.c.owner, data_keys.c.wrapped, data_keys.c.master_id).where(
                        data_keys.c.key_id.in_(key_ids)
                    )
                )
            ]

    def insert(self, key_id: str, owner: str, wrapped: bytes, master_id: str) -> bool:
        """False when another process created a key for `owner` first."""
        try:
            with self._write() as conn:
                conn.execute(
                    data_keys.insert().values(
                        key_id=key_id, owner=owner, wrapped=wrapped, master_id=master_id, created_at=_now()
                    )
                )
        except IntegrityError:
            return False
        return True

    def delete_owners(self, owners: Iterable[str]) -> list[str]:
        """Destroy the keys of `owners`; the ids of the keys destroyed."""
        owners = sorted(set(owners))
        if not owners:
            return []
        with self._write() as conn:
            ids = list(conn.scalars(select(data_keys.c.key_id).where(data_keys.c.owner.in_(owners))))
            conn.execute(delete(data_keys).where(data_keys.c.owner.in_(owners)))
        if ids:
            self.compact()
        return ids

    def all_rows(self) -> list[tuple[str, str, bytes, str]]:
        with self._reader.connect() as conn:
            return [
                (r.key_id, r.owner, r.wrapped, r.master_id)
                for r in conn.execute(
                    select(data_keys.c.key_id, data_keys.c.owner, data_keys.c.wrapped, data_keys.c.master_id)
                )
            ]

    def rewrap(self, masters: MasterKeys) -> int:
        """Re-wrap every data key not under the current master; one transaction. Ciphertexts are
        not touched: the data keys themselves do not change."""
        changed = 0
        with self._write() as conn:
            rows = conn.execute(
                select(data_keys.c.key_id, data_keys.c.owner, data_keys.c.wrapped, data_keys.c.master_id).where(
                    data_keys.c.master_id != masters.current.key_id
                )
            ).all()
            for row in rows:
                old = masters.find(row.master_id)
                if old is None:
                    raise DecryptionError(
                        f"data key {row.key_id} is wrapped by master {row.master_id}, which is not configured; "
                        "add it to VOICEID_ENCRYPTION_PREVIOUS_KEYS"
                    )
                data_key = unwrap(old, row.owner, row.key_id, row.wrapped)
                conn.execute(
                    sql_update(data_keys)
                    .where(data_keys.c.key_id == row.key_id)
                    .values(
                        wrapped=wrap(masters.current, row.owner, row.key_id, data_key), master_id=masters.current.key_id
                    )
                )
                changed += 1
        if changed:
            self.compact()  # the rows wrapped under the old master are dead tuples until then
        return changed

    def dispose(self) -> None:
        self.engine.dispose()
        self._reader.dispose()


# --- the vault: the one helper every biometric table goes through --------------------------


class Vault:
    """Encrypt and decrypt biometric blobs under their owner's data key.

    `seal(owner, plaintext, aad)` / `open(blob, aad)` are the only way biometric bytes are written
    to or read from a table; `aad` binds the blob to its row (see `crypto.associated_data`).
    Unwrapped data keys are cached briefly (bounded count and age) so a verification does not
    unwrap the same key twice; destroying a key evicts it from this process's cache at once.
    """

    def __init__(self, store: KeyStore, masters: MasterKeys, cache_keys: int = 10_000, cache_s: float = 300.0) -> None:
        self.store = store
        self.masters = masters
        self._cache_keys = cache_keys
        self._cache_s = cache_s
        self._cache: OrderedDict[str, tuple[AESGCM, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._bound: set[int] = set()  # id() of the session factories `bind` already listens on

    # -- keys

    def _cached(self, key_id: str) -> AESGCM | None:
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is None:
                return None
            if hit[1] < time.monotonic():
                del self._cache[key_id]
                return None
            self._cache.move_to_end(key_id)
            return hit[0]

    def _remember(self, key_id: str, aead: AESGCM) -> None:
        if self._cache_keys <= 0:
            return
        with self._lock:
            self._cache[key_id] = (aead, time.monotonic() + self._cache_s)
            self._cache.move_to_end(key_id)
            while len(self._cache) > self._cache_keys:
                self._cache.popitem(last=False)

    def _unwrap_row(self, key_id: str, owner: str, wrapped: bytes, master_id: str) -> AESGCM:
        master = self.masters.find(master_id)
        if master is None:
            raise DecryptionError(f"data key {key_id} is wrapped by master {master_id}, which is not configured")
        aead = AESGCM(unwrap(master, owner, key_id, wrapped))
        self._remember(key_id, aead)
        return aead

    def _key_for_owner(self, owner: str) -> tuple[str, AESGCM]:
        """The owner's data key, created on first use. Looked up in the store every time, never in
        the cache: a key destroyed by another process must not be written under again."""
        for _ in range(2):
            found = self.store.get_by_owner(owner)
            if found is not None:
                key_id, wrapped, master_id = found
                return key_id, self._cached(key_id) or self._unwrap_row(key_id, owner, wrapped, master_id)
            key_id = os.urandom(KEY_ID_BYTES).hex()
            data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
            if self.store.insert(
                key_id, owner, wrap(self.masters.current, owner, key_id, data_key), self.masters.current.key_id
            ):
                aead = AESGCM(data_key)
                self._remember(key_id, aead)
                return key_id, aead
        raise DecryptionError(f"could not create a data key for {owner}")

    def _key_by_id(self, key_id: str) -> AESGCM:
        cached = self._cached(key_id)
        if cached is not None:
            return cached
        found = self.store.get_by_id(key_id)
        if found is None:
            raise KeyShreddedError("the data key of this blob was destroyed (its owner was erased)")
        owner, wrapped, master_id = found
        return self._unwrap_row(key_id, owner, wrapped, master_id)

    def prefetch(self, blobs: Iterable[bytes], chunk: int = 500) -> None:
        """Unwrap the keys of many blobs with one key-store read per `chunk` keys, before opening
        them one by one (loading the voiceprint index of a whole population)."""
        wanted = sorted({self.key_id_of(b) for b in blobs if b.startswith(MAGIC)})
        wanted = [k for k in wanted if self._cached(k) is None]
        for start in range(0, len(wanted), chunk):
            for key_id, owner, wrapped, master_id in self.store.get_many(wanted[start : start + chunk]):
                self._unwrap_row(key_id, owner, wrapped, master_id)

    def key_id_of(self, blob: bytes) -> str:
        if len(blob) < HEADER_BYTES + NONCE_BYTES or not blob.startswith(MAGIC):
            raise DecryptionError("not an envelope-encrypted blob")
        return blob[len(MAGIC) : HEADER_BYTES].hex()

    # -- blobs

    def seal(self, owner: str, plaintext: bytes, aad: bytes) -> bytes:
        key_id, aead = self._key_for_owner(owner)
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + bytes.fromhex(key_id) + nonce + aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext; `KeyShreddedError` when its owner was erased, `DecryptionError` when the
        blob was tampered with or belongs to another row."""
        aead = self._key_by_id(self.key_id_of(blob))
        body = blob[HEADER_BYTES:]
        try:
            return aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise DecryptionError("stored biometric data failed authentication") from exc

    def seal_vector(self, owner: str, vector: npt.NDArray[np.floating], aad: bytes) -> bytes:
        return self.seal(owner, np.asarray(vector, dtype="<f4").tobytes(), aad)

    def open_vector(self, blob: bytes, aad: bytes) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.open(blob, aad), dtype="<f4").astype(np.float32)

    # -- erasure and rotation

    def shred(self, owners: Iterable[str]) -> list[str]:
        """Destroy the data keys of `owners` now (the session hook calls this at commit)."""
        destroyed = self.store.delete_owners(owners)
        with self._lock:
            for key_id in destroyed:
                self._cache.pop(key_id, None)
        return destroyed

    def bind(self, sessions: sessionmaker[Session]) -> None:
        """Destroy the keys marked with `mark_for_shredding` inside each transaction of `sessions`,
        just before its COMMIT. Idempotent: binding one factory twice shreds once."""
        if id(sessions) in self._bound:
            return
        self._bound.add(id(sessions))

        @event.listens_for(sessions, "before_commit")
        def _shred_marked(session: Session) -> None:
            owners = session.info.pop(SHRED_INFO_KEY, None)
            if owners:
                self.shred(owners)

        @event.listens_for(sessions, "after_rollback")
        def _forget_marks(session: Session) -> None:
            session.info.pop(SHRED_INFO_KEY, None)

    def rewrap(self) -> int:
        count = self.store.rewrap(self.masters)
        with self._lock:
            self._cache.clear()
        return count

    def close(self) -> None:
        self.store.dispose()


# --- configuration: where the master key and the key store are -----------------------------


def parse_key_list(text: str | None) -> tuple[MasterKey, ...]:
    if not text:
        return ()
    return tuple(MasterKey(decode_key(part)) for part in text.split(",") if part.strip())


# How to make a key, for the error that names a malformed one.
KEY_HINT = (
    "set it to 32 random bytes in url-safe base64, e.g. the output of "
    '`python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"`, '
    "or unset VOICEID_ENCRYPTION_KEY to use the key file in the data dir"
)


@contextmanager
def _key_named(source: str, hint: str = KEY_HINT) -> Iterator[None]:
    """A malformed master key as a configuration error naming where it came from (never its value)."""
    try:
        yield
    except ValueError as exc:
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"{source}: {exc}", hint=hint) from exc


def load_master_keys(env_key: str | None, previous: str | None, key_file: Path) -> MasterKeys:
    """From VOICEID_ENCRYPTION_KEY when set, else the key file (created on first use). A
    `<key file>.next` left by an interrupted file rotation also unwraps, so the service keeps
    working until `voiceid keys rotate-master` is run again and finishes."""
    with _key_named("VOICEID_ENCRYPTION_PREVIOUS_KEYS"):
        extra = list(parse_key_list(previous))
    if env_key is not None:
        with _key_named("VOICEID_ENCRYPTION_KEY"):
            return MasterKeys(MasterKey(decode_key(env_key)), tuple(extra))
    with _key_named(f"the key file {key_file}", "restore the key file from its backup"):
        current = MasterKey(load_or_create_key_file(key_file))
    pending = Path(str(key_file) + NEXT_SUFFIX)
    if pending.exists():
        with _key_named(f"the pending key file {pending}", "restore it, or remove it if no rotation was run"):
            extra.insert(0, MasterKey(decode_key(pending.read_text())))
    return MasterKeys(current, tuple(extra))


def create_pending_key_file(key_file: Path) -> MasterKey:
    """The next master key for a file rotation: `<key file>.next` (0600), reused if it exists."""
    pending = Path(str(key_file) + NEXT_SUFFIX)
    try:
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return MasterKey(decode_key(pending.read_text()))
    with os.fdopen(fd, "w") as handle:
        handle.write(generate_key_text() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return MasterKey(decode_key(pending.read_text()))


def finish_file_rotation(key_file: Path) -> None:
    """The pending key becomes the key file (atomic rename); the old master is gone."""
    os.replace(Path(str(key_file) + NEXT_SUFFIX), key_file)


def key_file_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE_NAME


def keystore_url(settings: Settings) -> str:
    return settings.keystore_url or f"sqlite:///{settings.data_dir / 'keystore.db'}"


def master_keys_from_settings(settings: Settings) -> MasterKeys:
    secret = None if settings.encryption_key is None else settings.encryption_key.get_secret_value()
    previous = settings.encryption_previous_keys
    return load_master_keys(secret, None if previous is None else previous.get_secret_value(), key_file_path(settings))


def vault_from_settings(settings: Settings, masters: MasterKeys | None = None) -> Vault:
    return Vault(
        KeyStore(keystore_url(settings), settings.keystore_busy_timeout_s, settings.keystore_checkpoint_after_erase),
        masters or master_keys_from_settings(settings),
        settings.keystore_cache_keys,
        settings.keystore_cache_s,
    )


def rotate_master(settings: Settings) -> tuple[int, str]:
    """Re-wrap every data key under a new master key; (keys re-wrapped, where the new key is).

    With the key file: a new key is written to `<key file>.next`, every data key is re-wrapped
    under it in one key-store transaction, then the file replaces the old one (an interrupted run
    leaves both usable; running again finishes). With VOICEID_ENCRYPTION_KEY: the operator sets the
    new key there and the old one in VOICEID_ENCRYPTION_PREVIOUS_KEYS, and this re-wraps to it.
    No ciphertext is read or written either way."""
    if settings.encryption_key is not None:
        vault = vault_from_settings(settings)
        try:
            return vault.rewrap(), "VOICEID_ENCRYPTION_KEY"
        finally:
            vault.close()
    key_file = key_file_path(settings)
    old = MasterKey(load_or_create_key_file(key_file))
    new = create_pending_key_file(key_file)
    previous = settings.encryption_previous_keys
    extra = parse_key_list(None if previous is None else previous.get_secret_value())
    vault = vault_from_settings(settings, MasterKeys(new, (old, *extra)))
    try:
        count = vault.rewrap()
    finally:
        vault.close()
    finish_file_rotation(key_file)
    return count, str(key_file)
