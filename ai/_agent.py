"""The metadata agent: a hidden participant that writes down what happens in a meeting while it
is recorded (La Suite Meet's metadata collector), so that a transcript of the mixed recording
can name its speakers (``Timeline.speaker_turns``).

    timeline = await MetadataCollector(sfu_url, token).run(stop)

It joins through the SDK room client with a hidden, subscribe-only token and subscribes to
microphone audio only: decoding video would cost far more than everything else it does, and
screen-share audio is not its sharer's voice. Each track gets its own streaming Silero VAD
(``_agent_vad.py``); a participant speaks while any of their tracks does. Participants already
there are ``joined`` at time 0.

A frame's time is its track's RTP time, anchored where its first frame arrived and re-anchored
when the two drift more than a second apart (as the recorder places frames), so network jitter
does not move speech. A muted, unpublished or silent track (no packets: the SFU drops a muted
track's, browsers send none in DTX) ends its speech.

It returns when ``stop`` is set, when the room's ``recording`` flag falls (the recorder left:
the recording it documents is over), or when its session ends (the room closed, the SFU went
away); open speech is closed then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from parley.control.v1 import resources_pb2 as control_res
from parley.room import RemoteParticipant, RemoteTrack, Room, RoomEvent
from parley.sfu.v1 import resources_pb2 as sfu_res

from ._agent_timeline import EventType, Timeline, TimelineEvent
from ._agent_vad import DEFAULT_VAD, SpeechChange, TrackVad, VadOptions

log = logging.getLogger(__name__)

#: The data topic the meeting page and bots send chat messages on.
CHAT_TOPIC = "chat"
#: A track whose RTP time and arrival drift apart by more than this is re-anchored.
REANCHOR = 1.0
#: How often tracks that went quiet without a word (no packets) are checked.
STALL_CHECK = 0.25


class TimelineBuilder:
    """The agent's bookkeeping, apart from the room: told what happened (and given each track's
    decoded frames), it keeps the timeline. Times are seconds on the agent's clock."""

    def __init__(self, vad: VadOptions = DEFAULT_VAD) -> None:
        self.vad = vad
        self._events: list[TimelineEvent] = []
        self._names: dict[str, str] = {}
        self._tracks: dict[str, TrackVad] = {}
        self._owners: dict[str, str] = {}  # track sid → identity
        self._anchors: dict[str, tuple[float, int]] = {}  # track sid → (time, pts) of its RTP clock
        self._heard: dict[str, float] = {}  # track sid → when its last frame came
        self._speaking: dict[str, set[str]] = {}  # identity → its tracks speaking now

    def joined(self, identity: str, name: str, at: float) -> None:
        self._names[identity] = name
        self._record("joined", identity, at)

    def updated(self, identity: str, name: str, at: float) -> None:
        """Participant news: a ``renamed`` event when the name is new."""
        if name != self._names.get(identity):
            self._names[identity] = name
            self._record("renamed", identity, at)

    def left(self, identity: str, at: float) -> None:
        for sid in [sid for sid, owner in self._owners.items() if owner == identity]:
            self.track_ended(sid, at)
        self._record("left", identity, at)

    def chat(self, identity: str, text: str, at: float) -> None:
        self._record("chat", identity, at, text)

    def track_started(self, identity: str, sid: str) -> None:
        if sid not in self._tracks:
            self._tracks[sid] = TrackVad(self.vad)
            self._owners[sid] = identity

    def frame(self, sid: str, frame: av.AudioFrame, arrival: float) -> None:
        """A decoded frame of a track, received at ``arrival``."""
        vad = self._tracks.get(sid)
        if vad is None:
            return
        self._heard[sid] = at = arrival
        anchor = self._anchors.get(sid)
        if frame.pts is not None and frame.time_base is not None:
            if anchor is not None:
                at = anchor[0] + float((frame.pts - anchor[1]) * frame.time_base)
            if anchor is None or abs(at - arrival) > REANCHOR:
                self._anchors[sid], at = (arrival, frame.pts), arrival
        self._speech(sid, vad.push_frame(frame, at))

    def muted(self, sid: str, at: float) -> None:
        if sid in self._tracks:
            self._speech(sid, self._tracks[sid].close(at))

    def track_ended(self, sid: str, at: float) -> None:
        """Unpublished, or its owner left: its speech ends at ``at``."""
        vad = self._tracks.get(sid)
        if vad is not None:
            self._speech(sid, vad.close(at))
            del self._tracks[sid], self._owners[sid]
            self._anchors.pop(sid, None)
            self._heard.pop(sid, None)

    def end_stalled(self, now: float) -> None:
        """Ends the speech of tracks that sent nothing for ``min_silence`` (DTX, a lost link)
        where their audio stopped."""
        for sid, vad in self._tracks.items():
            if vad.speaking and now - self._heard.get(sid, now) > self.vad.min_silence:
                end = vad.position
                self._speech(sid, vad.close(now if end is None else end))

    def finish(self, started_at: datetime, at: float) -> Timeline:
        """Ends every track's speech at ``at``; the timeline, in time order (VAD changes are
        known a little after they happen)."""
        for sid in list(self._tracks):
            self.track_ended(sid, at)
        events = tuple(sorted(self._events, key=lambda e: e.time))
        return Timeline(started_at=started_at.isoformat(), participants=dict(self._names), events=events)

    def _record(self, type_: EventType, identity: str, at: float, text: str = "") -> None:
        name = self._names.get(identity, "")
        self._events.append(TimelineEvent(type=type_, time=max(0.0, at), identity=identity, name=name, text=text))

    def _speech(self, sid: str, changes: list[SpeechChange]) -> None:
        """A participant speaks while any of their tracks does."""
        identity = self._owners[sid]
        speaking = self._speaking.setdefault(identity, set())
        for kind, at in changes:
            if kind == "speech_start" and sid not in speaking:
                if not speaking:
                    self._record("speech_start", identity, at)
                speaking.add(sid)
            elif kind == "speech_end" and sid in speaking:
                speaking.discard(sid)
                if not speaking:
                    self._record("speech_end", identity, at)


class MetadataCollector:
    """Collects one room's timeline; ``run`` once."""

    def __init__(self, sfu_url: str, token: str, *, vad: VadOptions = DEFAULT_VAD) -> None:
        self.sfu_url, self.token = sfu_url, token
        self._builder = TimelineBuilder(vad)
        self._origin = 0.0
        self._readers: dict[str, asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event | None = None) -> Timeline:
        # No resume after a drop: its readers hold the old connection's tracks, so a resumed
        # agent would quietly stop hearing them; a drop ends the agent with its timeline so far.
        room = await Room.connect(self.sfu_url, self.token, auto_subscribe=False, reconnect_within=0)
        self._origin, started = time.monotonic(), datetime.now(UTC)
        log.info("metadata agent in %s", room.info.room)
        try:
            for participant in list(room.participants.values()):
                await self._joined(room, participant, 0.0)
            await self._until_done(room, stop)
        finally:
            for task in self._readers.values():
                task.cancel()
            await asyncio.gather(*self._readers.values(), return_exceptions=True)
            with contextlib.suppress(Exception):
                await room.close()
            log.info("metadata agent left %s", room.info.room)
        return self._builder.finish(started, self._now())

    def _now(self) -> float:
        return time.monotonic() - self._origin

    async def _until_done(self, room: Room, stop: asyncio.Event | None) -> None:
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._follow(room))}
        if stop is not None:
            waits.add(asyncio.ensure_future(stop.wait()))
        stalls = asyncio.ensure_future(self._end_stalled_speech())
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*waits, stalls):
                task.cancel()
            await asyncio.gather(*waits, stalls, return_exceptions=True)

    async def _follow(self, room: Room) -> None:
        """Until the session ends or the recording does."""
        recording = room.recording
        async for event in room.events():
            if event.type == "room_updated":
                if recording and not room.recording:
                    return
                recording = room.recording
            else:
                await self._on_event(room, event)

    async def _on_event(self, room: Room, event: RoomEvent) -> None:
        now, participant, remote, built = self._now(), event.participant, event.track, self._builder
        if event.type == "participant_joined" and participant is not None:
            await self._joined(room, participant, now)
        elif event.type == "participant_updated" and participant is not None:
            built.updated(participant.identity, participant.info.name, now)
        elif event.type == "participant_left" and participant is not None:
            for sid in participant.tracks:
                self._stop_reading(sid)
            built.left(participant.identity, now)
        elif event.type == "track_published" and remote is not None and _wanted(remote):
            await room.subscribe([remote.sid])
        elif event.type == "track_subscribed" and remote is not None and _wanted(remote):
            self._listen(remote)
        elif event.type == "track_unpublished" and remote is not None:
            self._stop_reading(remote.sid)
            built.track_ended(remote.sid, now)
        elif event.type == "track_muted" and remote is not None and remote.muted:
            built.muted(remote.sid, now)
        elif event.type == "data" and event.data is not None and event.data.topic == CHAT_TOPIC:
            built.chat(event.data.participant_identity, event.data.payload.decode("utf-8", errors="replace"), now)

    async def _joined(self, room: Room, participant: RemoteParticipant, at: float) -> None:
        self._builder.joined(participant.identity, participant.info.name, at)
        wanted = [sid for sid, remote in participant.tracks.items() if _wanted(remote)]
        if wanted:
            await room.subscribe(wanted)

    def _listen(self, remote: RemoteTrack) -> None:
        if remote.track is None or remote.sid in self._readers:
            return
        self._builder.track_started(remote.participant_identity, remote.sid)
        self._readers[remote.sid] = asyncio.create_task(self._read(remote.sid, remote.track))

    def _stop_reading(self, sid: str) -> None:
        reader = self._readers.pop(sid, None)
        if reader is not None:
            reader.cancel()

    async def _read(self, sid: str, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                self._builder.frame(sid, frame, self._now())
        except MediaStreamError:
            pass
        except Exception:  # that track goes unheard; the others and the timeline go on
            log.exception("reading track %s failed", sid)

    async def _end_stalled_speech(self) -> None:
        while True:
            await asyncio.sleep(STALL_CHECK)
            self._builder.end_stalled(self._now())


def _wanted(remote: RemoteTrack) -> bool:
    return (
        remote.info.kind == sfu_res.TRACK_KIND_AUDIO
        and remote.info.source != control_res.TRACK_SOURCE_SCREEN_SHARE_AUDIO
    )
