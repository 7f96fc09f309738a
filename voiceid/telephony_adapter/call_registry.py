"""Calls bound to a speaker ahead of their audio, and their outcomes (the `calls` table).

Asterisk's AudioSocket carries nothing but a call UUID and audio, so the IVR first says who the
caller claims to be: `PUT /v1/calls/{uuid}` with `{speaker_id, mode, webhook_url?}`. The binding
lives in the database, not in process memory, so the HTTP API and `voiceid telephony audiosocket`
may be separate processes, and an outcome stays readable (`GET /v1/calls/{uuid}`) until it is read
and after: it holds the decision event, never audio or embeddings.

Life of a call: BOUND -> IN_PROGRESS (its AudioSocket connection arrived) -> COMPLETED (decision
or enrolment) | FAILED (an error event) | ABANDONED (the line dropped before an outcome).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.services.serving import ServingContext
from voiceid.services.speakers import Speakers
from voiceid.statuses import CallMode, CallStatus
from voiceid.storage.models import Call
from voiceid.storage.repositories import insert_if_absent
from voiceid.telephony_adapter.call_session import Event
from voiceid.webhooks import outbox
from voiceid.webhooks.targets import WebhookPolicy, check_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallView:
    call_id: str
    speaker_id: str
    mode: CallMode
    status: CallStatus
    webhook_url: str | None
    outcome: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    api_key_id: str | None
    challenge_id: str | None = None  # the spoken challenge the caller answers (issue 22)
    caller: str | None = None  # phone number / AOR: which SIPREC participant is the caller

    @classmethod
    def from_row(cls, row: Call) -> CallView:
        return cls(
            call_id=row.id,
            speaker_id=row.speaker_ref,
            mode=row.mode,
            status=row.status,
            webhook_url=row.webhook_url,
            outcome=row.outcome,
            created_at=row.created_at,
            updated_at=row.updated_at,
            api_key_id=row.api_key_id,
            challenge_id=row.challenge_id,
            caller=row.caller,
        )

    def to_json(self) -> dict[str, Any]:
        """The body of GET /v1/calls/{uuid} and of the webhook POST."""
        return {
            "call_id": self.call_id,
            "speaker_id": self.speaker_id,
            "mode": self.mode,
            "status": self.status,
            "webhook_url": self.webhook_url,
            "challenge_id": self.challenge_id,
            "caller": self.caller,
            "outcome": self.outcome,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def status_for(outcome: Event | None) -> CallStatus:
    if outcome is None:
        return CallStatus.ABANDONED
    return CallStatus.FAILED if outcome.get("event") == "error" else CallStatus.COMPLETED


class CallRegistry:
    """The repository of the `calls` table, one short transaction per method."""

    def __init__(self, ctx: ServingContext, speakers: Speakers) -> None:
        self.ctx = ctx
        self.speakers = speakers

    def bind(
        self,
        call_id: uuid.UUID,
        speaker_id: str,
        mode: CallMode,
        webhook_url: str | None,
        api_key_id: str | None,
        challenge_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[CallView, bool]:
        """(view, created). Re-binding is allowed until the call's audio arrives; then CONFLICT."""
        self.speakers.get(speaker_id)  # SPEAKER_NOT_FOUND / INVALID_SPEAKER_ID before anything is stored
        now = self.ctx.now()
        if webhook_url is not None:
            check_target(webhook_url, WebhookPolicy.from_settings(self.ctx.settings))  # no SSRF
        with self.ctx.db.transaction() as session:
            # Idempotent under concurrency: one PUT creates the row, a concurrent one re-binds it.
            created = insert_if_absent(
                session,
                Call,
                {
                    "id": str(call_id),
                    "speaker_ref": speaker_id,
                    "mode": mode,
                    "status": CallStatus.BOUND,
                    "api_key_id": api_key_id,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            row = session.get(Call, str(call_id), with_for_update=True, populate_existing=True)
            if row is None:
                raise VoiceIdError(ErrorCode.CONFLICT, f"call {call_id} changed concurrently; retry")
            if not created and row.api_key_id != api_key_id:
                # Only the key that bound a call may re-bind it: another tenant's IVR key must not
                # redirect a caller to a different speaker (or its outcome to another webhook).
                raise VoiceIdError(ErrorCode.FORBIDDEN, f"call {call_id} was bound by another API key")
            if row.status != CallStatus.BOUND:
                raise VoiceIdError(ErrorCode.CONFLICT, f"call {call_id} is {row.status}; it can no longer be re-bound")
            row.speaker_ref = speaker_id
            row.mode = mode
            row.status = CallStatus.BOUND
            row.webhook_url = webhook_url
            row.challenge_id = challenge_id
            row.api_key_id = api_key_id
            row.caller = caller
            row.outcome = None
            row.updated_at = now
            session.flush()
            return CallView.from_row(row), created

    def get(self, call_id: uuid.UUID) -> CallView:
        with self.ctx.db.transaction() as session:
            row = session.get(Call, str(call_id))
            if row is None:
                raise VoiceIdError(ErrorCode.CALL_NOT_FOUND, f"no call {call_id} was bound (PUT /v1/calls/{call_id})")
            return CallView.from_row(row)

    def check_claimable(self, call_id: uuid.UUID) -> None:
        """CALL_NOT_FOUND / CONFLICT as `claim` would raise them, without claiming: the AudioSocket
        server takes a stream slot only for a call that exists."""
        with self.ctx.db.transaction() as session:
            row = session.get(Call, str(call_id))
            if row is None:
                raise VoiceIdError(ErrorCode.CALL_NOT_FOUND, f"no call {call_id} was bound (PUT /v1/calls/{call_id})")
            if row.status != CallStatus.BOUND:
                raise VoiceIdError(ErrorCode.CONFLICT, f"call {call_id} is {row.status}, not BOUND")

    def claim(self, call_id: uuid.UUID) -> CallView:
        """BOUND -> IN_PROGRESS for the connection that carries the call; a UUID serves one call."""
        with self.ctx.db.transaction() as session:
            row = session.get(Call, str(call_id), with_for_update=True)
            if row is None:
                raise VoiceIdError(ErrorCode.CALL_NOT_FOUND, f"no call {call_id} was bound (PUT /v1/calls/{call_id})")
            if row.status != CallStatus.BOUND:
                raise VoiceIdError(ErrorCode.CONFLICT, f"call {call_id} is {row.status}, not BOUND")
            row.status = CallStatus.IN_PROGRESS
            row.updated_at = self.ctx.now()
            return CallView.from_row(row)

    def finish(self, call_id: uuid.UUID, outcome: Event | None) -> CallView:
        with self.ctx.db.transaction() as session:
            row = session.get(Call, str(call_id), with_for_update=True)
            if row is None:
                raise VoiceIdError(ErrorCode.CALL_NOT_FOUND, f"no call {call_id}")
            row.status = status_for(outcome)
            row.outcome = outcome
            row.updated_at = self.ctx.now()
            view = CallView.from_row(row)
            if view.webhook_url:
                # Same transaction as the outcome: the worker delivers it, surviving restarts.
                outbox.enqueue(session, view.call_id, view.webhook_url, view.to_json(), row.updated_at)
            return view
