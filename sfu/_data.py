"""What participants tell each other besides media: data messages (chat, reactions, an
agent's output) and their own metadata (name, metadata, attributes such as a raised hand)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.server import PermissionDenied, ResourceExhausted
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig

if TYPE_CHECKING:
    from ._room import Room
    from ._session import Session

#: Attributes one participant may carry.
MAX_ATTRIBUTES = 32


def send_data(session: Session, packet: res.DataPacket) -> None:
    """A data message from a participant to the others (or to those it names)."""
    if not session.permission.can_publish_data:
        raise PermissionDenied("your token does not allow sending data")
    deliver(session.room, packet, sender=session)


def deliver(room: Room, packet: res.DataPacket, *, sender: Session | None) -> None:
    """Hands a data message to its destinations (everyone else when it names none); without
    a sender, it comes from the server (``RoomAdminService.SendData``)."""
    out = res.DataPacket()
    out.CopyFrom(packet)
    out.participant_identity = sender.identity if sender is not None else ""
    message = sig.ConnectResponse(data=out)
    lossy = packet.kind == res.DATA_KIND_LOSSY
    targets = set(packet.destination_identities)
    for session in list(room.sessions.values()):
        if session is not sender and (not targets or session.identity in targets):
            session.send(message, lossy=lossy)


def update_metadata(session: Session, request: sig.UpdateMetadataRequest) -> None:
    """Changes a participant's own name, metadata and attributes (an empty value removes an
    attribute), all or nothing, and tells the room."""
    attributes = dict(session.attributes)
    for key, value in request.attributes.items():
        if value:
            attributes[key] = value
        else:
            attributes.pop(key, None)
    if len(attributes) > MAX_ATTRIBUTES:  # checked before anything changes
        raise ResourceExhausted(f"at most {MAX_ATTRIBUTES} attributes")
    session.attributes = attributes
    if request.HasField("name"):
        session.name = request.name
    if request.HasField("metadata"):
        session.metadata = request.metadata
    session.announce_update()
