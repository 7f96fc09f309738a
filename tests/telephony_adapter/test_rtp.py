"""RTP parsing and the jitter buffer: audio is placed by RTP timestamp, never by arrival."""

from __future__ import annotations

import random

import pytest

from voiceid.telephony_adapter.rtp import JitterBuffer, RtpError, build_rtp, parse_rtp
from voiceid.telephony_adapter.sip import RtpReceiver
from voiceid.telephony_adapter.siprec import Direction, MediaStream

SILENCE = b"\xff"
PACKET = 160


def audio(n_packets: int) -> bytes:
    rng = random.Random(7)
    return bytes(rng.randrange(0, 0x7F) for _ in range(n_packets * PACKET))  # never the silence byte


def packets(data: bytes, ts0: int = 1000) -> list[tuple[int, bytes]]:
    return [((ts0 + i) % 2**32, data[i : i + PACKET]) for i in range(0, len(data), PACKET)]


def play(buffer: JitterBuffer, items: list[tuple[int, bytes]]) -> bytes:
    out = b"".join(buffer.push(ts, payload) for ts, payload in items)
    return out + buffer.flush()


def test_parse_rtp_header_csrc_extension_and_padding():
    packet = parse_rtp(build_rtp(8, 65535, 2**32 - 1, 0xDEADBEEF, b"abc", marker=True))
    assert (packet.payload_type, packet.marker, packet.sequence, packet.timestamp, packet.ssrc, packet.payload) == (
        8,
        True,
        65535,
        2**32 - 1,
        0xDEADBEEF,
        b"abc",
    )
    # 2 CSRCs, a one-word header extension and 3 bytes of padding around a 2-byte payload
    header = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0]) + (1).to_bytes(2, "big") + (5).to_bytes(4, "big") + (9).to_bytes(4, "big")
    )
    raw = header + b"\x00" * 8 + b"\xbe\xde\x00\x01" + b"\x00" * 4 + b"hi" + b"\x00\x00\x03"
    assert parse_rtp(raw).payload == b"hi"
    for bad in (b"", b"\x80" * 11, bytes([0x40]) + b"\x00" * 11, bytes([0x90]) + b"\x00" * 11 + b"\x00\x00"):
        with pytest.raises(RtpError):
            parse_rtp(bad)


def test_in_order_stream_comes_out_byte_for_byte():
    data = audio(50)
    assert play(JitterBuffer(480, 16000, SILENCE), packets(data)) == data


def test_reordering_within_the_depth_is_undone():
    data = audio(50)
    items = packets(data)
    shuffled = items[:]
    for i in range(0, len(items) - 2, 3):  # swap neighbours: every packet at most 40 ms out of place
        shuffled[i], shuffled[i + 2] = shuffled[i + 2], shuffled[i]
    buffer = JitterBuffer(480, 16000, SILENCE)
    assert play(buffer, shuffled) == data
    assert buffer.stats.late == 0 and buffer.stats.concealed_samples == 0


def test_loss_is_silence_of_the_lost_length_and_duplicates_are_dropped():
    data = audio(20)
    items = packets(data)
    lost = {5, 6, 12}
    kept = [item for i, item in enumerate(items) if i not in lost] + [items[3]]  # plus a late duplicate
    buffer = JitterBuffer(480, 16000, SILENCE)
    out = play(buffer, kept)
    expected = b"".join(SILENCE * PACKET if i in lost else items[i][1] for i in range(20))
    assert out == expected
    assert buffer.stats.concealed_samples == 3 * PACKET and buffer.stats.late == 1


def test_timestamp_wraparound_and_a_jump_rebases_instead_of_minutes_of_silence():
    data = audio(10)
    buffer = JitterBuffer(480, 16000, SILENCE)
    assert play(buffer, packets(data, ts0=2**32 - 3 * PACKET)) == data  # wraps mid-stream
    buffer = JitterBuffer(480, 16000, SILENCE)
    first, second = packets(data[: 5 * PACKET]), packets(data[5 * PACKET :], ts0=1000 + 8000 * 600)
    assert play(buffer, first + second) == data  # ten minutes later on the timestamp clock
    assert buffer.stats.rebased == 1


def _receiver(payload_type: int = 0) -> RtpReceiver:
    stream = MediaStream(0, "1", "127.0.0.1", 4000, payload_type, 101, Direction.SENDONLY, ("0", "101"))
    receiver = RtpReceiver(stream, frozenset({"127.0.0.1"}), JitterBuffer(0, 16000, SILENCE))
    got: list[bytes] = []
    receiver.deliver = got.append
    receiver.got = got  # type: ignore[attr-defined]
    return receiver


def test_receiver_ignores_other_sources_ssrcs_comfort_noise_and_dtmf():
    receiver = _receiver()
    data = audio(4)
    src = ("127.0.0.1", 40000)
    receiver.datagram_received(build_rtp(0, 1, 0, 11, data[:160]), src)
    receiver.datagram_received(build_rtp(0, 2, 160, 11, b"\x01" * 160), ("127.0.0.2", 40000))  # other host
    receiver.datagram_received(build_rtp(0, 2, 160, 11, b"\x01" * 160), ("127.0.0.1", 40002))  # other port
    receiver.datagram_received(build_rtp(0, 2, 160, 12, b"\x01" * 160), src)  # other SSRC
    receiver.datagram_received(build_rtp(13, 2, 160, 11, b"\x40"), src)  # comfort noise
    receiver.datagram_received(build_rtp(101, 2, 160, 11, b"\x05\x0a\x00\xa0"), src)  # DTMF 5
    receiver.datagram_received(b"not rtp", src)
    receiver.datagram_received(build_rtp(0, 3, 160, 11, data[160:320]), src)
    assert b"".join(receiver.got) == data[:320]  # type: ignore[attr-defined]
    assert receiver.ignored == 4  # CN and DTMF are valid packets of the stream, just not audio
