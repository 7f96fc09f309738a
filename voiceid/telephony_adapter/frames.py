"""The Asterisk AudioSocket frame format, as pure functions (shared by the server and the simulator).

A frame is 1 byte kind, 2 bytes big-endian payload length, then the payload. Kinds: 0x00 hang-up
(empty), 0x01 the call UUID (16 bytes, first frame of a call), 0x03 a DTMF digit, 0x10 audio
(signed 16-bit little-endian PCM, 8 kHz mono), 0xff error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct(">BH")
MAX_PAYLOAD = 0xFFFF


class Kind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


@dataclass(frozen=True)
class Frame:
    kind: Kind
    payload: bytes = b""


class FrameError(ValueError):
    """The byte stream is not AudioSocket: unknown kind, or a payload of the wrong size."""


def encode_frame(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes does not fit a frame (max {MAX_PAYLOAD})")
    return HEADER.pack(kind, len(payload)) + payload


def check_frame(kind_byte: int, payload: bytes) -> Frame:
    try:
        kind = Kind(kind_byte)
    except ValueError:
        raise FrameError(f"unknown frame kind 0x{kind_byte:02x}") from None
    if kind is Kind.UUID and len(payload) != 16:
        raise FrameError(f"a UUID frame carries 16 bytes, not {len(payload)}")
    if kind is Kind.AUDIO and len(payload) % 2:
        raise FrameError("an audio frame carries whole 16-bit samples; got an odd byte count")
    if kind is Kind.HANGUP and payload:
        raise FrameError("a hang-up frame carries no payload")
    return Frame(kind, payload)


def parse_frames(buffer: bytes) -> tuple[list[Frame], bytes]:
    """The complete frames at the start of `buffer` and the bytes left over (a partial frame).

    Raises FrameError on the first invalid frame: after that the stream cannot be resynchronised."""
    frames: list[Frame] = []
    offset = 0
    while len(buffer) - offset >= HEADER.size:
        kind_byte, length = HEADER.unpack_from(buffer, offset)
        end = offset + HEADER.size + length
        if end > len(buffer):
            break
        frames.append(check_frame(kind_byte, bytes(buffer[offset + HEADER.size : end])))
        offset = end
    return frames, bytes(buffer[offset:])
