"""What clients say about their connections, checked before aiortc sees it: session
descriptions and trickled ICE candidates."""

from __future__ import annotations

from aiortc import RTCIceCandidate, sdp

from parley.server import InvalidArgument
from parley.sfu.v1 import signal_service_pb2 as sig


def check_sdp(text: str, *, field: str) -> sdp.SessionDescription:
    """Refuses a description that does not parse or carries no audio / video section (aiortc
    would accept those, and answer with an empty session). ``field``: where it was sent."""
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as error:
        raise InvalidArgument([(field, str(error))], "the SDP does not parse") from error
    if not any(m.kind in ("audio", "video") for m in description.media):
        raise InvalidArgument([(field, "no audio or video section")], "the SDP has no media")
    return description


def ice_candidate(trickle: sig.IceCandidate) -> RTCIceCandidate | None:
    """The remote candidate a client trickled (None: its end of candidates)."""
    line = trickle.candidate.removeprefix("a=").removeprefix("candidate:")
    if not line:
        return None
    try:
        candidate = sdp.candidate_from_sdp(line)
    except (ValueError, IndexError) as error:
        raise InvalidArgument([("trickle.candidate", str(error))], "not an ICE candidate") from error
    candidate.sdpMid = trickle.sdp_mid or None
    candidate.sdpMLineIndex = trickle.sdp_mline_index
    return candidate


#: Simulcast layers the SFU receives per video track.
MAX_LAYERS = 3


def _sections(text: str) -> list[str]:
    """The session part, then each media section, of an SDP."""
    parts = text.split("\r\nm=")
    return [parts[0], *("m=" + p for p in parts[1:])]


def _attribute(section: str, name: str) -> list[str]:
    prefix = f"a={name}:"
    return [line[len(prefix) :] for line in section.split("\r\n") if line.startswith(prefix)]


def offered_layers(section: str) -> list[str]:
    """The RIDs a media section of an offer sends as simulcast (``a=simulcast:send``), in its
    order, at most ``MAX_LAYERS``; empty when it is not simulcast."""
    sent = [rid.split()[0] for rid in _attribute(section, "rid") if rid.split()[1:2] == ["send"]]
    for value in _attribute(section, "simulcast"):
        words = value.split()
        if len(words) >= 2 and words[0] == "send":
            # "q;h;f", where ',' separates alternatives and '~' marks a paused layer.
            order = [alternatives.split(",")[0].lstrip("~") for alternatives in words[1].split(";")]
            return [rid for rid in order if rid in sent][:MAX_LAYERS]
    return []


def simulcast_layers(offer: str) -> dict[str, list[str]]:
    """The simulcast layers (RIDs) an offer sends, by the mid of their section."""
    layers: dict[str, list[str]] = {}
    for section in _sections(offer)[1:]:
        mids = _attribute(section, "mid")
        if mids and (rids := offered_layers(section)):
            layers[mids[0]] = rids
    return layers


def answer_simulcast(offer: str, answer: str) -> str:
    """The answer, saying that the SFU receives the simulcast layers each video section of the
    offer sends (``a=rid:X recv``, ``a=simulcast:recv X;Y;Z``): aiortc ignores those lines,
    and a browser sends one layer to an answer without them."""
    layers = simulcast_layers(offer)
    if not layers:
        return answer
    sections = _sections(answer)
    for index, section in enumerate(sections[1:], start=1):
        mids = _attribute(section, "mid")
        wanted = layers.get(mids[0]) if mids else None
        if not wanted or "a=inactive" in section.split("\r\n"):
            continue
        body = section.removesuffix("\r\n")
        lines = [f"a=rid:{rid} recv" for rid in wanted] + [f"a=simulcast:recv {';'.join(wanted)}"]
        sections[index] = body + "\r\n" + "\r\n".join(lines) + ("\r\n" if section.endswith("\r\n") else "")
    return "\r\n".join(sections)
