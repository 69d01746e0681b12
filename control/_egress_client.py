"""Control as a client of the egress service (``parley.egress.v1.EgressService``): starting a
room composite for a recording and stopping it, with control's own API key.

The channel is opened on first use, inside the running event loop (grpc.aio channels belong to
the loop that creates them), and closed by ``aclose``.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from parley.egress.v1 import egress_service_pb2 as egress_pb
from parley.egress.v1 import egress_service_pb2_grpc as egress_grpc
from parley.egress.v1 import resources_pb2 as egress_res
from parley.server import inject_trace_context

#: How long one call to the egress service may take before the recording gives up on it.
CALL_TIMEOUT_SECONDS = 15.0


class EgressCallFailed(Exception):
    """A call to the egress service failed: its gRPC code and message, as the egress said."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class CompositeRequest:
    """What control asks of a room composite egress."""

    egress_id: str
    room: str
    audio_only: bool
    layout: egress_res.CompositeLayout.ValueType
    filename_template: str
    bucket: str = ""
    #: Also each participant's audio track in a file of its own.
    participant_audio: bool = False


class EgressClient:
    """Calls one egress service (``grpc://host:port``) with an API key (``pk_id.secret``)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = CALL_TIMEOUT_SECONDS) -> None:
        self.target = url.removeprefix("grpc://")
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: egress_grpc.EgressServiceAsyncStub | None = None

    def use_api_key(self, api_key: str) -> None:
        """Calls with ``api_key`` from now on (``parley up`` creates control's key once
        control runs)."""
        self._metadata = (("authorization", f"Bearer {api_key}"),)

    def _service(self) -> egress_grpc.EgressServiceAsyncStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = egress_grpc.EgressServiceStub(self._channel)
        return self._stub

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

    def _call_metadata(self) -> list[tuple[str, str]]:
        metadata = list(self._metadata)
        inject_trace_context(metadata)
        return metadata

    async def start_room_composite(self, request: CompositeRequest) -> egress_res.Egress:
        """Starts (or, with the same ``egress_id``, finds) the egress; ``EgressCallFailed`` if
        the egress service refuses or cannot be reached."""
        output = egress_res.EgressOutput(filename_template=request.filename_template)
        if request.bucket:
            output.s3.bucket = request.bucket
        message = egress_pb.StartRoomCompositeEgressRequest(
            room=request.room,
            options=egress_res.RoomComposite(
                layout=request.layout,
                audio_only=request.audio_only,
                preset=egress_res.ENCODING_PRESET_H264_720P_30,
                participant_audio=request.participant_audio,
            ),
            output=output,
            egress_id=request.egress_id,
        )
        try:
            return await self._service().StartRoomCompositeEgress(
                message, metadata=self._call_metadata(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise EgressCallFailed(error.code(), error.details() or "") from None
        except Exception as error:  # anything else (a bad target...) fails the call the same way
            raise EgressCallFailed(grpc.StatusCode.UNKNOWN, str(error)) from error

    async def stop(self, name: str) -> egress_res.Egress:
        """Stops the egress ``egresses/{id}``; ``EgressCallFailed`` if that fails."""
        try:
            return await self._service().StopEgress(
                egress_pb.StopEgressRequest(name=name), metadata=self._call_metadata(), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise EgressCallFailed(error.code(), error.details() or "") from None
        except Exception as error:  # anything else (a bad target...) fails the call the same way
            raise EgressCallFailed(grpc.StatusCode.UNKNOWN, str(error)) from error
