"""HMAC-SHA256 signatures of webhook bodies, with a timestamp against replay.

The receiver recomputes `HMAC-SHA256(secret, "<timestamp>." + body)` over the raw body, compares
it in constant time with the `v1=` value of `X-Voiceid-Signature`, and rejects a timestamp older
than its tolerance (a replayed request keeps its old timestamp, and changing it breaks the MAC).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_HEADER = "X-Voiceid-Signature"
TIMESTAMP_HEADER = "X-Voiceid-Timestamp"
DELIVERY_HEADER = "X-Voiceid-Delivery"  # the outbox row id: receivers deduplicate retries on it


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: int, body: bytes, signature: str, now: int, tolerance_s: int = 300) -> bool:
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
