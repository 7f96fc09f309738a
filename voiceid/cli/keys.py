"""`voiceid keys` (API keys, the master key) and `voiceid audit` (the audit trail's hash chain): the
database only, no model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from voiceid.cli.context import cli_actor, database
from voiceid.cli.failures import fail
from voiceid.config import get_settings
from voiceid.errors import VoiceIdError
from voiceid.services import api_keys, audit
from voiceid.services.audit import AuditAction
from voiceid.services.views import Role
from voiceid.storage.keys import rotate_master

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of administrative and analyst actions.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="ivr | enrolment | analyst | admin")],
    label: Annotated[str | None, typer.Option(help="A note on who holds the key")] = None,
    expires_at: Annotated[
        datetime | None, typer.Option(help="When the key stops working (UTC unless a zone is given)")
    ] = None,
) -> None:
    """Create an API key and print it (shown once; only its hash is stored)."""
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    try:
        chosen = Role(role)
    except ValueError:
        raise typer.BadParameter(f"role must be one of {', '.join(r.value for r in Role)}") from None
    with database() as context:
        keys = api_keys.ApiKeys(context.db, context.clock, context.settings.api_key_touch_interval_s)
        try:
            with audit.acting_as(cli_actor()):
                key_id, secret = keys.create(chosen, label, expires_at)
        except VoiceIdError as exc:
            fail(exc)
    typer.echo(json.dumps({"key_id": key_id, "role": chosen.value, "key": secret}))


# --- keys: master key, API key lifecycle (issue 10: hard-keys) --------------------------------


@keys_app.command("rotate-master")
def keys_rotate_master() -> None:
    """Re-wrap every per-speaker data key under a new master key; no ciphertext is touched.

    With the key file (default) a new key is generated and replaces it. With VOICEID_ENCRYPTION_KEY,
    put the new key there and the old one in VOICEID_ENCRYPTION_PREVIOUS_KEYS first."""
    count, where = rotate_master(get_settings())
    with database() as context, audit.acting_as(cli_actor()):
        audit.record(context.db, AuditAction.MASTER_KEY_ROTATED, where, {"rewrapped_data_keys": count})
    typer.echo(json.dumps({"rewrapped_data_keys": count, "master_key": where}))


@keys_app.command("list")
def keys_list() -> None:
    """Every API key (one JSON object per line): role, label, expiry, last use, revocation."""
    with database() as context:
        now = context.clock()
        for view in api_keys.list_keys(context.db):
            row = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in vars(view).items()}
            typer.echo(json.dumps({**row, "active": view.active(now)}))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (from `voiceid keys list`)")]) -> None:
    """Revoke an API key; it is refused from the next request on."""
    with database() as context:
        try:
            with audit.acting_as(cli_actor()):
                view = api_keys.revoke(context.db, key_id, context.clock())
        except VoiceIdError as exc:
            fail(exc)
    typer.echo(
        json.dumps({"key_id": view.key_id, "revoked_at": view.revoked_at.isoformat() if view.revoked_at else None})
    )


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="The head hash recorded earlier: also catches a rewritten chain")
    ] = None,
) -> None:
    """Check the audit trail's hash chain: exit 1 and list every edited, missing or relinked row."""
    with database() as context, context.db.transaction() as session:
        verdict = audit.verify(session)
    problems = [vars(p) for p in verdict.problems]
    if expect_head is not None and expect_head != verdict.head_hash:
        problems.append({"seq": verdict.head_seq, "kind": "HEAD_CHANGED", "detail": "the head is not the one expected"})
    typer.echo(
        json.dumps(
            {
                "ok": not problems,
                "rows": verdict.rows,
                "head_seq": verdict.head_seq,
                "head_hash": verdict.head_hash,
                "problems": problems,
            }
        )
    )
    if problems:
        raise typer.Exit(1)
