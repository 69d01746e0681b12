"""Rows to protos and enum conversions: the one place that knows both shapes."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from parley import TRACK_SOURCE_NAMES, TRACK_SOURCE_VALUES
from parley.control.v1 import resources_pb2 as res

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
