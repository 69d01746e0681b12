"""One egress job: its state as the contract describes it (``parley.egress.v1.Egress``), the
watchers that follow it, and the rules of its life: a status only moves forward, and a final
status never changes again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from parley.egress.v1 import resources_pb2 as res

from ._spec import FileInfo, ParticipantAudioInfo

FINAL = frozenset(
    {
        res.EGRESS_STATUS_COMPLETE,
        res.EGRESS_STATUS_FAILED,
        res.EGRESS_STATUS_ABORTED,
        res.EGRESS_STATUS_LIMIT_REACHED,
    }
)
#: The order statuses move in; a report never moves an egress backwards.
_RANK = {
    res.EGRESS_STATUS_STARTING: 1,
    res.EGRESS_STATUS_ACTIVE: 2,
    res.EGRESS_STATUS_ENDING: 3,
}


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _stamp(epoch: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


class Job:
    """An egress and the events its watchers wait on. Owned by one event loop."""

    def __init__(self, egress: res.Egress, *, cpus: float) -> None:
        self.egress = egress
        self.cpus = cpus
        self.created = time.monotonic()
        self.stop_requested = asyncio.Event()
        self._changed = asyncio.Condition()
        self.version = 0

    @property
    def id(self) -> str:
        return self.egress.name.rsplit("/", 1)[1]

    @property
    def final(self) -> bool:
        return self.egress.status in FINAL

    def _touch(self) -> None:
        self.egress.update_time.CopyFrom(_now())
        self.version += 1

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def advance(self, status: res.EgressStatus.ValueType, file: FileInfo | None = None) -> bool:
        """Moves to ``status`` (STARTING, ACTIVE or ENDING) unless it is behind; True if it moved."""
        if self.final or _RANK.get(status, 0) <= _RANK.get(self.egress.status, 0):
            if file is not None and not self.final:
                self._set_file(file)
                self._touch()
            return False
        self.egress.status = status
        if status == res.EGRESS_STATUS_ACTIVE:
            self.egress.start_time.CopyFrom(_now())
        if file is not None:
            self._set_file(file)
        self._touch()
        await self._notify()
        return True

    async def finish(
        self, status: res.EgressStatus.ValueType, *, error: str = "", file: FileInfo | None = None
    ) -> None:
        """Ends the egress with a final ``status``; a second call changes nothing."""
        if self.final:
            return
        self.egress.status = status
        if error:
            code = code_pb2.ABORTED if status == res.EGRESS_STATUS_ABORTED else code_pb2.INTERNAL
            self.egress.error.CopyFrom(status_pb2.Status(code=code, message=error))
        if file is not None:
            self._set_file(file)
        self.egress.end_time.CopyFrom(_now())
        self._touch()
        await self._notify()

    def _set_file(self, file: FileInfo) -> None:
        self.egress.file.CopyFrom(_file_result(file))

    def set_participant_audio(self, infos: Sequence[ParticipantAudioInfo]) -> None:
        """The participant files as the recorder last described them (not once final)."""
        if self.final or not infos:
            return
        del self.egress.participant_audio[:]
        for info in infos:
            self.egress.participant_audio.add(
                participant_identity=info.identity,
                participant_name=info.name,
                track_sid=info.track_sid,
                file=_file_result(info.file),
                offset=_duration(info.offset),
            )

    async def watch(self) -> AsyncIterator[res.Egress]:
        """The egress now, then after each change, until it is final."""
        seen = -1

        def changed() -> bool:
            return self.version != seen

        while True:
            async with self._changed:
                await self._changed.wait_for(changed)
                seen = self.version
                snapshot = res.Egress()
                snapshot.CopyFrom(self.egress)
            yield snapshot
            if snapshot.status in FINAL:
                return


def _duration(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9))


def _file_result(file: FileInfo) -> res.FileResult:
    result = res.FileResult(
        location=file.location, key=file.key, size_bytes=file.size_bytes, content_type=file.content_type
    )
    result.duration.CopyFrom(_duration(file.duration))
    if file.media_start:
        result.media_start_time.CopyFrom(_stamp(file.media_start))
    if file.media_end:
        result.media_end_time.CopyFrom(_stamp(file.media_end))
    return result
