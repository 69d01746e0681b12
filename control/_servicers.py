"""gRPC servicers: requests in (already validated and authenticated by the interceptor),
domain calls, protos out. No rules live here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format

from parley import parse_lobby_entry_path, parse_meeting_path, parse_room_access_path
from parley.control.v1 import (
    api_key_service_pb2 as keys_pb,
)
from parley.control.v1 import (
    api_key_service_pb2_grpc as keys_grpc,
)
from parley.control.v1 import (
    lobby_service_pb2 as lobby_pb,
)
from parley.control.v1 import (
    lobby_service_pb2_grpc as lobby_grpc,
)
from parley.control.v1 import (
    meeting_service_pb2 as meeting_pb,
)
from parley.control.v1 import (
    meeting_service_pb2_grpc as meeting_grpc,
)
from parley.control.v1 import (
    recording_service_pb2 as recording_pb,
)
from parley.control.v1 import (
    recording_service_pb2_grpc as recording_grpc,
)
from parley.control.v1 import (
    resources_pb2 as res,
)
from parley.control.v1 import (
    room_access_service_pb2 as access_pb,
)
from parley.control.v1 import (
    room_access_service_pb2_grpc as access_grpc,
)
from parley.control.v1 import (
    room_service_pb2 as room_pb,
)
from parley.control.v1 import (
    room_service_pb2_grpc as room_grpc,
)
from parley.control.v1 import (
    sfu_report_service_pb2 as report_pb,
)
from parley.control.v1 import (
    sfu_report_service_pb2_grpc as report_grpc,
)
from parley.control.v1 import (
    user_service_pb2 as user_pb,
)
from parley.control.v1 import (
    user_service_pb2_grpc as user_grpc,
)
from parley.control.v1 import (
    webhook_service_pb2 as webhook_pb,
)
from parley.control.v1 import (
    webhook_service_pb2_grpc as webhook_grpc,
)

from . import _mapper
from ._auth import Identity
from ._caller import current_caller
from ._domain import utcnow
from ._service import ControlPlane
from ._webhooks import WebhookFields

Context = grpc.aio.ServicerContext[Any, Any]


def _room_id(name: str) -> str:
    return name.removeprefix("rooms/")


class UserServicer(user_grpc.UserServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def GetUser(self, request: user_pb.GetUserRequest, context: Context) -> res.User:
        return _mapper.user(await self._control.users.get_user(current_caller(), request.name.removeprefix("users/")))

    async def GetCaller(self, request: user_pb.GetCallerRequest, context: Context) -> user_pb.Caller:
        caller = current_caller()
        caller.require_authenticated()
        if caller.is_api_key:
            return user_pb.Caller(
                api_key=f"apiKeys/{caller.api_key_id}", scopes=sorted(caller.scopes), display_name=caller.display_name
            )
        return user_pb.Caller(user=f"users/{caller.user_id}", display_name=caller.display_name)

    async def UpdateUser(self, request: user_pb.UpdateUserRequest, context: Context) -> res.User:
        row = await self._control.users.update_user(
            current_caller(), request.user.name.removeprefix("users/"), request.user, list(request.update_mask.paths)
        )
        return _mapper.user(row)

    async def DevLogin(self, request: user_pb.DevLoginRequest, context: Context) -> user_pb.DevLoginResponse:
        identity = Identity(
            subject=request.subject, email=request.email, display_name=request.display_name.strip() or request.subject
        )
        token, expires, user = await self._control.users.dev_login(identity)
        return user_pb.DevLoginResponse(
            access_token=token, expire_time=_mapper.timestamp(expires), user=_mapper.user(user)
        )


class RoomServicer(room_grpc.RoomServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def CreateRoom(self, request: room_pb.CreateRoomRequest, context: Context) -> res.Room:
        return _mapper.room(await self._control.rooms.create_room(current_caller(), request.room))

    async def GetRoom(self, request: room_pb.GetRoomRequest, context: Context) -> res.Room:
        return _mapper.room(await self._control.rooms.get_room(current_caller(), _room_id(request.name)))

    async def ListRooms(self, request: room_pb.ListRoomsRequest, context: Context) -> room_pb.ListRoomsResponse:
        page = await self._control.rooms.list_rooms(
            current_caller(), page_size=request.page_size, page_token=request.page_token, filter=request.filter
        )
        return room_pb.ListRoomsResponse(
            rooms=[_mapper.room(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def UpdateRoom(self, request: room_pb.UpdateRoomRequest, context: Context) -> res.Room:
        return _mapper.room(
            await self._control.rooms.update_room(current_caller(), request.room, list(request.update_mask.paths))
        )

    async def DeleteRoom(self, request: room_pb.DeleteRoomRequest, context: Context) -> empty_pb2.Empty:
        await self._control.rooms.delete_room(current_caller(), _room_id(request.name), request.etag)
        return empty_pb2.Empty()

    async def JoinRoom(self, request: room_pb.JoinRoomRequest, context: Context) -> room_pb.JoinRoomResponse:
        return await self._control.joining.join_room(
            current_caller(),
            _room_id(request.name),
            display_name=request.display_name,
            lobby_ticket=request.lobby_ticket,
        )

    async def CreateJoinToken(self, request: room_pb.CreateJoinTokenRequest, context: Context) -> room_pb.JoinGrant:
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else None
        return await self._control.joining.create_join_token(
            current_caller(),
            _room_id(request.room),
            identity=request.identity,
            display_name=request.display_name,
            metadata=request.metadata,
            grants=request.grants,
            ttl=ttl,
        )


class RoomAccessServicer(access_grpc.RoomAccessServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def CreateRoomAccess(self, request: access_pb.CreateRoomAccessRequest, context: Context) -> res.RoomAccess:
        row, user = await self._control.accesses.create_access(
            current_caller(), _room_id(request.parent), request.room_access.user, request.room_access.role
        )
        return _mapper.room_access(row, user)

    async def ListRoomAccesses(
        self, request: access_pb.ListRoomAccessesRequest, context: Context
    ) -> access_pb.ListRoomAccessesResponse:
        page, _room = await self._control.accesses.list_accesses(
            current_caller(), _room_id(request.parent), page_size=request.page_size, page_token=request.page_token
        )
        return access_pb.ListRoomAccessesResponse(
            room_accesses=[_mapper.room_access(a, u) for a, u in page.items], next_page_token=page.next_page_token
        )

    async def UpdateRoomAccess(self, request: access_pb.UpdateRoomAccessRequest, context: Context) -> res.RoomAccess:
        room, access = parse_room_access_path(request.room_access.name)
        row, user = await self._control.accesses.update_access(current_caller(), room, access, request.room_access.role)
        return _mapper.room_access(row, user)

    async def DeleteRoomAccess(self, request: access_pb.DeleteRoomAccessRequest, context: Context) -> empty_pb2.Empty:
        room, access = parse_room_access_path(request.name)
        await self._control.accesses.delete_access(current_caller(), room, access)
        return empty_pb2.Empty()


class LobbyServicer(lobby_grpc.LobbyServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def GetLobbyEntry(self, request: lobby_pb.GetLobbyEntryRequest, context: Context) -> res.LobbyEntry:
        row = await self._control.lobby.get_lobby_entry(
            current_caller(), parse_lobby_entry_path(request.name), request.ticket
        )
        return _mapper.lobby_entry(row)

    async def WatchLobbyEntry(
        self, request: lobby_pb.WatchLobbyEntryRequest, context: Context
    ) -> AsyncIterator[res.LobbyEntry]:
        async for row in self._control.lobby.watch_lobby_entry(
            current_caller(), parse_lobby_entry_path(request.name), request.ticket
        ):
            yield _mapper.lobby_entry(row)

    async def ListLobbyEntries(
        self, request: lobby_pb.ListLobbyEntriesRequest, context: Context
    ) -> lobby_pb.ListLobbyEntriesResponse:
        page = await self._control.lobby.list_lobby(
            current_caller(), _room_id(request.parent), page_size=request.page_size, page_token=request.page_token
        )
        return lobby_pb.ListLobbyEntriesResponse(
            lobby_entries=[_mapper.lobby_entry(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def AdmitLobbyEntry(self, request: lobby_pb.AdmitLobbyEntryRequest, context: Context) -> res.LobbyEntry:
        row = await self._control.lobby.decide_lobby_entry(
            current_caller(), parse_lobby_entry_path(request.name), admit=True
        )
        return _mapper.lobby_entry(row)

    async def DenyLobbyEntry(self, request: lobby_pb.DenyLobbyEntryRequest, context: Context) -> res.LobbyEntry:
        row = await self._control.lobby.decide_lobby_entry(
            current_caller(), parse_lobby_entry_path(request.name), admit=False
        )
        return _mapper.lobby_entry(row)


class ApiKeyServicer(keys_grpc.ApiKeyServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def CreateApiKey(
        self, request: keys_pb.CreateApiKeyRequest, context: Context
    ) -> keys_pb.CreateApiKeyResponse:
        row, secret = await self._control.api_keys.create_api_key(
            current_caller(), request.api_key.display_name, list(request.api_key.scopes)
        )
        return keys_pb.CreateApiKeyResponse(api_key=_mapper.api_key(row), secret=secret)

    async def ListApiKeys(self, request: keys_pb.ListApiKeysRequest, context: Context) -> keys_pb.ListApiKeysResponse:
        page = await self._control.api_keys.list_api_keys(
            current_caller(), page_size=request.page_size, page_token=request.page_token
        )
        return keys_pb.ListApiKeysResponse(
            api_keys=[_mapper.api_key(k) for k in page.items], next_page_token=page.next_page_token
        )

    async def DeleteApiKey(self, request: keys_pb.DeleteApiKeyRequest, context: Context) -> empty_pb2.Empty:
        await self._control.api_keys.delete_api_key(current_caller(), request.name.removeprefix("apiKeys/"))
        return empty_pb2.Empty()


class MeetingServicer(meeting_grpc.MeetingServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def ListMeetings(
        self, request: meeting_pb.ListMeetingsRequest, context: Context
    ) -> meeting_pb.ListMeetingsResponse:
        after = request.start_time_after.ToDatetime(tzinfo=UTC) if request.HasField("start_time_after") else None
        before = request.start_time_before.ToDatetime(tzinfo=UTC) if request.HasField("start_time_before") else None
        page = await self._control.meetings.list_meetings(
            current_caller(),
            _room_id(request.parent),
            page_size=request.page_size,
            page_token=request.page_token,
            started_after=after,
            started_before=before,
        )
        return meeting_pb.ListMeetingsResponse(
            meetings=[_mapper.meeting(m) for m in page.items], next_page_token=page.next_page_token
        )

    async def GetMeeting(self, request: meeting_pb.GetMeetingRequest, context: Context) -> meeting_pb.Meeting:
        room, meeting = parse_meeting_path(request.name)
        return _mapper.meeting(await self._control.meetings.get_meeting(current_caller(), room, meeting))

    async def ListMeetingParticipants(
        self, request: meeting_pb.ListMeetingParticipantsRequest, context: Context
    ) -> meeting_pb.ListMeetingParticipantsResponse:
        room, meeting_id = parse_meeting_path(request.parent)
        page, meeting = await self._control.meetings.list_participants(
            current_caller(), room, meeting_id, page_size=request.page_size, page_token=request.page_token
        )
        now = utcnow()
        return meeting_pb.ListMeetingParticipantsResponse(
            meeting_participants=[_mapper.meeting_participant(p, meeting.room_id, now=now) for p in page.items],
            next_page_token=page.next_page_token,
        )


class SfuReportServicer(report_grpc.SfuReportServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def ReportEvents(
        self, request: report_pb.ReportEventsRequest, context: Context
    ) -> report_pb.ReportEventsResponse:
        applied = await self._control.meetings.report_events(
            current_caller(), request.node, request.node_url, list(request.events)
        )
        return report_pb.ReportEventsResponse(applied_sequence=applied)


def _webhook_fields(webhook: webhook_pb.Webhook) -> WebhookFields:
    return WebhookFields(display_name=webhook.display_name, url=webhook.url, event_types=list(webhook.event_types))


def _webhook_id(name: str) -> str:
    """``webhooks/{id}`` (the pattern was validated) → the id."""
    return name.split("/")[1]


class WebhookServicer(webhook_grpc.WebhookServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def CreateWebhook(
        self, request: webhook_pb.CreateWebhookRequest, context: Context
    ) -> webhook_pb.CreateWebhookResponse:
        row, secret = await self._control.webhooks.create_webhook(current_caller(), _webhook_fields(request.webhook))
        return webhook_pb.CreateWebhookResponse(webhook=_mapper.webhook(row), secret=secret)

    async def GetWebhook(self, request: webhook_pb.GetWebhookRequest, context: Context) -> webhook_pb.Webhook:
        return _mapper.webhook(await self._control.webhooks.get_webhook(current_caller(), _webhook_id(request.name)))

    async def ListWebhooks(
        self, request: webhook_pb.ListWebhooksRequest, context: Context
    ) -> webhook_pb.ListWebhooksResponse:
        page = await self._control.webhooks.list_webhooks(
            current_caller(), page_size=request.page_size, page_token=request.page_token
        )
        return webhook_pb.ListWebhooksResponse(
            webhooks=[_mapper.webhook(w) for w in page.items], next_page_token=page.next_page_token
        )

    async def UpdateWebhook(self, request: webhook_pb.UpdateWebhookRequest, context: Context) -> webhook_pb.Webhook:
        row = await self._control.webhooks.update_webhook(
            current_caller(),
            _webhook_id(request.webhook.name),
            _webhook_fields(request.webhook),
            list(request.update_mask.paths),
        )
        return _mapper.webhook(row)

    async def DeleteWebhook(self, request: webhook_pb.DeleteWebhookRequest, context: Context) -> empty_pb2.Empty:
        await self._control.webhooks.delete_webhook(current_caller(), _webhook_id(request.name))
        return empty_pb2.Empty()

    async def RotateWebhookSecret(
        self, request: webhook_pb.RotateWebhookSecretRequest, context: Context
    ) -> webhook_pb.RotateWebhookSecretResponse:
        row, secret = await self._control.webhooks.rotate_secret(current_caller(), _webhook_id(request.name))
        return webhook_pb.RotateWebhookSecretResponse(webhook=_mapper.webhook(row), secret=secret)

    async def ListWebhookDeliveries(
        self, request: webhook_pb.ListWebhookDeliveriesRequest, context: Context
    ) -> webhook_pb.ListWebhookDeliveriesResponse:
        state = _mapper.DELIVERY_STATES.name(request.state) if request.state else None
        page = await self._control.webhooks.list_deliveries(
            current_caller(),
            _webhook_id(request.parent),
            state=state,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return webhook_pb.ListWebhookDeliveriesResponse(
            webhook_deliveries=[_mapper.webhook_delivery(d) for d in page.items], next_page_token=page.next_page_token
        )

    async def RedeliverWebhookDelivery(
        self, request: webhook_pb.RedeliverWebhookDeliveryRequest, context: Context
    ) -> webhook_pb.WebhookDelivery:
        _, webhook_id, _, delivery_id = request.name.split("/")
        return _mapper.webhook_delivery(
            await self._control.webhooks.redeliver(current_caller(), webhook_id, delivery_id)
        )


def _recording_path(name: str) -> tuple[str, str]:
    """``rooms/{room}/recordings/{recording}`` (the pattern was validated) → (room, recording)."""
    _, room, _, recording = name.split("/")
    return room, recording


class RecordingServicer(recording_grpc.RecordingServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def StartRecording(
        self, request: recording_pb.StartRecordingRequest, context: Context
    ) -> recording_pb.Recording:
        options = request.recording.options
        row = await self._control.recordings.start_recording(
            current_caller(),
            _room_id(request.parent),
            mode=_mapper.RECORDING_MODES.name(request.recording.mode),
            language=options.language,
            transcribe=options.transcribe,
            collect_metadata=options.collect_metadata,
        )
        return _mapper.recording(row)

    async def StopRecording(
        self, request: recording_pb.StopRecordingRequest, context: Context
    ) -> recording_pb.Recording:
        row = await self._control.recordings.stop_recording(current_caller(), *_recording_path(request.name))
        return _mapper.recording(row)

    async def GetRecording(self, request: recording_pb.GetRecordingRequest, context: Context) -> recording_pb.Recording:
        row = await self._control.recordings.get_recording(current_caller(), *_recording_path(request.name))
        return _mapper.recording(row)

    async def ListRecordings(
        self, request: recording_pb.ListRecordingsRequest, context: Context
    ) -> recording_pb.ListRecordingsResponse:
        page = await self._control.recordings.list_recordings(
            current_caller(), _room_id(request.parent), page_size=request.page_size, page_token=request.page_token
        )
        return recording_pb.ListRecordingsResponse(
            recordings=[_mapper.recording(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def DeleteRecording(self, request: recording_pb.DeleteRecordingRequest, context: Context) -> empty_pb2.Empty:
        await self._control.recordings.delete_recording(current_caller(), *_recording_path(request.name))
        return empty_pb2.Empty()

    async def GetRecordingDownloadLink(
        self, request: recording_pb.GetRecordingDownloadLinkRequest, context: Context
    ) -> recording_pb.RecordingDownloadLink:
        link = await self._control.recordings.download_link(current_caller(), *_recording_path(request.name))
        return recording_pb.RecordingDownloadLink(
            url=link.url,
            expire_time=_mapper.timestamp(link.expires),
            filename=link.filename,
            file=_mapper.recording_file(link.recording),
        )

    async def NotifyStorageEvent(
        self, request: recording_pb.NotifyStorageEventRequest, context: Context
    ) -> recording_pb.NotifyStorageEventResponse:
        event = json_format.MessageToDict(request.event)
        saved = await self._control.recordings.notify_storage_event(current_caller(), event)
        return recording_pb.NotifyStorageEventResponse(saved=[_mapper.recording_name(r) for r in saved])


class EgressReportServicer(recording_grpc.EgressReportServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    async def ReportEgress(
        self, request: recording_pb.ReportEgressRequest, context: Context
    ) -> recording_pb.ReportEgressResponse:
        row = await self._control.recordings.report_egress(current_caller(), request.egress)
        if row is None:
            return recording_pb.ReportEgressResponse()
        return recording_pb.ReportEgressResponse(
            recording=_mapper.recording_name(row), state=_mapper.RECORDING_STATES.value(row.state)
        )
