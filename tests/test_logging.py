"""Logs never carry secrets or personal data: fields marked sensitive in the contracts are
redacted, and the control interceptor logs every call through that redaction."""

from __future__ import annotations

import logging

import pytest

from parley import REDACTED, redacted
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_service_pb2 as room_pb

from .conftest import Callers


def test_nested_sensitive_fields_are_redacted() -> None:
    response = room_pb.JoinRoomResponse(
        lobby=room_pb.LobbyTicket(
            entry=res.LobbyEntry(name="rooms/r/lobbyEntries/e", display_name="Alice"), ticket="secret-ticket"
        )
    )
    data = redacted(response)
    assert data["lobby"]["ticket"] == REDACTED
    assert data["lobby"]["entry"]["name"] == "rooms/r/lobbyEntries/e"
    assert response.lobby.ticket == "secret-ticket"  # the original is untouched


async def test_interceptor_logs_calls_without_secrets(callers: Callers, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="control.calls"):
        login = await callers.anonymous.users.dev_login("log-user", email="log-user@example.test")
        owner = callers.anonymous.with_bearer(login.access_token)
        room = await owner.rooms.create(access_level=res.ACCESS_LEVEL_RESTRICTED)
        ticket = (await callers.anonymous.rooms.join(room.slug, display_name="Very Private Name")).lobby.ticket
        await callers.anonymous.lobby.get(
            (await callers.anonymous.rooms.join(room.slug, display_name="x", lobby_ticket=ticket)).lobby.entry.name,
            ticket=ticket,
        )
    text = caplog.text
    assert "/parley.control.v1.RoomService/JoinRoom OK" in text
    for secret in (login.access_token, ticket, "Very Private Name", "log-user@example.test"):
        assert secret not in text
    assert REDACTED in text
