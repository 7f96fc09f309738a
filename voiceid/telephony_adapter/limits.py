"""Bounds shared by both telephony transports: how many calls at once, and how long to wait.

A call holds a socket, a task and up to `stream_max_s` of audio; without a cap, connections that
never start (or never stop) exhaust file descriptors for the whole process, /readyz included.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceid.config import Settings
from voiceid.errors import ErrorCode, VoiceIdError


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
