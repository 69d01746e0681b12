"""The egress gRPC server: ``EgressService`` on the server kit (health, reflection, metrics,
drain on SIGTERM), its recorders on the Ray cluster, its reports to control."""

from __future__ import annotations

import logging

import grpc

from parley.egress.v1 import egress_service_pb2, egress_service_pb2_grpc
from parley.server import (
    AuthenticationInterceptor,
    ControlAuthenticator,
    GrpcServer,
    RemoteCaller,
    standard_interceptors,
)
from parley.server.ray_runtime import start_ray

from ._caller import CALLER, describe
from ._control import ControlLink
from ._service import EgressService
from ._servicers import EgressServicer
from ._settings import EgressSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = (egress_service_pb2.DESCRIPTOR.services_by_name["EgressService"].full_name,)


class EgressServer(GrpcServer):
    """Runs the egress service on one port until ``stop``; ``async with EgressServer(settings)``."""

    name = "egress"

    def __init__(self, settings: EgressSettings, *, address: str = "127.0.0.1:0", metrics_address: str = "") -> None:
        self._auth = ControlAuthenticator(settings.control_target, RemoteCaller)
        authentication = AuthenticationInterceptor(self._auth, CALLER, describe=describe)
        super().__init__(
            address,
            interceptors=standard_interceptors(logging.getLogger("egress.calls"), authentication),
            metrics_address=metrics_address,
        )
        self.settings = settings
        self.control = ControlLink(
            settings.control_target,
            settings.api_key,
            interval=settings.report_interval,
            on_answer=self._on_answer,
        )
        self.service = EgressService(settings, self.control)

    async def _on_answer(self, egress: object, answer: object) -> None:
        await self.service.on_report_answer(egress, answer)  # type: ignore[arg-type]

    async def prepare(self) -> None:
        # Before the gRPC server is made: a local Ray spawns its processes from this one.
        start_ray(address=self.settings.ray_address, num_cpus=self.settings.ray_num_cpus or None)
        self.settings.spool_dir.mkdir(parents=True, exist_ok=True)

    def register(self, server: grpc.aio.Server) -> tuple[str, ...]:
        egress_service_pb2_grpc.add_EgressServiceServicer_to_server(EgressServicer(self.service), server)
        return SERVICE_NAMES

    async def started(self) -> None:
        self.control.start()
        await self._recover_spools()

    async def _recover_spools(self) -> None:
        """Completes the uploads of recorders that died with an earlier run of this node."""
        import asyncio

        from ._sink import pending_spools, recover_spool
        from ._spec import Storage
        from ._storage import s3_client

        s = self.settings
        for sidecar in pending_spools(s.spool_dir):
            storage = Storage(bucket=s.recordings_bucket, endpoint_url=s.s3_endpoint_url, region=s.s3_region)
            try:
                outcome = await asyncio.to_thread(recover_spool, s3_client(storage), sidecar)
            except Exception:
                log.exception("cannot recover the upload of %s", sidecar)
                continue
            log.info("recovered an interrupted recording upload: %s", outcome)

    async def draining(self) -> None:
        await self.service.aclose()

    async def stopped(self) -> None:
        await self.control.aclose()
        await self._auth.aclose()
