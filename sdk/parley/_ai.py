"""Sub-clients of the AI service: ``client.transcriptions`` and ``client.summaries``.

async with Client.connect() as parley:
    job = await parley.transcriptions.create_from_file("meeting.webm")
    async for update in parley.transcriptions.watch(job.name):
        print(update.progress)
    print(await parley.transcriptions.export(job.name, "srt"))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

from parley.ai.v1 import resources_pb2 as ai
from parley.ai.v1 import summary_service_pb2 as summary_pb
from parley.ai.v1 import summary_service_pb2_grpc as summary_grpc
from parley.ai.v1 import transcription_service_pb2 as transcription_pb
from parley.ai.v1 import transcription_service_pb2_grpc as transcription_grpc

from ._enums import EnumNames
from ._service import Connection, ServiceClient

#: Bytes per UploadMedia message (the contract allows up to 2 MiB).
UPLOAD_CHUNK = 1 << 20
#: The short names of ``parley.ai.v1.TranscriptFormat`` (tests/test_enums.py keeps them equal).
ExportFormat = Literal["json", "text", "srt", "webvtt"]
#: ``"srt"`` ↔ ``TRANSCRIPT_FORMAT_SRT``..., read from the contract.
EXPORT_FORMATS = EnumNames(transcription_pb.TranscriptFormat)


#: The error of a call to the AI service when none is configured.
AI_NOT_CONFIGURED = "no AI service configured: pass ai_target, set PARLEY_AI_URL, or run `parley up`"


def _name(collection: str, value: str) -> str:
    return value if value.startswith(collection + "/") else f"{collection}/{value}"


class Transcriptions(ServiceClient):
    """``TranscriptionService``: speech to text, as jobs."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub_value: transcription_grpc.TranscriptionServiceAsyncStub | None = None

    @property
    def _stub(self) -> transcription_grpc.TranscriptionServiceAsyncStub:
        if self._stub_value is None:
            self._stub_value = transcription_grpc.TranscriptionServiceStub(self._connection.require())
        return self._stub_value

    async def upload(self, path: str | Path, *, on_progress: Callable[[int, int], None] | None = None) -> ai.Upload:
        """Sends a local media file; ``on_progress(bytes_sent, total)`` is called per chunk."""
        path = Path(path)
        total = path.stat().st_size

        async def parts() -> AsyncIterator[transcription_pb.UploadMediaRequest]:
            yield transcription_pb.UploadMediaRequest(
                metadata=transcription_pb.UploadMetadata(filename=path.name[:255])
            )
            sent = 0
            media = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(media.read, UPLOAD_CHUNK):
                    sent += len(chunk)
                    yield transcription_pb.UploadMediaRequest(chunk=chunk)
                    if on_progress is not None:
                        on_progress(sent, total)
            finally:
                media.close()

        return await self._call(self._stub.UploadMedia, parts())

    async def create(
        self,
        *,
        upload: str = "",
        s3_bucket: str = "",
        s3_key: str = "",
        language: str = "",
        model: str = "",
        speaker_timeline: Iterable[ai.SpeakerTurn] = (),
        speaker_tracks: Iterable[ai.SpeakerTrack] = (),
        vocabulary: str = "",
    ) -> ai.Transcription:
        """Starts a transcription of an upload (``uploads/...``), an S3 object, or one file per
        speaker (``speaker_tracks``: each speaker's segments carry their name).
        ``vocabulary``: names and terms the speech contains, to spell them right."""
        tracks = list(speaker_tracks)
        if tracks:
            source = ai.MediaSource(speaker_tracks=ai.SpeakerTracks(tracks=tracks))
        elif upload:
            source = ai.MediaSource(upload=upload)
        else:
            source = ai.MediaSource(s3_object=ai.S3Object(bucket=s3_bucket, key=s3_key))
        job = ai.Transcription(
            source=source,
            language=language,
            model=model,
            speaker_timeline=list(speaker_timeline),
            vocabulary=vocabulary,
        )
        return await self._call(
            self._stub.CreateTranscription, transcription_pb.CreateTranscriptionRequest(transcription=job)
        )

    async def create_from_file(self, path: str | Path, *, language: str = "", model: str = "") -> ai.Transcription:
        """Uploads ``path`` and starts transcribing it."""
        uploaded = await self.upload(path)
        return await self.create(upload=uploaded.name, language=language, model=model)

    async def get(self, name: str, *, full: bool = False) -> ai.Transcription:
        view = ai.TRANSCRIPTION_VIEW_FULL if full else ai.TRANSCRIPTION_VIEW_BASIC
        request = transcription_pb.GetTranscriptionRequest(name=_name("transcriptions", name), view=view)
        return await self._call(self._stub.GetTranscription, request)

    def list(self, *, page_size: int = 0) -> AsyncIterator[ai.Transcription]:
        request = transcription_pb.ListTranscriptionsRequest(page_size=page_size)
        return self._pages(self._stub.ListTranscriptions, request, "transcriptions")

    async def watch(self, name: str) -> AsyncIterator[ai.Transcription]:
        """The job's state, then every change, until it ends."""
        request = transcription_pb.WatchTranscriptionRequest(name=_name("transcriptions", name))
        async for update in self._stream(self._stub.WatchTranscription, request):
            yield update

    async def cancel(self, name: str) -> ai.Transcription:
        request = transcription_pb.CancelTranscriptionRequest(name=_name("transcriptions", name))
        return await self._call(self._stub.CancelTranscription, request)

    async def delete(self, name: str) -> None:
        request = transcription_pb.DeleteTranscriptionRequest(name=_name("transcriptions", name))
        await self._call(self._stub.DeleteTranscription, request)

    async def export(self, name: str, format: ExportFormat = "text") -> str:
        """The transcript as JSON, plain text, SRT or WebVTT."""
        request = transcription_pb.ExportTranscriptionRequest(
            name=_name("transcriptions", name), format=EXPORT_FORMATS.value(format)
        )
        body = await self._call(self._stub.ExportTranscription, request)
        data: bytes = body.data
        return data.decode()


class Summaries(ServiceClient):
    """``SummaryService``: Markdown summaries of transcripts, as jobs."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._stub_value: summary_grpc.SummaryServiceAsyncStub | None = None

    @property
    def _stub(self) -> summary_grpc.SummaryServiceAsyncStub:
        if self._stub_value is None:
            self._stub_value = summary_grpc.SummaryServiceStub(self._connection.require())
        return self._stub_value

    async def create(self, *, transcription: str = "", text: str = "", language: str = "") -> ai.Summary:
        """Starts summarizing a transcription (``transcriptions/...``) or a text."""
        job = (
            ai.Summary(transcription=_name("transcriptions", transcription), language=language)
            if transcription
            else ai.Summary(text=text, language=language)
        )
        return await self._call(self._stub.CreateSummary, summary_pb.CreateSummaryRequest(summary=job))

    async def get(self, name: str) -> ai.Summary:
        return await self._call(self._stub.GetSummary, summary_pb.GetSummaryRequest(name=_name("summaries", name)))

    def list(self, *, page_size: int = 0) -> AsyncIterator[ai.Summary]:
        return self._pages(self._stub.ListSummaries, summary_pb.ListSummariesRequest(page_size=page_size), "summaries")

    async def watch(self, name: str) -> AsyncIterator[ai.Summary]:
        request = summary_pb.WatchSummaryRequest(name=_name("summaries", name))
        async for update in self._stream(self._stub.WatchSummary, request):
            yield update

    async def cancel(self, name: str) -> ai.Summary:
        return await self._call(
            self._stub.CancelSummary, summary_pb.CancelSummaryRequest(name=_name("summaries", name))
        )

    async def delete(self, name: str) -> None:
        await self._call(self._stub.DeleteSummary, summary_pb.DeleteSummaryRequest(name=_name("summaries", name)))


__all__: Sequence[str] = ("Summaries", "Transcriptions")
