"""The egress service's rules and the supervision of its recorders.

Each egress is a ``Job`` in this node's memory (the egress service has no database: control
keeps the recordings, and a node that dies takes its jobs with it, which control notices when
their reports stop). A job's recorder runs in its own Ray actor process (``RecorderActor``),
reserving the CPUs the cost model gives it, so a crash or a stuck decoder ends that recording
only. A start is refused with RESOURCE_EXHAUSTED when the cluster has no room for it, never
queued.

The supervisor of a job polls its recorder's progress every second, asks it to stop when told
to, and turns its end into a final status. When the recorder process dies, what it wrote is
kept: a folder file stays as it is, and an S3 upload is completed from the recorder's spool
(``recover_spool``), so the partial recording plays."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from parley import ParleyError
from parley.control.v1 import recording_service_pb2 as rec
from parley.egress.v1 import egress_service_pb2 as pb
from parley.egress.v1 import resources_pb2 as res
from parley.server import RemoteCaller, decode_page_token, encode_page_token, page_size

from . import _costs
from . import _metrics as metrics
from ._actor import RecorderActor
from ._control import RECORDING_OVER, ControlLink
from ._errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from ._jobs import Job
from ._output import file_info
from ._settings import EgressSettings
from ._spec import FileInfo, RecordingSpec, Result, Storage

log = logging.getLogger(__name__)

_LAYOUTS = {
    res.COMPOSITE_LAYOUT_UNSPECIFIED: "GRID",
    res.COMPOSITE_LAYOUT_GRID: "GRID",
    res.COMPOSITE_LAYOUT_SPEAKER: "SPEAKER",
    res.COMPOSITE_LAYOUT_SINGLE_SPEAKER: "SINGLE_SPEAKER",
}
#: Seconds a recorder may take to be placed and answer its first progress call.
PLACEMENT_TIMEOUT = 30.0
_OUTCOMES = {
    "complete": res.EGRESS_STATUS_COMPLETE,
    "limit_reached": res.EGRESS_STATUS_LIMIT_REACHED,
    "aborted": res.EGRESS_STATUS_ABORTED,
    "failed": res.EGRESS_STATUS_FAILED,
}


def file_name(template: str, *, room: str, egress_id: str, now: datetime, extension: str) -> str:
    """The object key from a template with ``{room}``, ``{time}`` and ``{id}``."""
    name = (template or "{room}/{time}-{id}").format(room=room, time=now.strftime("%Y%m%dT%H%M%SZ"), id=egress_id)
    name = "/".join(part for part in name.split("/") if part not in ("", ".", ".."))
    return f"{name}.{extension}"


#: The environment a recorder needs from this service's to reach storage: boto3's credentials
#: (the Ray workers were started by the cluster, not by this process, and lack them).
_STORAGE_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)


def _storage_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in _STORAGE_VARIABLES if name in os.environ}


def job_kind(egress: res.Egress) -> str:
    """``composite``, ``audio`` or ``track``: the metrics' label."""
    if egress.HasField("track"):
        return "track"
    return "audio" if egress.room_composite.audio_only else "composite"


def job_type(spec: RecordingSpec, key: str) -> str:
    """The content type of a job's file (a track egress's comes from its extension)."""
    return spec.content_type or ("video/webm" if key.endswith(".webm") else "audio/ogg")


class EgressService:
    """Starts, stops and reports egresses on this node."""

    def __init__(self, settings: EgressSettings, control: ControlLink) -> None:
        self.settings = settings
        self._control = control
        control.running = self._running
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._start_lock = asyncio.Lock()

    # --- rules -------------------------------------------------------------------------------

    @staticmethod
    def _require(caller: RemoteCaller) -> None:
        if not (caller.is_api_key and "egress:manage" in caller.scopes):
            raise PermissionDenied("the egress service needs an API key with the 'egress:manage' scope")

    def _storage(self, output: res.EgressOutput) -> tuple[Storage, str]:
        """The storage a request's output names, and the prefix to put before the file name."""
        s = self.settings
        if output.HasField("s3"):
            if output.s3.credentials not in ("", "default"):
                raise InvalidArgument.field("output.s3.credentials", f"no storage named {output.s3.credentials!r}")
            bucket = output.s3.bucket or s.recordings_bucket
            if not bucket:
                raise InvalidArgument.field("output.s3.bucket", "no bucket given and none configured")
            storage = Storage(bucket=bucket, endpoint_url=s.s3_endpoint_url, region=s.s3_region)
            return storage, output.s3.prefix
        if s.recordings_bucket:
            return Storage(bucket=s.recordings_bucket, endpoint_url=s.s3_endpoint_url, region=s.s3_region), ""
        return Storage(folder=s.recordings_dir), ""

    def _capacity_left(self) -> float:
        available = float(ray.available_resources().get("CPU", 0.0))  # type: ignore[no-untyped-call]
        # Actors just created may not show in Ray's view yet: count them here.
        placing = sum(j.cpus for j in self._jobs.values() if not j.final and time.monotonic() - j.created < 5)
        return available - placing

    async def start_room_composite(
        self, caller: RemoteCaller, request: pb.StartRoomCompositeEgressRequest
    ) -> res.Egress:
        self._require(caller)
        options = request.options
        video = _costs.preset(options.preset)
        extension, content_type = ("ogg", "audio/ogg") if options.audio_only else ("mp4", "video/mp4")
        egress = res.Egress(room=request.room, room_composite=options, output=request.output)
        details = {
            "audio_only": options.audio_only,
            "participant_audio": options.participant_audio,
            "layout": _LAYOUTS[options.layout],
            "width": video.width,
            "height": video.height,
            "fps": video.fps,
            "bitrate": video.bitrate,
            "x264_preset": video.x264_preset,
            "content_type": content_type,
        }
        cpus = _costs.composite_cpus(options, self.settings.cpu_scale)
        return await self._start(egress, request, cpus, extension, details)

    async def start_track(self, caller: RemoteCaller, request: pb.StartTrackEgressRequest) -> res.Egress:
        self._require(caller)
        egress = res.Egress(room=request.room, track=request.track, output=request.output)
        details = {
            "audio_only": False,
            "layout": "GRID",
            "width": 0,
            "height": 0,
            "fps": 0,
            "bitrate": 0,
            "content_type": "",  # the track's kind decides: video/webm or audio/ogg
            "track_sid": request.track.track_sid,
        }
        cpus = round(_costs.TRACK_CPUS * self.settings.cpu_scale, 3)
        return await self._start(egress, request, cpus, "", details)

    async def _start(
        self,
        egress: res.Egress,
        request: pb.StartRoomCompositeEgressRequest | pb.StartTrackEgressRequest,
        cpus: float,
        extension: str,
        details: dict[str, Any],
    ) -> res.Egress:
        if request.egress_id and (existing := self._jobs.get(request.egress_id)) is not None:
            if existing.egress.room != request.room:
                raise FailedPrecondition(f"egress {request.egress_id} exists for another room")
            return existing.egress
        storage, prefix = self._storage(request.output)
        egress_id = request.egress_id or secrets.token_hex(16)
        key = prefix + file_name(
            request.output.filename_template,
            room=request.room.removeprefix("rooms/"),
            egress_id=egress_id,
            now=datetime.now(UTC),
            extension=extension,
        )
        limit = request.max_duration.ToTimedelta().total_seconds() or self.settings.max_duration
        limit = min(limit, self.settings.max_duration)
        async with self._start_lock:
            if self._capacity_left() < cpus:
                metrics.STARTS_REFUSED.inc()
                raise ResourceExhausted(f"no egress node has {cpus} CPUs free for this recording; try again later")
            egress.name = f"egresses/{egress_id}"
            egress.status = res.EGRESS_STATUS_STARTING
            egress.node = self.settings.node
            egress.max_duration.FromSeconds(int(limit))
            egress.create_time.GetCurrentTime()
            egress.update_time.CopyFrom(egress.create_time)
            job = Job(egress, cpus=cpus)
            self._jobs[egress_id] = job
        self._control.report(job.egress)
        task = asyncio.create_task(
            self._supervise(job, {**details, "storage": storage, "key": key, "max_duration": limit})
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("egress %s started: room %s, %s, %.2f CPUs", egress_id, request.room, key, cpus)
        return job.egress

    def _job(self, name: str) -> Job:
        job = self._jobs.get(name.removeprefix("egresses/"))
        if job is None:
            raise NotFound(f"{name} not found on this egress node")
        return job

    async def stop(self, caller: RemoteCaller, name: str) -> res.Egress:
        self._require(caller)
        job = self._job(name)
        if not job.final:
            job.stop_requested.set()
            await job.advance(res.EGRESS_STATUS_ENDING)
            self._control.report(job.egress)
        return job.egress

    def get(self, caller: RemoteCaller, name: str) -> res.Egress:
        self._require(caller)
        return self._job(name).egress

    def list_egresses(self, caller: RemoteCaller, request: pb.ListEgressesRequest) -> pb.ListEgressesResponse:
        self._require(caller)
        size = page_size(request.page_size)
        scope = f"egress:{request.room}:{request.active}"
        jobs = sorted(self._jobs.values(), key=lambda j: (j.egress.create_time.ToNanoseconds(), j.id), reverse=True)
        jobs = [
            j for j in jobs if (not request.room or j.egress.room == request.room) and not (request.active and j.final)
        ]
        if request.page_token:
            after = decode_page_token(request.page_token, scope=scope)
            if after is None:
                raise InvalidArgument.field("page_token", "not a token of this listing")
            cursor = (after[0], after[1])
            jobs = [j for j in jobs if (j.egress.create_time.ToDatetime(tzinfo=UTC), j.id) < cursor]
        page = jobs[:size]
        response = pb.ListEgressesResponse(egresses=[j.egress for j in page])
        if len(jobs) > size:
            last = page[-1]
            response.next_page_token = encode_page_token(
                last.egress.create_time.ToDatetime(tzinfo=UTC), last.id, scope=scope
            )
        return response

    async def watch(self, caller: RemoteCaller, name: str) -> AsyncIterator[res.Egress]:
        self._require(caller)
        async for egress in self._job(name).watch():
            yield egress

    def _running(self) -> list[res.Egress]:
        return [j.egress for j in self._jobs.values() if not j.final]

    async def on_report_answer(self, egress: res.Egress, answer: rec.ReportEgressResponse) -> None:
        """Control says the recording ended without this egress: stop recording."""
        job = self._jobs.get(egress.name.removeprefix("egresses/"))
        if job is not None and not job.final and answer.recording and answer.state in RECORDING_OVER:
            state = rec.RecordingState.Name(answer.state)
            log.info("egress %s: %s ended (%s); stopping", job.id, answer.recording, state)
            job.stop_requested.set()

    # --- supervision -------------------------------------------------------------------------

    async def _supervise(self, job: Job, details: dict[str, Any]) -> None:
        kind = job_kind(job.egress)
        metrics.JOBS_ACTIVE.labels(kind).inc()
        metrics.CPUS_RESERVED.inc(job.cpus)
        actor: Any = None
        try:
            try:
                grant = await self._control.join_grant(job.egress.room, job.id, details["max_duration"])
            except ParleyError as error:
                await job.finish(res.EGRESS_STATUS_FAILED, error=f"cannot get a join token from control: {error}")
                return
            spec = RecordingSpec(
                egress_id=job.id,
                room=job.egress.room,
                sfu_url=grant.sfu_url,
                token=grant.token,
                spool_dir=self.settings.spool_dir,
                empty_room_timeout=self.settings.empty_room_timeout,
                **details,
            )
            actor = RecorderActor.options(  # type: ignore[attr-defined]
                num_cpus=job.cpus, name=f"egress-{job.id}", runtime_env={"env_vars": _storage_environment()}
            ).remote()
            await self._follow(job, actor, spec)
        except asyncio.CancelledError:
            await job.finish(res.EGRESS_STATUS_FAILED, error="the egress node shut down")
            raise
        except Exception as error:
            log.exception("egress %s failed", job.id)
            await job.finish(res.EGRESS_STATUS_FAILED, error=f"recorder failed: {error}")
        finally:
            if actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
            self._control.report(job.egress)
            status = res.EgressStatus.Name(job.egress.status).removeprefix("EGRESS_STATUS_")
            metrics.JOBS_ACTIVE.labels(kind).dec()
            metrics.CPUS_RESERVED.dec(job.cpus)
            metrics.JOBS_ENDED.labels(kind, status).inc()
            metrics.MEDIA_SECONDS.labels(kind).inc(job.egress.file.duration.ToTimedelta().total_seconds())

    async def _follow(self, job: Job, actor: Any, spec: RecordingSpec) -> None:
        done = asyncio.ensure_future(actor.record.remote(spec))
        answered = False
        stop_sent = False
        dropped = 0
        last: FileInfo | None = None  # the file as the recorder last described it
        started = time.monotonic()
        while not done.done():
            waiters = [done, asyncio.ensure_future(job.stop_requested.wait())]
            await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            waiters[1].cancel()
            if done.done():
                break
            if job.stop_requested.is_set() and not stop_sent:
                stop_sent = True
                actor.stop.remote()
            try:
                progress = await asyncio.wait_for(asyncio.ensure_future(actor.progress.remote()), 5.0)
            except (TimeoutError, GetTimeoutError):
                if not answered and time.monotonic() - started > PLACEMENT_TIMEOUT:
                    done.cancel()
                    await job.finish(res.EGRESS_STATUS_FAILED, error="the recorder could not be placed on the cluster")
                    return
                continue
            except RayActorError:
                break  # its end is read from ``done`` below
            answered = True
            metrics.DROPPED_FRAMES.inc(max(0, progress.dropped_frames - dropped))
            dropped = max(dropped, progress.dropped_frames)
            last = progress.file or last
            job.set_participant_audio(progress.participant_audio)
            if progress.phase == "recording" and await job.advance(res.EGRESS_STATUS_ACTIVE, progress.file):
                self._control.report(job.egress)
            elif progress.file is not None:
                await job.advance(job.egress.status, progress.file)
        try:
            result: Result = await done
        except RayActorError as error:
            log.error("egress %s: the recorder process died: %s", job.id, error)
            file = await asyncio.to_thread(self._salvage, spec, last)
            await job.finish(res.EGRESS_STATUS_FAILED, error="the recorder process died", file=file)
            return
        job.set_participant_audio(result.participant_audio)
        await job.finish(_OUTCOMES[result.outcome], error=result.error, file=result.file)
        log.info("egress %s ended: %s %s", job.id, result.outcome, result.error)

    def _salvage(self, spec: RecordingSpec, last: FileInfo | None) -> FileInfo | None:
        """What a dead recorder left: the folder file as it is, or its S3 upload completed from
        its spool; described as its last progress report described it, with the final size."""
        from ._sink import recover_spool, sidecar_path

        key = last.key if last is not None else spec.key
        if spec.storage.folder is not None:
            path = (spec.storage.folder / key).resolve()
            if not path.exists():
                return None
            size = path.stat().st_size
        else:
            from ._storage import s3_client

            sidecar = sidecar_path(spec.spool_dir, key)
            outcome = recover_spool(s3_client(spec.storage), sidecar) if sidecar.exists() else None
            if outcome is None:
                return None
            size = outcome.size_bytes
        if last is not None:
            return dataclasses.replace(last, size_bytes=size)
        return file_info(spec, key, job_type(spec, key), size, 0.0, 0.0)

    async def aclose(self) -> None:
        """Stops every recording (they finish their files), waiting a little for them."""
        for job in self._jobs.values():
            job.stop_requested.set()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=20)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
