"""The grant/role matrix: every RPC of every control service, called by every kind of caller,
is allowed or denied as the contracts say. The RPC list comes from the service descriptors,
so a new RPC without a row here fails the suite."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, field_mask_pb2, message, message_factory, struct_pb2

from control import ALL_SCOPES, SERVICE_NAMES
from parley import Client, NotFound
from parley.control.v1 import recording_service_pb2 as rec_pb
from parley.control.v1 import recording_service_pb2_grpc as rec_grpc
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import sfu_report_service_pb2_grpc as report_grpc
from parley.control.v1 import webhook_service_pb2 as webhook_pb
from parley.egress.v1 import resources_pb2 as egress_res

from .conftest import Callers

PRINCIPALS = ("anonymous", "stranger", "member", "administrator", "owner", "key_with_scope", "key_without_scope")
USERS = ("stranger", "member", "administrator", "owner")


@dataclass
class Scene:
    """A fresh trusted room with one user of each role, a lobby entry and a spare API key."""

    room: str
    #: The access of another member, whom moderators may change or remove.
    target_access: str
    #: A user without a role, whom moderators may give one.
    newcomer: str
    lobby_entry: str
    api_key: str
    #: An ended meeting of the room, with one participant.
    meeting: str
    #: A fresh SFU node id, and a report of its first event.
    node: str
    #: A webhook (of the track_unpublished events, which only this scene's meeting reports)
    #: and its delivery of the meeting's event; deleted after each test.
    webhook: str
    delivery: str
    #: A saved recording of the room (its file in the recordings folder).
    recording: str

    def report(self) -> dict[str, Any]:
        event = report_pb.SfuEvent(
            sequence=1,
            room=self.room.removeprefix("rooms/"),
            meeting_sid="RM_matrix",
            room_started=report_pb.RoomStarted(),
        )
        event.time.GetCurrentTime()
        return {"node": self.node, "node_url": f"grpc://{self.node}.test:7880", "events": [event]}


@dataclass
class Rule:
    #: Which callers among anonymous and the four users are allowed.
    allowed: set[str]
    #: The scope an API key needs; None when API keys are never allowed.
    scope: str | None
    request: Callable[[Scene], dict[str, Any]] = field(default=lambda s: {})
    #: Other scopes that allow the call as well (the key without the scope lacks them too).
    also: frozenset[str] = frozenset()


def _room(s: Scene) -> dict[str, Any]:
    return {"name": s.room}


def _recording(s: Scene) -> dict[str, Any]:
    return {"name": s.recording}


def _storage_event(s: Scene) -> dict[str, Any]:
    event = struct_pb2.Struct()
    event.update({"Records": []})
    return {"event": event}


MODERATORS = {"administrator", "owner"}
READ_RECORDINGS_ALSO = frozenset({"recordings:write"})
EVERYONE = {"anonymous", *USERS}
MATRIX: dict[str, Rule] = {
    "UserService.GetUser": Rule(set(USERS), None, lambda s: {"name": "users/me"}),
    "UserService.UpdateUser": Rule(
        set(USERS),
        None,
        lambda s: {
            "user": res.User(name="users/me", display_name="Renamed"),
            "update_mask": field_mask_pb2.FieldMask(paths=["display_name"]),
        },
    ),
    "UserService.GetCaller": Rule(set(USERS), ""),
    "UserService.DevLogin": Rule(EVERYONE | {"key"}, "", lambda s: {"subject": "matrix-dev-login"}),
    "RoomService.CreateRoom": Rule(set(USERS), "rooms:create", lambda s: {"room": res.Room(display_name="m")}),
    "RoomService.GetRoom": Rule(EVERYONE, "rooms:read", _room),
    "RoomService.ListRooms": Rule(set(USERS), "rooms:list"),
    "RoomService.UpdateRoom": Rule(
        MODERATORS,
        "rooms:update",
        lambda s: {
            "room": res.Room(name=s.room, display_name="changed"),
            "update_mask": field_mask_pb2.FieldMask(paths=["display_name"]),
        },
    ),
    "RoomService.DeleteRoom": Rule({"owner"}, "rooms:delete", _room),
    "RoomService.JoinRoom": Rule(EVERYONE, None, lambda s: {"name": s.room, "display_name": "Guest"}),
    "RoomService.CreateJoinToken": Rule(
        MODERATORS, "tokens:create", lambda s: {"room": s.room, "identity": "bot-1", "grants": {"can_subscribe": True}}
    ),
    "RoomAccessService.CreateRoomAccess": Rule(
        MODERATORS,
        "rooms:update",
        lambda s: {"parent": s.room, "room_access": res.RoomAccess(user=s.newcomer, role=res.ROLE_MEMBER)},
    ),
    "RoomAccessService.ListRoomAccesses": Rule({"member", *MODERATORS}, "rooms:read", lambda s: {"parent": s.room}),
    "RoomAccessService.UpdateRoomAccess": Rule(
        MODERATORS,
        "rooms:update",
        lambda s: {
            "room_access": res.RoomAccess(name=s.target_access, role=res.ROLE_ADMINISTRATOR),
            "update_mask": field_mask_pb2.FieldMask(paths=["role"]),
        },
    ),
    "RoomAccessService.DeleteRoomAccess": Rule(MODERATORS, "rooms:update", lambda s: {"name": s.target_access}),
    "LobbyService.GetLobbyEntry": Rule(MODERATORS, "rooms:update", lambda s: {"name": s.lobby_entry}),
    "LobbyService.WatchLobbyEntry": Rule(MODERATORS, "rooms:update", lambda s: {"name": s.lobby_entry}),
    "LobbyService.ListLobbyEntries": Rule(MODERATORS, "rooms:update", lambda s: {"parent": s.room}),
    "LobbyService.AdmitLobbyEntry": Rule(MODERATORS, "rooms:update", lambda s: {"name": s.lobby_entry}),
    "LobbyService.DenyLobbyEntry": Rule(MODERATORS, "rooms:update", lambda s: {"name": s.lobby_entry}),
    "ApiKeyService.CreateApiKey": Rule(
        set(), "keys:manage", lambda s: {"api_key": res.ApiKey(display_name="k", scopes=["rooms:read"])}
    ),
    "ApiKeyService.ListApiKeys": Rule(set(), "keys:manage"),
    "ApiKeyService.DeleteApiKey": Rule(set(), "keys:manage", lambda s: {"name": s.api_key}),
    "MeetingService.ListMeetings": Rule(MODERATORS, "rooms:read", lambda s: {"parent": s.room}),
    "MeetingService.GetMeeting": Rule(MODERATORS, "rooms:read", lambda s: {"name": s.meeting}),
    "MeetingService.ListMeetingParticipants": Rule(MODERATORS, "rooms:read", lambda s: {"parent": s.meeting}),
    "SfuReportService.ReportEvents": Rule(set(), "sfu:report", lambda s: s.report()),
    # Webhooks created here want events no scene reports (track_published): they receive none.
    "WebhookService.CreateWebhook": Rule(
        set(),
        "webhooks:manage",
        lambda s: {"webhook": webhook_pb.Webhook(url="http://127.0.0.1:9/matrix", event_types=["track_published"])},
    ),
    "WebhookService.GetWebhook": Rule(set(), "webhooks:manage", lambda s: {"name": s.webhook}),
    "WebhookService.ListWebhooks": Rule(set(), "webhooks:manage"),
    "WebhookService.UpdateWebhook": Rule(
        set(),
        "webhooks:manage",
        lambda s: {
            "webhook": webhook_pb.Webhook(name=s.webhook, display_name="renamed"),
            "update_mask": field_mask_pb2.FieldMask(paths=["display_name"]),
        },
    ),
    "WebhookService.DeleteWebhook": Rule(set(), "webhooks:manage", lambda s: {"name": s.webhook}),
    "WebhookService.RotateWebhookSecret": Rule(set(), "webhooks:manage", lambda s: {"name": s.webhook}),
    "WebhookService.ListWebhookDeliveries": Rule(set(), "webhooks:manage", lambda s: {"parent": s.webhook}),
    "WebhookService.RedeliverWebhookDelivery": Rule(set(), "webhooks:manage", lambda s: {"name": s.delivery}),
    "RecordingService.StartRecording": Rule(
        MODERATORS,
        "recordings:write",
        lambda s: {"parent": s.room, "recording": rec_pb.Recording(mode=rec_pb.RECORDING_MODE_SCREEN_RECORDING)},
    ),
    "RecordingService.StopRecording": Rule(MODERATORS, "recordings:write", _recording),
    "RecordingService.GetRecording": Rule(MODERATORS, "recordings:read", _recording, READ_RECORDINGS_ALSO),
    "RecordingService.ListRecordings": Rule(
        MODERATORS, "recordings:read", lambda s: {"parent": s.room}, READ_RECORDINGS_ALSO
    ),
    "RecordingService.DeleteRecording": Rule(MODERATORS, "recordings:write", _recording),
    "RecordingService.GetRecordingDownloadLink": Rule(MODERATORS, "recordings:read", _recording, READ_RECORDINGS_ALSO),
    "RecordingService.NotifyStorageEvent": Rule(set(), "storage:notify", _storage_event),
    # An egress of no recording: the answer tells it so.
    "EgressReportService.ReportEgress": Rule(
        set(), "egress:report", lambda s: {"egress": egress_res.Egress(name=f"egresses/{'0' * 32}")}
    ),
}


def _methods() -> list[str]:
    pool = descriptor_pool.Default()
    return [
        f"{pool.FindServiceByName(name).name}.{m.name}"
        for name in SERVICE_NAMES
        for m in pool.FindServiceByName(name).methods
    ]


def test_matrix_covers_every_rpc() -> None:
    assert sorted(_methods()) == sorted(MATRIX)


def _expected(rule: Rule, principal: str) -> bool:
    if principal in ("key_with_scope", "key_without_scope"):
        if rule.scope is None:
            return False
        return rule.scope == "" or principal == "key_with_scope"
    return principal in rule.allowed


async def _call(client: Client, rpc: str, request: dict[str, Any]) -> grpc.StatusCode:
    service_name, method_name = rpc.split(".")
    pool = descriptor_pool.Default()
    service = pool.FindServiceByName(f"parley.control.v1.{service_name}")
    method = service.methods_by_name[method_name]
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    built: message.Message = request_cls(**request)
    path = f"/{service.full_name}/{method.name}"
    metadata = client._metadata
    try:
        if method.server_streaming:
            stream = client.channel.unary_stream(
                path, request_serializer=type(built).SerializeToString, response_deserializer=response_cls.FromString
            )
            call = stream(built, metadata=metadata)
            async for _ in call:
                break
            call.cancel()
        else:
            unary = client.channel.unary_unary(
                path, request_serializer=type(built).SerializeToString, response_deserializer=response_cls.FromString
            )
            await unary(built, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="session")
async def people(callers: Callers) -> dict[str, tuple[Client, str]]:
    return {role: await callers.user(f"matrix-{role}") for role in (*USERS, "target", "newcomer")}


async def _scene(callers: Callers, people: dict[str, tuple[Client, str]]) -> Scene:
    owner = people["owner"][0]
    room = await owner.rooms.create(display_name="matrix", access_level=res.ACCESS_LEVEL_TRUSTED)
    await owner.accesses.create(room.name, user=people["administrator"][1], role=res.ROLE_ADMINISTRATOR)
    await owner.accesses.create(room.name, user=people["member"][1], role=res.ROLE_MEMBER)
    target = await owner.accesses.create(room.name, user=people["target"][1], role=res.ROLE_MEMBER)
    lobby = await callers.anonymous.rooms.join(room.name, display_name="waiting guest")
    assert lobby.WhichOneof("result") == "lobby"
    key = await callers.admin_key.api_keys.create(display_name="spare", scopes=["rooms:read"])
    webhook = await callers.admin_key.webhooks.create("http://127.0.0.1:9/matrix", event_types=["track_unpublished"])
    meeting = await _meeting(callers, room.name)
    [delivery] = [d async for d in callers.admin_key.webhooks.list_deliveries(webhook.webhook.name)]
    recording = await _saved_recording(callers, room.name)
    return Scene(
        room=room.name,
        target_access=target.name,
        newcomer=people["newcomer"][1],
        lobby_entry=lobby.lobby.entry.name,
        api_key=key.api_key.name,
        meeting=meeting,
        node=f"matrix-{uuid.uuid4().hex[:16]}",
        webhook=webhook.webhook.name,
        delivery=delivery.name,
        recording=recording,
    )


async def _saved_recording(callers: Callers, room: str) -> str:
    """A saved recording of ``room``: started (the fake egress accepts), then reported complete."""
    stub = rec_grpc.RecordingServiceStub(callers.admin_key.channel)
    metadata = callers.admin_key._metadata
    recording = await stub.StartRecording(
        rec_pb.StartRecordingRequest(
            parent=room, recording=rec_pb.Recording(mode=rec_pb.RECORDING_MODE_SCREEN_RECORDING)
        ),
        metadata=metadata,
    )
    key = f"recordings/matrix-{recording.name[-32:]}.mp4"
    egress = egress_res.Egress(
        name=recording.egress,
        status=egress_res.EGRESS_STATUS_COMPLETE,
        file=egress_res.FileResult(key=key, location=f"file:///{key}", content_type="video/mp4", size_bytes=1),
    )
    reports = rec_grpc.EgressReportServiceStub(callers.admin_key.channel)
    answer = await reports.ReportEgress(rec_pb.ReportEgressRequest(egress=egress), metadata=metadata)
    assert answer.state == rec_pb.RECORDING_STATE_SAVED
    return recording.name


async def _meeting(callers: Callers, room: str) -> str:
    """An ended meeting of ``room`` with one participant, as an SFU node reports it."""
    start = datetime(2026, 1, 1, 9, tzinfo=UTC)
    steps: list[dict[str, Any]] = [
        {"room_started": report_pb.RoomStarted()},
        {
            "participant_joined": report_pb.ParticipantJoined(
                identity="guest-1", participant_sid="PA_1", display_name="Guest"
            )
        },
        {"track_unpublished": report_pb.TrackUnpublished(identity="guest-1", track_sid="TR_1")},
        {"participant_left": report_pb.ParticipantLeft(identity="guest-1", participant_sid="PA_1")},
        {"room_finished": report_pb.RoomFinished()},
    ]
    events = []
    for sequence, step in enumerate(steps, start=1):
        event = report_pb.SfuEvent(sequence=sequence, room=room.removeprefix("rooms/"), meeting_sid="RM_1", **step)
        event.time.FromDatetime(start + timedelta(minutes=sequence))
        events.append(event)
    node = f"scene-{uuid.uuid4().hex[:16]}"
    stub = report_grpc.SfuReportServiceStub(callers.admin_key.channel)
    request = report_pb.ReportEventsRequest(node=node, node_url=f"grpc://{node}.test:7880", events=events)
    await stub.ReportEvents(request, metadata=callers.admin_key._metadata)
    [meeting] = [m async for m in callers.admin_key.meetings.list(room)]
    return meeting.name


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("rpc", sorted(MATRIX))
async def test_rpc_allowed_or_denied(
    callers: Callers, people: dict[str, tuple[Client, str]], rpc: str, principal: str
) -> None:
    rule = MATRIX[rpc]
    scene = await _scene(callers, people)
    if principal == "anonymous":
        client = callers.anonymous
    elif principal in USERS:
        client = people[principal][0]
    elif principal == "key_with_scope":
        client = await callers.key(*ALL_SCOPES) if not rule.scope else await callers.key(rule.scope)
    else:
        others = [s for s in ALL_SCOPES if s != rule.scope and s not in rule.also]
        client = await callers.key(*others)
    try:
        code = await _call(client, rpc, rule.request(scene))
    finally:
        with contextlib.suppress(NotFound):
            await callers.admin_key.webhooks.delete(scene.webhook)
    expected = _expected(rule, principal)
    if expected:
        assert code == grpc.StatusCode.OK, f"{rpc} should be allowed for {principal}, got {code}"
    else:
        # Nobody logged in: UNAUTHENTICATED; known but not allowed: PERMISSION_DENIED.
        want = grpc.StatusCode.UNAUTHENTICATED if principal == "anonymous" else grpc.StatusCode.PERMISSION_DENIED
        assert code == want, f"{rpc} should be denied for {principal} with {want}, got {code}"
