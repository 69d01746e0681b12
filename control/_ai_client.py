"""Control as a client of the AI service (``parley.ai.v1``): sending a metadata agent into a
recorded meeting, transcribing a saved recording and summarizing its transcript, with control's
own API key (``ai:read`` and ``ai:write``).

The channel is opened on first use, inside the running event loop (grpc.aio channels belong to
the loop that creates them), and closed by ``aclose``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc

from parley.ai.v1 import metadata_agent_service_pb2 as agent_pb
from parley.ai.v1 import metadata_agent_service_pb2_grpc as agent_grpc
from parley.ai.v1 import resources_pb2 as ai_res
from parley.ai.v1 import summary_service_pb2 as summary_pb
from parley.ai.v1 import summary_service_pb2_grpc as summary_grpc
from parley.ai.v1 import transcription_service_pb2 as transcription_pb
from parley.ai.v1 import transcription_service_pb2_grpc as transcription_grpc
from parley.server import inject_trace_context

#: How long one call to the AI service may take (an upload: per chunk sent, roughly).
CALL_TIMEOUT_SECONDS = 15.0
UPLOAD_TIMEOUT_SECONDS = 600.0
#: The bytes of a file sent in one upload message (the contract allows up to 2 MiB).
UPLOAD_CHUNK_BYTES = 1 << 20

T = TypeVar("T")


class AiCallFailed(Exception):
    """A call to the AI service failed: its gRPC code and message, as the service said."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        """Whether trying again later may work (the service is away or overloaded), rather
        than the request being wrong."""
        return self.code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.INTERNAL,
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.ABORTED,
            # control's own key not set yet, or not valid yet: an operator can fix it
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        )


class AiClient:
    """Calls one AI service (``grpc://host:port``) with an API key (``pk_id.secret``)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = CALL_TIMEOUT_SECONDS) -> None:
        self.target = url.removeprefix("grpc://")
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._transcriptions: transcription_grpc.TranscriptionServiceAsyncStub | None = None
        self._summaries: summary_grpc.SummaryServiceAsyncStub | None = None
        self._agents: agent_grpc.MetadataAgentServiceAsyncStub | None = None

    def use_api_key(self, api_key: str) -> None:
        """Calls with ``api_key`` from now on (``parley up`` creates control's key once
        control runs)."""
        self._metadata = (("authorization", f"Bearer {api_key}"),)

    def _open(self) -> tuple[transcription_grpc.TranscriptionServiceAsyncStub, summary_grpc.SummaryServiceAsyncStub]:
        if self._transcriptions is None or self._summaries is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._transcriptions = transcription_grpc.TranscriptionServiceStub(self._channel)
            self._summaries = summary_grpc.SummaryServiceStub(self._channel)
            self._agents = agent_grpc.MetadataAgentServiceStub(self._channel)
        return self._transcriptions, self._summaries

    def _agent_stub(self) -> agent_grpc.MetadataAgentServiceAsyncStub:
        self._open()
        assert self._agents is not None
        return self._agents

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._transcriptions = self._summaries = self._agents = None

    def _call_metadata(self) -> list[tuple[str, str]]:
        metadata = list(self._metadata)
        inject_trace_context(metadata)
        return metadata

    @staticmethod
    async def _call(call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            raise AiCallFailed(error.code(), error.details() or "") from None
        except OSError as error:  # the file to upload could not be read
            raise AiCallFailed(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from error

    async def upload(self, path: Path, *, filename: str) -> str:
        """Sends a file (metadata first, then chunks of at most ``UPLOAD_CHUNK_BYTES``);
        returns the upload's name, ``uploads/{id}``."""

        async def messages() -> AsyncIterator[transcription_pb.UploadMediaRequest]:
            yield transcription_pb.UploadMediaRequest(metadata=transcription_pb.UploadMetadata(filename=filename))
            with path.open("rb") as file:
                while chunk := await asyncio.to_thread(file.read, UPLOAD_CHUNK_BYTES):
                    yield transcription_pb.UploadMediaRequest(chunk=chunk)

        if not path.is_file():  # noqa: ASYNC240 (one stat)
            raise AiCallFailed(grpc.StatusCode.FAILED_PRECONDITION, f"the recording's file {path} is missing")
        transcriptions, _ = self._open()
        upload = await self._call(
            lambda: transcriptions.UploadMedia(
                messages(), metadata=self._call_metadata(), timeout=UPLOAD_TIMEOUT_SECONDS
            )
        )
        return upload.name

    async def create_transcription(
        self,
        source: ai_res.MediaSource,
        *,
        language: str,
        vocabulary: str = "",
        speaker_timeline: Sequence[ai_res.SpeakerTurn] = (),
    ) -> ai_res.Transcription:
        transcriptions, _ = self._open()
        transcription = ai_res.Transcription(
            source=source, language=language, vocabulary=vocabulary, speaker_timeline=speaker_timeline
        )
        request = transcription_pb.CreateTranscriptionRequest(transcription=transcription)
        return await self._call(
            lambda: transcriptions.CreateTranscription(request, metadata=self._call_metadata(), timeout=self._timeout)
        )

    async def get_transcription(self, name: str) -> ai_res.Transcription:
        transcriptions, _ = self._open()
        request = transcription_pb.GetTranscriptionRequest(name=name)
        return await self._call(
            lambda: transcriptions.GetTranscription(request, metadata=self._call_metadata(), timeout=self._timeout)
        )

    async def create_summary(self, transcription: str, *, language: str) -> ai_res.Summary:
        _, summaries = self._open()
        request = summary_pb.CreateSummaryRequest(
            summary=ai_res.Summary(transcription=transcription, language=language)
        )
        return await self._call(
            lambda: summaries.CreateSummary(request, metadata=self._call_metadata(), timeout=self._timeout)
        )

    async def get_summary(self, name: str) -> ai_res.Summary:
        _, summaries = self._open()
        request = summary_pb.GetSummaryRequest(name=name)
        return await self._call(
            lambda: summaries.GetSummary(request, metadata=self._call_metadata(), timeout=self._timeout)
        )

    async def start_metadata_agent(
        self, agent_id: str, *, room: str, sfu_url: str, join_token: str
    ) -> agent_pb.MetadataAgent:
        agents = self._agent_stub()
        request = agent_pb.StartMetadataAgentRequest(
            room=room, sfu_url=sfu_url, join_token=join_token, agent_id=agent_id
        )
        return await self._call(
            lambda: agents.StartMetadataAgent(request, metadata=self._call_metadata(), timeout=self._timeout)
        )

    async def get_metadata_agent(self, name: str) -> agent_pb.MetadataAgent:
        agents = self._agent_stub()
        request = agent_pb.GetMetadataAgentRequest(name=name)
        return await self._call(
            lambda: agents.GetMetadataAgent(request, metadata=self._call_metadata(), timeout=self._timeout)
        )

    async def stop_metadata_agent(self, name: str) -> agent_pb.MetadataAgent:
        agents = self._agent_stub()
        request = agent_pb.StopMetadataAgentRequest(name=name)
        return await self._call(
            lambda: agents.StopMetadataAgent(request, metadata=self._call_metadata(), timeout=self._timeout)
        )
