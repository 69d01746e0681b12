"""Build and parse resource names (``rooms/{room}``, ``rooms/{room}/accesses/{access}``...)."""

from __future__ import annotations

import re

_ROOM = re.compile(r"^rooms/([a-z0-9]+(?:-[a-z0-9]+)*)$")
_ACCESS = re.compile(r"^rooms/([a-z0-9]+(?:-[a-z0-9]+)*)/accesses/([0-9a-f]{32})$")
_LOBBY_ENTRY = re.compile(r"^rooms/([a-z0-9]+(?:-[a-z0-9]+)*)/lobbyEntries/([0-9a-f]{32})$")
_MEETING = re.compile(r"^rooms/([a-z0-9]+(?:-[a-z0-9]+)*)/meetings/([0-9a-f]{32})$")
_RECORDING = re.compile(r"^rooms/([a-z0-9]+(?:-[a-z0-9]+)*)/recordings/([0-9a-f]{32})$")
_EGRESS = re.compile(r"^egresses/([0-9a-f]{32})$")
_USER = re.compile(r"^users/(me|[0-9a-f]{32})$")
_API_KEY = re.compile(r"^apiKeys/(pk_[A-Za-z0-9]{16,64})$")
_WEBHOOK = re.compile(r"^webhooks/([0-9a-f]{32})$")
_WEBHOOK_DELIVERY = re.compile(r"^webhooks/([0-9a-f]{32})/deliveries/([0-9a-f]{32})$")


def _parse(pattern: re.Pattern[str], name: str, what: str) -> tuple[str, ...]:
    match = pattern.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a {what} name")
    return match.groups()


def room_path(room: str) -> str:
    """``rooms/{room}``; ``room`` is an id or a slug. An existing path is returned as is."""
    return room if room.startswith("rooms/") else f"rooms/{room}"


def parse_room_path(name: str) -> str:
    """The id or slug in ``rooms/{room}``."""
    return _parse(_ROOM, name, "room")[0]


def room_access_path(room: str, access: str) -> str:
    """``rooms/{room}/accesses/{access}``."""
    return f"{room_path(room)}/accesses/{access}"


def parse_room_access_path(name: str) -> tuple[str, str]:
    """``(room, access)`` from ``rooms/{room}/accesses/{access}``."""
    room, access = _parse(_ACCESS, name, "room access")
    return room, access


def lobby_entry_path(room: str, entry: str) -> str:
    """``rooms/{room}/lobbyEntries/{entry}``."""
    return f"{room_path(room)}/lobbyEntries/{entry}"


def parse_lobby_entry_path(name: str) -> tuple[str, str]:
    """``(room, entry)`` from ``rooms/{room}/lobbyEntries/{entry}``."""
    room, entry = _parse(_LOBBY_ENTRY, name, "lobby entry")
    return room, entry


def meeting_path(room: str, meeting: str) -> str:
    """``rooms/{room}/meetings/{meeting}``. An existing meeting path is returned as is."""
    if _MEETING.match(meeting):
        return meeting
    return f"{room_path(room)}/meetings/{meeting}"


def parse_meeting_path(name: str) -> tuple[str, str]:
    """``(room, meeting)`` from ``rooms/{room}/meetings/{meeting}``."""
    room, meeting = _parse(_MEETING, name, "meeting")
    return room, meeting


def recording_path(room: str, recording: str) -> str:
    """``rooms/{room}/recordings/{recording}``. An existing recording path is returned as is."""
    if _RECORDING.match(recording):
        return recording
    return f"{room_path(room)}/recordings/{recording}"


def parse_recording_path(name: str) -> tuple[str, str]:
    """``(room, recording)`` from ``rooms/{room}/recordings/{recording}``."""
    room, recording = _parse(_RECORDING, name, "recording")
    return room, recording


def egress_path(egress: str) -> str:
    """``egresses/{egress}``. An existing path is returned as is."""
    return egress if egress.startswith("egresses/") else f"egresses/{egress}"


def parse_egress_path(name: str) -> str:
    """The egress id in ``egresses/{egress}``."""
    return _parse(_EGRESS, name, "egress")[0]


def user_path(user: str) -> str:
    """``users/{user}``; ``users/me`` names the caller."""
    return user if user.startswith("users/") else f"users/{user}"


def parse_user_path(name: str) -> str:
    """The id (or ``me``) in ``users/{user}``."""
    return _parse(_USER, name, "user")[0]


def api_key_path(key_id: str) -> str:
    """``apiKeys/{key_id}``."""
    return key_id if key_id.startswith("apiKeys/") else f"apiKeys/{key_id}"


def parse_api_key_path(name: str) -> str:
    """The key id in ``apiKeys/{key_id}``."""
    return _parse(_API_KEY, name, "API key")[0]


def webhook_path(webhook: str) -> str:
    """``webhooks/{webhook}``. An existing path is returned as is."""
    return webhook if webhook.startswith("webhooks/") else f"webhooks/{webhook}"


def parse_webhook_path(name: str) -> str:
    """The webhook id in ``webhooks/{webhook}``."""
    return _parse(_WEBHOOK, name, "webhook")[0]


def webhook_delivery_path(webhook: str, delivery: str) -> str:
    """``webhooks/{webhook}/deliveries/{delivery}``; ``delivery`` may already be that path."""
    if delivery.startswith("webhooks/"):
        return delivery
    return f"{webhook_path(webhook)}/deliveries/{delivery}"


def parse_webhook_delivery_path(name: str) -> tuple[str, str]:
    """(webhook id, delivery id) of ``webhooks/{webhook}/deliveries/{delivery}``."""
    webhook, delivery = _parse(_WEBHOOK_DELIVERY, name, "webhook delivery")
    return webhook, delivery
