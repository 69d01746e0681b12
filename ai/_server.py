"""The AI gRPC server: transcription and summary services, health, reflection, and the Ray
runtime its jobs run on."""

from __future__ import annotations

import logging
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from parley.ai.v1 import (
    summary_service_pb2,
    summary_service_pb2_grpc,
    transcription_service_pb2,
    transcription_service_pb2_grpc,
)

from . import _db
from ._auth import ControlAuthenticator
from ._interceptor import AiInterceptor
from ._pool import start_ray
from ._runner import JobRunner
from ._service import AiService
from ._servicers import SummaryServicer, TranscriptionServicer
from ._settings import AiSettings
from ._storage import s3_client, store_from_url

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    transcription_service_pb2.DESCRIPTOR.services_by_name["TranscriptionService"].full_name,
    summary_service_pb2.DESCRIPTOR.services_by_name["SummaryService"].full_name,
)
#: Upload chunks are at most 2 MiB; leave room for the envelope.
_MAX_MESSAGE = 4 << 20


def start_runtime(ray_address: str = "", ray_num_cpus: int = 0) -> None:
    """Starts (or joins) the Ray runtime jobs run on (``AiSettings.ray_*``); idempotent. A
    process that also runs other gRPC servers calls this before starting them: a local Ray's
    daemons, spawned from a process whose gRPC core already runs, fail to come up."""
    start_ray(address=ray_address, num_cpus=ray_num_cpus or None)


class AiServer:
    """Runs the AI service on one port until ``stop``; ``async with AiServer(settings)``."""

    def __init__(self, settings: AiSettings, *, address: str = "127.0.0.1:0") -> None:
        self.settings = settings
        self._address = address
        self._engine = _db.create_engine(settings.database_url)
        sessions = _db.sessions(self._engine)
        self._s3 = (
            s3_client(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
            if settings.storage.startswith("s3://") or settings.s3_endpoint_url
            else None
        )
        self.store = store_from_url(settings.storage, client=self._s3)
        self.runner = JobRunner(settings, sessions, self.store, self._s3)
        self.service = AiService(settings, sessions, self.store, self.runner)
        self._auth = ControlAuthenticator(settings.control_target)
        # Made in ``start``, after Ray: a local Ray spawns its processes from this one, and they
        # should not start from a process whose gRPC core is already running.
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> int:
        await _db.migrate(self._engine)
        start_runtime(self.settings.ray_address, self.settings.ray_num_cpus)
        self._server = server = grpc.aio.server(
            interceptors=[AiInterceptor(self._auth)],
            options=[("grpc.max_receive_message_length", _MAX_MESSAGE)],
        )
        transcription_service_pb2_grpc.add_TranscriptionServiceServicer_to_server(
            TranscriptionServicer(self.service), server
        )
        summary_service_pb2_grpc.add_SummaryServiceServicer_to_server(SummaryServicer(self.service), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        self.port = server.add_insecure_port(self._address)
        await server.start()
        await self.runner.resume()
        for name in (*SERVICE_NAMES, ""):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("ai listening on %s", self.target)
        return self.port

    @property
    def target(self) -> str:
        return f"{self._address.rsplit(':', 1)[0]}:{self.port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        await self.runner.aclose()
        await self._auth.aclose()
        await self._engine.dispose()

    async def wait_for_termination(self) -> None:
        assert self._server is not None, "start the server first"
        await self._server.wait_for_termination()

    async def __aenter__(self) -> AiServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
