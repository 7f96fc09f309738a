"""SIPREC offers and metadata (RFC 7866/7865), parsed without sockets: the caller's stream is
found, hostile XML is refused with a 4xx, and both the RFC and the older vendor shapes are read."""

from __future__ import annotations

import uuid

import pytest
from sippy.SipRequest import SipRequest

from voiceid.telephony_adapter.siprec import (
    OfferError,
    OfferLimits,
    SipStatus,
    call_uuid,
    parse_metadata,
    parse_offer,
)

LIMITS = OfferLimits(max_body_bytes=32768, max_metadata_bytes=16384, max_xml_depth=16, max_streams=4)
CALL = uuid.UUID("5b3f7a4e-2f0c-4c53-9c1e-0a6f5d3e2b11")

RFC_METADATA = f"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="S1"><sipSessionID>{CALL}</sipSessionID></session>
  <participant participant_id="P-agent"><nameID aor="sip:agent1001@cc.example.com"/></participant>
  <participant participant_id="P-caller"><nameID aor="sip:+441632960001@pstn.example.com"/></participant>
  <stream stream_id="ST-a" session_id="S1"><label>10</label></stream>
  <stream stream_id="ST-c" session_id="S1"><label>20</label></stream>
  <participantstreamassoc participant_id="P-agent"><send>ST-a</send><recv>ST-c</recv></participantstreamassoc>
  <participantstreamassoc participant_id="P-caller"><send>ST-c</send><recv>ST-a</recv></participantstreamassoc>
</recording>"""

# The pre-RFC draft shape (Oracle/Acme Packet, older CUBE): ids in `id`, `send` inside the participant,
# the recorded Call-ID in vendor extension data.
DRAFT_METADATA = f"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording" xmlns:apkt="http://acmepacket.com/siprec/extensiondata">
  <datamode>complete</datamode>
  <session id="s1"><extensiondata><apkt:ucid>00FA08</apkt:ucid><apkt:callid>{CALL}@10.0.0.1</apkt:callid>
  </extensiondata></session>
  <participant id="p1" session="s1"><nameID aor="sip:+441632960001@10.0.0.1"/>
    <send>st1</send><recv>st2</recv></participant>
  <participant id="p2" session="s1"><nameID aor="sip:4001@10.0.0.2"/><send>st2</send><recv>st1</recv></participant>
  <stream id="st1" session="s1"><label>1</label></stream>
  <stream id="st2" session="s1"><label>2</label></stream>
</recording>"""


def sdp(labels: tuple[str, ...], codecs: str = "0 101") -> str:
    lines = ["v=0", "o=SRC 1 1 IN IP4 10.0.0.9", "s=-", "c=IN IP4 10.0.0.9", "t=0 0"]
    for i, label in enumerate(labels):
        lines += [f"m=audio {4000 + 2 * i} RTP/AVP {codecs}", "a=rtpmap:101 telephone-event/8000"]
        lines += [f"a=label:{label}", "a=sendonly"]
    return "\r\n".join(lines) + "\r\n"


def invite(body: str, content_type: str = "multipart/mixed;boundary=xyz") -> SipRequest:
    head = (
        "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
        "From: <sip:src@127.0.0.1>;tag=1\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n"
        "Require: siprec\r\nMax-Forwards: 70\r\n"
    )
    data = body.encode()
    return SipRequest(head + f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n" + body)


def multipart(sdp_text: str, metadata: str) -> str:
    return (
        "--xyz\r\nContent-Type: application/sdp\r\n\r\n" + sdp_text + "--xyz\r\n"
        "Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n"
        + metadata
        + "\r\n--xyz--\r\n"
    )


@pytest.mark.parametrize(
    "metadata, labels, caller", [(RFC_METADATA, ("10", "20"), "20"), (DRAFT_METADATA, ("1", "2"), "1")]
)
def test_the_callers_stream_and_the_recorded_call_are_found(metadata, labels, caller):
    offer = parse_offer(invite(multipart(sdp(labels), metadata)).getBody(), LIMITS, siprec=True)
    assert [s.label for s in offer.streams] == list(labels)
    assert all(s.payload_type == 0 and s.telephone_event == 101 and s.address == "10.0.0.9" for s in offer.streams)
    assert offer.metadata is not None
    assert call_uuid(offer.metadata.recorded_call_id) == CALL
    # The participant named by number wins; without one, the first participant listed.
    assert offer.metadata.caller_label("+441632960001") == caller
    first = offer.metadata.participants[0]
    assert offer.metadata.caller_label(None) == offer.metadata.stream_labels[first.sends[0]]


def hostile(metadata: str) -> OfferError:
    with pytest.raises(OfferError) as caught:
        parse_metadata(metadata, LIMITS)
    return caught.value


def test_hostile_and_broken_metadata_gets_a_4xx():
    xxe = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><recording>&x;</recording>'
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><recording>&c;</recording>'
    )
    for text in (
        xxe,
        laughs,
        '<!DOCTYPE r SYSTEM "http://x/r.dtd"><recording/>',
        "<recording>",
        "<a/>",
        "<recording/>",
    ):
        assert hostile(text).status == SipStatus.BAD_REQUEST, text
    assert hostile("<recording>" + "<a>" * 100 + "</a>" * 100 + "</recording>").status == SipStatus.BAD_REQUEST
    assert hostile("<recording>" + " " * 20000 + "</recording>").status == SipStatus.REQUEST_ENTITY_TOO_LARGE


def test_offers_that_cannot_be_taken():
    def status(request: SipRequest, siprec: bool = True) -> SipStatus:
        with pytest.raises(OfferError) as caught:
            parse_offer(request.getBody(), LIMITS, siprec)
        return caught.value.status

    assert status(invite("hello", "text/plain")) == SipStatus.UNSUPPORTED_MEDIA_TYPE
    assert status(invite(sdp(("1",)), "application/sdp")) == SipStatus.BAD_REQUEST  # SIPREC without metadata
    assert status(invite(sdp(("1",) * 5), "application/sdp"), siprec=False) == SipStatus.NOT_ACCEPTABLE_HERE
    assert status(invite(multipart(sdp(("1",)), RFC_METADATA))) == SipStatus.BAD_REQUEST  # labels 10/20 absent
    assert status(invite("--nope\r\n\r\n", "multipart/mixed;boundary=xyz")) == SipStatus.BAD_REQUEST
    g729 = parse_offer(invite(sdp(("1",), codecs="18"), "application/sdp").getBody(), LIMITS, siprec=False)
    assert g729.streams[0].payload_type is None  # nothing decodable: the server answers 488
    pcma = parse_offer(invite(sdp(("1",), codecs="18 8"), "application/sdp").getBody(), LIMITS, siprec=False)
    assert pcma.streams[0].payload_type == 8


def test_call_uuid_reads_a_uuid_or_the_user_part_of_a_call_id():
    assert call_uuid(str(CALL)) == CALL
    assert call_uuid(f"{CALL}@sbc.example.com") == CALL
    assert call_uuid("1-2345@127.0.0.1") is None and call_uuid(None) is None
