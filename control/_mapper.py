"""Rows to protos and enum conversions: the one place that knows both shapes."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from parley import TRACK_SOURCE_NAMES, TRACK_SOURCE_VALUES, VideoGrants
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_service_pb2 as room_pb

from ._models import ApiKeyRow, LobbyEntryRow, RoomAccessRow, RoomRow, UserRow
from ._repos import aware

ACCESS_LEVELS = {
    "public": res.ACCESS_LEVEL_PUBLIC,
    "trusted": res.ACCESS_LEVEL_TRUSTED,
    "restricted": res.ACCESS_LEVEL_RESTRICTED,
}
ACCESS_LEVEL_NAMES = {v: k for k, v in ACCESS_LEVELS.items()}

SOURCES = TRACK_SOURCE_VALUES
SOURCE_NAMES = TRACK_SOURCE_NAMES

ROLES = {"member": res.ROLE_MEMBER, "administrator": res.ROLE_ADMINISTRATOR, "owner": res.ROLE_OWNER}
ROLE_NAMES = {v: k for k, v in ROLES.items()}

LOBBY_STATES = {
    "waiting": res.LOBBY_ENTRY_STATE_WAITING,
    "accepted": res.LOBBY_ENTRY_STATE_ACCEPTED,
    "denied": res.LOBBY_ENTRY_STATE_DENIED,
}


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(aware(moment))
    return ts


def etag(row: RoomRow) -> str:
    return f'W/"{row.version}"'


def user(row: UserRow) -> res.User:
    return res.User(
        name=f"users/{row.id}",
        subject=row.subject,
        email=row.email,
        display_name=row.display_name,
        locale=row.locale,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )


def room(row: RoomRow) -> res.Room:
    return res.Room(
        name=f"rooms/{row.id}",
        slug=row.slug,
        display_name=row.display_name,
        access_level=ACCESS_LEVELS[row.access_level],
        configuration=res.RoomConfiguration(
            publish_sources=[SOURCES[s] for s in row.publish_sources],
            everyone_can_mute=row.everyone_can_mute,
        ),
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        etag=etag(row),
    )


def room_access(row: RoomAccessRow, owner: UserRow) -> res.RoomAccess:
    return res.RoomAccess(
        name=f"rooms/{row.room_id}/accesses/{row.id}",
        user=f"users/{row.user_id}",
        role=ROLES[row.role],
        user_display_name=owner.display_name,
        create_time=timestamp(row.created_at),
    )


def lobby_entry(row: LobbyEntryRow) -> res.LobbyEntry:
    return res.LobbyEntry(
        name=f"rooms/{row.room_id}/lobbyEntries/{row.id}",
        display_name=row.display_name,
        user=f"users/{row.user_id}" if row.user_id else "",
        state=LOBBY_STATES[row.state],
        create_time=timestamp(row.created_at),
        expire_time=timestamp(row.expires_at),
    )


def api_key(row: ApiKeyRow) -> res.ApiKey:
    return res.ApiKey(
        name=f"apiKeys/{row.id}",
        display_name=row.display_name,
        scopes=row.scopes,
        create_time=timestamp(row.created_at),
    )


def join_grants(room: RoomRow, *, moderator: bool) -> room_pb.JoinGrants:
    """Grants of a participant: moderators may do everything; others what the room allows."""
    sources = [] if moderator else [SOURCES[s] for s in room.publish_sources]
    return room_pb.JoinGrants(
        can_publish=moderator or bool(sources),
        can_subscribe=True,
        can_publish_data=True,
        publish_sources=sources,
        room_admin=moderator,
        can_mute_others=moderator or room.everyone_can_mute,
    )


def video_grants(room: RoomRow, grants: room_pb.JoinGrants) -> VideoGrants:
    """The join token's claims for ``grants`` in ``room``."""
    return VideoGrants(
        room=room.id,
        can_publish=grants.can_publish,
        can_subscribe=grants.can_subscribe,
        can_publish_data=grants.can_publish_data,
        can_publish_sources=tuple(SOURCE_NAMES[s] for s in grants.publish_sources),
        hidden=grants.hidden,
        recorder=grants.recorder,
        room_admin=grants.room_admin,
        can_mute_others=grants.can_mute_others,
    )


def join_grant(
    room: RoomRow, *, token: str, sfu_url: str, identity: str, grants: room_pb.JoinGrants, expires: datetime
) -> room_pb.JoinGrant:
    return room_pb.JoinGrant(
        room=f"rooms/{room.id}",
        token=token,
        sfu_url=sfu_url,
        identity=identity,
        grants=grants,
        expire_time=timestamp(expires),
    )


def lobby_ticket(entry: LobbyEntryRow, ticket: str) -> room_pb.LobbyTicket:
    return room_pb.LobbyTicket(entry=lobby_entry(entry), ticket=ticket)


def join_response(outcome: room_pb.JoinGrant | room_pb.LobbyTicket) -> room_pb.JoinRoomResponse:
    """What JoinRoom answers: a grant to enter with, or a ticket to wait in the lobby with."""
    if isinstance(outcome, room_pb.JoinGrant):
        return room_pb.JoinRoomResponse(grant=outcome)
    return room_pb.JoinRoomResponse(lobby=outcome)
