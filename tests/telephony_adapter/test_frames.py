"""The AudioSocket frame codec: pure functions, no sockets."""

from __future__ import annotations

import uuid

import pytest

from voiceid.telephony_adapter.frames import Frame, FrameError, Kind, encode_frame, parse_frames


def test_round_trip_and_partial_frames():
    call = uuid.uuid4()
    audio = bytes(range(256)) + bytes(64)
    stream = encode_frame(Kind.UUID, call.bytes) + encode_frame(Kind.AUDIO, audio) + encode_frame(Kind.HANGUP)
    assert stream[:3] == b"\x01\x00\x10" and encode_frame(Kind.HANGUP) == b"\x00\x00\x00"
    expected = [Frame(Kind.UUID, call.bytes), Frame(Kind.AUDIO, audio), Frame(Kind.HANGUP)]
    assert parse_frames(stream) == (expected, b"")
    # Frames split anywhere across reads come out the same.
    for cut in range(len(stream) + 1):
        first, rest = parse_frames(stream[:cut])
        second, left = parse_frames(rest + stream[cut:])
        assert first + second == expected and left == b""


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\x42\x00\x00", "unknown frame kind 0x42"),
        (b"\x01\x00\x03abc", "16 bytes"),
        (b"\x10\x00\x03abc", "odd"),
        (b"\x00\x00\x01x", "no payload"),
    ],
)
def test_invalid_frames_are_refused(data, problem):
    with pytest.raises(FrameError, match=problem):
        parse_frames(data)


def test_payload_too_large_for_a_frame():
    with pytest.raises(FrameError):
        encode_frame(Kind.AUDIO, bytes(0x10000))
