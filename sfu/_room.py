"""Rooms of one SFU node: who is in each meeting, what they publish, and who hears what."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from parley.control.v1 import resources_pb2 as control_res
from parley.control.v1 import sfu_report_service_pb2 as report
from parley.server import NotFound
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig

from ._congestion import PRIORITY_CAMERA, PRIORITY_SCREEN, PRIORITY_SPEAKER
from ._reporter import Reporter
from ._settings import SfuSettings

if TYPE_CHECKING:
    from ._publisher import PublishedTrack
    from ._session import Session

log = logging.getLogger(__name__)

#: Audio levels (dBov below zero, 0 loudest) under which a participant counts as speaking.
SPEAKING_LEVEL = 50
#: A level older than this is silence (the publisher stopped sending).
LEVEL_MAX_AGE = 1.0
SPEAKER_INTERVAL = 0.5
#: Connection quality is measured every this many speaker intervals (2 s).
QUALITY_TICKS = 4


def new_sid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


@dataclass(eq=False)
class Room:
    """One room's meeting on this node."""

    id: str
    settings: SfuSettings
    sid: str = field(default_factory=lambda: new_sid("RM"))
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    sessions: dict[str, Session] = field(default_factory=dict)
    closed: bool = False
    #: Where what happens in the meeting is told to control.
    reporter: Reporter = field(default_factory=Reporter, repr=False)
    _empty_since: float | None = None
    _speakers: list[str] = field(default_factory=list)
    _qualities: dict[str, int] = field(default_factory=dict)

    def info(self) -> res.Room:
        return res.Room(
            room=self.id,
            sid=self.sid,
            start_time=timestamp(self.start_time),
            max_participants=self.settings.max_participants,
            participant_count=len(self.sessions),
            recording=self.recording,
        )

    @property
    def recording(self) -> bool:
        """Being recorded: a participant whose token has the ``recorder`` grant is in it (as
        LiveKit decides), so that everyone can be shown it."""
        return any(s.permission.recorder for s in self.sessions.values())

    def report(self, **event: Any) -> None:
        """Tells control what happened in this meeting (``SfuEvent``'s fields), without waiting."""
        self.reporter.emit(self.id, self.sid, **event)

    def visible(self, exclude: Session | None = None) -> list[Session]:
        return [s for s in self.sessions.values() if s is not exclude and not s.permission.hidden]

    def broadcast(self, message: sig.ConnectResponse, *, exclude: Session | None = None) -> None:
        for session in list(self.sessions.values()):
            if session is not exclude:
                session.send(message)

    def admit(self, session: Session) -> None:
        """Adds a session (any earlier one of its identity has ended)."""
        recording = self.recording
        self.sessions[session.identity] = session
        self._empty_since = None
        # The newcomer reads the new state in its own ``joined``.
        self._tell_if_recording_changed(recording, exclude=session)

    def remove(self, session: Session) -> bool:
        """Takes a session out (unless a newer one of its identity replaced it)."""
        if self.sessions.get(session.identity) is not session:
            return False
        recording = self.recording
        del self.sessions[session.identity]
        if not self.sessions:
            self._empty_since = time.monotonic()
        self._tell_if_recording_changed(recording)
        return True

    def _tell_if_recording_changed(self, recording: bool, *, exclude: Session | None = None) -> None:
        """Sends everyone ``room_updated`` when a recorder came or went (hidden as it is, the
        meeting shows that it is recorded)."""
        if self.recording != recording:
            self.broadcast(sig.ConnectResponse(room_updated=sig.RoomUpdated(room=self.info())), exclude=exclude)

    def expired(self, now: float) -> bool:
        """Empty for longer than the settings allow."""
        return self._empty_since is not None and now - self._empty_since >= self.settings.empty_timeout

    def tracks(self) -> Iterable[tuple[Session, PublishedTrack]]:
        for session in list(self.sessions.values()):
            for track in list(session.published.values()):
                yield session, track

    # --- who receives what ---------------------------------------------------------------------

    def _subscribable(self, session: Session, track_sids: Sequence[str]) -> list[PublishedTrack]:
        """The tracks ``session`` may ask for (published here by others, not hidden), all or
        none: NotFound names every one it may not."""
        tracks = {t.sid: t for owner, t in self.tracks() if owner is not session and not owner.permission.hidden}
        unknown = [sid for sid in track_sids if sid not in tracks]
        if unknown:
            raise NotFound(f"no such track: {', '.join(unknown)}")
        return [tracks[sid] for sid in track_sids]

    def subscribe(self, session: Session, track_sids: Sequence[str], *, paused: bool = False) -> None:
        """Subscribes ``session`` to tracks others publish here (its next subscriber offer
        carries them), paused or not."""
        for track in self._subscribable(session, track_sids):
            session.subscriber.add(track)
            session.subscriber.set_paused(track.sid, paused)

    def unsubscribe(self, session: Session, track_sids: Sequence[str]) -> None:
        """Ends subscriptions of ``session`` (its next subscriber offer drops them)."""
        for track in self._subscribable(session, track_sids):
            session.subscriber.remove(track.sid)

    def subscribe_to_all(self, session: Session) -> None:
        """A joining session that subscribes automatically receives what is already published."""
        for owner, track in self.tracks():
            if owner is not session:
                session.subscriber.add(track)

    def track_published(self, owner: Session, track: PublishedTrack) -> None:
        """Subscribes every session that subscribes automatically, each negotiating anew."""
        for session in list(self.sessions.values()):
            if session is not owner and session.subscribes_automatically:
                session.subscriber.add(track)
                session.subscriber.negotiate_soon()

    def track_unpublished(self, track: PublishedTrack) -> None:
        """Ends every subscription to a track, each subscriber negotiating anew."""
        for session in list(self.sessions.values()):
            if session.subscriber.remove(track.sid):
                session.subscriber.negotiate_soon()

    def update_speakers(self) -> None:
        """Sends ``speakers_changed`` when the set of people speaking changed."""
        now = time.monotonic()
        levels: list[tuple[int, str]] = []
        for session in self.sessions.values():
            loudest = min(
                (
                    t.up.audio_level
                    for t in session.published.values()
                    if t.up is not None and t.up.kind == "audio" and not t.muted
                    if now - t.up.audio_level_time < LEVEL_MAX_AGE
                ),
                default=127,
            )
            if loudest < SPEAKING_LEVEL and not session.permission.hidden:
                levels.append((loudest, session.identity))
        levels.sort()
        speakers = [identity for _, identity in levels]
        if speakers == self._speakers:
            return
        self._speakers = speakers
        infos = [res_speaker(identity, level) for level, identity in levels]
        self.broadcast(sig.ConnectResponse(speakers_changed=sig.SpeakersChanged(speakers=infos)))

    def share_bandwidth(self) -> None:
        """Measures every published track's rate, then shares each subscriber's downlink among
        what it receives: screen shares first, then the speakers' cameras, then the others."""
        now = time.perf_counter()
        priorities: dict[str, int] = {}
        for session in self.sessions.values():
            speaking = session.identity in self._speakers
            for track in session.published.values():
                if track.up is not None:
                    track.up.measure(now)
                priorities[track.sid] = (
                    PRIORITY_SCREEN
                    if track.source == control_res.TRACK_SOURCE_SCREEN_SHARE
                    else PRIORITY_SPEAKER
                    if speaking
                    else PRIORITY_CAMERA
                )
        for session in self.sessions.values():
            session.subscriber.allocate(now, lambda track: priorities.get(track.sid, PRIORITY_CAMERA))

    def update_qualities(self) -> None:
        """Sends ``connection_quality`` for participants whose quality changed: the worse of
        their uplink's (the share of their published packets lost on the way in: under 2 %,
        excellent; under 10 %, good) and their downlink's (video paused for bandwidth: poor; a
        lower layer than wanted: good)."""
        changed = []
        for session in self.sessions.values():
            losses = [
                loss
                for t in session.published.values()
                if t.up is not None
                if (loss := t.up.loss_since_last_call()) is not None
            ]
            congested = session.subscriber.congested
            if not losses and not congested and session.identity not in self._qualities:
                continue  # nothing measured yet
            loss = max(losses, default=0.0)
            uplink = (
                sig.CONNECTION_QUALITY_EXCELLENT
                if loss < 0.02
                else sig.CONNECTION_QUALITY_GOOD
                if loss < 0.10
                else sig.CONNECTION_QUALITY_POOR
            )
            downlink = (sig.CONNECTION_QUALITY_EXCELLENT, sig.CONNECTION_QUALITY_GOOD, sig.CONNECTION_QUALITY_POOR)[
                congested
            ]
            quality = min(uplink, downlink)
            if self._qualities.get(session.identity) != quality and not session.permission.hidden:
                self._qualities[session.identity] = quality
                changed.append(sig.ConnectionQualityInfo(identity=session.identity, quality=quality))
        if changed:
            self.broadcast(sig.ConnectResponse(connection_quality=sig.ConnectionQualityUpdate(updates=changed)))


def res_speaker(identity: str, level: int) -> sig.SpeakerInfo:
    return sig.SpeakerInfo(identity=identity, level=round(1.0 - level / 127.0, 3))


class Rooms:
    """The rooms of this node; closes rooms that stay empty, and tracks speakers."""

    def __init__(self, settings: SfuSettings, reporter: Reporter | None = None) -> None:
        self.settings = settings
        self.reporter = reporter if reporter is not None else Reporter()
        self.rooms: dict[str, Room] = {}
        #: Peer connections of ended sessions still closing.
        self.closing: set[asyncio.Future[None]] = set()
        self._task: asyncio.Task[None] | None = None
        #: Called with a room's id when it closes (the cluster forgets it).
        self.on_closed: Callable[[str], None] = lambda _room: None

    def get_or_create(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None or room.closed:
            room = self.rooms[room_id] = Room(room_id, self.settings, reporter=self.reporter)
            log.info("room %s started (%s)", room_id, room.sid)
            room.report(room_started=report.RoomStarted())
        return room

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for room in list(self.rooms.values()):
            for session in list(room.sessions.values()):
                await session.end(res.LEAVE_REASON_SERVER_SHUTDOWN)
            room.closed = True
            room.report(room_finished=report.RoomFinished())
        self.rooms.clear()
        await asyncio.gather(*self.closing, return_exceptions=True)

    async def _tick(self) -> None:
        for ticks in itertools.count(1):
            await asyncio.sleep(SPEAKER_INTERVAL)
            now = time.monotonic()
            for room_id, room in list(self.rooms.items()):
                if room.expired(now):
                    room.closed = True
                    del self.rooms[room_id]
                    log.info("room %s finished (%s)", room_id, room.sid)
                    room.report(room_finished=report.RoomFinished())
                    self.on_closed(room_id)
                    continue
                try:
                    room.update_speakers()
                    room.share_bandwidth()
                    if ticks % QUALITY_TICKS == 0:
                        room.update_qualities()
                except Exception:  # one room's bug must not stop the others'
                    log.exception("speaker or quality update failed in room %s", room_id)
