"""The SFU's gRPC server: the signal stream, room admin, health and reflection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import grpc
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from parley import InvalidTokenError, JoinTokenClaims, verify_join_token
from parley.server import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
    error_status,
    field_violations,
    status_message,
)
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from parley.sfu_registry import NoSfuNode

from ._cluster import Cluster
from ._data import deliver
from ._media import check_aiortc
from ._room import Room, Rooms
from ._session import Session
from ._settings import SfuSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    sig.DESCRIPTOR.services_by_name["SignalService"].full_name,
    sig.DESCRIPTOR.services_by_name["RoomAdminService"].full_name,
)
#: Signal requests one session may send per second on average (bursts of twice that pass).
REQUEST_RATE = 50.0


def _status(error: ServiceError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an error answered inside the signal stream."""
    violations = error.violations if isinstance(error, InvalidArgument) else ()
    return status_message(error.code, error.message, reason=error.reason, violations=violations)


def _invalid(request: Any) -> list[tuple[str, str]]:
    return field_violations(request)


class SignalServicer(sig_grpc.SignalServiceServicer):
    def __init__(self, rooms: Rooms, cluster: Cluster) -> None:
        self.rooms = rooms
        self.cluster = cluster

    async def Connect(
        self, request_iterator: AsyncIterator[sig.ConnectRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[sig.ConnectResponse]:
        try:
            session = await self._join(request_iterator)
        except ServiceError as error:
            await context.abort_with_status(rpc_status.to_status(_status(error)))
            return
        reader = asyncio.create_task(self._read(session, request_iterator))
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, (session.claims.expires_at - datetime.now(UTC)).total_seconds()),
            lambda: asyncio.ensure_future(session.end(res.LEAVE_REASON_TOKEN_EXPIRED)),
        )
        try:
            yield session.joined()
            await session.start()
            while (message := await session.outbox.get()) is not None:
                yield message
        finally:
            expiry.cancel()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await session.end(res.LEAVE_REASON_CLIENT_INITIATED)
            log.info("%s left %s (%s)", session.identity, session.room.id, res.LeaveReason.Name(session.leave_reason))  # type: ignore[arg-type]

    async def _join(self, requests: AsyncIterator[sig.ConnectRequest]) -> Session:
        try:
            first = await asyncio.wait_for(anext(requests), timeout=self.rooms.settings.ping_interval)
        except (StopAsyncIteration, TimeoutError) as error:
            raise InvalidArgument.field("join", "send join first") from error
        if first.WhichOneof("message") != "join":
            raise InvalidArgument.field("join", "the first request must be join")
        if violations := _invalid(first):
            raise InvalidArgument(violations, "invalid join request")
        try:
            claims = verify_join_token(first.join.token, secrets=self.rooms.settings.token_secrets)
        except InvalidTokenError as error:
            raise Unauthenticated(str(error)) from error
        if not claims.grants.room_join:
            raise PermissionDenied("the token does not grant joining the room")
        try:
            elsewhere = await self.cluster.owner_elsewhere(claims.grants.room)
        except NoSfuNode as error:
            raise Unavailable(str(error)) from error
        if elsewhere is not None:
            raise FailedPrecondition(f"room {claims.grants.room} meets on another node: {elsewhere}")
        room = self.rooms.get_or_create(claims.grants.room)
        limit = self.rooms.settings.max_participants
        if limit and claims.identity not in room.sessions and len(room.sessions) >= limit:
            raise ResourceExhausted(f"the room is full ({limit} participants)")
        replaced = room.sessions.get(claims.identity)
        if replaced is not None:  # ended before the new one is in: a cancelled join leaves no ghost
            await replaced.end(res.LEAVE_REASON_DUPLICATE_IDENTITY)
        session = Session(room, claims, manual_subscribe=first.join.manual_subscribe, closing=self.rooms.closing)
        room.admit(session)
        log.info("%s joined %s as %s", claims.identity, room.id, session.sid)
        return session

    async def _read(self, session: Session, requests: AsyncIterator[sig.ConnectRequest]) -> None:
        """Handles the session's requests in order; a failed request answers ``error`` to that
        client only. Leaving, silence and floods end the session."""
        settings = session.room.settings
        budget, last = 2 * REQUEST_RATE, asyncio.get_running_loop().time()
        reason: int = res.LEAVE_REASON_CLIENT_INITIATED
        try:
            while True:
                try:
                    request = await asyncio.wait_for(anext(requests), timeout=3 * settings.ping_interval)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    reason = res.LEAVE_REASON_CONNECTION_FAILED
                    break
                now = asyncio.get_running_loop().time()
                budget = min(2 * REQUEST_RATE, budget + (now - last) * REQUEST_RATE) - 1
                last = now
                if budget < 0:
                    self._fail(session, request, ResourceExhausted("too many signal requests; slow down"))
                    continue
                if request.WhichOneof("message") == "leave":
                    break
                if violations := _invalid(request):
                    self._fail(session, request, InvalidArgument(violations))
                    continue
                try:
                    await session.handle(request)
                except ServiceError as error:
                    self._fail(session, request, error)
                except Exception:
                    log.exception("request %s of %s failed", request.WhichOneof("message"), session.identity)
                    self._fail(session, request, ServiceError("the SFU failed this request"))
        except grpc.RpcError:
            reason = res.LEAVE_REASON_CONNECTION_FAILED
        await session.end(reason)

    @staticmethod
    def _fail(session: Session, request: sig.ConnectRequest, error: ServiceError) -> None:
        """Answers one request with its error; the session goes on."""
        session.send(sig.ConnectResponse(error=sig.SignalError(request_id=request.request_id, status=_status(error))))


class RoomAdminServicer(sig_grpc.RoomAdminServiceServicer):
    """Room admin calls authenticated by a join token of the same room with ``roomAdmin``."""

    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms

    async def _room(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Room:
        if violations := _invalid(request):
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "invalid request",
                    reason="INVALID_ARGUMENT",
                    violations=violations,
                )
            )
        claims = await self._caller(context)
        if not claims.grants.room_admin or claims.grants.room != request.room:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"the token does not grant administering {request.room}"
            )
        room = self.rooms.rooms.get(request.room)
        if room is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no meeting in room {request.room} on this node")
        return room

    async def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> JoinTokenClaims:
        metadata = dict(context.invocation_metadata() or ())
        header = str(metadata.get("authorization", ""))
        if not header.lower().startswith("bearer "):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "send a room admin join token: authorization: Bearer ..."
            )
        try:
            return verify_join_token(header[7:].strip(), secrets=self.rooms.settings.token_secrets)
        except InvalidTokenError as error:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
            raise

    async def _session(self, room: Room, identity: str, context: grpc.aio.ServicerContext[Any, Any]) -> Session:
        session = room.sessions.get(identity)
        if session is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{identity} is not in the meeting")
        return session

    async def ListParticipants(
        self, request: sig.ListParticipantsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sig.ListParticipantsResponse:
        room = await self._room(request, context)
        return sig.ListParticipantsResponse(participants=[s.info() for s in room.sessions.values()])

    async def RemoveParticipant(
        self, request: sig.RemoveParticipantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sig.RemoveParticipantResponse:
        room = await self._room(request, context)
        session = await self._session(room, request.identity, context)
        await session.end(res.LEAVE_REASON_REMOVED)
        return sig.RemoveParticipantResponse()

    async def MutePublishedTrack(
        self, request: sig.MutePublishedTrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Track:
        room = await self._room(request, context)
        session = await self._session(room, request.identity, context)
        track = session.published.get(request.track_sid)
        if track is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.identity} publishes no track {request.track_sid}")
        session.set_muted(track, request.muted)
        return track.info()

    async def UpdateParticipant(
        self, request: sig.UpdateParticipantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Participant:
        room = await self._room(request, context)
        session = await self._session(room, request.identity, context)
        if request.HasField("name"):
            session.name = request.name
        if request.HasField("metadata"):
            session.metadata = request.metadata
        if request.HasField("permission"):
            session.permission.CopyFrom(request.permission)
        session.announce_update()
        return session.info()

    async def SendData(
        self, request: sig.SendDataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sig.SendDataResponse:
        room = await self._room(request, context)
        deliver(room, request.data, sender=None)
        return sig.SendDataResponse()


class SfuServer:
    """One SFU node: ``async with SfuServer(settings) as sfu`` serves until the block ends."""

    def __init__(self, settings: SfuSettings) -> None:
        check_aiortc()
        self.settings = settings
        self.rooms = Rooms(settings)
        self.cluster = Cluster(settings, self.rooms)
        self._server = grpc.aio.server()
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> int:
        server = self._server
        sig_grpc.add_SignalServiceServicer_to_server(SignalServicer(self.rooms, self.cluster), server)
        sig_grpc.add_RoomAdminServiceServicer_to_server(RoomAdminServicer(self.rooms), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        self.port = server.add_insecure_port(self.settings.grpc_address)
        await server.start()
        await self.cluster.start(f"grpc://{self.target}")
        self.rooms.start()
        for name in (*SERVICE_NAMES, ""):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("sfu listening on %s", self.target)
        return self.port

    @property
    def target(self) -> str:
        return f"{self.settings.grpc_address.rsplit(':', 1)[0]}:{self.port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        await self._health.enter_graceful_shutdown()
        await self.cluster.aclose()
        await self.rooms.aclose()
        await self._server.stop(grace)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()

    async def __aenter__(self) -> SfuServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
