"""The AI gRPC server: transcription, summary and metadata agent services, health, reflection,
and the Ray runtime its jobs and agents run on."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from parley.ai.v1 import (
    metadata_agent_service_pb2,
    metadata_agent_service_pb2_grpc,
    summary_service_pb2,
    summary_service_pb2_grpc,
    transcription_service_pb2,
    transcription_service_pb2_grpc,
)
from parley.server import AuthenticationInterceptor, ControlAuthenticator, GrpcServer, db, standard_interceptors
from parley.server.ray_runtime import start_ray

from ._agents import MetadataAgents
from ._auth import Caller
from ._caller import CALLER, describe
from ._runner import JobRunner
from ._service import AiService
from ._servicers import MetadataAgentServicer, SummaryServicer, TranscriptionServicer
from ._settings import AiSettings
from ._storage import s3_client, store_from_url

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).parent / "migrations"

SERVICE_NAMES = (
    transcription_service_pb2.DESCRIPTOR.services_by_name["TranscriptionService"].full_name,
    summary_service_pb2.DESCRIPTOR.services_by_name["SummaryService"].full_name,
    metadata_agent_service_pb2.DESCRIPTOR.services_by_name["MetadataAgentService"].full_name,
)
#: Upload chunks are at most 2 MiB; leave room for the envelope.
_MAX_MESSAGE = 4 << 20


def start_runtime(ray_address: str = "", ray_num_cpus: int = 0) -> None:
    """Starts (or joins) the Ray runtime jobs run on (``AiSettings.ray_*``); idempotent. A
    process that also runs other gRPC servers calls this before starting them: a local Ray's
    daemons, spawned from a process whose gRPC core already runs, fail to come up."""
    start_ray(address=ray_address, num_cpus=ray_num_cpus or None)


class AiServer(GrpcServer):
    """Runs the AI service on one port until ``stop``; ``async with AiServer(settings)``."""

    name = "ai"

    def __init__(self, settings: AiSettings, *, address: str = "127.0.0.1:0", metrics_address: str = "") -> None:
        self._auth = ControlAuthenticator(settings.control_target, Caller)
        authentication = AuthenticationInterceptor(self._auth, CALLER, describe=describe)
        super().__init__(
            address,
            interceptors=standard_interceptors(logging.getLogger("ai.calls"), authentication),
            options=[("grpc.max_receive_message_length", _MAX_MESSAGE)],
            metrics_address=metrics_address,
        )
        self.settings = settings
        self._engine = db.create_engine(settings.database_url, pool_size=5, max_overflow=10)
        sessions = db.sessions(self._engine)
        self._s3 = (
            s3_client(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
            if settings.storage.startswith("s3://") or settings.s3_endpoint_url
            else None
        )
        self.store = store_from_url(settings.storage, client=self._s3)
        self.runner = JobRunner(settings, sessions, self.store, self._s3)
        self.service = AiService(settings, sessions, self.store, self.runner)
        self.agents = MetadataAgents(sessions, self.store)

    async def prepare(self) -> None:
        await db.migrate(self._engine, _MIGRATIONS, version_table="ai_alembic_version")
        # Before the gRPC server is made: a local Ray spawns its processes from this one, and
        # they should not start from a process whose gRPC core is already running.
        start_runtime(self.settings.ray_address, self.settings.ray_num_cpus)

    def register(self, server: grpc.aio.Server) -> tuple[str, ...]:
        transcription_service_pb2_grpc.add_TranscriptionServiceServicer_to_server(
            TranscriptionServicer(self.service), server
        )
        summary_service_pb2_grpc.add_SummaryServiceServicer_to_server(SummaryServicer(self.service), server)
        metadata_agent_service_pb2_grpc.add_MetadataAgentServiceServicer_to_server(
            MetadataAgentServicer(self.agents), server
        )
        return SERVICE_NAMES

    async def started(self) -> None:
        await self.runner.resume()
        await self.agents.resume()

    async def stopped(self) -> None:
        await self.agents.aclose()
        await self.runner.aclose()
        await self._auth.aclose()
        await self._engine.dispose()
