"""Bad input: every request message has broken-constraint cases that come back as
INVALID_ARGUMENT naming the fields, and nothing is written."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import sqlalchemy
from google.protobuf import descriptor_pool, field_mask_pb2, message_factory, timestamp_pb2

from control import SERVICE_NAMES, ControlServer
from parley.control.v1 import recording_service_pb2 as rec_pb
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import webhook_service_pb2 as webhook_pb

from .conftest import Callers

ROOM = "rooms/abc-defg-hij"
ENTRY = f"{ROOM}/lobbyEntries/{'a' * 32}"
MEETING = f"{ROOM}/meetings/{'c' * 32}"
WEBHOOK = f"webhooks/{'d' * 32}"
RECORDING = f"{ROOM}/recordings/{'e' * 32}"

# RPC -> (request fields, the field paths the violations must name)
BAD: dict[str, tuple[dict[str, Any], set[str]]] = {
    "UserService.GetUser": ({"name": "users/Alice!"}, {"name"}),
    "UserService.UpdateUser": (
        {
            "user": res.User(name="users/me", display_name="x" * 101, locale="not a locale"),
            "update_mask": field_mask_pb2.FieldMask(paths=["email"]),
        },
        {"user.display_name", "user.locale", "update_mask"},
    ),
    "UserService.DevLogin": ({"subject": "", "email": "not-an-email"}, {"subject", "email"}),
    "RoomService.CreateRoom": (
        {
            "room": res.Room(
                slug="Not A Slug",
                display_name="x" * 201,
                configuration=res.RoomConfiguration(
                    publish_sources=[res.TrackSource.ValueType(0), res.TrackSource.ValueType(9)]
                ),
            )
        },
        {
            "room.slug",
            "room.display_name",
            "room.configuration.publish_sources[0]",
            "room.configuration.publish_sources[1]",
        },
    ),
    "RoomService.GetRoom": ({"name": "rooms/"}, {"name"}),
    "RoomService.ListRooms": ({"page_size": -1, "filter": "x" * 501}, {"page_size", "filter"}),
    "RoomService.UpdateRoom": (
        {"room": res.Room(name=ROOM, access_level=res.AccessLevel.ValueType(7))},
        {"room.access_level", "update_mask"},
    ),
    "RoomService.DeleteRoom": ({"name": "rooms/UPPER"}, {"name"}),
    "RoomService.JoinRoom": ({"name": ROOM, "display_name": "x" * 101}, {"display_name"}),
    "RoomService.CreateJoinToken": (
        {"room": ROOM, "identity": "has space", "ttl": {"seconds": 90000}},
        {"identity", "grants", "ttl"},
    ),
    "RoomAccessService.CreateRoomAccess": (
        {"parent": ROOM, "room_access": res.RoomAccess(role=res.ROLE_MEMBER)},
        {"room_access"},
    ),
    "RoomAccessService.ListRoomAccesses": ({"parent": ROOM, "page_size": 1001}, {"page_size"}),
    "RoomAccessService.UpdateRoomAccess": (
        {"room_access": res.RoomAccess(user="users/nope"), "update_mask": field_mask_pb2.FieldMask(paths=["user"])},
        {"room_access", "room_access.user", "room_access.role", "update_mask"},
    ),
    "RoomAccessService.DeleteRoomAccess": ({"name": f"{ROOM}/accesses/xyz"}, {"name"}),
    "LobbyService.GetLobbyEntry": ({"name": ROOM, "ticket": "t" * 201}, {"name", "ticket"}),
    "LobbyService.WatchLobbyEntry": ({"name": f"{ROOM}/lobbyEntries/"}, {"name"}),
    "LobbyService.ListLobbyEntries": ({"parent": "", "page_token": "p" * 201}, {"parent", "page_token"}),
    "LobbyService.AdmitLobbyEntry": ({"name": ENTRY + "x"}, {"name"}),
    "LobbyService.DenyLobbyEntry": ({"name": ""}, {"name"}),
    "ApiKeyService.CreateApiKey": (
        {"api_key": res.ApiKey(scopes=["rooms:create", "rooms:create", "root"])},
        {"api_key.scopes", "api_key.scopes[2]"},
    ),
    "ApiKeyService.ListApiKeys": ({"page_size": 5000}, {"page_size"}),
    "ApiKeyService.DeleteApiKey": ({"name": "apiKeys/sk_secret"}, {"name"}),
    "MeetingService.ListMeetings": ({"parent": f"{ROOM}/x", "page_size": 1001}, {"parent", "page_size"}),
    "MeetingService.GetMeeting": ({"name": f"{ROOM}/meetings/ABC"}, {"name"}),
    "MeetingService.ListMeetingParticipants": (
        {"parent": MEETING, "page_size": -1, "page_token": "p" * 201},
        {"page_size", "page_token"},
    ),
    "WebhookService.CreateWebhook": (
        {
            "webhook": webhook_pb.Webhook(
                url="not a url", event_types=["room_started", "room_started", "lunch"], display_name="x" * 201
            )
        },
        {"webhook.url", "webhook.event_types", "webhook.event_types[2]", "webhook.display_name"},
    ),
    "WebhookService.GetWebhook": ({"name": "webhooks/short"}, {"name"}),
    "WebhookService.ListWebhooks": ({"page_size": 1001, "page_token": "p" * 201}, {"page_size", "page_token"}),
    "WebhookService.UpdateWebhook": (
        {
            "webhook": webhook_pb.Webhook(name="webhooks/x", url="http://exa mple.com/"),
            "update_mask": field_mask_pb2.FieldMask(paths=["secret"]),
        },
        {"webhook", "webhook.url", "update_mask"},
    ),
    "WebhookService.DeleteWebhook": ({"name": WEBHOOK + "/x"}, {"name"}),
    "WebhookService.RotateWebhookSecret": ({"name": ""}, {"name"}),
    "WebhookService.ListWebhookDeliveries": (
        {"parent": WEBHOOK, "page_size": -1, "state": webhook_pb.WebhookDeliveryState.ValueType(9)},
        {"page_size", "state"},
    ),
    "WebhookService.RedeliverWebhookDelivery": ({"name": f"{WEBHOOK}/deliveries/1"}, {"name"}),
    "RecordingService.StartRecording": (
        {
            "parent": f"{ROOM}/x",
            "recording": rec_pb.Recording(options=rec_pb.RecordingOptions(language="english")),
        },
        {"parent", "recording.mode", "recording.options.language"},
    ),
    "RecordingService.StopRecording": ({"name": f"{ROOM}/recordings/xyz"}, {"name"}),
    "RecordingService.GetRecording": ({"name": ""}, {"name"}),
    "RecordingService.ListRecordings": ({"parent": "rooms/", "page_size": -1}, {"parent", "page_size"}),
    "RecordingService.DeleteRecording": ({"name": ROOM}, {"name"}),
    "RecordingService.GetRecordingDownloadLink": ({"name": RECORDING.upper()}, {"name"}),
    "RecordingService.NotifyStorageEvent": ({}, {"event"}),
    "EgressReportService.ReportEgress": ({}, {"egress"}),
    "SfuReportService.ReportEvents": (
        {
            "node": "bad node!",
            "node_url": "",
            "events": [
                report_pb.SfuEvent(sequence=0, room="abc", meeting_sid="RM_1"),
                report_pb.SfuEvent(
                    sequence=2,
                    room="has space",
                    meeting_sid="RM_1",
                    participant_joined=report_pb.ParticipantJoined(identity="", participant_sid="PA_1"),
                    time=timestamp_pb2.Timestamp(seconds=1),
                ),
            ],
        },
        {
            "node",
            "node_url",
            "events[0].sequence",
            "events[0].time",
            "events[0].event",
            "events[1].room",
            "events[1].participant_joined.identity",
        },
    ),
}


def _methods() -> dict[str, Any]:
    pool = descriptor_pool.Default()
    return {
        f"{pool.FindServiceByName(n).name}.{m.name}": m
        for n in SERVICE_NAMES
        for m in pool.FindServiceByName(n).methods
    }


def test_every_request_message_has_a_bad_case() -> None:
    # A request with no fields has no bad case; it must stay empty to be exempt.
    empty = {rpc for rpc, method in _methods().items() if not method.input_type.fields}
    assert empty == {"UserService.GetCaller"}
    assert sorted(set(_methods()) - empty) == sorted(BAD)


def _row_counts(server: ControlServer) -> dict[str, int]:
    url = server.settings.database_url.replace("postgresql://", "postgresql+psycopg://")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in (
                    "users",
                    "rooms",
                    "room_accesses",
                    "lobby_entries",
                    "api_keys",
                    "meetings",
                    "meeting_participants",
                    "sfu_nodes",
                    "webhooks",
                    "webhook_events",
                    "webhook_deliveries",
                    "recordings",
                )
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("rpc", sorted(BAD))
async def test_bad_request_is_invalid_argument_and_writes_nothing(callers: Callers, rpc: str) -> None:
    method = _methods()[rpc]
    fields, expected = BAD[rpc]
    request = message_factory.GetMessageClass(method.input_type)(**fields)
    path = f"/{method.containing_service.full_name}/{method.name}"
    owner, _ = await callers.user("validation-owner")
    before = _row_counts(callers.server)
    channel = callers.admin_key.channel
    request_type = type(request)
    response_type = message_factory.GetMessageClass(method.output_type)
    for client in (callers.admin_key, owner):  # the same answer whoever asks
        try:
            if method.server_streaming:
                call = channel.unary_stream(
                    path,
                    request_serializer=request_type.SerializeToString,
                    response_deserializer=response_type.FromString,
                )
                async for _ in call(request, metadata=client._metadata):
                    pass
            else:
                unary = channel.unary_unary(
                    path,
                    request_serializer=request_type.SerializeToString,
                    response_deserializer=response_type.FromString,
                )
                await unary(request, metadata=client._metadata)
        except grpc.aio.AioRpcError as error:
            from parley import ParleyError

            parsed = ParleyError.from_rpc_error(error)
            assert parsed.code == grpc.StatusCode.INVALID_ARGUMENT, parsed
            assert {v.field for v in parsed.field_violations} == expected
            assert all(v.description for v in parsed.field_violations)
        else:
            pytest.fail(f"{rpc} accepted a bad request")
    assert _row_counts(callers.server) == before
