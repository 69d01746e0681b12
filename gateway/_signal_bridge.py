"""The WebSocket bridge to the SFU's signal stream, for browsers: ``/v1/signal`` carries
``parley.sfu.v1.ConnectRequest`` / ``ConnectResponse`` in the protobuf JSON mapping, one
message per text frame, to and from ``SignalService.Connect``.

A frame that is not a valid request gets an ``error`` message back and the session goes on.
When the SFU ends the stream with an error (a refused join token...), the bridge sends that
error as an ``error`` message and closes with code ``4000 + the gRPC code``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import grpc
import jwt
from google.protobuf import json_format
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley.server import status_message
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from parley.sfu_registry import NoSfuNode, SfuRegistry

log = logging.getLogger(__name__)

SIGNAL_PATH = "/v1/signal"
#: Room ids as control makes them (join tokens' ``video.room``).
ROOM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: Larger frames are refused (an SDP is at most 64 KiB, a data message 15 KiB).
MAX_FRAME = 128 * 1024


def _to_json(message: sig.ConnectResponse) -> str:
    return json_format.MessageToJson(message, indent=None)


def _error(code: grpc.StatusCode, text: str, request_id: int = 0) -> str:
    status = status_message(code, text, reason=code.name)
    return _to_json(sig.ConnectResponse(error=sig.SignalError(request_id=request_id, status=status)))


class SfuTargets:
    """Where signal streams go: the one SFU, or (with a registry) the node each room meets on."""

    def __init__(self, sfu_target: str, registry: SfuRegistry | None) -> None:
        self.sfu_target = sfu_target
        self.registry = registry
        self.channels: dict[str, grpc.aio.Channel] = {}

    @property
    def configured(self) -> bool:
        return bool(self.sfu_target or self.registry)

    async def channel_for(self, join: sig.JoinRequest) -> grpc.aio.Channel:
        if self.registry is None:
            return await self.channel_for_room("")
        try:  # routing only: the SFU verifies the token
            room = jwt.decode(join.token, options={"verify_signature": False})["video"]["room"]
        except (jwt.PyJWTError, KeyError, TypeError) as error:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "malformed join token") from error
        if not isinstance(room, str) or not ROOM_ID.fullmatch(room):
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "the join token names no valid room")
        return await self.channel_for_room(room)

    async def channel_for_room(self, room: str) -> grpc.aio.Channel:
        """The channel to the node ``room`` (an id) meets on; the one SFU without a registry."""
        target = self.sfu_target
        if self.registry is not None:
            try:
                # Control assigned the room when it issued the token; assign only if that node died.
                owner = await self.registry.owner(room)
                node = await self.registry.node(owner) if owner else None
                node = node or await self.registry.assign(room)
            except NoSfuNode as error:
                raise Refused(grpc.StatusCode.UNAVAILABLE, str(error)) from error
            target = node.url.removeprefix("grpc://")
        if not target:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "no SFU is configured on this gateway")
        if target not in self.channels:
            self.channels[target] = grpc.aio.insecure_channel(target)
        return self.channels[target]

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()
        if self.registry is not None:
            await self.registry.aclose()


class Refused(Exception):
    """No SFU to send this to (or a malformed token): the caller answers with ``code``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def signal_route(sfu_target: str, registry: SfuRegistry | None = None) -> tuple[WebSocketRoute, SfuTargets]:
    """The ``/v1/signal`` route, bridging to the SFU at ``sfu_target``, or to the node of the
    joining room when a registry (multi-node) is given; and its targets, which the REST routes
    of ``RoomAdminService`` share and whose ``aclose`` closes the connections."""
    targets = SfuTargets(sfu_target, registry)

    async def bridge(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            first = await _first_request(websocket)
            if first is None:
                return
            channel = await targets.channel_for(first.join)
        except Refused as refused:
            await websocket.send_text(_error(refused.code, str(refused)))
            await websocket.close(code=4000 + refused.code.value[0])
            return
        call = sig_grpc.SignalServiceStub(channel).Connect()
        await call.write(first)
        upstream = asyncio.create_task(_browser_to_sfu(websocket, call))
        try:
            await _sfu_to_browser(websocket, call)
        finally:
            upstream.cancel()
            await asyncio.gather(upstream, return_exceptions=True)
            call.cancel()

    return WebSocketRoute(SIGNAL_PATH, bridge), targets


async def _first_request(websocket: WebSocket) -> sig.ConnectRequest | None:
    """The join request (bad frames before it answer errors); None if the browser left."""
    while True:
        try:
            request = await _receive(websocket)
        except (WebSocketDisconnect, RuntimeError):
            return None
        if request is None:
            continue
        if request.WhichOneof("message") != "join":
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the first request must be join")
        return request


async def _receive(websocket: WebSocket) -> sig.ConnectRequest | None:
    """The next request, or None after answering a frame that is not one."""
    text = await websocket.receive_text()
    if len(text) > MAX_FRAME:
        await websocket.send_text(_error(grpc.StatusCode.INVALID_ARGUMENT, f"frames are at most {MAX_FRAME} bytes"))
        return None
    request = sig.ConnectRequest()
    try:
        json_format.Parse(text, request)
    except json_format.ParseError as error:
        await websocket.send_text(_error(grpc.StatusCode.INVALID_ARGUMENT, f"not a ConnectRequest: {error}"))
        return None
    return request


async def _browser_to_sfu(
    websocket: WebSocket, call: grpc.aio.StreamStreamCall[sig.ConnectRequest, sig.ConnectResponse]
) -> None:
    try:
        while True:
            request = await _receive(websocket)
            if request is not None:
                await call.write(request)
    except (WebSocketDisconnect, RuntimeError):  # the browser went away
        pass
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):  # the SFU ended the stream
        return
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await call.done_writing()


async def _sfu_to_browser(
    websocket: WebSocket, call: grpc.aio.StreamStreamCall[sig.ConnectRequest, sig.ConnectResponse]
) -> None:
    try:
        async for response in call:
            await websocket.send_text(_to_json(response))
    except grpc.aio.AioRpcError as error:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.send_text(_error(error.code(), error.details() or error.code().name))
            await websocket.close(code=4000 + error.code().value[0], reason=(error.details() or "")[:100])
        return
    except (RuntimeError, WebSocketDisconnect):  # the browser went away
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code=1000)
