"""gRPC servicer: unpacks requests and calls the EgressService rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from parley.egress.v1 import egress_service_pb2 as pb
from parley.egress.v1 import egress_service_pb2_grpc as pb_grpc
from parley.egress.v1 import resources_pb2 as res

from ._caller import current_caller
from ._service import EgressService

Context = grpc.aio.ServicerContext[Any, Any]


class EgressServicer(pb_grpc.EgressServiceServicer):
    def __init__(self, service: EgressService) -> None:
        self._service = service

    async def StartRoomCompositeEgress(
        self, request: pb.StartRoomCompositeEgressRequest, context: Context
    ) -> res.Egress:
        return await self._service.start_room_composite(current_caller(), request)

    async def StartTrackEgress(self, request: pb.StartTrackEgressRequest, context: Context) -> res.Egress:
        return await self._service.start_track(current_caller(), request)

    async def StopEgress(self, request: pb.StopEgressRequest, context: Context) -> res.Egress:
        return await self._service.stop(current_caller(), request.name)

    async def GetEgress(self, request: pb.GetEgressRequest, context: Context) -> res.Egress:
        return self._service.get(current_caller(), request.name)

    async def ListEgresses(self, request: pb.ListEgressesRequest, context: Context) -> pb.ListEgressesResponse:
        return self._service.list_egresses(current_caller(), request)

    async def WatchEgress(self, request: pb.WatchEgressRequest, context: Context) -> AsyncIterator[res.Egress]:
        async for egress in self._service.watch(current_caller(), request.name):
            yield egress
