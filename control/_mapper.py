"""Rows to protos and enum conversions: the one place that knows both shapes."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from parley import TRACK_SOURCE_NAMES, TRACK_SOURCE_VALUES
from parley.control.v1 import resources_pb2 as res
from parley.server import EnumNames

from ._models import AccessLevel, ApiKeyRow, LobbyEntryRow, LobbyState, Role, RoomAccessRow, RoomRow, UserRow
from ._repos import aware

#: The stored names ↔ the contract's values, read from the enums' descriptors.
ACCESS_LEVELS = EnumNames(res.AccessLevel, AccessLevel)
ROLES = EnumNames(res.Role, Role)
LOBBY_STATES = EnumNames(res.LobbyEntryState, LobbyState)

#: Contract value → stored name, and the track sources both ways (stored as their short names).
ACCESS_LEVEL_NAMES = ACCESS_LEVELS.names
ROLE_NAMES = ROLES.names
SOURCES = TRACK_SOURCE_VALUES
SOURCE_NAMES = TRACK_SOURCE_NAMES


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
        access_level=ACCESS_LEVELS.value(row.access_level),
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
        role=ROLES.value(row.role),
        user_display_name=owner.display_name,
        create_time=timestamp(row.created_at),
    )


def lobby_entry(row: LobbyEntryRow) -> res.LobbyEntry:
    return res.LobbyEntry(
        name=f"rooms/{row.room_id}/lobbyEntries/{row.id}",
        display_name=row.display_name,
        user=f"users/{row.user_id}" if row.user_id else "",
        state=LOBBY_STATES.value(row.state),
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
