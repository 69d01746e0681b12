"""Recordings: a room's owners and administrators (and API keys with ``recordings:write``)
start and stop them; the egress service records (``_egress_client``) and its reports move
each recording along (``EgressReportService``); the storage hook (``NotifyStorageEvent``) can
confirm that a file is stored; links to download the file are signed by the storage
(``_recording_storage``).

A recording's life::

    INITIATED ──egress ACTIVE──► ACTIVE ──stop / egress ENDING──► STOPPED ──egress COMPLETE──► SAVED
        │                          │                                  (or, with storage events,
        │ egress refused           │ egress FAILED / ABORTED           the storage's notification)
        ▼                          ▼
    FAILED_TO_START            FAILED / ABORTED     (FAILED also when the egress stops reporting)

    SAVED, when a transcript was asked for and ``ai_url`` is set (``_recording_followups``):
    transcribed, then summarized ──► NOTIFICATION_SUCCEEDED (or NOTIFICATION_FAILED, file kept)

At most one recording per room is INITIATED or ACTIVE: a partial unique index says so, so two
starts racing on two replicas cannot both win. Final states never change (SAVED only through its
follow-up): a report that comes late (sent again, or overtaken by a newer one) finds the
recording where it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.egress.v1 import resources_pb2 as egress_res
from parley.server import decode_page_token
from parley.server import page_size as page_size_of
from parley.server.db import Sessions

from ._auth import Principal
from ._domain import Page, UseCases, new_id, page_of, utcnow
from ._egress_client import CompositeRequest, EgressCallFailed, EgressClient
from ._errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, Unavailable
from ._models import RUNNING_RECORDING_STATES, RecordingMode, RecordingRow, RecordingState, Role, RoomRow
from ._recording_agents import RecordingAgents
from ._recording_storage import RecordingStorage, StorageUnavailable
from ._repos import Recordings, aware
from ._settings import ControlSettings

log = logging.getLogger(__name__)

WRITE_SCOPE = "recordings:write"
READ_SCOPE = "recordings:read"
#: The scope of egress nodes' API keys, and of the storage hook's.
REPORT_SCOPE = "egress:report"
NOTIFY_SCOPE = "storage:notify"

#: Where the egress writes a recording's file (the egress adds the extension).
FILENAME_TEMPLATE = "recordings/{room}/{time}-{id}"
#: The files a recording may be, and their extensions.
CONTENT_TYPES = {"video/mp4": ".mp4", "audio/ogg": ".ogg"}

S = RecordingState
#: A recording in one of these never changes again (except by deletion, and SAVED by its
#: transcription and summary, ``_recording_followups``).
FINAL_STATES = frozenset(
    {S.SAVED, S.ABORTED, S.FAILED_TO_START, S.FAILED, S.NOTIFICATION_SUCCEEDED, S.NOTIFICATION_FAILED}
)
#: A recording in one of these has its whole file stored.
STORED_STATES = frozenset({S.SAVED, S.NOTIFICATION_SUCCEEDED, S.NOTIFICATION_FAILED})
_E = egress_res.EgressStatus


def _code(code: grpc.StatusCode) -> int:
    return int(code.value[0])


def _time(stamp: Any, fallback: datetime) -> datetime:
    """A protobuf Timestamp as a datetime; ``fallback`` when it is not set."""
    return stamp.ToDatetime(tzinfo=UTC) if stamp.seconds or stamp.nanos else fallback


@dataclass(frozen=True)
class Download:
    """A link to a recording's file."""

    url: str
    expires: datetime
    filename: str
    recording: RecordingRow


@dataclass(frozen=True)
class StoredObject:
    """One record of a storage notification."""

    event: str
    bucket: str
    key: str
    size: int
    content_type: str

    @property
    def created(self) -> bool:
        return self.event.startswith("ObjectCreated:")


def parse_storage_event(event: Mapping[str, Any]) -> list[StoredObject]:
    """The objects an S3 (or MinIO) bucket notification is about; ``InvalidArgument`` naming
    each field that is not as S3 writes it. S3's test event (sent when notifications are
    configured) is about none."""
    if event.get("Event") == "s3:TestEvent":
        return []
    records = event.get("Records")
    if not isinstance(records, list):
        raise InvalidArgument.field("event.Records", "must be the list of S3 event records")
    found: list[StoredObject] = []
    violations: list[tuple[str, str]] = []

    def need(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, str) and not value):
            violations.append((path, f"must be {what}"))
            return None
        return value

    for index, record in enumerate(records):
        path = f"event.Records[{index}]"
        if need(record, dict, path, "an object") is None:
            continue
        name = need(record.get("eventName"), str, f"{path}.eventName", "a string")
        s3 = need(record.get("s3"), dict, f"{path}.s3", "an object")
        if s3 is None:
            continue
        bucket = need(s3.get("bucket"), dict, f"{path}.s3.bucket", "an object")
        bucket_name = None if bucket is None else need(bucket.get("name"), str, f"{path}.s3.bucket.name", "a name")
        obj = need(s3.get("object"), dict, f"{path}.s3.object", "an object")
        if obj is None:
            continue
        key = need(obj.get("key"), str, f"{path}.s3.object.key", "an object key")
        size = obj.get("size", 0)
        if isinstance(size, bool) or not isinstance(size, int | float) or size < 0:
            violations.append((f"{path}.s3.object.size", "must be a number of bytes"))
            size = 0
        content_type = obj.get("contentType", "")
        if not isinstance(content_type, str):
            violations.append((f"{path}.s3.object.contentType", "must be a string"))
            content_type = ""
        if name and bucket_name and key:
            found.append(
                StoredObject(
                    event=name.removeprefix("s3:"),
                    bucket=bucket_name,
                    key=unquote_plus(key),
                    size=int(size),
                    content_type=content_type.split(";")[0].strip(),
                )
            )
    if violations:
        raise InvalidArgument(violations, "not an S3 bucket notification")
    return found


class RecordingUseCases(UseCases):
    def __init__(
        self,
        settings: ControlSettings,
        sessions: Sessions,
        egress: EgressClient | None,
        storage: RecordingStorage | None,
        agents: RecordingAgents | None = None,
    ) -> None:
        super().__init__(settings, sessions)
        self.egress = egress
        self.storage = storage
        #: Sends metadata agents into recorded meetings (when an AI service is configured).
        self.agents = agents

    # -- who may -------------------------------------------------------------------------

    async def _require_writer(self, session: AsyncSession, room: RoomRow, caller: Principal) -> None:
        await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope=WRITE_SCOPE)

    async def _require_reader(self, session: AsyncSession, room: RoomRow, caller: Principal) -> None:
        if caller.is_api_key and WRITE_SCOPE in caller.scopes:
            return
        await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope=READ_SCOPE)

    async def _recording(
        self, session: AsyncSession, room: RoomRow, recording_id: str, *, for_update: bool = False
    ) -> RecordingRow:
        row = await Recordings(session).get(recording_id, for_update=for_update)
        if row is None or row.room_id != room.id:
            raise NotFound(f"recording {recording_id} of room {room.slug!r} not found")
        return row

    # -- start and stop ------------------------------------------------------------------

    async def start_recording(
        self,
        caller: Principal,
        id_or_slug: str,
        *,
        mode: RecordingMode,
        language: str = "",
        transcribe: bool = False,
        collect_metadata: bool = False,
    ) -> RecordingRow:
        """Records the room: the recording is written INITIATED (taking the room), then the
        egress is asked to start; if it cannot, the recording ends FAILED_TO_START (freeing
        the room) and the caller gets RESOURCE_EXHAUSTED (no capacity) or UNAVAILABLE. Once
        the egress started, a metadata agent joins when metadata is collected (always for
        TRANSCRIPT), best effort (``_recording_agents``)."""
        now = utcnow()
        async with self._writes.begin() as session:
            room = await self._room(session, id_or_slug)
            await self._require_writer(session, room, caller)
            if self.egress is None:
                raise FailedPrecondition("recording is not configured", reason="RECORDING_NOT_CONFIGURED")
            recording_id = new_id()
            row = RecordingRow(
                id=recording_id,
                room_id=room.id,
                mode=mode,
                language=language,
                transcribe=transcribe,
                collect_metadata=collect_metadata,
                state=RecordingState.INITIATED,
                error_code=0,
                error_message="",
                egress=f"egresses/{recording_id}",
                creator=f"users/{caller.user_id}" if caller.is_user else f"apiKeys/{caller.api_key_id}",
                created_at=now,
                updated_at=now,
                egress_final=False,
                stored_early=False,
            )
            Recordings(session).add(row)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise FailedPrecondition(
                    f"room {id_or_slug!r} is already being recorded: stop that recording first",
                    reason="ALREADY_RECORDING",
                ) from exc
        request = CompositeRequest(
            egress_id=recording_id,
            room=f"rooms/{room.id}",
            audio_only=mode == RecordingMode.TRANSCRIPT,
            # A transcript names each speaker exactly when it is made from their own voices.
            participant_audio=mode == RecordingMode.TRANSCRIPT,
            layout=egress_res.COMPOSITE_LAYOUT_GRID,
            filename_template=FILENAME_TEMPLATE,
            bucket=self.settings.recordings_bucket,
        )
        try:
            egress = await self.egress.start_room_composite(request)
        except EgressCallFailed as failure:
            log.warning("the egress could not start recording %s of room %s: %s", recording_id, room.id, failure)
            await self._end_with_error(recording_id, RecordingState.FAILED_TO_START, failure)
            if failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise ResourceExhausted(f"no egress can record now: {failure.message}") from None
            raise Unavailable(f"the egress service could not start recording: {failure}") from None
        row = await self._apply_answer(recording_id, egress, stopping=False)
        wanted = collect_metadata or mode == RecordingMode.TRANSCRIPT
        if self.agents is not None and wanted and row.state in RUNNING_RECORDING_STATES:
            agent = await self.agents.start(room, recording_id)
            if agent:
                row = await self._set_agent(recording_id, agent)
        return row

    async def _set_agent(self, recording_id: str, agent: str) -> RecordingRow:
        async with self._writes.begin() as session:
            row = await Recordings(session).get(recording_id, for_update=True)
            if row is None:
                raise NotFound(f"recording {recording_id} not found")
            row.metadata_agent = agent
            return row

    async def stop_recording(self, caller: Principal, id_or_slug: str, recording_id: str) -> RecordingRow:
        """Stops a recording that is initiated or active (it becomes STOPPED, or FAILED_TO_STOP
        when the egress cannot be told); any other is returned as it is."""
        async with self._writes.begin() as session:
            room = await self._room(session, id_or_slug)
            await self._require_writer(session, room, caller)
            row = await self._recording(session, room, recording_id)
        if row.state not in RUNNING_RECORDING_STATES:
            return row
        try:
            if self.egress is None:
                raise EgressCallFailed(grpc.StatusCode.FAILED_PRECONDITION, "recording is not configured")
            egress = await self.egress.stop(row.egress)
        except EgressCallFailed as failure:
            log.warning("the egress could not stop recording %s: %s", recording_id, failure)
            return await self._end_with_error(recording_id, RecordingState.FAILED_TO_STOP, failure)
        finally:
            if self.agents is not None and row.metadata_agent:
                await self.agents.stop(row.metadata_agent)
        return await self._apply_answer(recording_id, egress, stopping=True)

    async def _end_with_error(
        self, recording_id: str, state: RecordingState, failure: EgressCallFailed
    ) -> RecordingRow:
        now = utcnow()
        async with self._writes.begin() as session:
            row = await Recordings(session).get(recording_id, for_update=True)
            if row is None:
                raise NotFound(f"recording {recording_id} not found")
            if row.state in RUNNING_RECORDING_STATES:
                row.state = state
                row.error_code = _code(failure.code)
                row.error_message = failure.message[:1000] or failure.code.name
                if state == RecordingState.FAILED_TO_STOP:
                    row.stopped_at = now
                row.updated_at = now
            return row

    async def _apply_answer(self, recording_id: str, egress: egress_res.Egress, *, stopping: bool) -> RecordingRow:
        """Applies what the egress answered to a start or a stop, as a report."""
        now = utcnow()
        async with self._writes.begin() as session:
            row = await Recordings(session).get(recording_id, for_update=True)
            if row is None:
                raise NotFound(f"recording {recording_id} not found")
            self._apply_egress(row, egress, now)
            if row.state not in FINAL_STATES:
                row.last_report_at = now
            if stopping and row.state in RUNNING_RECORDING_STATES:
                row.state = RecordingState.STOPPED
                row.stopped_at = now
                row.updated_at = now
            return row

    # -- the egress's reports ------------------------------------------------------------

    async def report_egress(self, caller: Principal, egress: egress_res.Egress) -> RecordingRow | None:
        """Applies an egress node's report; returns the recording (None: the egress records
        none, e.g. it was deleted, and should stop)."""
        caller.require_authenticated()
        if not caller.is_api_key:
            raise PermissionDenied(f"only egress nodes report, with an API key holding {REPORT_SCOPE}")
        caller.require_scope(REPORT_SCOPE)
        now = utcnow()
        async with self._writes.begin() as session:
            row = await Recordings(session).by_egress(egress.name, for_update=True)
            if row is None:
                return None
            if row.state not in FINAL_STATES:
                row.last_report_at = now
                self._apply_egress(row, egress, now)
            return row

    def _apply_egress(self, row: RecordingRow, egress: egress_res.Egress, now: datetime) -> None:
        """Moves a recording along what its egress says. Transitions only go forward, so a
        report that arrives late (after a newer one) changes nothing it should not."""
        if row.state in FINAL_STATES or row.egress_final:
            return
        if egress.HasField("file"):
            self._take_file(row, egress.file)
        if egress.participant_audio:
            row.participant_audio = [_participant_audio(entry) for entry in egress.participant_audio]
        if row.started_at is None and egress.HasField("start_time"):
            row.started_at = _time(egress.start_time, now)
        status = egress.status
        if status == _E.EGRESS_STATUS_ACTIVE:
            if row.state == RecordingState.INITIATED:
                row.state = RecordingState.ACTIVE
                row.started_at = row.started_at or now
        elif status == _E.EGRESS_STATUS_ENDING:
            if row.state in (*RUNNING_RECORDING_STATES, RecordingState.FAILED_TO_STOP):
                row.state = RecordingState.STOPPED
                row.stopped_at = row.stopped_at or now
        elif status in (_E.EGRESS_STATUS_COMPLETE, _E.EGRESS_STATUS_LIMIT_REACHED):
            row.egress_final = True
            row.stopped_at = row.stopped_at or _time(egress.end_time, now)
            if self.settings.recording_storage_events and not row.stored_early:
                row.state = RecordingState.STOPPED
            else:
                row.state = RecordingState.SAVED
                row.saved_at = now
        elif status in (_E.EGRESS_STATUS_FAILED, _E.EGRESS_STATUS_ABORTED):
            row.egress_final = True
            row.stopped_at = row.stopped_at or _time(egress.end_time, now)
            failed = status == _E.EGRESS_STATUS_FAILED
            row.state = RecordingState.FAILED if failed else RecordingState.ABORTED
            if egress.error.code:
                row.error_code = egress.error.code
                row.error_message = egress.error.message[:1000]
            elif failed:
                row.error_code = _code(grpc.StatusCode.INTERNAL)
                row.error_message = "the egress failed"
        else:
            return
        row.updated_at = now

    @staticmethod
    def _take_file(row: RecordingRow, file: egress_res.FileResult) -> None:
        if file.key:
            row.file_key = file.key
        if file.location:
            row.file_location = file.location
            if file.location.startswith("s3://"):
                row.file_bucket = _bucket_of(file.location)
        if file.content_type:
            row.file_content_type = file.content_type
        if file.size_bytes:
            row.file_size_bytes = file.size_bytes
        if file.HasField("duration"):
            row.file_duration_ms = file.duration.ToMilliseconds()
        if file.HasField("media_start_time"):
            row.file_media_start = file.media_start_time.ToDatetime(tzinfo=UTC)

    async def fail_silent(self, *, now: datetime | None = None) -> int:
        """Fails the recordings whose egress has not reported for ``recording_report_timeout``
        (the egress is gone: nothing may stay active after it); returns how many. Looks with a
        read first, so an idle reaper takes no write lock."""
        now = now or utcnow()
        cutoff = now - self.settings.recording_report_timeout
        async with self._reads() as session:
            silent = await Recordings(session).silent_ids(reported_before=cutoff)
        if not silent:
            return 0
        failed = 0
        async with self._writes.begin() as session:
            recordings = Recordings(session)
            for recording_id in silent:
                row = await recordings.get(recording_id, for_update=True)
                if row is None:
                    continue
                waiting = row.state in RUNNING_RECORDING_STATES or (
                    row.state == RecordingState.STOPPED and not row.egress_final
                )
                if not waiting or aware(row.last_report_at or row.created_at) >= cutoff:
                    continue
                row.state = RecordingState.FAILED
                row.error_code = _code(grpc.StatusCode.UNAVAILABLE)
                row.error_message = "the egress stopped reporting"
                row.stopped_at = row.stopped_at or now
                row.updated_at = now
                failed += 1
        return failed

    # -- the storage hook ----------------------------------------------------------------

    async def notify_storage_event(self, caller: Principal, event: Mapping[str, Any]) -> list[RecordingRow]:
        """Marks SAVED the recordings whose file the notification says was written; returns
        them. Objects of another bucket, of no recording, of another type, and notifications
        sent again are ignored."""
        caller.require_authenticated()
        if not caller.is_api_key:
            raise PermissionDenied(f"the storage hook needs an API key holding {NOTIFY_SCOPE}")
        caller.require_scope(NOTIFY_SCOPE)
        objects = parse_storage_event(event)
        bucket = self.settings.recordings_bucket
        wanted = [
            o
            for o in objects
            if bucket and o.created and o.bucket == bucket and (not o.content_type or o.content_type in CONTENT_TYPES)
        ]
        if not wanted:
            return []
        saved: list[RecordingRow] = []
        now = utcnow()
        async with self._writes.begin() as session:
            for stored in wanted:
                for row in await Recordings(session).by_file(stored.bucket, stored.key, for_update=True):
                    if row.state == RecordingState.STOPPED and row.egress_final:
                        row.state = RecordingState.SAVED
                        row.saved_at = now
                        row.file_size_bytes = stored.size or row.file_size_bytes
                        row.file_content_type = stored.content_type or row.file_content_type
                        row.updated_at = now
                        saved.append(row)
                    elif row.state not in FINAL_STATES and not row.egress_final and not row.stored_early:
                        # Stored before the egress said it was complete: SAVED once it does.
                        row.stored_early = True
                        row.updated_at = now
        return saved

    # -- reading, downloading, deleting --------------------------------------------------

    async def get_recording(self, caller: Principal, id_or_slug: str, recording_id: str) -> RecordingRow:
        async with self._reads() as session:
            room = await self._room(session, id_or_slug)
            await self._require_reader(session, room, caller)
            return await self._recording(session, room, recording_id)

    async def list_recordings(
        self, caller: Principal, id_or_slug: str, *, page_size: int, page_token: str
    ) -> Page[RecordingRow]:
        """A room's recordings, newest first; ``id_or_slug`` ``-``: those of every room the
        caller owns or administers (every room for an API key)."""
        size = page_size_of(page_size)
        async with self._reads() as session:
            room_id: str | None = None
            moderator: str | None = None
            if id_or_slug == "-":
                caller.require_authenticated()
                if caller.is_api_key:
                    if WRITE_SCOPE not in caller.scopes:
                        caller.require_scope(READ_SCOPE)
                else:
                    moderator = caller.user_id
                scope = f"recordings|-|{caller.user_id or caller.api_key_id}"
            else:
                room = await self._room(session, id_or_slug)
                await self._require_reader(session, room, caller)
                room_id = room.id
                scope = f"recordings|{room.id}"
            rows = await Recordings(session).page(
                room_id=room_id,
                moderator_user_id=moderator,
                after=decode_page_token(page_token, scope=scope),
                limit=size + 1,
            )
        return page_of(rows, size, scope)

    async def download_link(self, caller: Principal, id_or_slug: str, recording_id: str) -> Download:
        """A short-lived link to a stored file: a saved recording's, or what a failed one
        wrote."""
        async with self._reads() as session:
            room = await self._room(session, id_or_slug)
            await self._require_reader(session, room, caller)
            row = await self._recording(session, room, recording_id)
        stored = row.state in STORED_STATES or row.state == RecordingState.FAILED
        if not row.file_key or not stored:
            raise FailedPrecondition("the recording has no stored file yet", reason="NOT_STORED")
        storage = self.storage
        if storage is None or storage.bucket != row.file_bucket:
            raise FailedPrecondition("the storage of this recording's file is not configured")
        ttl = self.settings.download_link_ttl
        content_type = row.file_content_type or "application/octet-stream"
        started = aware(row.started_at or row.created_at)
        filename = f"{room.slug}-{started:%Y%m%d-%H%M%S}{CONTENT_TYPES.get(content_type, '')}"
        try:
            url = await storage.download_url(row.file_key, filename=filename, content_type=content_type, ttl=ttl)
        except StorageUnavailable as error:
            raise FailedPrecondition(str(error)) from None
        return Download(url=url, expires=utcnow() + ttl, filename=filename, recording=row)

    async def delete_recording(self, caller: Principal, id_or_slug: str, recording_id: str) -> None:
        """Deletes a recording and its file; one still recording (or whose file is still
        being finished) is refused."""
        async with self._reads() as session:
            room = await self._room(session, id_or_slug)
            await self._require_writer(session, room, caller)
            row = await self._recording(session, room, recording_id)
        if row.state in RUNNING_RECORDING_STATES:
            raise FailedPrecondition("the recording is still running: stop it first", reason="RECORDING_RUNNING")
        if row.state == RecordingState.STOPPED and not row.egress_final:
            raise FailedPrecondition("the recording's file is still being finished", reason="RECORDING_RUNNING")
        files = [(row.file_bucket, row.file_key)] if row.file_key else []
        files += [(entry["bucket"], entry["key"]) for entry in row.participant_audio]
        for bucket, key in files:
            if self.storage is not None and self.storage.bucket == bucket:
                try:
                    await self.storage.delete(key)
                except StorageUnavailable as error:
                    raise Unavailable(str(error)) from None
            else:
                log.warning("recording %s: its file %s is not in the configured storage", row.id, key)
        async with self._writes.begin() as session:
            found = await Recordings(session).get(recording_id, for_update=True)
            if found is not None:
                await Recordings(session).delete(found)


def _participant_audio(entry: egress_res.ParticipantAudio) -> dict[str, Any]:
    """How a participant's audio file is kept in the recording's row."""
    return {
        "identity": entry.participant_identity,
        "name": entry.participant_name or entry.participant_identity,
        "key": entry.file.key,
        "bucket": _bucket_of(entry.file.location),
        "offset_ms": entry.offset.ToMilliseconds(),
    }


def _bucket_of(location: str) -> str:
    """The bucket of an ``s3://bucket/key`` location; empty for a folder's ``file://`` one."""
    return location.removeprefix("s3://").split("/", 1)[0] if location.startswith("s3://") else ""
