"""The durable webhook outbox: enqueued in the transaction that stores a call's outcome (so an
outcome is never stored without its webhook, nor a webhook sent for an outcome rolled back), and
delivered by the worker's `webhook-outbox` job with retries and exponential backoff.

Delivery is at least once: a receiver may see a retry of a POST it already accepted (a crash
between its answer and our commit) and deduplicates on `X-Voiceid-Delivery`. Several workers may
run the job at once: rows are claimed with `SELECT ... FOR UPDATE SKIP LOCKED` and leased (their
next attempt moved `webhook_lease_s` ahead) before the POST, outside any transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceid.errors import VoiceIdError
from voiceid.services.context import AppContext
from voiceid.statuses import DeliveryStatus
from voiceid.storage.models import WebhookDelivery
from voiceid.storage.repositories import new_id
from voiceid.webhooks import signing
from voiceid.webhooks.targets import Resolver, WebhookPolicy, check_target, resolve

log = logging.getLogger(__name__)


def enqueue(session: Session, call_id: str, url: str, payload: dict[str, Any], now: datetime) -> WebhookDelivery:
    row = WebhookDelivery(
        id=new_id(),
        call_id=call_id,
        url=url,
        payload=payload,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def backoff_s(attempts: int, first_s: float, max_s: float) -> float:
    """Delay before the next try after `attempts` failed ones: first_s, 2 first_s, 4 first_s, ..."""
    return float(min(max_s, first_s * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class Claimed:
    id: str
    url: str
    payload: dict[str, Any]
    attempts: int  # including this one


@dataclass(frozen=True)
class PinnedRequest:
    """A POST aimed at the address the target check approved, not at whatever the name resolves to
    a moment later (DNS rebinding): the URL carries the IP, while the Host header and the TLS server
    name (SNI and certificate check) keep the original host."""

    url: str
    host: str
    headers: dict[str, str]


def pin(url: str, address: str) -> PinnedRequest:
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return PinnedRequest(urlunsplit(parts._replace(netloc=netloc)), host, {"Host": host_header})


Poster = Callable[[PinnedRequest, bytes, dict[str, str], float], int]


def http_post(request: PinnedRequest, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    # No redirects: a 3xx could point the request at an address the target check refused.
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        response = client.post(
            request.url,
            content=body,
            headers={**headers, **request.headers},
            extensions={"sni_hostname": request.host},
        )
        return response.status_code


def _claim(ctx: AppContext, now: datetime) -> list[Claimed]:
    settings = ctx.settings
    with ctx.db.transaction() as session:
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(settings.webhook_batch)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = []
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + timedelta(seconds=settings.webhook_lease_s)
            claimed.append(Claimed(row.id, row.url, dict(row.payload), row.attempts))
        return claimed


def _attempt(ctx: AppContext, item: Claimed, post: Poster, resolver: Resolver) -> tuple[bool, str | None, bool]:
    """(delivered, error, permanent)."""
    settings = ctx.settings
    try:
        addresses = check_target(item.url, WebhookPolicy.from_settings(settings), resolver)
    except VoiceIdError as exc:
        # The allow-list changed, or the name now resolves inward (DNS rebinding): never retried.
        return False, exc.message, True
    secret = b"" if settings.webhook_secret is None else settings.webhook_secret.get_secret_value().encode()
    body = signing.body_bytes(item.payload)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        signing.TIMESTAMP_HEADER: str(timestamp),
        signing.SIGNATURE_HEADER: signing.sign(secret, timestamp, body),
        signing.DELIVERY_HEADER: item.id,
        "User-Agent": "voiceid-webhooks/1",
    }
    try:
        status = post(pin(item.url, addresses[0]), body, headers, settings.webhook_timeout_s)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"[:500], False
    if 200 <= status < 300:
        return True, None, False
    return False, f"HTTP {status}", False


def deliver_due(ctx: AppContext, post: Poster = http_post, resolver: Resolver = resolve) -> int:
    """One tick of the `webhook-outbox` job: deliver what is due; the number of rows handled."""
    settings = ctx.settings
    claimed = _claim(ctx, ctx.clock())
    for item in claimed:
        delivered, error, permanent = _attempt(ctx, item, post, resolver)
        now = ctx.clock()
        with ctx.db.transaction() as session:
            row = session.get(WebhookDelivery, item.id, with_for_update=True)
            if row is None:
                continue
            if delivered:
                row.status, row.delivered_at, row.last_error = DeliveryStatus.DELIVERED, now, None
                continue
            row.last_error = error
            if permanent or item.attempts >= settings.webhook_max_attempts:
                row.status = DeliveryStatus.FAILED
                log.warning("webhook %s for call %s failed for good: %s", item.id, row.call_id, error)
            else:
                delay = backoff_s(item.attempts, settings.webhook_backoff_s, settings.webhook_backoff_max_s)
                row.next_attempt_at = now + timedelta(seconds=delay)
    return len(claimed)
