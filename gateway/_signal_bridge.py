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

import grpc
from google.protobuf import json_format
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley.server import status_message
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc

log = logging.getLogger(__name__)

SIGNAL_PATH = "/v1/signal"
#: Larger frames are refused (an SDP is at most 64 KiB, a data message 15 KiB).
MAX_FRAME = 128 * 1024


def _to_json(message: sig.ConnectResponse) -> str:
    return json_format.MessageToJson(message, indent=None)


def _error(code: grpc.StatusCode, text: str, request_id: int = 0) -> str:
    status = status_message(code, text, reason=code.name)
    return _to_json(sig.ConnectResponse(error=sig.SignalError(request_id=request_id, status=status)))


def signal_route(sfu_target: str) -> WebSocketRoute:
    """The ``/v1/signal`` route, bridging to the SFU at ``sfu_target`` (empty: refused)."""
    channel: grpc.aio.Channel | None = None

    async def bridge(websocket: WebSocket) -> None:
        nonlocal channel
        await websocket.accept()
        if not sfu_target:
            await websocket.send_text(_error(grpc.StatusCode.UNAVAILABLE, "no SFU is configured on this gateway"))
            await websocket.close(code=4000 + grpc.StatusCode.UNAVAILABLE.value[0])
            return
        if channel is None:
            channel = grpc.aio.insecure_channel(sfu_target)
        call = sig_grpc.SignalServiceStub(channel).Connect()
        upstream = asyncio.create_task(_browser_to_sfu(websocket, call))
        try:
            await _sfu_to_browser(websocket, call)
        finally:
            upstream.cancel()
            await asyncio.gather(upstream, return_exceptions=True)
            call.cancel()

    return WebSocketRoute(SIGNAL_PATH, bridge)


async def _browser_to_sfu(
    websocket: WebSocket, call: grpc.aio.StreamStreamCall[sig.ConnectRequest, sig.ConnectResponse]
) -> None:
    try:
        while True:
            text = await websocket.receive_text()
            if len(text) > MAX_FRAME:
                await websocket.send_text(
                    _error(grpc.StatusCode.INVALID_ARGUMENT, f"frames are at most {MAX_FRAME} bytes")
                )
                continue
            request = sig.ConnectRequest()
            try:
                json_format.Parse(text, request)
            except json_format.ParseError as error:
                await websocket.send_text(_error(grpc.StatusCode.INVALID_ARGUMENT, f"not a ConnectRequest: {error}"))
                continue
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
