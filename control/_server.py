"""The control gRPC server: services, interceptor, health and reflection."""

from __future__ import annotations

import logging
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from parley.control.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    lobby_service_pb2,
    lobby_service_pb2_grpc,
    room_access_service_pb2,
    room_access_service_pb2_grpc,
    room_service_pb2,
    room_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)

from . import _db
from ._auth import (
    API_KEY_PREFIX,
    DEV_LOGIN_ISSUER,
    OidcVerifier,
    Principal,
    parse_bearer,
    token_issuer,
    verify_dev_token,
)
from ._errors import Unauthenticated
from ._interceptor import ControlInterceptor
from ._service import ControlPlane
from ._servicers import ApiKeyServicer, LobbyServicer, RoomAccessServicer, RoomServicer, UserServicer
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
    )
)


class ControlServer:
    """Runs the control plane on one port until ``stop``.

    Use as ``async with ControlServer(settings) as server:``; ``server.port`` is where it
    listens (port 0 picks a free one).
    """

    def __init__(self, settings: ControlSettings, *, address: str = "127.0.0.1:0") -> None:
        self.settings = settings
        self._address = address
        self._engine = _db.create_engine(settings.database_url)
        self.control = ControlPlane(settings, _db.sessions(self._engine))
        self._oidc = OidcVerifier(settings.oidc) if settings.oidc else None
        self._server = grpc.aio.server(interceptors=[ControlInterceptor(self._authenticate)])
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def _authenticate(self, authorization: str) -> Principal:
        credentials = parse_bearer(authorization)
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

    async def start(self) -> int:
        await _db.migrate(self._engine)
        server = self._server
        user_service_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(self.control), server)
        room_service_pb2_grpc.add_RoomServiceServicer_to_server(RoomServicer(self.control), server)
        room_access_service_pb2_grpc.add_RoomAccessServiceServicer_to_server(RoomAccessServicer(self.control), server)
        lobby_service_pb2_grpc.add_LobbyServiceServicer_to_server(LobbyServicer(self.control), server)
        api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server(ApiKeyServicer(self.control), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        self.port = server.add_insecure_port(self._address)
        await server.start()
        for name in (*SERVICE_NAMES, ""):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("control listening on %s", self.target)
        return self.port

    @property
    def target(self) -> str:
        host = self._address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        if self._oidc is not None:
            await self._oidc.aclose()
        if self.control.sfu_registry is not None:
            await self.control.sfu_registry.aclose()
        await self._engine.dispose()

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
