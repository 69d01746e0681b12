"""The recorder: a hidden participant that records one room to one file.

It joins through the SDK room client (``parley.room``, subscribe-only, with the recorder
grant), lets aiortc decode every track it receives, and builds the output on a clock of its
own::

    video tracks ─recv()─► newest frames (placed by RTP time) ─┐
                                                               ├─► tick ─► compositor ─► writer ─► sink
    audio tracks ─recv()─► resample ─► mixer (placed by RTP time) ┘    (in one worker thread)

**The timeline.** Time 0 is when recording began. Each track's first frame is placed at its
arrival time, and every later frame at that place plus its RTP timestamp's distance from the
first (re-anchored if the two drift apart by more than a second: the publisher restarted).
Network jitter therefore never moves audio against video; both are read ``DELAY`` seconds
behind real time so that late packets still make it.

**The clock.** Video ticks ``fps`` times a second: the compositor takes each tile's newest
frame at or before the tick, the writer encodes it with the audio that belongs to the same
stretch of time. A tick that falls more than a frame behind real time is skipped (a dropped
frame, counted); audio is never skipped. Audio-only recordings tick every 100 ms.

**The end.** ``stop()``, the maximum duration (``limit_reached``), the room closing or staying
empty for ``empty_room_timeout`` end the recording; the writer finishes the file and the sink
completes its upload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError

from parley import ParleyError
from parley.control.v1 import resources_pb2 as control_res
from parley.room import RemoteTrack, Room, RoomEvent
from parley.sfu.v1 import resources_pb2 as sfu_res

from ._compositor import Compositor, Layout, Tile
from ._mixer import AudioMixer, SourceResampler
from ._output import file_info, open_sink
from ._participant_audio import ParticipantAudioFiles
from ._sink import FolderSink, S3Sink
from ._spec import FileInfo, Outcome, Progress, RecordingSpec, Result
from ._waiting import wait_event
from ._writer import MediaWriter

log = logging.getLogger(__name__)

#: Seconds the output is built behind real time, so that late packets make it.
DELAY = 0.3
SAMPLE_RATE = 48_000
CHANNELS = 2
#: Audio block of audio-only recordings, in seconds.
AUDIO_BLOCK = 0.1
#: A track whose RTP time and arrival time drift apart by more than this is re-anchored.
REANCHOR = 1.0


@dataclass
class _Anchor:
    """Where a track's RTP time meets the recording's timeline."""

    position: float
    pts: int

    def place(self, pts: int, time_base: Fraction, arrival: float) -> float:
        position = self.position + float((pts - self.pts) * time_base)
        if abs(position - arrival) > REANCHOR:
            self.position, self.pts = arrival, pts
            return arrival
        return position


@dataclass
class _Video:
    identity: str
    screen: bool
    frames: deque[tuple[float, av.VideoFrame]] = field(default_factory=lambda: deque(maxlen=8))

    def frame_at(self, position: float) -> av.VideoFrame | None:
        chosen = None
        for placed, frame in self.frames:
            if placed <= position:
                chosen = frame
        return chosen if chosen is not None else (self.frames[0][1] if self.frames else None)


class Recorder:
    """Records ``spec.room`` until stopped; ``run()`` returns how it ended."""

    def __init__(self, spec: RecordingSpec) -> None:
        self.spec = spec
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._phase: str = "joining"
        self._origin = 0.0  # monotonic time of timeline 0
        self._epoch = 0.0  # wall-clock time of timeline 0
        self._videos: dict[str, _Video] = {}
        self._anchors: dict[str, _Anchor] = {}
        self._resamplers: dict[str, SourceResampler] = {}
        self._mixer = AudioMixer(sample_rate=SAMPLE_RATE, channels=CHANNELS)
        self._speaker: str | None = None
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._sink: FolderSink | S3Sink | None = None
        self._writer: MediaWriter | None = None
        self._participant_audio: ParticipantAudioFiles | None = None
        self._endings: set[asyncio.Future[None]] = set()
        self._room: Room | None = None
        self.dropped_frames = 0

    # --- asked from outside ------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def progress(self) -> Progress:
        return Progress(
            phase=self._phase,  # type: ignore[arg-type]
            file=self._file_info(),
            dropped_frames=self.dropped_frames,
            participant_audio=self._participant_audio.infos() if self._participant_audio else (),
        )

    def _file_info(self) -> FileInfo | None:
        if self._sink is None:
            return None
        duration = self._writer.duration if self._writer is not None else 0.0
        s = self.spec
        return file_info(s, s.key, s.content_type, self._sink.bytes_written, duration, self._epoch)

    # --- the recording -----------------------------------------------------------------------

    async def run(self) -> Result:
        self._wake = asyncio.Event()
        if self._stopping:
            return Result(outcome="aborted", error="stopped before it began")
        try:
            # An audio-only recording subscribes to audio only: decoding video it would not use
            # costs more than everything else it does.
            # No resume after a drop: the readers and per-track files hold the old connection's
            # tracks, so a resumed recorder would quietly stop hearing them; a drop ends the
            # recording with what it has, as before resumption existed.
            room = await Room.connect(
                self.spec.sfu_url, self.spec.token, auto_subscribe=not self.spec.audio_only, reconnect_within=0
            )
        except (ParleyError, OSError) as error:
            return Result(outcome="failed", error=f"cannot join the room: {error}")
        try:
            if self._stopping:
                return Result(outcome="aborted", error="stopped before it began")
            return await self._record(room)
        finally:
            for task in self._readers.values():
                task.cancel()
            await asyncio.gather(*self._readers.values(), return_exceptions=True)
            with contextlib.suppress(Exception):
                await room.close()

    def _open(self) -> None:
        s = self.spec
        self._sink = open_sink(s, s.key, s.content_type)
        if s.audio_only:
            self._writer = MediaWriter.ogg(self._sink, sample_rate=SAMPLE_RATE, channels=CHANNELS)
        else:
            # One encoder thread: frame threads cost more CPU in all for no gain at 720p here.
            self._writer = MediaWriter.mp4(
                self._sink,
                s.width,
                s.height,
                s.fps,
                s.bitrate,
                sample_rate=SAMPLE_RATE,
                channels=CHANNELS,
                preset=s.x264_preset,
                threads=1,
            )

    async def _record(self, room: Room) -> Result:
        self._room = room
        loop = asyncio.get_running_loop()
        worker = ThreadPoolExecutor(1, thread_name_prefix=f"egress-{self.spec.egress_id[:8]}")
        try:
            await loop.run_in_executor(worker, self._open)
        except Exception as error:
            worker.shutdown()
            return Result(outcome="failed", error=f"cannot open the output: {error}")
        self._origin, self._epoch = time.monotonic(), time.time()
        if self.spec.participant_audio:
            self._participant_audio = ParticipantAudioFiles(
                self.spec, worker, lambda: time.monotonic() - self._origin, self._epoch
            )
        self._phase = "recording"
        for participant in room.participants.values():
            for remote in participant.tracks.values():
                await self._want(room, remote)
        events = asyncio.create_task(self._follow_events(room))
        compositor = (
            None if self.spec.audio_only else Compositor(self.spec.width, self.spec.height, Layout[self.spec.layout])
        )
        outcome: Outcome = "complete"
        message = ""
        try:
            outcome, message = await self._tick(room, loop, worker, compositor)
        except Exception as failure:
            log.exception("recording %s failed", self.spec.egress_id)
            outcome, message = "failed", f"recording failed: {failure}"
        finally:
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)
            self._phase = "ending"
            if self._participant_audio is not None:
                await asyncio.gather(*self._endings, return_exceptions=True)
                await self._participant_audio.end_all()
            try:
                await loop.run_in_executor(worker, self._close)
            except Exception as failure:
                log.exception("finishing %s failed", self.spec.egress_id)
                outcome, message = "failed", f"finishing the file failed: {failure}"
            worker.shutdown()
        self._phase = "done"
        if outcome == "complete" and not (self._writer and self._writer.duration):
            outcome, message = "aborted", "stopped before anything was recorded"
        participant_audio = self._participant_audio.infos() if self._participant_audio else ()
        return Result(outcome=outcome, error=message, file=self._file_info(), participant_audio=participant_audio)

    def _close(self) -> None:
        assert self._writer is not None
        assert self._sink is not None
        self._writer.close()
        self._sink.close()

    async def _tick(
        self, room: Room, loop: asyncio.AbstractEventLoop, worker: ThreadPoolExecutor, compositor: Compositor | None
    ) -> tuple[Outcome, str]:
        step = AUDIO_BLOCK if compositor is None else 1 / self.spec.fps
        in_flight: deque[asyncio.Future[None]] = deque()
        try:
            return await self._ticks(room, loop, worker, compositor, step, in_flight)
        finally:
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _ticks(
        self,
        room: Room,
        loop: asyncio.AbstractEventLoop,
        worker: ThreadPoolExecutor,
        compositor: Compositor | None,
        step: float,
        in_flight: deque[asyncio.Future[None]],
    ) -> tuple[Outcome, str]:
        assert self._wake is not None
        index = 0
        written_samples = 0
        empty_since: float | None = None
        while True:
            position = index * step
            due = self._origin + DELAY + position
            if (wait := due - time.monotonic()) > 0:
                await wait_event(self._wake, wait)
            if self._stopping or room.closed.is_set():
                return "complete", ""
            if position >= self.spec.max_duration:
                return "limit_reached", ""
            if room.participants:
                empty_since = None
            elif empty_since is None:
                empty_since = time.monotonic()
            elif time.monotonic() - empty_since > self.spec.empty_room_timeout:
                return "complete", ""
            end_samples = round((position + step) * SAMPLE_RATE)
            audio = self._mixer.pull(end_samples - written_samples)
            start_samples, written_samples = written_samples, end_samples
            tiles = None
            if compositor is not None:
                # A tick more than a frame late, or with two frames still being encoded, is
                # skipped: its audio is written, its picture is not.
                if time.monotonic() - due > step or len(in_flight) >= 2:
                    self.dropped_frames += 1
                else:
                    tiles = self._tiles(room, position)
            in_flight.append(loop.run_in_executor(worker, self._write, compositor, tiles, index, audio, start_samples))
            while in_flight and (in_flight[0].done() or len(in_flight) > 2):
                await in_flight.popleft()
            index += 1

    def _write(
        self,
        compositor: Compositor | None,
        tiles: list[Tile] | None,
        index: int,
        audio: np.ndarray,
        audio_start: int,
    ) -> None:
        assert self._writer is not None
        if compositor is not None and tiles is not None:
            self._writer.write_video(compositor.compose(tiles, self._speaker), index)
        self._writer.write_audio(audio, audio_start)

    def _tiles(self, room: Room, position: float) -> list[Tile]:
        tiles: list[Tile] = []
        for participant in room.participants.values():
            name = participant.info.name or participant.identity
            camera: av.VideoFrame | None = None
            for sid, remote in participant.tracks.items():
                video = self._videos.get(sid)
                if video is None or remote.muted:
                    continue
                frame = video.frame_at(position)
                if video.screen:
                    tiles.append(Tile(identity=f"{participant.identity}:screen", name=name, frame=frame, screen=True))
                elif camera is None:
                    camera = frame
            tiles.append(Tile(identity=participant.identity, name=name, frame=camera))
        return tiles

    # --- tracks and events -------------------------------------------------------------------

    async def _want(self, room: Room, remote: RemoteTrack) -> None:
        """Follows a track: subscribes to it first when the room does not do it by itself."""
        if self.spec.audio_only:
            if remote.info.kind == sfu_res.TRACK_KIND_AUDIO and remote.track is None:
                await room.subscribe([remote.sid])
            elif remote.info.kind == sfu_res.TRACK_KIND_AUDIO:
                self._follow_track(remote)
            return
        self._follow_track(remote)

    async def _follow_events(self, room: Room) -> None:
        async for event in room.events():
            if event.type == "track_published" and event.track is not None and self.spec.audio_only:
                await self._want(room, event.track)
            self._on_event(event)

    def _on_event(self, event: RoomEvent) -> None:
        if event.type == "track_subscribed" and event.track is not None:
            self._follow_track(event.track)
        elif event.type == "track_unpublished" and event.track is not None:
            self._forget(event.track.sid)
        elif event.type == "participant_left" and event.participant is not None:
            for sid in list(event.participant.tracks):
                self._forget(sid)
        elif event.type == "speakers_changed" and event.speakers:
            self._speaker = event.speakers[0].identity

    def _follow_track(self, remote: RemoteTrack) -> None:
        if remote.track is None or remote.sid in self._readers:
            return
        if remote.track.kind == "video":
            screen = remote.info.source == control_res.TRACK_SOURCE_SCREEN_SHARE
            self._videos[remote.sid] = _Video(identity=remote.participant_identity, screen=screen)
            reader = self._read_video(remote)
        else:
            self._resamplers[remote.sid] = SourceResampler(SAMPLE_RATE, CHANNELS)
            reader = self._read_audio(remote)
            room = self._room
            if self._participant_audio is not None and room is not None and (receiver := room.receiver_of(remote.sid)):
                owner = room.participants.get(remote.participant_identity)
                name = owner.info.name if owner is not None else ""
                self._participant_audio.follow(
                    receiver, sid=remote.sid, identity=remote.participant_identity, name=name
                )
        self._readers[remote.sid] = asyncio.create_task(reader)

    def _forget(self, sid: str) -> None:
        task = self._readers.pop(sid, None)
        if task is not None:
            task.cancel()
        if self._participant_audio is not None:
            ending = asyncio.ensure_future(self._participant_audio.end(sid))
            self._endings.add(ending)
            ending.add_done_callback(self._endings.discard)
        self._videos.pop(sid, None)
        self._anchors.pop(sid, None)
        self._resamplers.pop(sid, None)
        self._mixer.remove(sid)

    def _place(self, sid: str, pts: int | None, time_base: Fraction | None) -> float:
        arrival = time.monotonic() - self._origin
        if pts is None or time_base is None:
            return arrival
        anchor = self._anchors.get(sid)
        if anchor is None:
            self._anchors[sid] = _Anchor(position=arrival, pts=pts)
            return arrival
        return anchor.place(pts, time_base, arrival)

    async def _read_video(self, remote: RemoteTrack) -> None:
        track: Any = remote.track
        video = self._videos[remote.sid]
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                video.frames.append((self._place(remote.sid, frame.pts, frame.time_base), frame))

    async def _read_audio(self, remote: RemoteTrack) -> None:
        track: Any = remote.track
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                position = self._place(remote.sid, frame.pts, frame.time_base)
                resampler = self._resamplers.get(remote.sid)
                if resampler is None:
                    return
                samples = resampler(frame)
                if samples.shape[1]:
                    self._mixer.push(remote.sid, samples, round(position * SAMPLE_RATE))
