"""Bounds shared by both telephony transports: how many calls at once, and how long to wait.

A call holds a socket, a task and up to `stream_max_s` of audio; without a cap, connections that
never start (or never stop) exhaust file descriptors for the whole process, /readyz included.

Two separate counts: a connection is *pre-auth* from its accept until its credential (the Twilio
`start` with its API key, the AudioSocket UUID frame of a bound call) has been checked, and only
then takes a *stream slot*. Pre-auth connections are capped per client address and in all, and
each lasts at most `stream_start_timeout_s`: sockets that never authenticate cannot hold the slots
real calls need (a cap per address alone would not stop many addresses; the total cap does).
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError
from voiceid.security.throttle import client_key


@dataclass(frozen=True)
class StreamTimeouts:
    start_s: float  # connection open -> Twilio `start` / AudioSocket UUID frame
    idle_s: float  # longest gap between two messages of a call
    wall_s: float  # longest a call may stay connected at all

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamTimeouts:
        return cls(settings.stream_start_timeout_s, settings.stream_idle_timeout_s, settings.stream_max_wall_s)


class StreamSlots:
    """A count of the calls in progress in this process (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def acquire(self) -> None:
        if self.active >= self.limit:
            raise VoiceIdError(
                ErrorCode.OVERLOADED,
                f"{self.active} calls are in progress, the most this server takes (VOICEID_MAX_STREAMS); retry later",
                retry_after_s=1,
            )
        self.active += 1

    def release(self) -> None:
        self.active = max(0, self.active - 1)

    @property
    def full(self) -> bool:
        return self.active >= self.limit


class PreAuthGate:
    """Connections not yet authenticated, per client address (IPv6 per /64, as the auth throttle
    counts) and in all (one event loop: no lock needed). Entries leave the map at zero, so its size
    is bounded by `total`."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self.active = 0
        self._by_address: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PreAuthGate:
        return cls(settings.preauth_per_address, settings.max_preauth_connections)

    def enter(self, host: str | None) -> None:
        key = client_key(host)
        held = self._by_address.get(key, 0)
        if held >= self.per_address:
            raise VoiceIdError(
                ErrorCode.OVERLOADED,
                f"{held} connections from this address are waiting to authenticate (VOICEID_PREAUTH_PER_ADDRESS)",
                retry_after_s=1,
            )
        if self.active >= self.total:
            raise VoiceIdError(
                ErrorCode.OVERLOADED,
                f"{self.active} connections are waiting to authenticate (VOICEID_MAX_PREAUTH_CONNECTIONS)",
                retry_after_s=1,
            )
        self._by_address[key] = held + 1
        self.active += 1

    def leave(self, host: str | None) -> None:
        key = client_key(host)
        held = self._by_address.get(key, 0)
        if held <= 0:
            return
        if held == 1:
            del self._by_address[key]
        else:
            self._by_address[key] = held - 1
        self.active -= 1

    @property
    def full(self) -> bool:
        return self.active >= self.total
