"""Each participant's audio beside a composite, as it was sent: what a transcript with exact
speaker names is made from (``RoomComposite.participant_audio``).

The composite recorder decodes every audio track for its mix; here the same track's encoded
Opus frames are also tapped before the decoder (``_tap``, ``decode=True``) and muxed into an
Ogg file of their own, without transcoding. A file's first frame is placed on the composite's
timeline by its arrival (as the mix places its first decoded frame), which gives its
``offset``; from there RTP time rules, and stretches the sender left silent are filled with
silence frames (``PassthroughWriter.ogg(fill_gaps=True)``) so the file's time runs with the
meeting's. Files go to the same storage as the composite, under ``{composite key}.tracks/``.

Writes happen on the recorder's one worker thread (an S3 part upload must not stall the event
loop), in batches: every frame that arrived since the last write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiortc import RTCRtpReceiver

from ._output import file_info, open_sink
from ._sink import FolderSink, S3Sink
from ._spec import ParticipantAudioInfo, RecordingSpec
from ._tap import tap_encoded_frames
from ._writer import PassthroughWriter

log = logging.getLogger(__name__)

CONTENT_TYPE = "audio/ogg"


def tracks_prefix(key: str) -> str:
    """Where the participant files of the composite ``key`` go: ``{key without extension}.tracks/``."""
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    return f"{stem}.tracks/"


@dataclass
class _TrackFile:
    identity: str
    name: str
    sid: str
    key: str
    #: Seconds on the composite's timeline of the first frame; None until one arrived.
    offset: float | None = None
    epoch: float = 0.0
    frames: list[tuple[bytes, int]] = field(default_factory=list)
    sink: FolderSink | S3Sink | None = None
    writer: PassthroughWriter | None = None
    writing: asyncio.Task[None] | None = None
    #: Once set, the file is being finished: frames still arriving are dropped.
    ending: bool = False
    closed: bool = False

    def info(self, spec: RecordingSpec) -> ParticipantAudioInfo | None:
        if self.sink is None or self.offset is None:
            return None
        duration = self.writer.duration if self.writer is not None else 0.0
        file = file_info(spec, self.key, CONTENT_TYPE, self.sink.bytes_written, duration, self.epoch)
        return ParticipantAudioInfo(
            identity=self.identity, name=self.name, track_sid=self.sid, file=file, offset=self.offset
        )


class ParticipantAudioFiles:
    """The participant files of one composite recording.

    Args:
        spec: the recording's spec (storage, composite key).
        worker: the recorder's worker thread, where every blocking write happens.
        position: seconds since the composite's time 0 (its clock), and the wall-clock time
            of that 0.
    """

    def __init__(
        self, spec: RecordingSpec, worker: ThreadPoolExecutor, position: Callable[[], float], epoch: float
    ) -> None:
        self._spec = spec
        self._worker = worker
        self._position = position
        self._epoch = epoch
        self._prefix = tracks_prefix(spec.key)
        self._files: dict[str, _TrackFile] = {}

    def follow(self, receiver: RTCRtpReceiver, *, sid: str, identity: str, name: str) -> None:
        """Starts writing the track ``sid`` (its receiver still feeds the decoder)."""
        if sid in self._files:
            return
        track = _TrackFile(identity=identity, name=name or identity, sid=sid, key=f"{self._prefix}{sid}.ogg")
        self._files[sid] = track

        def on_frame(data: bytes, timestamp: int) -> None:
            if track.ending:
                return
            if track.offset is None:
                track.offset = round(self._position(), 3)
                track.epoch = self._epoch + track.offset
            track.frames.append((data, timestamp))
            if track.writing is None or track.writing.done():
                track.writing = asyncio.ensure_future(self._drain(track))

        tap_encoded_frames(receiver, on_frame, decode=True)

    async def _drain(self, track: _TrackFile) -> None:
        loop = asyncio.get_running_loop()
        while track.frames:
            batch, track.frames = track.frames, []
            try:
                await loop.run_in_executor(self._worker, self._write, track, batch)
            except Exception:
                # A participant's file failing must not end the composite: it is left out.
                log.exception("recording %s: writing %s's audio failed", self._spec.egress_id, track.identity)
                track.closed = True
                return

    def _write(self, track: _TrackFile, batch: list[tuple[bytes, int]]) -> None:
        if track.closed:
            return
        if track.writer is None:
            track.sink = open_sink(self._spec, track.key, CONTENT_TYPE)
            track.writer = PassthroughWriter.ogg(track.sink, fill_gaps=True)
        for data, timestamp in batch:
            track.writer.write(data, timestamp, True)

    async def end(self, sid: str) -> None:
        """Finishes the file of a track that is gone (unpublished, its participant left)."""
        track = self._files.get(sid)
        if track is None or track.ending:
            return
        track.ending = True
        if track.writing is not None:
            with contextlib.suppress(Exception):
                await track.writing
        track.closed = True
        await asyncio.get_running_loop().run_in_executor(self._worker, self._close, track)

    async def end_all(self) -> None:
        for sid in list(self._files):
            await self.end(sid)

    def _close(self, track: _TrackFile) -> None:
        try:
            if track.writer is not None:
                track.writer.close()
            if track.sink is not None:
                track.sink.close()
        except Exception:
            log.exception("recording %s: finishing %s's audio failed", self._spec.egress_id, track.identity)

    def infos(self) -> tuple[ParticipantAudioInfo, ...]:
        """The files written so far, in the order their tracks were first heard."""
        found = (track.info(self._spec) for track in self._files.values())
        return tuple(sorted((info for info in found if info is not None), key=lambda info: info.offset))
