"""Recording follow-ups: a saved recording that asked for a transcript (``TRANSCRIPT`` mode, or
``options.transcribe``) is transcribed by the AI service, then summarized, and ends
``NOTIFICATION_SUCCEEDED`` (or ``NOTIFICATION_FAILED``, the file kept: a failed follow-up never
loses the recording). Every control replica runs a ``RecordingFollowups`` worker when
``ai_url`` is set; they share the work through the database::

    SAVED ──claim──► upload (folder) / S3 object ──► transcription ──► summary ──► NOTIFICATION_SUCCEEDED
                                                          │ failed        │ failed
                                                          ▼               ▼
                                                     NOTIFICATION_FAILED (error: the job's)

A mixed recording (no file per participant: a screen recording with ``transcribe``) whose
metadata agent was started waits for the agent to leave (at most ``AGENT_WAIT``) and passes its
speaker turns, placed at the file's time 0, as the transcription's ``speaker_timeline``: each
segment is named after who spoke most during it. Without the agent's timeline it goes on
without names.

A worker takes a recording with one conditional UPDATE (``Recordings.claim_followup``: only if
no replica holds it), holds it for ``LEASE`` and renews that while it works. The names of the
AI jobs are stored as soon as they exist (``Recording.transcription`` / ``summary``), so a
worker that takes over after a restart (or from a dead replica, once its hold lapses) follows
the same jobs again instead of starting new ones. The AI service being away (UNAVAILABLE and
other transient codes) is retried later with backoff: the worker keeps its hold only until the
next attempt is due. A job that fails, or a request the AI service refuses, ends the follow-up
``NOTIFICATION_FAILED`` with the error in ``Recording.error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from parley.ai.v1 import metadata_agent_service_pb2 as agent_pb
from parley.ai.v1 import resources_pb2 as ai_res
from parley.server.db import Sessions

from ._ai_client import AiCallFailed, AiClient
from ._domain import utcnow
from ._models import RecordingRow, RecordingState
from ._repos import Recordings, Rooms, aware
from ._settings import ControlSettings

log = logging.getLogger(__name__)

#: How often the worker looks for saved recordings to follow up.
SCAN_INTERVAL_SECONDS = 2.0
#: How often a running AI job is asked where it is.
JOB_POLL_SECONDS = 2.0
#: How long a claim holds a recording; renewed every third of it while the worker works. A
#: replica that dies delays its recordings' follow-ups by at most this.
LEASE = timedelta(seconds=30)
#: Waits before trying again when the AI service is away: doubling from the first to the last.
RETRY_FIRST = timedelta(seconds=2)
RETRY_MAX = timedelta(minutes=5)
#: How many recordings one worker follows at once.
CONCURRENCY = 8
#: How long a mixed recording's transcription waits for its metadata agent to leave.
AGENT_WAIT = timedelta(minutes=2)

J = TypeVar("J", ai_res.Transcription, ai_res.Summary)
_J = ai_res.JobState
_ENDED = (_J.JOB_STATE_SUCCEEDED, _J.JOB_STATE_FAILED, _J.JOB_STATE_CANCELLED)


class _Lost(Exception):
    """The recording is no longer ours to follow: deleted, or taken by another replica."""


class RecordingFollowups:
    """Transcribes and summarizes saved recordings through the AI service (``run`` until
    ``aclose``)."""

    def __init__(self, settings: ControlSettings, sessions: Sessions, ai: AiClient) -> None:
        self.settings = settings
        self._reads = sessions.reads
        self._writes = sessions.writes
        self.ai = ai
        #: This process's id in ``followup_owner``: a restarted control is another owner.
        self.owner = secrets.token_hex(16)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}

    async def run(self) -> None:
        """Looks for recordings to follow up every ``SCAN_INTERVAL_SECONDS`` and follows each
        one it claims in a task of its own."""
        while True:
            try:
                await self.scan()
            except Exception:
                log.exception("looking for recordings to transcribe failed; trying again later")
            await asyncio.sleep(SCAN_INTERVAL_SECONDS)

    async def scan(self) -> int:
        """Claims the recordings due for a follow-up (as many as there is room for) and starts
        following them; returns how many it claimed."""
        room = CONCURRENCY - len(self._tasks)
        if room <= 0:
            return 0
        now = utcnow()
        async with self._reads() as session:
            due = await Recordings(session).followups_due(now=now, limit=room + len(self._tasks))
        claimed = 0
        for recording_id in due:
            if recording_id in self._tasks or claimed >= room:
                continue
            async with self._writes.begin() as session:
                won = await Recordings(session).claim_followup(
                    recording_id, owner=self.owner, now=now, until=now + LEASE
                )
            if won:
                claimed += 1
                task = asyncio.create_task(self._follow(recording_id), name=f"recording-followup-{recording_id}")
                self._tasks[recording_id] = task
                task.add_done_callback(functools.partial(self._forget, recording_id))
        return claimed

    def _forget(self, recording_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(recording_id, None)

    async def aclose(self) -> None:
        """Stops following (the holds lapse; this or another replica takes over later)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- one recording -------------------------------------------------------------------

    async def _follow(self, recording_id: str) -> None:
        work = asyncio.current_task()
        assert work is not None
        renewer = asyncio.create_task(self._renew(recording_id, work))
        try:
            await self._work(recording_id)
            self._failures.pop(recording_id, None)
        except _Lost:
            log.info("recording %s: no longer followed here (deleted, or taken by another replica)", recording_id)
            self._failures.pop(recording_id, None)
        except AiCallFailed as failure:
            if failure.transient:
                await self._retry_later(recording_id, failure)
            else:
                await self._finish(recording_id, failed=True, code=int(failure.code.value[0]), message=failure.message)
        except Exception as error:
            log.exception("recording %s: following up failed; trying again later", recording_id)
            await self._retry_later(recording_id, error)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self, recording_id: str, work: asyncio.Task[None]) -> None:
        """Renews the hold every third of ``LEASE``; stops the work when it is lost."""
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            try:
                held = await self._update(recording_id, followup_until=utcnow() + LEASE)
            except Exception:
                log.warning("recording %s: renewing the follow-up's hold failed", recording_id, exc_info=True)
                continue
            if not held:
                work.cancel()
                return

    async def _update(self, recording_id: str, **values: object) -> bool:
        async with self._writes.begin() as session:
            return await Recordings(session).update_followup(recording_id, owner=self.owner, **values)

    async def _store(self, recording_id: str, **values: object) -> None:
        if not await self._update(recording_id, **values, updated_at=utcnow()):
            raise _Lost

    async def _retry_later(self, recording_id: str, error: Exception) -> None:
        failures = self._failures.get(recording_id, 0) + 1
        self._failures[recording_id] = failures
        delay = min(RETRY_FIRST * 2 ** (failures - 1), RETRY_MAX)
        log.warning(
            "recording %s: the AI service could not be used (%s); trying again in %ss",
            recording_id,
            error,
            int(delay.total_seconds()),
        )
        with contextlib.suppress(Exception):
            await self._update(recording_id, followup_until=utcnow() + delay)

    async def _finish(self, recording_id: str, *, failed: bool, code: int = 0, message: str = "") -> None:
        self._failures.pop(recording_id, None)
        values: dict[str, object] = {
            "state": RecordingState.NOTIFICATION_FAILED if failed else RecordingState.NOTIFICATION_SUCCEEDED,
            "followup_until": None,
            "updated_at": utcnow(),
        }
        if failed:
            values["error_code"] = code or int(grpc.StatusCode.UNKNOWN.value[0])
            values["error_message"] = (message or "the transcription or summary failed")[:1000]
            log.warning("recording %s: its transcription or summary failed: %s", recording_id, message)
        else:
            log.info("recording %s: transcribed and summarized", recording_id)
        if not await self._update(recording_id, **values):
            raise _Lost

    async def _work(self, recording_id: str) -> None:
        async with self._reads() as session:
            row = await Recordings(session).get(recording_id)
        if row is None or row.state != RecordingState.SAVED or row.followup_owner != self.owner:
            raise _Lost
        transcription = row.transcription
        if not transcription:
            source = await self._source(row)
            if source is None:
                return
            turns = await self._speaker_timeline(row)
            created = await self.ai.create_transcription(
                source,
                language=row.language,
                vocabulary=await self._vocabulary(row, {turn.speaker for turn in turns}),
                speaker_timeline=turns,
            )
            transcription = created.name
            await self._store(recording_id, transcription=transcription)
            log.info("recording %s: transcribing as %s", recording_id, transcription)
        job = await self._until_ended(lambda: self.ai.get_transcription(transcription))
        if job.state != _J.JOB_STATE_SUCCEEDED:
            code, message = _error_of(job, "transcription")
            await self._finish(recording_id, failed=True, code=code, message=message)
            return
        summary = row.summary
        if not summary:
            created_summary = await self.ai.create_summary(transcription, language=row.language)
            summary = created_summary.name
            await self._store(recording_id, summary=summary)
            log.info("recording %s: summarizing as %s", recording_id, summary)
        ended = await self._until_ended(lambda: self.ai.get_summary(summary))
        if ended.state != _J.JOB_STATE_SUCCEEDED:
            code, message = _error_of(ended, "summary")
            await self._finish(recording_id, failed=True, code=code, message=message)
            return
        await self._finish(recording_id, failed=False)

    async def _vocabulary(self, row: RecordingRow, speakers: set[str]) -> str:
        """What transcription is primed with: the room's title and the speakers' names."""
        async with self._reads() as session:
            room = await Rooms(session).find(row.room_id)
        words = [room.display_name or room.slug] if room is not None else []
        words += sorted(speakers | {entry["name"] for entry in row.participant_audio if entry.get("name")})
        return ", ".join(words)[:500]

    async def _speaker_timeline(self, row: RecordingRow) -> list[ai_res.SpeakerTurn]:
        """Who spoke when in a mixed recording, from its metadata agent once it has left;
        empty when there is no agent, it failed, or it has not left within ``AGENT_WAIT``."""
        if not row.metadata_agent or row.participant_audio:
            return []
        deadline = time.monotonic() + AGENT_WAIT.total_seconds()
        while True:
            try:
                agent = await self.ai.get_metadata_agent(row.metadata_agent)
            except AiCallFailed as failure:
                if failure.transient:
                    raise
                log.warning("recording %s: its metadata agent is unreadable (%s): no names", row.id, failure)
                return []
            if agent.state != _J.JOB_STATE_RUNNING:
                break
            if time.monotonic() >= deadline:
                log.warning("recording %s: its metadata agent %s is still in the room: no names", row.id, agent.name)
                return []
            await asyncio.sleep(JOB_POLL_SECONDS)
        if agent.state != _J.JOB_STATE_SUCCEEDED:
            log.warning("recording %s: its metadata agent %s failed: %s", row.id, agent.name, agent.error.message)
            return []
        file_start = row.file_media_start or row.started_at
        return placed_turns(agent, aware(file_start) if file_start is not None else None)

    async def _source(self, row: RecordingRow) -> ai_res.MediaSource | None:
        """Where the AI service reads the recording: each participant's own audio when the
        egress wrote it (exact speaker names), else the recording itself. Files are S3 objects
        (the AI service reads S3 with its own credentials) or files of the local folder,
        uploaded. None (and the follow-up failed) when there is no file to read."""
        if not row.file_key:
            await self._finish(row.id, failed=True, code=_FAILED_PRECONDITION, message="the recording has no file")
            return None
        if not row.file_bucket and self.settings.recordings_dir is None:
            message = "the recording is in a local folder, but PARLEY_RECORDINGS_DIR is not set"
            await self._finish(row.id, failed=True, code=_FAILED_PRECONDITION, message=message)
            return None
        if row.participant_audio:
            tracks = [
                ai_res.SpeakerTrack(
                    speaker=entry["name"][:200],
                    offset=Duration(seconds=entry["offset_ms"] // 1000, nanos=entry["offset_ms"] % 1000 * 1_000_000),
                    **await self._file(entry["bucket"], entry["key"]),
                )
                for entry in row.participant_audio
            ]
            return ai_res.MediaSource(speaker_tracks=ai_res.SpeakerTracks(tracks=tracks))
        return ai_res.MediaSource(**await self._file(row.file_bucket, row.file_key))

    async def _file(self, bucket: str, key: str) -> dict[str, Any]:
        """A file as the AI service takes it: ``s3_object`` or ``upload`` (sent now)."""
        if bucket:
            return {"s3_object": ai_res.S3Object(bucket=bucket, key=key)}
        assert self.settings.recordings_dir is not None
        return {"upload": await self.ai.upload(self.settings.recordings_dir / key, filename=Path(key).name)}

    @staticmethod
    async def _until_ended(read: Callable[[], Awaitable[J]]) -> J:
        """Asks where a job is every ``JOB_POLL_SECONDS`` until it has ended."""
        while True:
            job = await read()
            if job.state in _ENDED:
                return job
            await asyncio.sleep(JOB_POLL_SECONDS)


_FAILED_PRECONDITION = int(grpc.StatusCode.FAILED_PRECONDITION.value[0])


def placed_turns(agent: agent_pb.MetadataAgent, file_start: datetime | None) -> list[ai_res.SpeakerTurn]:
    """An agent's speaker turns in a file's time: moved by how long after ``file_start`` (the
    wall-clock time of the file's first media) the agent joined; what lies before the file is
    cut off. Unmoved when the file's start is unknown."""
    shift = 0
    if file_start is not None and agent.HasField("start_time"):
        shift = round((agent.start_time.ToDatetime(tzinfo=UTC) - file_start).total_seconds() * 1e9)
    turns = []
    for turn in agent.speaker_turns:
        start = turn.start_offset.ToNanoseconds() + shift
        end = turn.end_offset.ToNanoseconds() + shift
        if end <= 0:
            continue
        placed = ai_res.SpeakerTurn(speaker=turn.speaker)
        placed.start_offset.FromNanoseconds(max(0, start))
        placed.end_offset.FromNanoseconds(end)
        turns.append(placed)
    return turns


def _error_of(job: ai_res.Transcription | ai_res.Summary, what: str) -> tuple[int, str]:
    """The error (code, message) a failed or cancelled job ends the follow-up with."""
    if job.state == _J.JOB_STATE_CANCELLED:
        return int(grpc.StatusCode.CANCELLED.value[0]), f"the {what} {job.name} was cancelled"
    return job.error.code, f"the {what} {job.name} failed: {job.error.message}"
