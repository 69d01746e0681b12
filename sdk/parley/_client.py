"""The async client: one facade, one sub-client per service.

async with Client.connect() as parley:
    room = await parley.rooms.create(display_name="Weekly sync")
    async for room in parley.rooms.list():
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Literal

import grpc
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from parley.control.v1 import api_key_service_pb2 as keys_pb
from parley.control.v1 import api_key_service_pb2_grpc as keys_grpc
from parley.control.v1 import lobby_service_pb2 as lobby_pb
from parley.control.v1 import lobby_service_pb2_grpc as lobby_grpc
from parley.control.v1 import meeting_service_pb2 as meeting_pb
from parley.control.v1 import meeting_service_pb2_grpc as meeting_grpc
from parley.control.v1 import recording_service_pb2 as recording_pb
from parley.control.v1 import recording_service_pb2_grpc as recording_grpc
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_access_service_pb2 as access_pb
from parley.control.v1 import room_access_service_pb2_grpc as access_grpc
from parley.control.v1 import room_service_pb2 as room_pb
from parley.control.v1 import room_service_pb2_grpc as room_grpc
from parley.control.v1 import user_service_pb2 as user_pb
from parley.control.v1 import user_service_pb2_grpc as user_grpc
from parley.control.v1 import webhook_service_pb2 as webhook_pb
from parley.control.v1 import webhook_service_pb2_grpc as webhook_grpc

from ._ai import AI_NOT_CONFIGURED, Summaries, Transcriptions
from ._config import load_credentials
from ._egress import EGRESS_NOT_CONFIGURED, Egresses
from ._enums import EnumNames
from ._names import (
    api_key_path,
    meeting_path,
    recording_path,
    room_path,
    user_path,
    webhook_delivery_path,
    webhook_path,
)
from ._service import Connection, ServiceClient, bearer_metadata


class Rooms(ServiceClient):
    """``RoomService``: rooms and joining them."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = room_grpc.RoomServiceStub(connection.require())

    async def create(
        self,
        *,
        display_name: str = "",
        slug: str = "",
        access_level: res.AccessLevel.ValueType = res.ACCESS_LEVEL_PUBLIC,
        configuration: res.RoomConfiguration | None = None,
    ) -> res.Room:
        room = res.Room(display_name=display_name, slug=slug, access_level=access_level)
        if configuration is not None:
            room.configuration.CopyFrom(configuration)
        return await self._call(self._stub.CreateRoom, room_pb.CreateRoomRequest(room=room))

    async def get(self, room: str) -> res.Room:
        """A room by id, slug or resource name."""
        return await self._call(self._stub.GetRoom, room_pb.GetRoomRequest(name=room_path(room)))

    def list(self, *, filter: str = "", page_size: int = 0) -> AsyncIterator[res.Room]:
        """Every room visible to the caller, fetched page by page."""
        return self._pages(self._stub.ListRooms, room_pb.ListRoomsRequest(filter=filter, page_size=page_size), "rooms")

    async def update(self, room: res.Room, *, update_mask: Sequence[str]) -> res.Room:
        request = room_pb.UpdateRoomRequest(room=room, update_mask=field_mask_pb2.FieldMask(paths=list(update_mask)))
        return await self._call(self._stub.UpdateRoom, request)

    async def delete(self, room: str, *, etag: str = "") -> None:
        await self._call(self._stub.DeleteRoom, room_pb.DeleteRoomRequest(name=room_path(room), etag=etag))

    async def join(self, room: str, *, display_name: str = "", lobby_ticket: str = "") -> room_pb.JoinRoomResponse:
        """Asks to join: the response holds a ``grant`` or a ``lobby`` ticket."""
        request = room_pb.JoinRoomRequest(name=room_path(room), display_name=display_name, lobby_ticket=lobby_ticket)
        return await self._call(self._stub.JoinRoom, request)

    async def create_join_token(
        self,
        room: str,
        *,
        identity: str,
        display_name: str = "",
        metadata: str = "",
        grants: room_pb.JoinGrants | None = None,
        ttl: timedelta | None = None,
    ) -> room_pb.JoinGrant:
        request = room_pb.CreateJoinTokenRequest(
            room=room_path(room),
            identity=identity,
            display_name=display_name,
            metadata=metadata,
            grants=grants or room_pb.JoinGrants(can_publish=True, can_subscribe=True, can_publish_data=True),
        )
        if ttl is not None:
            request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(ttl.total_seconds())))
        return await self._call(self._stub.CreateJoinToken, request)


class RoomAccesses(ServiceClient):
    """``RoomAccessService``: who holds which role on a room."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = access_grpc.RoomAccessServiceStub(connection.require())

    async def create(self, room: str, *, user: str, role: res.Role.ValueType) -> res.RoomAccess:
        request = access_pb.CreateRoomAccessRequest(
            parent=room_path(room), room_access=res.RoomAccess(user=user_path(user), role=role)
        )
        return await self._call(self._stub.CreateRoomAccess, request)

    def list(self, room: str, *, page_size: int = 0) -> AsyncIterator[res.RoomAccess]:
        request = access_pb.ListRoomAccessesRequest(parent=room_path(room), page_size=page_size)
        return self._pages(self._stub.ListRoomAccesses, request, "room_accesses")

    async def update(self, name: str, *, role: res.Role.ValueType) -> res.RoomAccess:
        request = access_pb.UpdateRoomAccessRequest(
            room_access=res.RoomAccess(name=name, role=role), update_mask=field_mask_pb2.FieldMask(paths=["role"])
        )
        return await self._call(self._stub.UpdateRoomAccess, request)

    async def delete(self, name: str) -> None:
        await self._call(self._stub.DeleteRoomAccess, access_pb.DeleteRoomAccessRequest(name=name))


class Lobby(ServiceClient):
    """``LobbyService``: people waiting to be let in."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = lobby_grpc.LobbyServiceStub(connection.require())

    async def get(self, name: str, *, ticket: str = "") -> res.LobbyEntry:
        return await self._call(self._stub.GetLobbyEntry, lobby_pb.GetLobbyEntryRequest(name=name, ticket=ticket))

    async def watch(self, name: str, *, ticket: str = "") -> AsyncIterator[res.LobbyEntry]:
        """The entry now and after each change, until it is decided or lapses."""
        request = lobby_pb.WatchLobbyEntryRequest(name=name, ticket=ticket)
        async for entry in self._stream(self._stub.WatchLobbyEntry, request):
            yield entry

    def list(self, room: str, *, page_size: int = 0) -> AsyncIterator[res.LobbyEntry]:
        request = lobby_pb.ListLobbyEntriesRequest(parent=room_path(room), page_size=page_size)
        return self._pages(self._stub.ListLobbyEntries, request, "lobby_entries")

    async def admit(self, name: str) -> res.LobbyEntry:
        return await self._call(self._stub.AdmitLobbyEntry, lobby_pb.AdmitLobbyEntryRequest(name=name))

    async def deny(self, name: str) -> res.LobbyEntry:
        return await self._call(self._stub.DenyLobbyEntry, lobby_pb.DenyLobbyEntryRequest(name=name))


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    if moment.tzinfo is None:
        raise ValueError("give an aware datetime (with a time zone), e.g. datetime.now(UTC)")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class Meetings(ServiceClient):
    """``MeetingService``: the history of a room's meetings and who took part (owners,
    administrators, and API keys with ``rooms:read``)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = meeting_grpc.MeetingServiceStub(connection.require())

    def list(
        self,
        room: str,
        *,
        start_time_after: datetime | None = None,
        start_time_before: datetime | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[meeting_pb.Meeting]:
        """A room's meetings, newest first, fetched page by page; optionally only those that
        started at or after ``start_time_after`` and before ``start_time_before``."""
        request = meeting_pb.ListMeetingsRequest(parent=room_path(room), page_size=page_size)
        if start_time_after is not None:
            request.start_time_after.CopyFrom(_timestamp(start_time_after))
        if start_time_before is not None:
            request.start_time_before.CopyFrom(_timestamp(start_time_before))
        return self._pages(self._stub.ListMeetings, request, "meetings")

    async def get(self, meeting: str, *, room: str = "") -> meeting_pb.Meeting:
        """A meeting by resource name, or by id with ``room``."""
        request = meeting_pb.GetMeetingRequest(name=meeting_path(room, meeting))
        return await self._call(self._stub.GetMeeting, request)

    def list_participants(
        self, meeting: str, *, room: str = "", page_size: int = 0
    ) -> AsyncIterator[meeting_pb.MeetingParticipant]:
        """Who took part in a meeting (by resource name, or by id with ``room``), in the
        order they joined."""
        request = meeting_pb.ListMeetingParticipantsRequest(parent=meeting_path(room, meeting), page_size=page_size)
        return self._pages(self._stub.ListMeetingParticipants, request, "meeting_participants")


#: The short names of ``parley.control.v1.RecordingMode`` (tests/test_enums.py keeps them equal).
RecordingModeName = Literal["screen_recording", "transcript"]
#: ``"transcript"`` ↔ ``RECORDING_MODE_TRANSCRIPT``..., read from the contract.
RECORDING_MODES = EnumNames(recording_pb.RecordingMode)


class Recordings(ServiceClient):
    """``RecordingService``: recording meetings (a room's owners and administrators, and API
    keys with ``recordings:write``); everyone in the meeting sees that it is recorded.

    A recording is named by its resource name, or by its id with ``room``."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = recording_grpc.RecordingServiceStub(connection.require())

    async def start(
        self,
        room: str,
        *,
        mode: RecordingModeName = "screen_recording",
        language: str = "",
        transcribe: bool = False,
        collect_metadata: bool = False,
    ) -> recording_pb.Recording:
        """Starts recording a room: video and audio (``"screen_recording"``) or audio only
        (``"transcript"``, always transcribed); ``language`` (``en``, ``fr``...) for the
        transcript, empty to detect it."""
        recording = recording_pb.Recording(
            mode=RECORDING_MODES.value(mode),
            options=recording_pb.RecordingOptions(
                language=language, transcribe=transcribe, collect_metadata=collect_metadata
            ),
        )
        request = recording_pb.StartRecordingRequest(parent=room_path(room), recording=recording)
        return await self._call(self._stub.StartRecording, request)

    async def stop(self, recording: str, *, room: str = "") -> recording_pb.Recording:
        """Stops a recording; it is ``SAVED`` once its file is stored."""
        request = recording_pb.StopRecordingRequest(name=recording_path(room, recording))
        return await self._call(self._stub.StopRecording, request)

    async def get(self, recording: str, *, room: str = "") -> recording_pb.Recording:
        request = recording_pb.GetRecordingRequest(name=recording_path(room, recording))
        return await self._call(self._stub.GetRecording, request)

    def list(self, room: str = "-", *, page_size: int = 0) -> AsyncIterator[recording_pb.Recording]:
        """A room's recordings, newest first, fetched page by page; ``"-"`` (the default):
        those of every room the caller may see."""
        request = recording_pb.ListRecordingsRequest(parent=room_path(room), page_size=page_size)
        return self._pages(self._stub.ListRecordings, request, "recordings")

    async def delete(self, recording: str, *, room: str = "") -> None:
        """Deletes a stopped recording and its file."""
        request = recording_pb.DeleteRecordingRequest(name=recording_path(room, recording))
        await self._call(self._stub.DeleteRecording, request)

    async def download_link(self, recording: str, *, room: str = "") -> recording_pb.RecordingDownloadLink:
        """A short-lived link to a saved recording's file: an S3 presigned URL, or a path on
        the gateway (``/v1/files/...``) for a local folder."""
        request = recording_pb.GetRecordingDownloadLinkRequest(name=recording_path(room, recording))
        return await self._call(self._stub.GetRecordingDownloadLink, request)


class Users(ServiceClient):
    """``UserService``: the caller's profile and the dev login."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = user_grpc.UserServiceStub(connection.require())

    async def get(self, user: str = "me") -> res.User:
        return await self._call(self._stub.GetUser, user_pb.GetUserRequest(name=user_path(user)))

    async def update(self, user: res.User, *, update_mask: Sequence[str]) -> res.User:
        request = user_pb.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=list(update_mask)))
        return await self._call(self._stub.UpdateUser, request)

    async def dev_login(self, subject: str, *, email: str = "", display_name: str = "") -> user_pb.DevLoginResponse:
        request = user_pb.DevLoginRequest(subject=subject, email=email, display_name=display_name)
        return await self._call(self._stub.DevLogin, request)


class ApiKeys(ServiceClient):
    """``ApiKeyService``: credentials for services (needs ``keys:manage``)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = keys_grpc.ApiKeyServiceStub(connection.require())

    async def create(self, *, display_name: str, scopes: Sequence[str]) -> keys_pb.CreateApiKeyResponse:
        request = keys_pb.CreateApiKeyRequest(api_key=res.ApiKey(display_name=display_name, scopes=list(scopes)))
        return await self._call(self._stub.CreateApiKey, request)

    def list(self, *, page_size: int = 0) -> AsyncIterator[res.ApiKey]:
        return self._pages(self._stub.ListApiKeys, keys_pb.ListApiKeysRequest(page_size=page_size), "api_keys")

    async def delete(self, key: str) -> None:
        await self._call(self._stub.DeleteApiKey, keys_pb.DeleteApiKeyRequest(name=api_key_path(key)))


class Webhooks(ServiceClient):
    """``WebhookService``: where Parley POSTs meeting events (needs ``webhooks:manage``).
    Receivers check deliveries with :func:`parley.verify_webhook`."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub = webhook_grpc.WebhookServiceStub(connection.require())

    async def create(
        self, url: str, *, event_types: Sequence[str] = (), display_name: str = ""
    ) -> webhook_pb.CreateWebhookResponse:
        """Creates a webhook for ``event_types`` (empty: all); the response holds its secret,
        shown this once."""
        webhook = webhook_pb.Webhook(url=url, event_types=list(event_types), display_name=display_name)
        return await self._call(self._stub.CreateWebhook, webhook_pb.CreateWebhookRequest(webhook=webhook))

    async def get(self, webhook: str) -> webhook_pb.Webhook:
        return await self._call(self._stub.GetWebhook, webhook_pb.GetWebhookRequest(name=webhook_path(webhook)))

    def list(self, *, page_size: int = 0) -> AsyncIterator[webhook_pb.Webhook]:
        return self._pages(self._stub.ListWebhooks, webhook_pb.ListWebhooksRequest(page_size=page_size), "webhooks")

    async def update(self, webhook: webhook_pb.Webhook, *, update_mask: Sequence[str]) -> webhook_pb.Webhook:
        """Changes the fields named in ``update_mask`` (``display_name``, ``url``, ``event_types``)."""
        request = webhook_pb.UpdateWebhookRequest(
            webhook=webhook, update_mask=field_mask_pb2.FieldMask(paths=list(update_mask))
        )
        return await self._call(self._stub.UpdateWebhook, request)

    async def delete(self, webhook: str) -> None:
        await self._call(self._stub.DeleteWebhook, webhook_pb.DeleteWebhookRequest(name=webhook_path(webhook)))

    async def rotate_secret(self, webhook: str) -> webhook_pb.RotateWebhookSecretResponse:
        """A new signing secret (shown this once) under a new ``signing_key_id``."""
        request = webhook_pb.RotateWebhookSecretRequest(name=webhook_path(webhook))
        return await self._call(self._stub.RotateWebhookSecret, request)

    def list_deliveries(
        self,
        webhook: str,
        *,
        state: webhook_pb.WebhookDeliveryState.ValueType = webhook_pb.WEBHOOK_DELIVERY_STATE_UNSPECIFIED,
        page_size: int = 0,
    ) -> AsyncIterator[webhook_pb.WebhookDelivery]:
        """A webhook's delivery log, newest first; optionally only deliveries in ``state``."""
        request = webhook_pb.ListWebhookDeliveriesRequest(
            parent=webhook_path(webhook), state=state, page_size=page_size
        )
        return self._pages(self._stub.ListWebhookDeliveries, request, "webhook_deliveries")

    async def redeliver(self, delivery: str, *, webhook: str = "") -> webhook_pb.WebhookDelivery:
        """Queues a delivery (by resource name, or by id with ``webhook``) to be sent again."""
        request = webhook_pb.RedeliverWebhookDeliveryRequest(name=webhook_delivery_path(webhook, delivery))
        return await self._call(self._stub.RedeliverWebhookDelivery, request)


class Client:
    """Async client of the Parley control plane (and of the AI and egress services).

    Args:
        target: gRPC address, ``host:port``.
        ai_target: the AI service's gRPC address, for ``transcriptions`` and ``summaries``.
        egress_target: the egress service's gRPC address, for ``egress``.
        bearer: Credentials sent as ``authorization: Bearer ...``: an API key
            (``<key id>.<secret>``), an OIDC token or a dev-login token. Empty for anonymous calls.

    Create it inside a running event loop (grpc.aio channels bind to the loop), and close it
    with ``aclose()`` or ``async with``.
    """

    def __init__(
        self,
        target: str,
        *,
        bearer: str = "",
        channel: grpc.aio.Channel | None = None,
        ai_target: str = "",
        ai_channel: grpc.aio.Channel | None = None,
        egress_target: str = "",
        egress_channel: grpc.aio.Channel | None = None,
    ) -> None:
        asyncio.get_running_loop()  # fail here, clearly, rather than deep inside grpc
        self.target = target.removeprefix("grpc://")
        self._owns_channel = channel is None
        self.channel = channel or grpc.aio.insecure_channel(self.target)
        self.ai_target = ai_target.removeprefix("grpc://")
        self._owns_ai_channel = ai_channel is None and bool(self.ai_target)
        self.ai_channel = ai_channel or (grpc.aio.insecure_channel(self.ai_target) if self.ai_target else None)
        self.egress_target = egress_target.removeprefix("grpc://")
        self._owns_egress_channel = egress_channel is None and bool(self.egress_target)
        self.egress_channel = egress_channel or (
            grpc.aio.insecure_channel(self.egress_target) if self.egress_target else None
        )
        self._metadata = bearer_metadata(bearer)
        control = Connection(self.channel, self._metadata)
        self.rooms = Rooms(control)
        self.accesses = RoomAccesses(control)
        self.lobby = Lobby(control)
        self.meetings = Meetings(control)
        self.users = Users(control)
        self.api_keys = ApiKeys(control)
        self.webhooks = Webhooks(control)
        self.recordings = Recordings(control)
        ai = Connection(self.ai_channel, self._metadata, missing=AI_NOT_CONFIGURED)
        self.transcriptions = Transcriptions(ai)
        self.summaries = Summaries(ai)
        self.egress = Egresses(Connection(self.egress_channel, self._metadata, missing=EGRESS_NOT_CONFIGURED))

    @classmethod
    def connect(
        cls,
        *,
        url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        data_dir: Path | None = None,
    ) -> Client:
        """A client configured from arguments, ``PARLEY_*`` variables or ``parley up``'s data folder."""
        credentials = load_credentials(url=url, api_key=api_key, api_secret=api_secret, data_dir=data_dir)
        return cls(
            credentials.url,
            bearer=credentials.bearer,
            ai_target=credentials.ai_url,
            egress_target=credentials.egress_url,
        )

    def with_bearer(self, bearer: str) -> Client:
        """A client calling with other credentials over this client's channel (which stays
        owned by this client)."""
        return Client(
            self.target,
            bearer=bearer,
            channel=self.channel,
            ai_target=self.ai_target,
            ai_channel=self.ai_channel,
            egress_target=self.egress_target,
            egress_channel=self.egress_channel,
        )

    async def aclose(self) -> None:
        if self._owns_channel:
            await self.channel.close()
        if self._owns_ai_channel and self.ai_channel is not None:
            await self.ai_channel.close()
        if self._owns_egress_channel and self.egress_channel is not None:
            await self.egress_channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
