"""The track recorder: one published track written as it was sent, without decoding or
re-encoding it: VP8 into WebM, Opus into Ogg.

It joins like the composite recorder (hidden, with the recorder grant), subscribes to that one
track only, and reads the receiver's encoded frames before its decoder (``_tap``). A video
file must begin with a keyframe: frames before the first one are dropped while a keyframe is
asked for. RTP timestamps become the file's timestamps, so the timing is the sender's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from parley import ParleyError
from parley.room import RemoteTrack, Room

from ._output import file_info, open_sink
from ._sink import FolderSink, S3Sink
from ._spec import FileInfo, Outcome, Progress, RecordingSpec, Result
from ._tap import request_keyframe, tap_encoded_frames
from ._writer import PassthroughWriter

log = logging.getLogger(__name__)

#: Seconds to wait for the track to be published and subscribed.
FIND_TIMEOUT = 15.0
#: At most one keyframe request per this many seconds while waiting for one.
KEYFRAME_INTERVAL = 1.0
_VIDEO_CLOCK, _AUDIO_CLOCK = 90_000, 48_000


def vp8_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 keyframe (RFC 6386 9.1), None for an interframe."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


class TrackRecorder:
    """Records ``spec.track_sid`` until stopped; ``run()`` returns how it ended."""

    def __init__(self, spec: RecordingSpec) -> None:
        self.spec = spec
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._phase = "joining"
        self._key = spec.key
        self._content_type = ""
        self._epoch = 0.0
        self._sink: FolderSink | S3Sink | None = None
        self._writer: PassthroughWriter | None = None
        self._frames: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def progress(self) -> Progress:
        return Progress(phase=self._phase, file=self._file_info())  # type: ignore[arg-type]

    def _file_info(self) -> FileInfo | None:
        if self._sink is None:
            return None
        duration = self._writer.duration if self._writer is not None else 0.0
        return file_info(self.spec, self._key, self._content_type, self._sink.bytes_written, duration, self._epoch)

    async def run(self) -> Result:
        self._wake = asyncio.Event()
        try:
            # No resume after a drop (see the composite recorder): the drop ends the recording.
            room = await Room.connect(self.spec.sfu_url, self.spec.token, auto_subscribe=False, reconnect_within=0)
        except (ParleyError, OSError) as error:
            return Result(outcome="failed", error=f"cannot join the room: {error}")
        try:
            remote = await self._subscribe(room)
            if remote is None:
                return Result(outcome="failed", error=f"track {self.spec.track_sid} is not published in the room")
            if self._stopping:
                return Result(outcome="aborted", error="stopped before it began")
            return await self._record(room, remote)
        finally:
            with contextlib.suppress(Exception):
                await room.close()

    async def _subscribe(self, room: Room) -> RemoteTrack | None:
        sid = self.spec.track_sid

        def find() -> RemoteTrack | None:
            for participant in room.participants.values():
                if (remote := participant.tracks.get(sid)) is not None:
                    return remote
            return None

        deadline = time.monotonic() + FIND_TIMEOUT
        while (remote := find()) is None and time.monotonic() < deadline and not self._stopping:
            with contextlib.suppress(TimeoutError):
                await room.wait_for("track_published", lambda e: e.track is not None and e.track.sid == sid, within=1.0)
        if remote is None:
            return None
        await room.subscribe([sid])
        while remote.track is None and time.monotonic() < deadline and not self._stopping:
            with contextlib.suppress(TimeoutError):
                await room.wait_for(
                    "track_subscribed", lambda e: e.track is not None and e.track.sid == sid, within=1.0
                )
        return remote if remote.track is not None else None

    async def _record(self, room: Room, remote: RemoteTrack) -> Result:
        assert remote.track is not None
        receiver = room.receiver_of(remote.sid)
        if receiver is None:
            return Result(outcome="failed", error="the track's receiver is missing")
        video = remote.track.kind == "video"
        extension, self._content_type = ("webm", "video/webm") if video else ("ogg", "audio/ogg")
        self._key = f"{self.spec.key}.{extension}"
        tap_encoded_frames(receiver, lambda data, timestamp: self._frames.put_nowait((data, timestamp)))
        self._sink = await asyncio.to_thread(open_sink, self.spec, self._key, self._content_type)
        if not video:
            self._writer = PassthroughWriter.ogg(self._sink)
        self._phase = "recording"
        self._epoch = time.time()
        outcome: Outcome = "complete"
        message = ""
        asked = 0.0
        first: int | None = None
        try:
            while True:
                if self._stopping or room.closed.is_set() or self._gone(room, remote):
                    break
                try:
                    data, timestamp = await asyncio.wait_for(self._frames.get(), 0.5)
                except TimeoutError:
                    continue
                keyframe = True
                if video:
                    size = vp8_keyframe_size(data)
                    keyframe = size is not None
                    if self._writer is None:
                        if size is None:
                            if time.monotonic() - asked > KEYFRAME_INTERVAL:
                                asked = time.monotonic()
                                await request_keyframe(receiver)
                            continue
                        self._writer = PassthroughWriter.webm(self._sink, *size)
                assert self._writer is not None
                first = timestamp if first is None else first
                if (timestamp - first) / (_VIDEO_CLOCK if video else _AUDIO_CLOCK) >= self.spec.max_duration:
                    outcome = "limit_reached"
                    break
                self._writer.write(data, timestamp, keyframe)
        except Exception as failure:
            log.exception("track egress %s failed", self.spec.egress_id)
            outcome, message = "failed", f"recording failed: {failure}"
        self._phase = "ending"
        try:
            await asyncio.to_thread(self._close)
        except Exception as failure:
            outcome, message = "failed", f"finishing the file failed: {failure}"
        self._phase = "done"
        if outcome == "complete" and self._writer is None:
            outcome, message = "aborted", "no media arrived from the track"
        return Result(outcome=outcome, error=message, file=self._file_info())

    @staticmethod
    def _gone(room: Room, remote: RemoteTrack) -> bool:
        owner = room.participants.get(remote.participant_identity)
        return owner is None or remote.sid not in owner.tracks

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()
