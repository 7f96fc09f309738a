"""What an INVITE offers: its SDP audio streams and, for SIPREC (RFC 7866), the recording metadata
(RFC 7865) naming the participants and the stream each one sends. Pure functions over text.

SIP message, SDP and multipart/mixed parsing are sippy's (the SIP stack this adapter is built on);
the metadata XML is read with defusedxml (no DTDs, no entities, no external references) after a
size check, and its nesting depth is bounded before anything is walked. Anything that does not
parse is an `OfferError` with the SIP status to answer: the INVITE is refused and nothing is kept.

Metadata fields read (both the RFC 7865 shape and the older draft shape that Cisco CUBE and Oracle
SBCs still send):
- participants: `participant/@participant_id` (draft: `@id`), the first `nameID/@aor` inside it;
- which stream a participant sends: `participantstreamassoc[@participant_id]/send` (draft: `send`
  directly inside the participant), a `stream/@stream_id` (draft: `@id`) whose `label` is the SDP
  `a=label` of its media line;
- the recorded call: `session/sipSessionID`, else the first `callid` element (any namespace, e.g.
  Oracle's `apkt:callid`, Cisco's `ccsipx:callid`) anywhere under `session`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from sippy.MsgBody import MsgBody
from sippy.SdpBody import SdpBody

from voiceid.telephony_adapter.rtp import StaticPayload

SDP_TYPE = "application/sdp"
METADATA_TYPE = "application/rs-metadata+xml"
MULTIPART_TYPE = "multipart/mixed"


class SipStatus(IntEnum):
    """The SIP responses this server sends (RFC 3261 and RFC 7866)."""

    TRYING = 100
    OK = 200
    BAD_REQUEST = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    REQUEST_ENTITY_TOO_LARGE = 413
    UNSUPPORTED_MEDIA_TYPE = 415
    BAD_EXTENSION = 420
    TEMPORARILY_UNAVAILABLE = 480
    CALL_DOES_NOT_EXIST = 481
    BUSY_HERE = 486
    REQUEST_TERMINATED = 487
    NOT_ACCEPTABLE_HERE = 488
    SERVER_INTERNAL_ERROR = 500
    SERVICE_UNAVAILABLE = 503


class Direction(StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


class OfferError(ValueError):
    def __init__(self, status: SipStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class MediaStream:
    index: int  # position of the m= line (the answer keeps the order)
    label: str | None  # a=label (RFC 4574), how SIPREC metadata names the stream
    address: str  # c= connection address the RTP comes from
    port: int
    payload_type: int | None  # the G.711 codec chosen from the offer; None: nothing we can decode
    telephone_event: int | None  # RFC 4733 DTMF payload type, ignored on receipt
    direction: Direction
    formats: tuple[str, ...]  # the m= line's formats as offered (echoed in a rejection)

    @property
    def on_hold(self) -> bool:
        return (
            self.direction in {Direction.INACTIVE, Direction.RECVONLY}
            or self.port == 0
            or self.address
            in {
                "0.0.0.0",
                "::",
            }
        )


@dataclass(frozen=True)
class Participant:
    participant_id: str
    aor: str | None
    sends: tuple[str, ...]  # stream ids


@dataclass(frozen=True)
class RecordingMetadata:
    participants: tuple[Participant, ...]
    stream_labels: dict[str, str]  # stream id -> SDP label
    recorded_call_id: str | None

    def caller_label(self, caller_aor: str | None) -> str | None:
        """The SDP label of the caller's stream: the participant whose aor contains `caller_aor`
        (e.g. the phone number), else the first participant the metadata lists that sends audio."""
        senders = [p for p in self.participants if any(s in self.stream_labels for s in p.sends)]
        if caller_aor:
            wanted = caller_aor.strip().lower()
            senders = [p for p in senders if p.aor and wanted in p.aor.lower()]
        for participant in senders:
            for stream_id in participant.sends:
                if stream_id in self.stream_labels:
                    return self.stream_labels[stream_id]
        return None


@dataclass(frozen=True)
class Offer:
    streams: tuple[MediaStream, ...]
    metadata: RecordingMetadata | None
    session_address: str


@dataclass(frozen=True)
class OfferLimits:
    max_body_bytes: int
    max_metadata_bytes: int
    max_xml_depth: int
    max_streams: int


def parse_offer(body: MsgBody | None, limits: OfferLimits, siprec: bool) -> Offer:
    """The offer of an INVITE (or re-INVITE/UPDATE) body as sippy parsed its message."""
    if body is None:
        raise OfferError(SipStatus.BAD_REQUEST, "an INVITE without an SDP offer is not supported")
    sdp_text: str | None = None
    metadata_text: str | None = None
    mtype = body.getType()
    if mtype == SDP_TYPE:
        sdp_text = str(body.content)
    elif mtype == MULTIPART_TYPE:
        try:
            body.parse()
            parts = body.content.parts
        except Exception as exc:  # sippy signals a malformed multipart with assertions and ValueErrors
            raise OfferError(SipStatus.BAD_REQUEST, f"malformed multipart body: {exc!r}") from None
        for part in parts:
            ptype = part.getType()
            if ptype == SDP_TYPE and sdp_text is None:
                sdp_text = str(part.content)
            elif ptype == METADATA_TYPE and metadata_text is None:
                metadata_text = str(part.content)
    else:
        raise OfferError(SipStatus.UNSUPPORTED_MEDIA_TYPE, f"body type {mtype} (expected SDP or multipart/mixed)")
    if sdp_text is None:
        raise OfferError(SipStatus.BAD_REQUEST, "no application/sdp part in the body")
    streams, session_address = parse_sdp(sdp_text, limits.max_streams)
    metadata = None
    if siprec:
        if metadata_text is None:
            raise OfferError(SipStatus.BAD_REQUEST, "a SIPREC INVITE needs an application/rs-metadata+xml part")
        metadata = parse_metadata(metadata_text, limits)
        labels = {s.label for s in streams}
        if not any(label in labels for label in metadata.stream_labels.values()):
            raise OfferError(SipStatus.BAD_REQUEST, "no metadata stream label matches an SDP a=label")
    return Offer(streams, metadata, session_address)


def parse_sdp(text: str, max_streams: int) -> tuple[tuple[MediaStream, ...], str]:
    try:
        sdp = SdpBody(text)
        session_c = getattr(sdp, "c_header", None)
        streams = [_stream(i, section) for i, section in enumerate(sdp.sections)]
    except OfferError:
        raise
    except Exception as exc:  # sippy raises SdpParseError, ValueError, IndexError, AttributeError
        raise OfferError(SipStatus.BAD_REQUEST, f"malformed SDP: {exc!r}") from None
    if not streams:
        raise OfferError(SipStatus.NOT_ACCEPTABLE_HERE, "the SDP offers no media stream")
    if len(streams) > max_streams:
        raise OfferError(
            SipStatus.NOT_ACCEPTABLE_HERE, f"{len(streams)} media streams offered, at most {max_streams} are taken"
        )
    address = session_c.addr if session_c is not None else streams[0].address
    return tuple(streams), str(address)


def _stream(index: int, section: object) -> MediaStream:
    m = section.m_header  # type: ignore[attr-defined]
    c = section.c_header  # type: ignore[attr-defined]
    attributes: list[tuple[str, str | None]] = [(a.name, a.value) for a in section.a_headers]  # type: ignore[attr-defined]
    if not 0 <= int(m.port) <= 65535:
        raise OfferError(SipStatus.BAD_REQUEST, f"media port {m.port} out of range")
    formats = tuple(str(f) for f in m.formats)
    rtpmap: dict[int, str] = {}
    for name, value in attributes:
        if name == "rtpmap" and value:
            number, _, name_rate = value.partition(" ")
            if number.isdigit():
                rtpmap[int(number)] = name_rate.split("/")[0].upper()
    chosen: int | None = None
    telephone_event: int | None = None
    if m.stype == "audio" and m.transport.upper() == "RTP/AVP":
        for fmt in formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            codec = rtpmap.get(pt, {0: "PCMU", 8: "PCMA"}.get(pt, ""))
            if codec == "TELEPHONE-EVENT":
                telephone_event = pt
            elif chosen is None and codec in {"PCMU", "PCMA"}:
                chosen = int(StaticPayload.PCMU if codec == "PCMU" else StaticPayload.PCMA)
    direction = Direction.SENDRECV
    label = None
    for name, value in attributes:
        if name in {d.value for d in Direction} and value is None:
            direction = Direction(name)
        elif name == "label" and value:
            label = value.strip()
    return MediaStream(index, label, str(c.addr), int(m.port), chosen, telephone_event, direction, formats)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _depth(element: Element, limit: int) -> int:
    deepest = 1
    stack = [(element, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        stack.extend((child, depth + 1) for child in node)
    return deepest


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def parse_metadata(text: str, limits: OfferLimits) -> RecordingMetadata:
    if len(text.encode("utf-8")) > limits.max_metadata_bytes:
        raise OfferError(
            SipStatus.REQUEST_ENTITY_TOO_LARGE, f"recording metadata over {limits.max_metadata_bytes} bytes"
        )
    try:
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise OfferError(SipStatus.BAD_REQUEST, f"malformed recording metadata: {exc!r}") from None
    if _local(root.tag) != "recording":
        raise OfferError(SipStatus.BAD_REQUEST, f"metadata root is <{_local(root.tag)}>, not <recording>")
    if _depth(root, limits.max_xml_depth) > limits.max_xml_depth:
        raise OfferError(SipStatus.BAD_REQUEST, f"metadata nested deeper than {limits.max_xml_depth} levels")

    labels: dict[str, str] = {}
    for stream in _children(root, "stream"):
        stream_id = stream.get("stream_id") or stream.get("id")
        label = _text(next(iter(_children(stream, "label")), None))
        if stream_id and label:
            labels[stream_id] = label
    sends: dict[str, list[str]] = {}
    for assoc in _children(root, "participantstreamassoc"):
        pid = assoc.get("participant_id") or assoc.get("id")
        if pid:
            sends.setdefault(pid, []).extend(t for s in _children(assoc, "send") if (t := _text(s)))
    participants: list[Participant] = []
    for element in _children(root, "participant"):
        pid = element.get("participant_id") or element.get("id")
        if not pid:
            raise OfferError(SipStatus.BAD_REQUEST, "a metadata participant without an id")
        aor = next((n.get("aor") for n in element.iter() if _local(n.tag) == "nameid" and n.get("aor")), None)
        own = [t for s in _children(element, "send") if (t := _text(s))]  # draft shape
        participants.append(Participant(pid, aor, tuple(own + sends.get(pid, []))))
    if not participants:
        raise OfferError(SipStatus.BAD_REQUEST, "the recording metadata lists no participant")
    recorded: str | None = None
    for session in _children(root, "session"):
        recorded = _text(next(iter(_children(session, "sipsessionid")), None))
        if recorded is None:
            recorded = next((t for n in session.iter() if _local(n.tag) == "callid" and (t := _text(n))), None)
        if recorded:
            break
    return RecordingMetadata(tuple(participants), labels, recorded)


def call_uuid(value: str | None) -> uuid.UUID | None:
    """A binding id from a header or metadata value: a UUID, possibly as the user part of a
    Call-ID (`<uuid>@host`)."""
    if not value:
        return None
    for candidate in (value.strip(), value.strip().split("@", 1)[0]):
        try:
            return uuid.UUID(candidate)
        except ValueError:
            continue
    return None
