"""RTP (RFC 3550) for G.711 audio, as pure functions and a jitter buffer (no sockets here).

The SIP stack (sippy) carries signalling only; the media is RTP over UDP. Parsing an RTP header is
twelve fixed bytes plus the CSRC list and an optional extension, so it is done here rather than by
pulling in a media engine. The jitter buffer places each packet's payload by its RTP *timestamp*,
never by its arrival time: reordered packets land where they belong, a lost packet becomes line
silence of exactly its length, a duplicate or a packet later than the buffer's depth is dropped,
and a jump larger than `max_gap` (an SBC restarting the stream, a long hold) is re-based instead of
being filled with minutes of silence.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

HEADER = struct.Struct("!BBHII")
TIMESTAMP_MOD = 1 << 32
RTP_VERSION = 2


class StaticPayload(IntEnum):
    """The static payload types (RFC 3551) this receiver knows by number."""

    PCMU = 0
    PCMA = 8
    CN = 13  # comfort noise (RFC 3389): the sender's silence, nothing to score


# G.711 silence: the code words for 0 (μ-law 0xFF, A-law 0xD5), one byte a sample at 8 kHz.
SILENCE_BYTE = {StaticPayload.PCMU: b"\xff", StaticPayload.PCMA: b"\xd5"}


class RtpError(ValueError):
    """The datagram is not an RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < HEADER.size:
        raise RtpError(f"{len(data)} bytes is shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, not 2")
    offset = HEADER.size + 4 * (first & 0x0F)  # CSRC list
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            raise RtpError("truncated RTP header extension")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:  # padding: the last byte counts the padding bytes
        if end == 0 or data[-1] == 0 or data[-1] > end - offset:
            raise RtpError("invalid RTP padding")
        end -= data[-1]
    if offset > end:
        raise RtpError("RTP header longer than the packet")
    return RtpPacket(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, bytes(data[offset:end]))


def build_rtp(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """One RTP packet (used by the simulator and the tests' senders)."""
    second = (0x80 if marker else 0) | (payload_type & 0x7F)
    header = HEADER.pack(0x80, second, sequence & 0xFFFF, timestamp % TIMESTAMP_MOD, ssrc & 0xFFFFFFFF)
    return header + payload


@dataclass
class JitterStats:
    packets: int = 0  # audio packets accepted into the buffer
    late: int = 0  # arrived after their place was played out (or duplicates)
    concealed_samples: int = 0  # gaps (lost packets) filled with silence
    rebased: int = 0  # timestamp jumps beyond max_gap


@dataclass
class JitterBuffer:
    """Orders one stream's G.711 payloads (one byte a sample) by RTP timestamp.

    `push` returns the audio that is now final: everything older than the newest timestamp minus
    `depth` samples. Timestamps are read modulo 2^32 relative to the stream's first packet, so a
    sender whose timestamp counter wraps around mid-call is handled.
    """

    depth: int  # samples held back to wait for reordered packets
    max_gap: int  # a jump forward larger than this (samples) re-bases instead of filling silence
    silence: bytes  # one sample of line silence in the stream's codec
    stats: JitterStats = field(default_factory=JitterStats)
    _base: int | None = None  # timestamp of relative offset 0
    # Relative offset of the next sample to release; None until the first release, so packets
    # that arrive before the first one sent (reordered at the very start) still find their place.
    _played: int | None = None
    _newest_end: int = 0
    _packets: dict[int, bytes] = field(default_factory=dict)

    def push(self, timestamp: int, payload: bytes) -> bytes:
        if not payload:
            return b""
        if self._base is None:
            self._base = timestamp
        offset = (timestamp - self._base) % TIMESTAMP_MOD
        if offset >= TIMESTAMP_MOD // 2:
            offset -= TIMESTAMP_MOD  # a little before the first packet (reordered at the start)
        released = b""
        if offset - max(self._newest_end, self._played or 0) > self.max_gap:
            # A discontinuity, not a loss: play out what is held, continue right after it.
            released = self.flush()
            offset = self._played if self._played is not None else self._newest_end
            self._base = (timestamp - offset) % TIMESTAMP_MOD
            self.stats.rebased += 1
        if (self._played is not None and offset < self._played) or offset in self._packets:
            self.stats.late += 1
            return released
        self._packets[offset] = payload
        self.stats.packets += 1
        self._newest_end = max(self._newest_end, offset + len(payload))
        return released + self._release(self._newest_end - self.depth)

    def flush(self) -> bytes:
        """The end of the stream: everything held, gaps between packets filled with silence."""
        return self._release(self._newest_end)

    def _release(self, target: int) -> bytes:
        out = bytearray()
        if self._played is None:
            if not self._packets or min(self._packets) >= target:
                return b""
            self._played = min(self._packets)
        for offset in sorted(o for o in self._packets if o < target):
            payload = self._packets.pop(offset)
            if offset > self._played:
                gap = offset - self._played
                out += self.silence * gap
                self.stats.concealed_samples += gap
                self._played = offset
            skip = self._played - offset  # overlap with audio already played (a misaligned sender)
            if skip < len(payload):
                out += payload[skip:]
                self._played = offset + len(payload)
        if self._played < target:
            gap = target - self._played
            out += self.silence * gap
            self.stats.concealed_samples += gap
            self._played = target
        return bytes(out)
