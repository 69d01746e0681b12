"""The stack the egress tests record through: an SFU node, control and the egress service (its
recorders on the tests' local Ray), wired as ``parley up`` wires them, and optionally the AI
service that transcribes and summarizes saved recordings."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ai import AiServer, AiSettings
from control import ALL_SCOPES, ControlServer, ControlSettings
from egress import EgressServer, EgressSettings
from parley import Client
from parley.control.v1 import recording_service_pb2 as rec_pb
from sfu import SfuServer, SfuSettings

from ..ai.conftest import MODEL_CACHE
from ..conftest import TOKEN_SECRET

#: Control's own key, as ``parley up`` creates it: it starts egresses and has saved
#: recordings transcribed.
CONTROL_SCOPES = ["egress:manage", "ai:read", "ai:write"]


@dataclass
class Stack:
    control: ControlServer
    sfu: SfuServer
    egress: EgressServer
    #: An API key with every scope, for control, the egress service (and the AI service).
    admin: Client
    recordings: Path
    ai: AiServer | None = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _ai_service(folder: Path, control: ControlServer, ray_address: str, port: int) -> AsyncIterator[AiServer]:
    """The AI service on ``parley up``'s embedded defaults (SQLite and a folder, Whisper
    tiny.en from the packaged weights, the light summary engine) on the tests' Ray."""
    settings = AiSettings(
        database_url=f"sqlite:///{folder / 'ai.db'}",
        control_target=control.target,
        storage=str(folder / "ai-storage"),
        ray_address=ray_address,
        model_cache_dir=MODEL_CACHE,
    )
    async with AiServer(settings, address=f"127.0.0.1:{port}", metrics_address="127.0.0.1:0") as ai:
        yield ai


@contextlib.asynccontextmanager
async def stack(
    folder: Path, ray_address: str, *, bucket: str = "", s3_endpoint: str = "", with_ai: bool = False
) -> AsyncIterator[Stack]:
    """SFU, control and the egress service wired as ``parley up`` wires them (control starts
    egresses through the egress service, which reports back), recording to a folder or to S3;
    with ``with_ai``, the AI service too, and control sends it saved transcript recordings."""
    egress_port = free_port()  # control must know the egress address before it starts
    ai_port = free_port() if with_ai else 0  # and the AI service's
    async with SfuServer(
        SfuSettings(token_secrets={"parley": TOKEN_SECRET}, grpc_address="127.0.0.1:0", empty_timeout=2.0)
    ) as sfu:
        control_settings = ControlSettings(
            database_url=f"sqlite:///{folder / 'control.db'}",
            token_secret=TOKEN_SECRET,
            dev_login=True,
            sfu_url=f"grpc://{sfu.target}",
            egress_url=f"grpc://127.0.0.1:{egress_port}",
            ai_url=f"grpc://127.0.0.1:{ai_port}" if with_ai else "",
            recordings_dir=folder / "recordings",
            recordings_bucket=bucket,
            s3_endpoint=s3_endpoint,
            files_secret="f" * 40,
        )
        async with ControlServer(control_settings) as control, contextlib.AsyncExitStack() as services:
            row, secret = await control.control.create_api_key(None, "control", CONTROL_SCOPES)
            control.use_service_key(f"{row.id}.{secret}")
            ai: AiServer | None = None
            if with_ai:
                ai = await services.enter_async_context(_ai_service(folder, control, ray_address, ai_port))
            row, secret = await control.control.create_api_key(None, "egress node", ["egress:report", "tokens:create"])
            settings = EgressSettings(
                control_target=control.target,
                api_key=f"{row.id}.{secret}",
                recordings_dir=folder / "recordings",
                recordings_bucket=bucket,
                s3_endpoint_url=s3_endpoint,
                spool_dir=folder / "spool",
                ray_address=ray_address,
                report_interval=1.0,
                empty_room_timeout=5.0,
            )
            egress_server = EgressServer(settings, address=f"127.0.0.1:{egress_port}", metrics_address="127.0.0.1:0")
            async with egress_server as egress:
                key, key_secret = await control.control.create_api_key(None, "test admin", ALL_SCOPES)
                async with Client(
                    control.target,
                    bearer=f"{key.id}.{key_secret}",
                    egress_target=egress.target,
                    ai_target=ai.target if ai else "",
                ) as admin:
                    yield Stack(control, sfu, egress, admin, settings.recordings_dir, ai)


async def recording_state(
    stack: Stack, name: str, states: set[rec_pb.RecordingState.ValueType], within: float = 60.0
) -> rec_pb.Recording:
    """Polls a recording until it is in one of ``states``."""
    deadline = time.monotonic() + within
    while True:
        recording = await stack.admin.recordings.get(name)
        if recording.state in states:
            return recording
        assert time.monotonic() < deadline, recording
        await asyncio.sleep(0.25)
