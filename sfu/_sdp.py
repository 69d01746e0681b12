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
