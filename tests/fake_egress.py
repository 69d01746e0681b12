"""A fake egress service for control's tests: a real grpc.aio server (port 0) that implements
``parley.egress.v1.EgressService`` with scripted behaviour (accept, refuse for lack of
capacity, fail to stop) and remembers what it was asked. It records nothing and never
reports: tests report for it (``EgressReportService.ReportEgress``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from parley.egress.v1 import egress_service_pb2 as egress_pb
from parley.egress.v1 import egress_service_pb2_grpc as egress_grpc
from parley.egress.v1 import resources_pb2 as egress_res

Context = grpc.aio.ServicerContext[Any, Any]


class FakeEgressService(egress_grpc.EgressServiceServicer):
    def __init__(self) -> None:
        #: ``accept`` starts egresses (ACTIVE at once); ``full`` refuses with RESOURCE_EXHAUSTED.
        self.behaviour = "accept"
        #: When set, StopEgress fails with this code.
        self.stop_error: grpc.StatusCode | None = None
        self.egresses: dict[str, egress_res.Egress] = {}
        #: (method, request, the authorization metadata) of every call.
        self.calls: list[tuple[str, Any, str]] = []

    def _note(self, method: str, request: Any, context: Context) -> None:
        authorization = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.calls.append((method, request, str(authorization)))

    async def StartRoomCompositeEgress(
        self, request: egress_pb.StartRoomCompositeEgressRequest, context: Context
    ) -> egress_res.Egress:
        self._note("StartRoomCompositeEgress", request, context)
        if self.behaviour == "full":
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "no egress node has room for it")
        name = f"egresses/{request.egress_id or uuid.uuid4().hex}"
        if name not in self.egresses:
            egress = egress_res.Egress(
                name=name,
                room=request.room,
                room_composite=request.options,
                status=egress_res.EGRESS_STATUS_ACTIVE,
                output=request.output,
            )
            egress.create_time.GetCurrentTime()
            egress.start_time.GetCurrentTime()
            self.egresses[name] = egress
        return self.egresses[name]

    async def StopEgress(self, request: egress_pb.StopEgressRequest, context: Context) -> egress_res.Egress:
        self._note("StopEgress", request, context)
        if self.stop_error is not None:
            await context.abort(self.stop_error, "the egress could not be stopped")
        egress = self.egresses.get(request.name)
        if egress is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
        assert egress is not None
        if egress.status in (egress_res.EGRESS_STATUS_STARTING, egress_res.EGRESS_STATUS_ACTIVE):
            egress.status = egress_res.EGRESS_STATUS_ENDING
        return egress

    async def GetEgress(self, request: egress_pb.GetEgressRequest, context: Context) -> egress_res.Egress:
        egress = self.egresses.get(request.name)
        if egress is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found")
        assert egress is not None
        return egress

    async def ListEgresses(
        self, request: egress_pb.ListEgressesRequest, context: Context
    ) -> egress_pb.ListEgressesResponse:
        return egress_pb.ListEgressesResponse(egresses=list(reversed(self.egresses.values())))

    async def StartTrackEgress(self, request: egress_pb.StartTrackEgressRequest, context: Context) -> egress_res.Egress:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake egress records no tracks")
        raise AssertionError("unreachable")

    async def WatchEgress(
        self, request: egress_pb.WatchEgressRequest, context: Context
    ) -> AsyncIterator[egress_res.Egress]:
        yield await self.GetEgress(egress_pb.GetEgressRequest(name=request.name), context)


class FakeEgress:
    """The fake service on a port of its own: ``async with FakeEgress() as egress``, then
    ``egress.url`` is what control's ``egress_url`` should be."""

    def __init__(self) -> None:
        self.service = FakeEgressService()
        self._server: grpc.aio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> FakeEgress:
        self._server = grpc.aio.server()
        egress_grpc.add_EgressServiceServicer_to_server(self.service, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.url = f"grpc://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Goes away (the port then refuses connections)."""
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
