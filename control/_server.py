"""The control gRPC server: its ten services on the server kit (``parley.server``), and how it
authenticates callers (API keys, the dev login, OIDC)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import httpx

from parley.control.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    lobby_service_pb2,
    lobby_service_pb2_grpc,
    meeting_service_pb2,
    meeting_service_pb2_grpc,
    recording_service_pb2,
    recording_service_pb2_grpc,
    room_access_service_pb2,
    room_access_service_pb2_grpc,
    room_service_pb2,
    room_service_pb2_grpc,
    sfu_report_service_pb2,
    sfu_report_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from parley.server import AuthenticationInterceptor, CallInput, GrpcServer, db, standard_interceptors

from ._auth import (
    ANONYMOUS,
    API_KEY_PREFIX,
    DEV_LOGIN_ISSUER,
    OidcVerifier,
    Principal,
    parse_bearer,
    token_issuer,
    verify_dev_token,
)
from ._caller import CALLER, describe
from ._delivery import WebhookDispatcher
from ._errors import Unauthenticated
from ._models import migrate
from ._recording_followups import RecordingFollowups
from ._service import ControlPlane
from ._servicers import (
    ApiKeyServicer,
    EgressReportServicer,
    LobbyServicer,
    MeetingServicer,
    RecordingServicer,
    RoomAccessServicer,
    RoomServicer,
    SfuReportServicer,
    UserServicer,
    WebhookServicer,
)
from ._settings import ControlSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (user_service_pb2, "UserService"),
        (room_service_pb2, "RoomService"),
        (room_access_service_pb2, "RoomAccessService"),
        (lobby_service_pb2, "LobbyService"),
        (api_key_service_pb2, "ApiKeyService"),
        (meeting_service_pb2, "MeetingService"),
        (sfu_report_service_pb2, "SfuReportService"),
        (webhook_service_pb2, "WebhookService"),
        (recording_service_pb2, "RecordingService"),
        (recording_service_pb2, "EgressReportService"),
    )
)

#: How often ended meetings and webhook deliveries past their retention are purged.
PURGE_INTERVAL_SECONDS = 3600.0
#: How often, at most, recordings whose egress went silent are looked for.
REAP_INTERVAL_SECONDS = 5.0


class ControlServer(GrpcServer):
    """Runs the control plane on one port until ``stop``.

    Use as ``async with ControlServer(settings) as server:``; ``server.target`` is where it
    listens (port 0 picks a free one).
    """

    name = "control"

    def __init__(
        self,
        settings: ControlSettings,
        *,
        address: str = "127.0.0.1:0",
        metrics_address: str = "",
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        authentication = AuthenticationInterceptor(self._authenticate, CALLER, describe=describe)
        super().__init__(
            address,
            interceptors=standard_interceptors(logging.getLogger("control.calls"), authentication),
            metrics_address=metrics_address,
        )
        self.settings = settings
        self._engine = db.create_engine(settings.database_url)
        self.control = ControlPlane(settings, db.sessions(self._engine))
        self._oidc = OidcVerifier(settings.oidc) if settings.oidc else None
        self._purge_task: asyncio.Task[None] | None = None
        self.webhook_dispatcher = WebhookDispatcher(
            settings, db.sessions(self._engine), self.control.outbox_signal, transport=webhook_transport
        )
        self._dispatch_task: asyncio.Task[None] | None = None
        self._reap_task: asyncio.Task[None] | None = None
        self.recording_followups = (
            RecordingFollowups(settings, db.sessions(self._engine), self.control.ai) if self.control.ai else None
        )
        self._followup_task: asyncio.Task[None] | None = None

    def use_service_key(self, api_key: str) -> None:
        """Sets control's own API key (its calls to the egress and AI services) once it runs."""
        self.control.use_service_key(api_key)

    async def _authenticate(self, call: CallInput) -> Principal:
        if not call.authorization:
            return ANONYMOUS
        credentials = parse_bearer(call.authorization)
        if credentials.startswith(API_KEY_PREFIX):
            key_id, _, secret = credentials.partition(".")
            return await self.control.authenticate_api_key(key_id, secret)
        issuer = token_issuer(credentials)
        if issuer == DEV_LOGIN_ISSUER:
            identity = verify_dev_token(self.settings, credentials)
        elif self._oidc is not None and issuer == self._oidc.issuer:
            identity = await self._oidc.verify(credentials)
        else:
            raise Unauthenticated("token from an issuer this server does not trust")
        user = await self.control.user_for(identity)
        return Principal(kind="user", user_id=user.id, display_name=user.display_name, identity=identity)

    async def prepare(self) -> None:
        await migrate(self._engine)

    def register(self, server: grpc.aio.Server) -> tuple[str, ...]:
        user_service_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(self.control), server)
        room_service_pb2_grpc.add_RoomServiceServicer_to_server(RoomServicer(self.control), server)
        room_access_service_pb2_grpc.add_RoomAccessServiceServicer_to_server(RoomAccessServicer(self.control), server)
        lobby_service_pb2_grpc.add_LobbyServiceServicer_to_server(LobbyServicer(self.control), server)
        api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server(ApiKeyServicer(self.control), server)
        meeting_service_pb2_grpc.add_MeetingServiceServicer_to_server(MeetingServicer(self.control), server)
        sfu_report_service_pb2_grpc.add_SfuReportServiceServicer_to_server(SfuReportServicer(self.control), server)
        webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(WebhookServicer(self.control), server)
        recording_service_pb2_grpc.add_RecordingServiceServicer_to_server(RecordingServicer(self.control), server)
        recording_service_pb2_grpc.add_EgressReportServiceServicer_to_server(EgressReportServicer(self.control), server)
        return SERVICE_NAMES

    async def started(self) -> None:
        self._purge_task = asyncio.create_task(self._purge(), name="control-purge")
        self._dispatch_task = asyncio.create_task(self.webhook_dispatcher.run(), name="control-webhooks")
        self._reap_task = asyncio.create_task(self._reap(), name="control-recording-reaper")
        if self.recording_followups is not None:
            self._followup_task = asyncio.create_task(
                self.recording_followups.run(), name="control-recording-followups"
            )
        else:
            log.info("transcription of recordings is off (PARLEY_AI_URL is not set): recordings are only saved")
        if self.settings.webhook_allowed_networks:
            log.warning(
                "webhooks may target these loopback / private networks: %s (PARLEY_WEBHOOK_ALLOWED_NETWORKS)",
                ", ".join(self.settings.webhook_allowed_networks),
            )

    async def _purge(self) -> None:
        """Deletes ended meetings and finished webhook deliveries past their retention, now and
        every ``PURGE_INTERVAL_SECONDS``."""
        while True:
            try:
                purged = await self.control.meetings.purge_expired()
                if purged:
                    log.info("purged %d meetings older than %s", purged, self.settings.meeting_retention)
                purged = await self.control.webhooks.purge_log()
                if purged:
                    log.info("purged %d webhook deliveries older than %s", purged, self.settings.webhook_log_retention)
            except Exception:
                log.exception("purging old meetings and webhook deliveries failed; trying again later")
            await asyncio.sleep(PURGE_INTERVAL_SECONDS)

    async def _reap(self) -> None:
        """Fails the recordings whose egress stopped reporting, every few seconds (more often
        when the report timeout is shorter)."""
        interval = min(REAP_INTERVAL_SECONDS, self.settings.recording_report_timeout.total_seconds() / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                failed = await self.control.recordings.fail_silent()
                if failed:
                    log.warning("%d recordings failed: their egress stopped reporting", failed)
            except Exception:
                log.exception("looking for recordings whose egress went silent failed; trying again later")

    async def draining(self) -> None:
        if self._dispatch_task is not None:
            await self.webhook_dispatcher.stop(grace=self.settings.webhook_timeout.total_seconds())
            self._dispatch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatch_task
            self._dispatch_task = None
        if self._followup_task is not None:
            self._followup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._followup_task
            self._followup_task = None
        if self.recording_followups is not None:
            await self.recording_followups.aclose()
        if self._reap_task is not None:
            self._reap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reap_task
            self._reap_task = None
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
            self._purge_task = None

    async def stopped(self) -> None:
        if self._oidc is not None:
            await self._oidc.aclose()
        if self.control.sfu_registry is not None:
            await self.control.sfu_registry.aclose()
        await self.control.aclose()
        await self._engine.dispose()
