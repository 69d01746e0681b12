"""The AI service's rules: who may do what with uploads, transcriptions and summaries, what
a valid job is, and which rows a caller sees. Executing jobs is the runner's business."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import and_, delete, or_, select, update

from parley.ai.v1 import resources_pb2 as res
from parley.ai.v1 import transcription_service_pb2 as transcription_pb
from parley.server import decode_page_token, encode_page_token
from parley.server import page_size as page_size_of
from parley.server.db import Sessions

from . import _formats
from ._auth import Caller
from ._errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from ._mapper import seconds
from ._models import ENDED, JobColumns, JobState, SummaryRow, TranscriptionRow, UploadRow
from ._runner import JobRunner, now
from ._settings import AiSettings
from ._storage import BlobStore
from ._types import Segment
from ._whisper import BUILTIN_MODELS, ModelNotFound, is_english_only, resolve_model, whisper_languages

log = logging.getLogger(__name__)

Job = TypeVar("Job", TranscriptionRow, SummaryRow)

EXPORTS = {
    transcription_pb.TRANSCRIPT_FORMAT_JSON: "application/json",
    transcription_pb.TRANSCRIPT_FORMAT_TEXT: "text/plain; charset=utf-8",
    transcription_pb.TRANSCRIPT_FORMAT_SRT: "application/x-subrip; charset=utf-8",
    transcription_pb.TRANSCRIPT_FORMAT_WEBVTT: "text/vtt; charset=utf-8",
}


def new_id() -> str:
    return uuid.uuid4().hex


class AiService:
    def __init__(self, settings: AiSettings, sessions: Sessions, store: BlobStore, runner: JobRunner) -> None:
        self.settings = settings
        self._sessions = sessions
        self._store = store
        self.runner = runner
        self._english_only: dict[str, bool] = {}

    # -- access --------------------------------------------------------------------------

    async def _visible(self, caller: Caller, model: type[Job], job_id: str) -> Job:
        async with self._sessions.reads() as session:
            row = await session.get(model, job_id)
        # Other people's jobs are reported missing: their existence is private too.
        if row is None or not (caller.sees_all() or row.owner == caller.owner):
            raise NotFound(f"{_collection(model)}/{job_id} not found")
        return row

    # -- uploads -------------------------------------------------------------------------

    async def create_upload(self, caller: Caller, filename: str, chunks: AsyncIterator[bytes]) -> UploadRow:
        caller.require("ai:write")
        upload_id = new_id()
        fd, staging = tempfile.mkstemp(prefix="parley-upload-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.settings.max_upload_bytes:
                        raise ResourceExhausted(f"uploads are limited to {self.settings.max_upload_bytes} bytes")
                    await asyncio.to_thread(out.write, chunk)
            if size == 0:
                raise InvalidArgument.field("chunk", "the upload is empty")
            await asyncio.to_thread(self._store.put_file, f"uploads/{upload_id}", Path(staging))
        finally:
            await asyncio.to_thread(Path(staging).unlink, missing_ok=True)
        row = UploadRow(id=upload_id, owner=caller.owner, filename=filename, size_bytes=size, created_at=now())
        async with self._sessions.writes.begin() as session:
            session.add(row)
        log.info("upload %s: %d bytes from %s", upload_id, size, caller.owner)
        return row

    # -- transcriptions ------------------------------------------------------------------

    def _check_model_and_language(self, model: str, language: str) -> None:
        if model not in self._english_only:
            if model not in {*BUILTIN_MODELS, *self.settings.speech_models}:
                known = ", ".join(sorted({*BUILTIN_MODELS, *self.settings.speech_models}))
                raise InvalidArgument.field("transcription.model", f"unknown speech model {model!r}; known: {known}")
            try:
                folder = resolve_model(
                    model, paths=dict(self.settings.speech_models), cache_dir=self.settings.model_cache_dir
                )
            except ModelNotFound as error:
                raise InvalidArgument.field("transcription.model", str(error)) from None
            self._english_only[model] = is_english_only(folder)
        if language and language not in whisper_languages():
            raise InvalidArgument.field("transcription.language", f"{language!r} is not a language Whisper knows")
        if language and language != "en" and self._english_only[model]:
            raise InvalidArgument.field(
                "transcription.language", f"the speech model {model!r} only knows English; choose a multilingual one"
            )

    async def create_transcription(self, caller: Caller, request: res.Transcription) -> TranscriptionRow:
        caller.require("ai:write")
        model = request.model or self.settings.default_speech_model
        await asyncio.to_thread(self._check_model_and_language, model, request.language)
        row = TranscriptionRow(
            id=new_id(),
            owner=caller.owner,
            state=JobState.PENDING,
            progress=0.0,
            language=request.language,
            model=model,
            speaker_timeline=[
                [t.speaker, seconds(t.start_offset), seconds(t.end_offset)] for t in request.speaker_timeline
            ],
            vocabulary=request.vocabulary.strip(),
            created_at=now(),
            updated_at=now(),
        )
        source = request.source
        if source.HasField("s3_object"):
            row.source_kind, row.s3_bucket, row.s3_key = "s3", source.s3_object.bucket, source.s3_object.key
        elif source.HasField("speaker_tracks"):
            row.source_kind = "tracks"
            row.speaker_tracks = []
            for index, track in enumerate(source.speaker_tracks.tracks):
                entry: dict[str, Any] = {"speaker": track.speaker, "offset": seconds(track.offset)}
                if track.HasField("s3_object"):
                    entry |= {"s3_bucket": track.s3_object.bucket, "s3_key": track.s3_object.key}
                else:
                    field = f"transcription.source.speaker_tracks.tracks[{index}].upload"
                    entry["upload_id"] = await self._own_upload(caller, track.upload, field)
                row.speaker_tracks.append(entry)
        else:
            row.source_kind = "upload"
            row.upload_id = await self._own_upload(caller, source.upload, "transcription.source.upload")
        async with self._sessions.writes.begin() as session:
            session.add(row)
        self.runner.submit_transcription(row.id)
        log.info("transcription %s created by %s (model %s)", row.id, caller.owner, model)
        return row

    async def _own_upload(self, caller: Caller, name: str, field: str) -> str:
        """The id of the upload ``name`` if the caller may use it (INVALID_ARGUMENT on ``field``)."""
        upload_id = name.removeprefix("uploads/")
        async with self._sessions.reads() as session:
            upload = await session.get(UploadRow, upload_id)
        if upload is None or not (caller.sees_all() or upload.owner == caller.owner):
            raise InvalidArgument.field(field, f"{name} not found")
        return upload_id

    async def get_transcription(self, caller: Caller, job_id: str) -> TranscriptionRow:
        return await self._visible(caller, TranscriptionRow, job_id)

    async def transcript(self, row: TranscriptionRow) -> list[Segment]:
        if row.state != JobState.SUCCEEDED:
            raise FailedPrecondition(
                f"transcriptions/{row.id} is {row.state.lower()}, not succeeded", reason="NOT_READY"
            )
        return await asyncio.to_thread(self.runner.load_transcript, row)

    async def export(
        self, caller: Caller, job_id: str, fmt: transcription_pb.TranscriptFormat.ValueType
    ) -> tuple[str, bytes]:
        """Content type and body of a transcript in ``fmt``."""
        row = await self._visible(caller, TranscriptionRow, job_id)
        segments = await self.transcript(row)
        content_type = EXPORTS[fmt]
        if fmt == transcription_pb.TRANSCRIPT_FORMAT_JSON:
            body = _formats.to_json(segments, language=row.detected_language, duration=row.duration_seconds or 0.0)
        elif fmt == transcription_pb.TRANSCRIPT_FORMAT_TEXT:
            body = _formats.to_text(segments)
        elif fmt == transcription_pb.TRANSCRIPT_FORMAT_SRT:
            body = _formats.to_srt(segments)
        else:
            body = _formats.to_webvtt(segments)
        return content_type, body.encode()

    async def list_jobs(
        self, caller: Caller, model: type[Job], page_size: int, page_token: str
    ) -> tuple[list[Job], str]:
        size = page_size_of(page_size)
        scope = f"{model.__tablename__}:{caller.owner}:{caller.sees_all()}"
        query = select(model)
        if not caller.sees_all():
            query = query.where(model.owner == caller.owner)
        after = decode_page_token(page_token, scope=scope)
        if after is not None:
            created, last_id = after
            query = query.where(or_(model.created_at < created, and_(model.created_at == created, model.id < last_id)))
        query = query.order_by(model.created_at.desc(), model.id.desc()).limit(size + 1)
        async with self._sessions.reads() as session:
            rows = list((await session.scalars(query)).all())
        token = encode_page_token(rows[size - 1].created_at, rows[size - 1].id, scope=scope) if len(rows) > size else ""
        return rows[:size], token

    async def cancel(self, caller: Caller, model: type[Job], job_id: str) -> Job:
        caller.require("ai:write")
        row = await self._visible(caller, model, job_id)
        if row.state in ENDED:
            return row
        async with self._sessions.writes.begin() as session:
            await session.execute(
                update(model)
                .where(model.id == job_id, model.state.not_in(ENDED))
                .values(state=JobState.CANCELLED, ended_at=now(), updated_at=now())
            )
        await self.runner.cancel(job_id)
        await self.runner.changes.notify()
        log.info("%s %s cancelled by %s", _collection(model), job_id, caller.owner)
        return await self._visible(caller, model, job_id)

    async def delete(self, caller: Caller, model: type[Job], job_id: str) -> None:
        row = await self.cancel(caller, model, job_id)
        async with self._sessions.writes.begin() as session:
            await session.execute(delete(model).where(model.id == job_id))
        if isinstance(row, TranscriptionRow) and row.result_key:
            await asyncio.to_thread(self._store.delete, row.result_key)
        await self.runner.changes.notify()

    async def watch(self, caller: Caller, model: type[Job], job_id: str) -> AsyncIterator[Job]:
        """The job now, then each change of state or progress, until it ends. Changes made
        by this process wake the stream at once; other replicas' are seen within a second."""
        last: tuple[str, float] | None = None
        while True:
            row = await self._visible(caller, model, job_id)
            if (row.state, row.progress) != last:
                last = (row.state, row.progress)
                yield row
            if row.state in ENDED:
                return
            await self.runner.changes.wait(1.0)

    # -- summaries -----------------------------------------------------------------------

    async def create_summary(self, caller: Caller, request: res.Summary) -> SummaryRow:
        caller.require("ai:write")
        row = SummaryRow(
            id=new_id(),
            owner=caller.owner,
            state=JobState.PENDING,
            progress=0.0,
            language=request.language,
            created_at=now(),
            updated_at=now(),
        )
        if request.HasField("transcription"):
            transcription_id = request.transcription.removeprefix("transcriptions/")
            try:
                await self._visible(caller, TranscriptionRow, transcription_id)
            except NotFound:
                raise InvalidArgument.field("summary.transcription", f"{request.transcription} not found") from None
            row.transcription_id = transcription_id
        else:
            if not request.text.strip():
                raise InvalidArgument.field("summary.text", "must not be blank")
            row.source_text = request.text
        async with self._sessions.writes.begin() as session:
            session.add(row)
        self.runner.submit_summary(row.id)
        log.info("summary %s created by %s", row.id, caller.owner)
        return row

    async def get_summary(self, caller: Caller, job_id: str) -> SummaryRow:
        return await self._visible(caller, SummaryRow, job_id)


def _collection(model: type[JobColumns]) -> str:
    return "transcriptions" if model is TranscriptionRow else "summaries"
