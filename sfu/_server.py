"""The SFU's gRPC server: the signal stream, room admin, health and reflection."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from parley import InvalidTokenError, JoinTokenClaims, verify_join_token
from parley.server import (
    AuthenticationInterceptor,
    CallInput,
    ConfigurationError,
    FailedPrecondition,
    GrpcServer,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
    bind_log_context,
    field_violations,
    standard_interceptors,
    to_status_message,
)
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from parley.sfu_registry import NoSfuNode

from . import _metrics as node_metrics
from ._cluster import Cluster
from ._data import deliver
from ._media import check_aiortc, negotiate_rid_extensions
from ._metrics import RESUMES
from ._reporter import Reporter
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


class SignalServicer(sig_grpc.SignalServiceServicer):
    def __init__(self, rooms: Rooms, cluster: Cluster) -> None:
        self.rooms = rooms
        self.cluster = cluster

    async def Connect(
        self, request_iterator: AsyncIterator[sig.ConnectRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[sig.ConnectResponse]:
        session, resumed = await self._join(request_iterator)  # a refusal ends the call (error interceptor)
        # Every line logged for this session from here on (its tasks included, and the call's
        # own line at the end) says whose it is.
        bind_log_context(room=session.room.id, participant=session.identity)
        outbox = session.attach()
        if resumed:
            session.take_up()
        reader = session.reader = asyncio.create_task(self._read(session, outbox, request_iterator))
        try:
            yield session.joined(resumed=resumed)
            if resumed:
                await session.subscriber.negotiate()
            else:
                await session.start()
            while (message := await outbox.get()) is not None:
                yield message
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            # Ended without leave (the client went away, or the call was cancelled): the
            # session waits for a resume; nothing when it ended or another stream took it.
            await session.detach(outbox, res.LEAVE_REASON_CONNECTION_FAILED)
            if session.left.is_set():
                reason = res.LeaveReason.Name(session.leave_reason)  # type: ignore[arg-type]
                log.info("%s left %s (%s)", session.identity, session.room.id, reason)

    async def _join(self, requests: AsyncIterator[sig.ConnectRequest]) -> tuple[Session, bool]:
        """The session the first request joins or resumes, and whether it resumes."""
        try:
            first = await asyncio.wait_for(anext(requests), timeout=self.rooms.settings.ping_interval)
        except (StopAsyncIteration, TimeoutError) as error:
            raise InvalidArgument.field("join", "send join first") from error
        if first.WhichOneof("message") != "join":
            raise InvalidArgument.field("join", "the first request must be join")
        if violations := field_violations(first):
            raise InvalidArgument(violations, "invalid join request")
        try:
            claims = verify_join_token(first.join.token, secrets=self.rooms.settings.token_secrets)
        except InvalidTokenError as error:
            raise Unauthenticated(str(error)) from error
        if not claims.grants.room_join:
            raise PermissionDenied("the token does not grant joining the room")
        if first.join.HasField("resume"):
            return self._resumed(claims, first.join.resume), True
        try:
            elsewhere = await self.cluster.owner_elsewhere(claims.grants.room)
        except NoSfuNode as error:
            raise Unavailable(str(error)) from error
        if elsewhere is not None:
            raise FailedPrecondition(
                f"room {claims.grants.room} meets on another node: {elsewhere}",
                reason="ROOM_ON_ANOTHER_NODE",
                metadata={"node_url": elsewhere},
            )
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
        return session, False

    def _resumed(self, claims: JoinTokenClaims, resume: sig.ResumeSession) -> Session:
        """The session a resume takes up: one of this room on this node, the token's
        participant's, still waiting or still connected (its drop not noticed yet), whose
        resume token the caller presents."""
        room = self.rooms.rooms.get(claims.grants.room)
        sessions = list(room.sessions.values()) if room is not None else []
        session = next((s for s in sessions if s.sid == resume.participant_sid), None)
        if session is None or session.left.is_set():
            RESUMES.not_found += 1
            raise NotFound(
                f"no session {resume.participant_sid} to resume in {claims.grants.room} (it ended): join anew",
                reason="SESSION_NOT_FOUND",
            )
        if session.identity != claims.identity or not session.proves(resume.resume_token):
            RESUMES.refused += 1
            log.warning("refused a resume of %s's session %s by %s", session.identity, session.sid, claims.identity)
            raise PermissionDenied(f"this resume token does not prove session {session.sid}")
        RESUMES.resumed += 1
        away = f" after {time.monotonic() - session.disconnected_since:.1f} s" if session.disconnected_since else ""
        log.info("%s resumed %s in %s%s", claims.identity, session.sid, claims.grants.room, away)
        return session

    async def _read(
        self,
        session: Session,
        outbox: asyncio.Queue[sig.ConnectResponse | None],
        requests: AsyncIterator[sig.ConnectRequest],
    ) -> None:
        """Handles the session's requests in order; a failed request answers ``error`` to that
        client only. Leaving, silence and floods end the session; a stream that ends without
        ``leave`` detaches it (it waits for a resume)."""
        settings = session.room.settings
        budget, last = 2 * REQUEST_RATE, asyncio.get_running_loop().time()
        try:
            while True:
                try:
                    request = await asyncio.wait_for(anext(requests), timeout=3 * settings.ping_interval)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    # Silent on an open stream: the client is not there (no resume to wait for).
                    await session.end(res.LEAVE_REASON_CONNECTION_FAILED)
                    return
                now = asyncio.get_running_loop().time()
                budget = min(2 * REQUEST_RATE, budget + (now - last) * REQUEST_RATE) - 1
                last = now
                if budget < 0:
                    self._fail(session, request, ResourceExhausted("too many signal requests; slow down"))
                    continue
                if request.WhichOneof("message") == "leave":
                    await session.end(res.LEAVE_REASON_CLIENT_INITIATED)
                    return
                if violations := field_violations(request):
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
            pass
        await session.detach(outbox, res.LEAVE_REASON_CONNECTION_FAILED)

    @staticmethod
    def _fail(session: Session, request: sig.ConnectRequest, error: ServiceError) -> None:
        """Answers one request with its error; the session goes on."""
        session.send(
            sig.ConnectResponse(error=sig.SignalError(request_id=request.request_id, status=to_status_message(error)))
        )


class RoomAdminServicer(sig_grpc.RoomAdminServiceServicer):
    """Room admin calls, authenticated by the interceptor with a join token of the same room
    carrying ``roomAdmin``; errors are the kit's (``google.rpc.Status`` with an ErrorInfo)."""

    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms

    def _room(self, request: Any) -> Room:
        claims = current_admin()
        if not claims.grants.room_admin or claims.grants.room != request.room:
            raise PermissionDenied(f"the token does not grant administering {request.room}")
        room = self.rooms.rooms.get(request.room)
        if room is None:
            raise NotFound(f"no meeting in room {request.room} on this node")
        return room

    @staticmethod
    def _session(room: Room, identity: str) -> Session:
        session = room.sessions.get(identity)
        if session is None:
            raise NotFound(f"{identity} is not in the meeting")
        return session

    async def ListParticipants(
        self, request: sig.ListParticipantsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sig.ListParticipantsResponse:
        room = self._room(request)
        return sig.ListParticipantsResponse(participants=[s.info() for s in room.sessions.values()])

    async def RemoveParticipant(
        self, request: sig.RemoveParticipantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sig.RemoveParticipantResponse:
        session = self._session(self._room(request), request.identity)
        await session.end(res.LEAVE_REASON_REMOVED)
        return sig.RemoveParticipantResponse()

    async def MutePublishedTrack(
        self, request: sig.MutePublishedTrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Track:
        session = self._session(self._room(request), request.identity)
        track = session.published.get(request.track_sid)
        if track is None:
            raise NotFound(f"{request.identity} publishes no track {request.track_sid}")
        session.set_muted(track, request.muted)
        return track.info()

    async def UpdateParticipant(
        self, request: sig.UpdateParticipantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> res.Participant:
        session = self._session(self._room(request), request.identity)
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
        deliver(self._room(request), request.data, sender=None)
        return sig.SendDataResponse()


_ADMIN: contextvars.ContextVar[JoinTokenClaims | None] = contextvars.ContextVar("parley_sfu_admin", default=None)
_CONNECT = f"/{SERVICE_NAMES[0]}/Connect"


def current_admin() -> JoinTokenClaims:
    claims = _ADMIN.get()
    if claims is None:  # pragma: no cover - the interceptor always sets it for room admin calls
        raise Unauthenticated("send a room admin join token: authorization: Bearer ...")
    return claims


class SfuServer(GrpcServer):
    """One SFU node: ``async with SfuServer(settings) as sfu`` serves until the block ends;
    stopping tells every participant ``LEAVE_REASON_SERVER_SHUTDOWN`` before calls drain, then
    reports the meetings' end to control (``settings.control_target``, or ``report_to``)."""

    name = "sfu"

    def __init__(self, settings: SfuSettings, *, metrics_address: str = "") -> None:
        check_aiortc()
        negotiate_rid_extensions()
        authentication = AuthenticationInterceptor(self._authenticate, _ADMIN, describe=_describe)
        super().__init__(
            settings.grpc_address,
            interceptors=standard_interceptors(logging.getLogger("sfu.calls"), authentication),
            metrics_address=metrics_address,
        )
        if settings.control_target and not settings.report_api_key:
            raise ConfigurationError(
                "PARLEY_CONTROL_TARGET is set: give the node an API key with the sfu:report scope "
                "(PARLEY_SFU_REPORT_API_KEY=pk_....sk_...)"
            )
        self.settings = settings
        # Buffering from the start when control is configured: a join may arrive before
        # ``started`` has run.
        self.reporter = Reporter(capacity=settings.report_buffer, enabled=bool(settings.control_target))
        self.rooms = Rooms(settings, self.reporter)
        self.cluster = Cluster(settings, self.rooms)

    async def _authenticate(self, call: CallInput) -> JoinTokenClaims | None:
        """Room admin calls carry a join token in ``authorization``; the signal stream carries
        one in its join request instead."""
        if call.method == _CONNECT:
            return None
        header = call.authorization
        if not header.lower().startswith("bearer "):
            raise Unauthenticated("send a room admin join token: authorization: Bearer ...")
        try:
            return verify_join_token(header[7:].strip(), secrets=self.settings.token_secrets)
        except InvalidTokenError as error:
            raise Unauthenticated(str(error)) from None

    def register(self, server: grpc.aio.Server) -> tuple[str, ...]:
        sig_grpc.add_SignalServiceServicer_to_server(SignalServicer(self.rooms, self.cluster), server)
        sig_grpc.add_RoomAdminServiceServicer_to_server(RoomAdminServicer(self.rooms), server)
        return SERVICE_NAMES

    async def started(self) -> None:
        await self.cluster.start(f"grpc://{self.target}")
        if self.settings.control_target:
            self.report_to(self.settings.control_target, self.settings.report_api_key)
        self.rooms.start()
        node_metrics.watch(self)

    def report_to(self, control_target: str, api_key: str) -> None:
        """Reports what happens in meetings to control at ``control_target`` (``host:port``)
        with ``api_key`` (``key.secret``, holding ``sfu:report``); for a node started before
        control (``parley up``)."""
        self.reporter.start(control_target, api_key, node=self.cluster.node_id, node_url=self.cluster.url)

    async def draining(self) -> None:
        node_metrics.unwatch(self)
        await self.cluster.aclose()
        await self.rooms.aclose()

    async def stopped(self) -> None:
        # Once every session has ended: their last events (left, room finished) go too.
        await self.reporter.aclose()


def _describe(claims: JoinTokenClaims | None) -> str:
    return claims.identity if claims is not None else "participant"
