"""Runs jobs: each accepted transcription or summary becomes an asyncio task here that moves
its row through RUNNING to SUCCEEDED / FAILED / CANCELLED, writing progress as it goes.

Transcription: open the media (storage or S3, read in place), decode it to 16 kHz mono
(thread), find speech (VAD, thread), transcribe the chunks on the speech actors, merge,
attribute speakers, store the transcript as JSON. Summary: wait for the transcription, then
stream the summary actor's progress and result: minutes, stored as a structure and as Markdown.
Every failure ends as FAILED with a clear message; nothing escapes the task."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from grpc import StatusCode
from sqlalchemy import select, update

from parley.server.db import Sessions

from ._audio import MediaError, decode_audio, open_s3_object
from ._chunking import Chunk, merge, plan_chunks
from ._condense import Condensed, plan_condensed
from ._formats import to_json, to_text
from ._metrics import JOB_STATES, JOBS_ACTIVE, REAL_TIME_FACTOR
from ._minutes import Minutes, to_markdown
from ._models import ENDED, JobState, SummaryRow, TranscriptionRow
from ._pool import SpeechPool, SpeechPoolOptions, SummaryActor, stream_summary
from ._settings import AiSettings
from ._speakers import attribute_speakers, interleave_speakers
from ._storage import BlobNotFound, BlobStore
from ._types import Segment, SpeakerTurn
from ._whisper import ChunkResult, resolve_model

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

log = logging.getLogger(__name__)

#: Progress writes are at most this frequent per job (and on every chunk when slower).
_PROGRESS_EVERY = 0.5
#: Share of a transcription's progress spent decoding the media.
_DECODE_SHARE = 0.1
#: The states of jobs a process left unfinished.
_UNFINISHED = (JobState.PENDING, JobState.RUNNING)


def now() -> datetime:
    return datetime.now(UTC)


class JobFailed(Exception):
    """Ends a job as FAILED with ``message`` for people, a gRPC code and an ErrorInfo-style reason."""

    def __init__(
        self, message: str, *, code: StatusCode = StatusCode.INVALID_ARGUMENT, reason: str = "JOB_FAILED"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason


@dataclass
class Changes:
    """Wakes Watch streams of this process when a job row changes."""

    condition: asyncio.Condition

    async def notify(self) -> None:
        async with self.condition:
            self.condition.notify_all()

    async def wait(self, seconds: float) -> None:
        """Returns on the next change, or after ``seconds`` (other replicas do not notify)."""
        async with self.condition:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.condition.wait()


class JobRunner:
    def __init__(
        self,
        settings: AiSettings,
        sessions: Sessions,
        store: BlobStore,
        s3: S3Client | None,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._store = store
        self._s3 = s3
        self.changes = Changes(asyncio.Condition())
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pools: dict[str, SpeechPool] = {}
        self._summary_actor: Any = None
        self._summary_engine = ""
        self._pool_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    async def resume(self) -> None:
        """Restarts jobs a previous process left unfinished (finished ones are stored)."""
        async with self._sessions.reads() as session:
            transcriptions = (
                await session.scalars(select(TranscriptionRow.id).where(TranscriptionRow.state.in_(_UNFINISHED)))
            ).all()
            summaries = (await session.scalars(select(SummaryRow.id).where(SummaryRow.state.in_(_UNFINISHED)))).all()
        for job_id in transcriptions:
            log.info("resuming transcription %s", job_id)
            self.submit_transcription(job_id)
        for job_id in summaries:
            log.info("resuming summary %s", job_id)
            self.submit_summary(job_id)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in self._pools.values():
            pool.stop()
        self._pools.clear()

    def running(self) -> int:
        return len(self._tasks)

    def submit_transcription(self, job_id: str) -> None:
        self._start(job_id, "transcription", self._transcribe(job_id))

    def submit_summary(self, job_id: str) -> None:
        self._start(job_id, "summary", self._summarize(job_id))

    def _start(self, job_id: str, kind: str, work: Any) -> None:
        task = asyncio.create_task(work, name=f"job-{job_id}")
        self._tasks[job_id] = task
        active = JOBS_ACTIVE.labels(kind)
        active.inc()

        def done(_task: asyncio.Task[None]) -> None:
            self._tasks.pop(job_id, None)
            active.dec()

        task.add_done_callback(done)

    async def cancel(self, job_id: str) -> None:
        """Stops a job of this process (its row is already CANCELLED) and waits for it."""
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- rows ----------------------------------------------------------------------------

    async def _update(self, model: type[TranscriptionRow | SummaryRow], job_id: str, **values: Any) -> bool:
        """Writes ``values`` unless the job has ended meanwhile (cancelled, deleted)."""
        async with self._sessions.writes.begin() as session:
            done = await session.execute(
                update(model).where(model.id == job_id, model.state.not_in(ENDED)).values(updated_at=now(), **values)
            )
        await self.changes.notify()
        changed = bool(done.rowcount)  # type: ignore[attr-defined]
        if changed and "state" in values:
            JOB_STATES.labels("transcription" if model is TranscriptionRow else "summary", values["state"]).inc()
        return changed

    async def _end(
        self, model: type[TranscriptionRow | SummaryRow], job_id: str, state: JobState, **values: Any
    ) -> None:
        await self._update(model, job_id, state=state, ended_at=now(), **values)

    async def _fail(self, model: type[TranscriptionRow | SummaryRow], job_id: str, error: JobFailed) -> None:
        log.info("%s %s failed: %s", model.__tablename__, job_id, error.message)
        await self._end(
            model,
            job_id,
            JobState.FAILED,
            error_code=error.code.name,
            error_reason=error.reason,
            error_message=error.message,
        )

    async def _run_guarded(self, model: type[TranscriptionRow | SummaryRow], job_id: str, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            log.info("%s %s stopped", model.__tablename__, job_id)
            raise
        except JobFailed as error:
            await self._fail(model, job_id, error)
        except Exception:
            log.exception("%s %s crashed", model.__tablename__, job_id)
            await self._fail(model, job_id, JobFailed("internal error", code=StatusCode.INTERNAL, reason="INTERNAL"))

    # -- transcription -------------------------------------------------------------------

    async def speech_pool(self, model: str) -> SpeechPool:
        async with self._pool_lock:
            pool = self._pools.get(model)
            if pool is None:
                folder = await asyncio.to_thread(
                    resolve_model,
                    model,
                    paths=dict(self.settings.speech_models),
                    cache_dir=self.settings.model_cache_dir,
                )
                s = self.settings
                pool = SpeechPool(
                    folder,
                    SpeechPoolOptions(
                        actors=s.speech_actors,
                        concurrency=s.speech_concurrency,
                        threads=s.speech_threads,
                        device=s.speech_device,
                        num_cpus=s.speech_cpus,
                        num_gpus=s.speech_gpus,
                    ),
                )
                pool.start()
                self._pools[model] = pool
            return pool

    async def _transcribe(self, job_id: str) -> None:
        await self._run_guarded(TranscriptionRow, job_id, self._transcription(job_id))

    def _sources(self, row: TranscriptionRow) -> list[_Source]:
        """What a job transcribes: its one media file, or one file per speaker."""
        if row.source_kind == "tracks":
            return [
                _Source(
                    speaker=entry["speaker"],
                    offset=float(entry["offset"]),
                    upload_id=entry.get("upload_id", ""),
                    s3_bucket=entry.get("s3_bucket", ""),
                    s3_key=entry.get("s3_key", ""),
                )
                for entry in row.speaker_tracks
            ]
        return [_Source(upload_id=row.upload_id, s3_bucket=row.s3_bucket, s3_key=row.s3_key)]

    def _open_media(self, source: _Source) -> Any:
        if source.upload_id:
            try:
                return self._store.open(f"uploads/{source.upload_id}")
            except BlobNotFound:
                raise JobFailed(f"uploads/{source.upload_id} is gone", code=StatusCode.NOT_FOUND) from None
        if self._s3 is None:
            raise JobFailed("this service has no S3 configured", code=StatusCode.FAILED_PRECONDITION)
        return open_s3_object(self._s3, source.s3_bucket, source.s3_key)

    def _read_audio(self, source: _Source, on_progress: Callable[[float], None]) -> np.ndarray:
        try:
            with self._open_media(source) as media:
                return decode_audio(media, on_progress=on_progress)
        except MediaError as error:
            what = f"{source.speaker}'s audio: {error}" if source.speaker else str(error)
            raise JobFailed(what, code=StatusCode.INVALID_ARGUMENT, reason="MEDIA_UNREADABLE") from None

    async def _transcription(self, job_id: str) -> None:
        async with self._sessions.reads() as session:
            row = await session.get(TranscriptionRow, job_id)
        if row is None or row.state in ENDED:
            return
        await self._update(TranscriptionRow, job_id, state=JobState.RUNNING, progress=0.0)
        loop = asyncio.get_running_loop()
        reporter = _Progress(lambda f: self._update(TranscriptionRow, job_id, progress=f), loop)
        started = time.perf_counter()

        sources = self._sources(row)
        audios: list[np.ndarray] = []
        for index, source in enumerate(sources):

            def decoded(fraction: float, index: int = index) -> None:
                reporter.threadsafe(_DECODE_SHARE * (index + fraction) / len(sources))

            audios.append(await asyncio.to_thread(self._read_audio, source, decoded))
        total = max((s.offset + len(a) / 16000 for s, a in zip(sources, audios, strict=True)), default=0.0)
        await self._update(TranscriptionRow, job_id, duration_seconds=total, progress=_DECODE_SHARE)
        limit = self.settings.chunk_seconds
        condensed: list[Condensed | None] = [None] * len(audios)
        plans: list[list[Chunk]] = []
        for index, audio in enumerate(audios):
            if row.source_kind == "tracks":
                # A speaker's own track is mostly others' turns: transcribe its speech only.
                shrunk, chunks = await asyncio.to_thread(plan_condensed, audio, max_chunk_seconds=limit)
                condensed[index], audios[index] = shrunk, shrunk.audio
            else:
                # Named from a speaker timeline: no chunk across a change of speaker.
                turns = sorted(row.speaker_timeline or [], key=lambda turn: turn[1])
                changes = [now[1] for was, now in itertools.pairwise(turns) if now[0] != was[0]]
                chunks = await asyncio.to_thread(plan_chunks, audio, max_chunk_seconds=limit, breaks=changes)
            plans.append(chunks)
        speech = sum(c.seconds for chunks in plans for c in chunks) or 1.0
        log.info(
            "transcription %s: %.1f s of media in %d file(s), %d chunks (%.1f s of speech)",
            job_id,
            total,
            len(sources),
            sum(len(chunks) for chunks in plans),
            speech,
        )
        done = 0.0

        def chunk_done(chunk: Chunk, _result: ChunkResult) -> None:
            nonlocal done
            done += chunk.seconds
            reporter.report(_DECODE_SHARE + (1 - _DECODE_SHARE) * done / speech)

        pool = await self.speech_pool(row.model or self.settings.default_speech_model)
        # Every file's chunks at once: the pool keeps its actors busy across them.
        results = await asyncio.gather(
            *(
                pool.transcribe(audio, chunks, language=row.language, prompt=row.vocabulary, on_chunk_done=chunk_done)
                for audio, chunks in zip(audios, plans, strict=True)
            )
        )
        await reporter.flush()
        if row.source_kind == "tracks":
            files = []
            for source, packed, file_results in zip(sources, condensed, results, strict=True):
                segments = merge(r.segments for r in file_results)
                files.append((source.speaker, source.offset, packed.restore(segments) if packed else segments))
            segments = interleave_speakers(files)
        else:
            segments = merge(r.segments for r in results[0])
        if row.speaker_timeline:
            turns = [SpeakerTurn(speaker=w, start=s, end=e) for w, s, e in row.speaker_timeline]
            segments = attribute_speakers(segments, turns)
        languages = Counter(r.language for file_results in results for r in file_results if r.language)
        language = row.language or (languages.most_common(1)[0][0] if languages else "")
        key = f"transcriptions/{job_id}/transcript.json"
        await asyncio.to_thread(
            self._store.put_bytes, key, to_json(segments, language=language, duration=total).encode()
        )
        await self._end(
            TranscriptionRow, job_id, JobState.SUCCEEDED, progress=1.0, result_key=key, detected_language=language
        )
        elapsed = time.perf_counter() - started
        if total:
            REAL_TIME_FACTOR.observe(elapsed / total)
        log.info(
            "transcription %s succeeded: %d segments, %.1f s in %.1f s (real-time factor %.3f)",
            job_id,
            len(segments),
            total,
            elapsed,
            elapsed / total if total else 0.0,
        )

    def load_transcript(self, row: TranscriptionRow) -> list[Segment]:
        """The stored segments of a succeeded transcription (blocking: call in a thread)."""
        data = json.loads(self._store.get_bytes(row.result_key))
        language = data.get("language", "")
        return [
            Segment(start=s["start"], end=s["end"], text=s["text"], speaker=s.get("speaker", ""), language=language)
            for s in data["segments"]
        ]

    # -- summaries -----------------------------------------------------------------------

    async def summary_actor(self) -> Any:
        async with self._pool_lock:
            if self._summary_actor is None:
                from ._summary_engines import engine_from_settings

                s = self.settings
                factory = functools.partial(
                    engine_from_settings,
                    s.summary_engine,
                    model_path=s.summary_model_path,
                    base_url=s.summary_base_url,
                    model=s.summary_model,
                    api_key=s.summary_api_key,
                    cache_dir=Path(s.model_cache_dir),
                )
                actor = SummaryActor.options(  # type: ignore[attr-defined]
                    num_cpus=s.summary_cpus, num_gpus=s.summary_gpus, max_concurrency=2
                ).remote(factory)
                self._summary_engine = await actor.describe.remote()
                self._summary_actor = actor
            return self._summary_actor

    async def _summarize(self, job_id: str) -> None:
        await self._run_guarded(SummaryRow, job_id, self._summary(job_id))

    async def _wait_for_transcript(self, transcription_id: str) -> tuple[str, str]:
        """The transcript's text (speakers as ``Name: ``) and language, once it succeeded."""
        while True:
            async with self._sessions.reads() as session:
                source = await session.get(TranscriptionRow, transcription_id)
            if source is None:
                raise JobFailed(f"transcriptions/{transcription_id} was deleted", code=StatusCode.FAILED_PRECONDITION)
            if source.state == JobState.SUCCEEDED:
                segments = await asyncio.to_thread(self.load_transcript, source)
                return to_text(segments), source.detected_language
            if source.state in ENDED:
                raise JobFailed(
                    f"transcriptions/{transcription_id} ended {source.state.lower()}: nothing to summarize",
                    code=StatusCode.FAILED_PRECONDITION,
                )
            await self.changes.wait(1.0)

    async def _summary(self, job_id: str) -> None:
        async with self._sessions.reads() as session:
            row = await session.get(SummaryRow, job_id)
        if row is None or row.state in ENDED:
            return
        if row.transcription_id:
            text, language = await self._wait_for_transcript(row.transcription_id)
        else:
            text, language = row.source_text, ""
        if not text.strip():
            raise JobFailed("the transcript is empty: nothing was said", code=StatusCode.FAILED_PRECONDITION)
        actor = await self.summary_actor()
        await self._update(SummaryRow, job_id, state=JobState.RUNNING, progress=0.0, engine=self._summary_engine)
        reporter = _Progress(lambda f: self._update(SummaryRow, job_id, progress=f), asyncio.get_running_loop())
        minutes = Minutes(summary="")
        async for kind, value in stream_summary(actor, text, row.language or language or "en"):
            if kind == "progress":
                reporter.report(float(value) * 0.99)
            else:
                minutes = Minutes.from_dict(value)
        await reporter.flush()
        await self._end(
            SummaryRow,
            job_id,
            JobState.SUCCEEDED,
            progress=1.0,
            markdown=to_markdown(minutes),
            minutes=minutes.to_dict(),
        )


@dataclass(frozen=True, kw_only=True)
class _Source:
    """One file of a transcription: the media itself, or one speaker's own voice placed at
    ``offset`` seconds of the meeting."""

    speaker: str = ""
    offset: float = 0.0
    upload_id: str = ""
    s3_bucket: str = ""
    s3_key: str = ""


class _Progress:
    """Progress writes for one job: at most every ``_PROGRESS_EVERY`` seconds, the latest
    value wins, and ``flush`` waits for the last one."""

    def __init__(self, write: Callable[[float], Any], loop: asyncio.AbstractEventLoop) -> None:
        self._write = write
        self._loop = loop
        self._latest = 0.0
        self._written_at = 0.0
        self._pending: asyncio.Task[None] | None = None

    def threadsafe(self, fraction: float) -> None:
        self._loop.call_soon_threadsafe(self.report, fraction)

    def report(self, fraction: float) -> None:
        self._latest = max(self._latest, min(fraction, 1.0))
        if self._pending is None or self._pending.done():
            self._pending = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        wait = self._written_at + _PROGRESS_EVERY - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._written_at = time.monotonic()
        await self._write(round(self._latest, 4))

    async def flush(self) -> None:
        if self._pending is not None:
            await self._pending
