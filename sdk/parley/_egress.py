"""The egress service's sub-client: ``client.egress``, recordings of rooms and tracks to files.

Users record meetings through control (``client.recordings``), which decides who may; this
client calls the egress service directly, with an API key holding ``egress:manage``, as control
does.

async with Client.connect() as parley:
    egress = await parley.egress.start_room_composite("abc-defg-hij")
    async for update in parley.egress.watch(egress.name):
        print(update.status)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from google.protobuf import duration_pb2

from parley.egress.v1 import egress_service_pb2 as egress_pb
from parley.egress.v1 import egress_service_pb2_grpc as egress_grpc
from parley.egress.v1 import resources_pb2 as egress_res

from ._names import egress_path, room_path
from ._service import Connection, ServiceClient

#: The error of a call to the egress service when none is configured.
EGRESS_NOT_CONFIGURED = "no egress service configured: pass egress_target or set PARLEY_EGRESS_URL"


def _duration(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)
    return duration


class Egresses(ServiceClient):
    """``EgressService``: recording a room's composite or one track (needs ``egress:manage``)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub_value: egress_grpc.EgressServiceAsyncStub | None = None

    @property
    def _stub(self) -> egress_grpc.EgressServiceAsyncStub:
        # Built on first use, so that a client without an egress service still works.
        if self._stub_value is None:
            self._stub_value = egress_grpc.EgressServiceStub(self._connection.require())
        return self._stub_value

    async def start_room_composite(
        self,
        room: str,
        *,
        layout: egress_res.CompositeLayout.ValueType = egress_res.COMPOSITE_LAYOUT_UNSPECIFIED,
        audio_only: bool = False,
        preset: egress_res.EncodingPreset.ValueType = egress_res.ENCODING_PRESET_UNSPECIFIED,
        output: egress_res.EgressOutput | None = None,
        max_duration: timedelta | None = None,
        egress_id: str = "",
    ) -> egress_res.Egress:
        """Starts recording a whole room (MP4, or Ogg/Opus with ``audio_only``). Giving an
        ``egress_id`` (32 hex digits) makes a start sent again return the same egress."""
        request = egress_pb.StartRoomCompositeEgressRequest(
            room=room_path(room),
            options=egress_res.RoomComposite(layout=layout, audio_only=audio_only, preset=preset),
            output=output,
            max_duration=_duration(max_duration),
            egress_id=egress_id,
        )
        return await self._call(self._stub.StartRoomCompositeEgress, request)

    async def start_track(
        self,
        room: str,
        track_sid: str,
        *,
        output: egress_res.EgressOutput | None = None,
        max_duration: timedelta | None = None,
        egress_id: str = "",
    ) -> egress_res.Egress:
        """Starts recording one published track (``TR_...``) as it was sent."""
        request = egress_pb.StartTrackEgressRequest(
            room=room_path(room),
            track=egress_res.SingleTrack(track_sid=track_sid),
            output=output,
            max_duration=_duration(max_duration),
            egress_id=egress_id,
        )
        return await self._call(self._stub.StartTrackEgress, request)

    async def stop(self, egress: str) -> egress_res.Egress:
        """Stops an egress (by id or ``egresses/...``); it finishes its file."""
        return await self._call(self._stub.StopEgress, egress_pb.StopEgressRequest(name=egress_path(egress)))

    async def get(self, egress: str) -> egress_res.Egress:
        return await self._call(self._stub.GetEgress, egress_pb.GetEgressRequest(name=egress_path(egress)))

    def list(self, *, room: str = "", active: bool = False, page_size: int = 0) -> AsyncIterator[egress_res.Egress]:
        """Egresses, newest first, fetched page by page: all, or one room's; with ``active``,
        only those not final yet."""
        request = egress_pb.ListEgressesRequest(
            room=room_path(room) if room else "", active=active, page_size=page_size
        )
        return self._pages(self._stub.ListEgresses, request, "egresses")

    async def watch(self, egress: str) -> AsyncIterator[egress_res.Egress]:
        """The egress now, then each change, until it is final."""
        request = egress_pb.WatchEgressRequest(name=egress_path(egress))
        async for update in self._stream(self._stub.WatchEgress, request):
            yield update


__all__: Sequence[str] = ("EGRESS_NOT_CONFIGURED", "Egresses")
