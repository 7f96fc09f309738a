"""Throttling of failed authentication per client address, in bounded memory.

A client that fails `limit` times within `window_s` is refused - even with a right key - until
its window ends: guessing keys or review passwords costs `window_s / limit` per try at best.
Addresses are tracked in an LRU of at most `max_clients` entries, so a flood from many addresses
cannot grow memory; IPv6 clients are counted per /64, the block one subscriber usually holds.
The state is per process (each `serve` worker counts on its own), which bounds the rate per
worker; docs/security.md gives the arithmetic.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from voiceid.errors import ErrorCode, VoiceIdError


def client_key(host: str | None) -> str:
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)


class FailureThrottle:
    def __init__(
        self, limit: int, window_s: float, max_clients: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (failures, window start)

    def retry_after(self, host: str | None) -> float | None:
        """Seconds until `host` may try again, or None when it may try now."""
        key = client_key(host)
        now = self._clock()
        with self._lock:
            entry = self._clients.get(key)
            if entry is None:
                return None
            failures, start = entry
            if now - start >= self.window_s:
                del self._clients[key]
                return None
            return (start + self.window_s - now) if failures >= self.limit else None

    def failed(self, host: str | None) -> None:
        key = client_key(host)
        now = self._clock()
        with self._lock:
            failures, start = self._clients.pop(key, (0, now))
            if now - start >= self.window_s:
                failures, start = 0, now
            self._clients[key] = (failures + 1, start)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    def __len__(self) -> int:
        return len(self._clients)


def check_throttle(throttle: FailureThrottle | None, host: str | None) -> None:
    """Refuse a client address that failed too often, before looking at its credentials: the right
    key sent after a burst of wrong ones is refused too, or throttling would not slow guessing.
    Every transport calls this (HTTP, review sign-in, Twilio streams, AudioSocket)."""
    wait = None if throttle is None else throttle.retry_after(host)
    if wait is not None:
        raise VoiceIdError(
            ErrorCode.AUTH_THROTTLED,
            "too many failed authentications from this address; try again later",
            retry_after_s=max(1, math.ceil(wait)),
        )
