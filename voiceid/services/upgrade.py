"""`voiceid db upgrade`: migrations, the admin-key bootstrap and the decision-data pins, as one
transaction under a database-wide lock, so replicas (or upgrade jobs) starting together never race.

PostgreSQL: a transaction-scoped advisory lock; the second upgrader waits, then finds the schema at
head and the key present and changes nothing. SQLite: every transaction already begins with
`BEGIN IMMEDIATE` (voiceid.storage.db), which takes the database's write lock for the same effect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services import api_keys
from voiceid.storage.db import MIGRATIONS_DIR, Database
from voiceid.storage.models import PinnedDecisionData, utcnow


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(hashlib.sha256(f"voiceid:{name}".encode()).digest()[:8], "big", signed=True)


UPGRADE_LOCK = lock_key("db-upgrade")


@dataclass(frozen=True)
class UpgradeReport:
    from_revision: str | None
    to_revision: str | None
    admin_key: bool
    pins: dict[str, str]


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(
    db: Database,
    settings: Settings,
    pins: Mapping[str, str] | Callable[[Session], Mapping[str, str]] | None = None,
    repin: bool = False,
) -> UpgradeReport:
    """Bring the schema to head, bootstrap VOICEID_ADMIN_KEY and pin the decision data (only where
    nothing is pinned yet, unless `repin`). Idempotent. `pins` may be a function of the migrated
    database (what the replicas will run depends on what is enrolled: models/registry.py)."""
    config = _config()
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
        before = MigrationContext.configure(conn).get_current_revision()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        after = MigrationContext.configure(conn).get_current_revision()
        with Session(bind=conn) as session:
            if settings.admin_key is not None:
                # Replaces an earlier bootstrap key, refuses a weak or revoked one (services/api_keys.py).
                api_keys.bootstrap_admin_in(
                    session, settings.admin_key.get_secret_value(), utcnow(), settings.admin_key_min_bits
                )
            wanted = pins(session) if callable(pins) else (pins or {})
            pinned = pin_decision_data(session, wanted, overwrite=repin)
            session.flush()
    return UpgradeReport(before, after, settings.admin_key is not None, pinned)


def replica_decision_versions(settings: Settings, session: Session) -> dict[str, str]:
    """The decision-data hashes a replica started with `settings` on this database will hold: its
    backend resolved exactly as `VoiceIdService.from_settings` resolves it (`auto`: sticky to what
    is enrolled, else the CPU's fastest), its model version, and the cohort and calibration for
    that version. `db upgrade` pins these, so replicas on their defaults start."""
    from voiceid.models.registry import backend_model_version, resolve_service_backend
    from voiceid.storage.repositories import voiceprint_versions
    from voiceid.verify.policy import build_policy, build_scorer
    from voiceid.verify.versions import decision_versions

    choice = resolve_service_backend(settings.inference_backend, settings.model_dir, voiceprint_versions(session))
    scorer = build_scorer(settings, backend_model_version(settings.model_dir, choice.backend))
    return decision_versions(scorer, build_policy(settings, scorer))


def pin_decision_data(session: Session, hashes: Mapping[str, str], overwrite: bool) -> dict[str, str]:
    """Record `hashes` where none is pinned (or replace them); returns what is pinned now."""
    rows = {row.name: row for row in session.scalars(select(PinnedDecisionData))}
    for name, digest in hashes.items():
        row = rows.get(name)
        if row is None:
            rows[name] = PinnedDecisionData(name=name, sha256=digest, updated_at=utcnow())
            session.add(rows[name])
        elif overwrite and row.sha256 != digest:
            row.sha256, row.updated_at = digest, utcnow()
    session.flush()
    return {name: row.sha256 for name, row in rows.items()}


def check_decision_data(db: Database, held: Mapping[str, str], strict: bool) -> dict[str, str]:
    """Pin `held` where nothing is pinned, then compare. With `strict` (PostgreSQL: several replicas)
    a difference refuses start-up, since two replicas would decide one call differently; otherwise
    (SQLite: one process) the pins follow the data this process holds."""
    with db.transaction() as session:
        pinned = pin_decision_data(session, held, overwrite=not strict)
    differ = sorted(name for name, digest in held.items() if pinned.get(name) != digest)
    if differ:
        raise VoiceIdError(
            ErrorCode.CONFIGURATION_ERROR,
            f"this replica's {', '.join(differ)} differ from the version pinned in the database; deploy the "
            "same files everywhere, or re-pin with `voiceid db upgrade --repin` after rolling them out",
            held={n: held[n] for n in differ},
            pinned={n: pinned.get(n) for n in differ},
        )
    return pinned
