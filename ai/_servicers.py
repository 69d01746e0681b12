"""gRPC servicers: unpack requests, call the AiService rules, map rows to protos."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2

from parley.ai.v1 import metadata_agent_service_pb2 as agent_pb
from parley.ai.v1 import metadata_agent_service_pb2_grpc as agent_grpc
from parley.ai.v1 import resources_pb2 as res
from parley.ai.v1 import summary_service_pb2 as summary_pb
from parley.ai.v1 import summary_service_pb2_grpc as summary_grpc
from parley.ai.v1 import transcription_service_pb2 as transcription_pb
from parley.ai.v1 import transcription_service_pb2_grpc as transcription_grpc
from parley.server import validate

from . import _mapper
from ._agents import MetadataAgents
from ._caller import current_caller
from ._errors import InvalidArgument
from ._models import JobState, SummaryRow, TranscriptionRow
from ._service import AiService

Context = grpc.aio.ServicerContext[Any, Any]


def _id(name: str) -> str:
    return name.split("/", 1)[1]


class TranscriptionServicer(transcription_grpc.TranscriptionServiceServicer):
    def __init__(self, service: AiService) -> None:
        self._service = service

    async def UploadMedia(
        self, request_iterator: AsyncIterator[transcription_pb.UploadMediaRequest], context: Context
    ) -> res.Upload:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument.field("metadata", "the first message must carry the upload's metadata")
        validate(first)

        async def chunks() -> AsyncIterator[bytes]:
            async for part in messages:
                validate(part)
                if not part.HasField("chunk"):
                    raise InvalidArgument.field("metadata", "only the first message carries metadata")
                yield part.chunk

        row = await self._service.create_upload(current_caller(), first.metadata.filename, chunks())
        return _mapper.upload(row)

    async def CreateTranscription(
        self, request: transcription_pb.CreateTranscriptionRequest, context: Context
    ) -> res.Transcription:
        return _mapper.transcription(await self._service.create_transcription(current_caller(), request.transcription))

    async def GetTranscription(
        self, request: transcription_pb.GetTranscriptionRequest, context: Context
    ) -> res.Transcription:
        row = await self._service.get_transcription(current_caller(), _id(request.name))
        if request.view == res.TRANSCRIPTION_VIEW_FULL and row.state == JobState.SUCCEEDED:
            return _mapper.transcription(row, await self._service.transcript(row))
        return _mapper.transcription(row)

    async def ListTranscriptions(
        self, request: transcription_pb.ListTranscriptionsRequest, context: Context
    ) -> transcription_pb.ListTranscriptionsResponse:
        rows, token = await self._service.list_jobs(
            current_caller(), TranscriptionRow, request.page_size, request.page_token
        )
        return transcription_pb.ListTranscriptionsResponse(
            transcriptions=[_mapper.transcription(r) for r in rows], next_page_token=token
        )

    async def WatchTranscription(
        self, request: transcription_pb.WatchTranscriptionRequest, context: Context
    ) -> AsyncIterator[res.Transcription]:
        async for row in self._service.watch(current_caller(), TranscriptionRow, _id(request.name)):
            yield _mapper.transcription(row)

    async def CancelTranscription(
        self, request: transcription_pb.CancelTranscriptionRequest, context: Context
    ) -> res.Transcription:
        return _mapper.transcription(await self._service.cancel(current_caller(), TranscriptionRow, _id(request.name)))

    async def DeleteTranscription(
        self, request: transcription_pb.DeleteTranscriptionRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._service.delete(current_caller(), TranscriptionRow, _id(request.name))
        return empty_pb2.Empty()

    async def ExportTranscription(
        self, request: transcription_pb.ExportTranscriptionRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        content_type, body = await self._service.export(current_caller(), _id(request.name), request.format)
        return httpbody_pb2.HttpBody(content_type=content_type, data=body)


def _summary(row: SummaryRow, *, with_text: bool = True) -> res.Summary:
    message = _mapper.summary(row)
    if not with_text:
        message.ClearField("text")
    return message


class SummaryServicer(summary_grpc.SummaryServiceServicer):
    def __init__(self, service: AiService) -> None:
        self._service = service

    async def CreateSummary(self, request: summary_pb.CreateSummaryRequest, context: Context) -> res.Summary:
        return _summary(await self._service.create_summary(current_caller(), request.summary))

    async def GetSummary(self, request: summary_pb.GetSummaryRequest, context: Context) -> res.Summary:
        return _summary(await self._service.get_summary(current_caller(), _id(request.name)))

    async def ListSummaries(
        self, request: summary_pb.ListSummariesRequest, context: Context
    ) -> summary_pb.ListSummariesResponse:
        rows, token = await self._service.list_jobs(current_caller(), SummaryRow, request.page_size, request.page_token)
        return summary_pb.ListSummariesResponse(
            summaries=[_summary(r, with_text=False) for r in rows], next_page_token=token
        )

    async def WatchSummary(
        self, request: summary_pb.WatchSummaryRequest, context: Context
    ) -> AsyncIterator[res.Summary]:
        async for row in self._service.watch(current_caller(), SummaryRow, _id(request.name)):
            yield _summary(row, with_text=False)

    async def CancelSummary(self, request: summary_pb.CancelSummaryRequest, context: Context) -> res.Summary:
        return _summary(await self._service.cancel(current_caller(), SummaryRow, _id(request.name)))

    async def DeleteSummary(self, request: summary_pb.DeleteSummaryRequest, context: Context) -> empty_pb2.Empty:
        await self._service.delete(current_caller(), SummaryRow, _id(request.name))
        return empty_pb2.Empty()


class MetadataAgentServicer(agent_grpc.MetadataAgentServiceServicer):
    def __init__(self, agents: MetadataAgents) -> None:
        self._agents = agents

    async def StartMetadataAgent(
        self, request: agent_pb.StartMetadataAgentRequest, context: Context
    ) -> agent_pb.MetadataAgent:
        row = await self._agents.start(
            current_caller(), request.agent_id, room=request.room, sfu_url=request.sfu_url, token=request.join_token
        )
        return _mapper.metadata_agent(row)

    async def GetMetadataAgent(
        self, request: agent_pb.GetMetadataAgentRequest, context: Context
    ) -> agent_pb.MetadataAgent:
        return _mapper.metadata_agent(*await self._agents.get(current_caller(), _id(request.name)))

    async def StopMetadataAgent(
        self, request: agent_pb.StopMetadataAgentRequest, context: Context
    ) -> agent_pb.MetadataAgent:
        return _mapper.metadata_agent(await self._agents.stop(current_caller(), _id(request.name)))
