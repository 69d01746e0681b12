"""One participant's session: who it is and what it may do, its signal requests, its outbox,
and its life from joining to leaving.

Its media go through two peer connections: the client offers the *publisher* connection
(``_publisher.py``), the SFU offers the *subscriber* connection (``_subscriber.py``). What it
receives is the room's business (``Room.subscribe``, ``Room.track_published``); data
messages and metadata are in ``_data.py``.

A session outlives the signal stream that carries it: a stream that ends without ``leave``
(a network drop) *detaches* it, and it waits ``resume_grace`` seconds, marked disconnected,
for a new stream that presents its ``resume_token`` (``attach`` + ``take_up``). The others
are told nothing meanwhile; its published tracks keep their sids and subscribers, and are
continued from the new publisher connection (``Publisher.restart``); its subscriptions are
offered on a new subscriber connection. When the grace period passes, it ends as a leave does."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer
from google.protobuf import duration_pb2

from parley import TRACK_SOURCE_VALUES, JoinTokenClaims
from parley.control.v1 import sfu_report_service_pb2 as report
from parley.server import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig

from ._data import send_data, update_metadata
from ._layers import Preference
from ._metrics import RESUMES
from ._publisher import PublishedTrack, Publisher
from ._reporter import NAME_MAX
from ._room import Room, new_sid, timestamp
from ._sdp import ice_candidate
from ._subscriber import Subscriber
from ._turn import client_ice_servers

log = logging.getLogger(__name__)

#: Messages waiting for a slow client before its session is ended (reliable) or dropped (lossy).
OUTBOX_LIMIT = 2000
LOSSY_LIMIT = 200


@dataclass(eq=False)
class Session:
    room: Room
    claims: JoinTokenClaims
    manual_subscribe: bool = False
    sid: str = field(default_factory=lambda: new_sid("PA"))
    join_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    attributes: dict[str, str] = field(default_factory=dict)
    #: Where connections being closed are kept, for the server to wait for at shutdown.
    closing: set[asyncio.Future[None]] = field(default_factory=set)
    left: asyncio.Event = field(default_factory=asyncio.Event)
    leave_reason: int = res.LEAVE_REASON_UNSPECIFIED

    def __post_init__(self) -> None:
        grants = self.claims.grants
        settings = self.room.settings
        self.identity = self.claims.identity
        self.name = self.claims.name
        self.metadata = self.claims.metadata
        self.permission = res.ParticipantPermission(
            can_subscribe=grants.can_subscribe or grants.recorder,
            can_publish=grants.can_publish,
            can_publish_data=grants.can_publish_data,
            can_publish_sources=[v for n, v in TRACK_SOURCE_VALUES.items() if n in grants.can_publish_sources],
            hidden=grants.hidden,
            recorder=grants.recorder,
            room_admin=grants.room_admin,
        )
        #: What the SFU sends, read by the signal stream that holds the session; None while
        #: it is disconnected (waiting for a resume): what happens then is not queued, the
        #: resumed client reads the meeting as it is in its ``joined``.
        self.outbox: asyncio.Queue[sig.ConnectResponse | None] | None = None
        #: The task reading the requests of that stream (cancelled when another takes over).
        self.reader: asyncio.Task[None] | None = None
        #: Proves a resume comes from the client that held the session.
        self.resume_token = secrets.token_urlsafe(32)
        #: When its stream dropped (``time.monotonic()``), while it waits for a resume.
        self.disconnected_since: float | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._reclaim: asyncio.TimerHandle | None = None
        # One transport for all media (max-bundle): fewer ICE checks, and aiortc leaks the
        # sockets of transports it merges away when bundling later.
        configuration = RTCConfiguration(
            iceServers=[RTCIceServer(urls=u) for u in settings.ice_servers],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
        self.publisher = Publisher(
            configuration,
            grants=grants,
            max_tracks=settings.max_tracks_per_participant,
            on_connected=self._media_connected,
        )
        self._configuration = configuration
        self.subscriber = self._new_subscriber()
        #: Whether its media ever connected (then control heard it joined).
        self.media_connected = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _new_subscriber(self) -> Subscriber:
        return Subscriber(
            self._configuration,
            answer_timeout=self.room.settings.answer_timeout,
            send_offer=lambda offer: self.send(sig.ConnectResponse(offer=offer)),
            on_answer_overdue=self._answer_overdue,
            on_connected=self._media_connected,
            label=self.identity,
            congestion_control=self.room.settings.congestion_control,
        )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Runs background work owned by this session (cancelled when it ends)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- what others see -------------------------------------------------------------------

    @property
    def published(self) -> dict[str, PublishedTrack]:
        return self.publisher.published

    @property
    def subscribes_automatically(self) -> bool:
        return self.permission.can_subscribe and not self.manual_subscribe

    def info(self) -> res.Participant:
        return res.Participant(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            metadata=self.metadata,
            attributes=self.attributes,
            tracks=[t.info() for t in self.published.values()],
            permission=self.permission,
            join_time=timestamp(self.join_time),
        )

    def send(self, message: sig.ConnectResponse, *, lossy: bool = False) -> None:
        if self.left.is_set() or self.outbox is None:
            return
        size = self.outbox.qsize()
        if lossy and size >= LOSSY_LIMIT:
            return
        if size >= OUTBOX_LIMIT:
            log.warning("%s in %s reads too slowly; ending its session", self.identity, self.room.id)
            self.spawn(self.end(res.LEAVE_REASON_CONNECTION_FAILED))
            return
        self.outbox.put_nowait(message)

    def _tell_others(self, message: sig.ConnectResponse) -> None:
        if not self.permission.hidden:
            self.room.broadcast(message, exclude=self)

    def announce_update(self) -> None:
        message = sig.ConnectResponse(participant_updated=sig.ParticipantUpdated(participant=self.info()))
        self.send(message)
        self._tell_others(message)

    # --- joining and leaving ---------------------------------------------------------------

    def joined(self, *, resumed: bool = False) -> sig.ConnectResponse:
        others = [s.info() for s in self.room.visible(exclude=self)]
        settings = self.room.settings
        return sig.ConnectResponse(
            joined=sig.JoinResponse(
                room=self.room.info(),
                participant=self.info(),
                other_participants=others,
                ice_servers=client_ice_servers(settings, self.sid),
                ping_interval=_duration(settings.ping_interval),
                resume_token=self.resume_token,
                resume_grace=_duration(settings.resume_grace),
                resumed=resumed,
            )
        )

    async def start(self) -> None:
        """Announces the session and subscribes it to what the room already publishes."""
        expires_in = (self.claims.expires_at - datetime.now(UTC)).total_seconds()
        self._expiry = asyncio.get_running_loop().call_later(
            max(0.0, expires_in), lambda: self.spawn(self.end(res.LEAVE_REASON_TOKEN_EXPIRED))
        )
        self._tell_others(sig.ConnectResponse(participant_joined=sig.ParticipantJoined(participant=self.info())))
        if self.subscribes_automatically:
            self.room.subscribe_to_all(self)
            await self.subscriber.negotiate()

    # --- signal streams: attaching, dropping, resuming ----------------------------------------

    @property
    def disconnected(self) -> bool:
        return self.outbox is None and not self.left.is_set()

    def proves(self, resume_token: str) -> bool:
        return hmac.compare_digest(self.resume_token.encode(), resume_token.encode())

    def attach(self) -> asyncio.Queue[sig.ConnectResponse | None]:
        """A signal stream takes the session (its join, or a resume): what the session sends
        goes to it from now on. A stream that still held it (its drop not noticed yet) ends."""
        if self.outbox is not None:
            self.outbox.put_nowait(None)
        if self.reader is not None:
            self.reader.cancel()  # its requests were meant for the connections being replaced
            self.reader = None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self.disconnected_since = None
        self.outbox = asyncio.Queue()
        return self.outbox

    async def detach(self, outbox: asyncio.Queue[sig.ConnectResponse | None], reason: int) -> None:
        """The stream reading ``outbox`` ended without ``leave``: the session waits
        ``resume_grace`` seconds for a resume, then ends with ``reason`` (at once without a
        grace period). Nothing when the session ended or another stream holds it."""
        if self.left.is_set() or outbox is not self.outbox:
            return
        outbox.put_nowait(None)
        self.outbox = None
        self.reader = None
        grace = self.room.settings.resume_grace
        if grace <= 0:
            await self.end(reason)
            return
        self.disconnected_since = time.monotonic()
        log.info("%s's signal stream dropped; its session waits %.1f s for a resume", self.identity, grace)
        self._grace = asyncio.get_running_loop().call_later(grace, self._grace_over, reason)

    def _grace_over(self, reason: int) -> None:
        self._grace = None
        RESUMES.expired += 1
        log.info("%s did not resume within %.1f s; it has left", self.identity, self.room.settings.resume_grace)
        self.spawn(self.end(reason))

    def take_up(self) -> None:
        """Resumes the session on the stream just attached, before its ``joined`` is sent:
        new peer connections replace the old ones (aiortc has no ICE restart). The publisher
        connection is offered anew by the client, which brings its tracks back by their cids;
        the subscriber connection is offered anew with the same subscriptions (``negotiate``
        once ``joined`` is out)."""
        old_publisher = self.publisher.restart()
        old = self.subscriber
        kept = [(sub.track, sub.paused, sub.preference) for sub in old.subscriptions.values()]
        old.end()
        self.subscriber = self._new_subscriber()
        for track, paused, preference in kept:
            if not track.unpublished:
                self.subscriber.add(track)
                self.subscriber.set_paused(track.sid, paused)
                self.subscriber.set_preference(track.sid, preference)
        if self.subscribes_automatically:
            self.room.subscribe_to_all(self)
        self._close_later(old_publisher, old)
        if self._reclaim is not None:
            self._reclaim.cancel()
        # Tracks the client does not bring back within a grace period are unpublished.
        grace = max(self.room.settings.resume_grace, self.room.settings.answer_timeout)
        self._reclaim = asyncio.get_running_loop().call_later(grace, self._unpublish_unclaimed)

    def _unpublish_unclaimed(self) -> None:
        self._reclaim = None
        for track in list(self.publisher.resuming.values()):
            log.info("%s did not bring back track %s after resuming; unpublished", self.identity, track.sid)
            self.unpublish(track)

    def _close_later(self, *connections: Any) -> None:
        """Closes replaced connections in the background, where the server waits for them at
        shutdown."""

        async def close() -> None:
            for connection in connections:
                if connection is not None:
                    await connection.close()

        closing = asyncio.ensure_future(close())
        self.closing.add(closing)
        closing.add_done_callback(self.closing.discard)

    def _media_connected(self) -> None:
        """One of its connections connected: the first time, the participant has joined the
        meeting (LiveKit's rule: signalling alone is not attending)."""
        if self.media_connected or self.left.is_set():
            return
        self.media_connected = True
        self.room.report(
            participant_joined=report.ParticipantJoined(
                identity=self.identity,
                participant_sid=self.sid,
                display_name=self.name[:NAME_MAX],
                signal_time=timestamp(self.join_time),
            )
        )
        # Tracks negotiated before the media connected are reported after the join, so that
        # control (and webhooks) never hear of a track before its publisher.
        for track in self.published.values():
            self._report_published(track)

    async def end(self, reason: int) -> None:
        """Leaves the room: tells the others, stops forwarding, closes the connections."""
        if self.left.is_set():
            return
        self.leave_reason = reason
        self.left.set()
        for timer in (self._grace, self._expiry, self._reclaim):
            if timer is not None:
                timer.cancel()
        self.subscriber.end()
        for track in list(self.published.values()):
            self.unpublish(track)
        if self.room.remove(self):
            self._tell_others(
                sig.ConnectResponse(participant_left=sig.ParticipantLeft(identity=self.identity, sid=self.sid))
            )
        name = self.name[:NAME_MAX]
        left = report.ParticipantLeft(identity=self.identity, participant_sid=self.sid, display_name=name)
        # Media never connected: an attempt that failed, not attendance.
        self.room.report(**{"participant_left" if self.media_connected else "participant_aborted": left})
        if self.outbox is not None:
            if reason != res.LEAVE_REASON_CLIENT_INITIATED:
                self.outbox.put_nowait(sig.ConnectResponse(left=sig.Left(reason=reason)))  # type: ignore[arg-type]
            self.outbox.put_nowait(None)
        current = asyncio.current_task()
        for task in [t for t in self._tasks if t is not current]:
            task.cancel()
        # Closing runs on even when the caller is cancelled (a client's stream dropping
        # cancels its servicer): an interrupted close leaks sockets.
        closing = asyncio.ensure_future(self._close_connections())
        self.closing.add(closing)
        closing.add_done_callback(self.closing.discard)
        await asyncio.shield(closing)

    async def _close_connections(self) -> None:
        await self.publisher.close()
        await self.subscriber.close()

    def _answer_overdue(self) -> None:
        """A client that does not answer would receive nothing new: its session ends."""
        if self.outbox is None:  # disconnected: a resume offers a new connection anyway
            return
        log.warning("%s did not answer a subscriber offer; ending its session", self.identity)
        self.spawn(self.end(res.LEAVE_REASON_CONNECTION_FAILED))

    # --- requests ----------------------------------------------------------------------------

    async def handle(self, request: sig.ConnectRequest) -> None:
        """Carries out one signal request; a ``ServiceError`` answers that request only."""
        kind = request.WhichOneof("message")
        if kind == "offer":
            await self._on_offer(request.offer)
        elif kind == "answer":
            await self.subscriber.apply_answer(request.answer.sdp)
        elif kind == "trickle":
            await self._on_trickle(request.trickle)
        elif kind == "publish_track":
            self.publisher.announce(request.publish_track)
        elif kind == "unpublish_track":
            self.unpublish(self.publisher.track(request.unpublish_track.track_sid))
        elif kind == "mute_track":
            self.set_muted(self.publisher.track(request.mute_track.track_sid), request.mute_track.muted)
        elif kind == "update_subscription":
            await self._on_update_subscription(request.update_subscription)
        elif kind == "update_track_settings":
            self._on_update_track_settings(request.update_track_settings)
        elif kind == "data":
            send_data(self, request.data)
        elif kind == "update_metadata":
            update_metadata(self, request.update_metadata)
        elif kind == "ping":
            self.send(sig.ConnectResponse(pong=sig.Pong(last_ping_timestamp=request.ping.timestamp)))
        elif kind == "join":
            raise FailedPrecondition("already joined")
        else:  # "leave" is handled by the stream
            raise InvalidArgument.field("message", f"unknown request {kind!r}")

    async def _on_trickle(self, trickle: sig.IceCandidate) -> None:
        """A remote candidate (browsers trickle theirs; the SFU's own are in its SDP, as
        aiortc gathers before offering or answering)."""
        publisher = trickle.target == sig.SIGNAL_TARGET_PUBLISHER
        pc = self.publisher.pc if publisher else self.subscriber.pc
        if pc is None:
            raise FailedPrecondition("that connection is not negotiated yet")
        candidate = ice_candidate(trickle)
        if candidate is not None:
            await pc.addIceCandidate(candidate)

    async def _on_offer(self, offer: sig.SessionDescription) -> None:
        if not self.permission.can_publish:
            raise PermissionDenied("your token does not allow publishing")
        accepted = await self.publisher.accept_offer(offer.sdp)
        if self.left.is_set():  # ended meanwhile (removed, replaced, expired)
            await self.publisher.close()
            return
        self.send(sig.ConnectResponse(answer=sig.SessionDescription(sdp=accepted.answer)))
        for track in accepted.tracks:
            if track.sid in self.published:
                self._bring_back(track)
            else:
                self._publish(track)
        if accepted.refused:
            raise FailedPrecondition("; ".join(accepted.refused))

    async def _on_update_subscription(self, request: sig.UpdateSubscriptionRequest) -> None:
        if not self.permission.can_subscribe:
            raise PermissionDenied("your token does not allow subscribing")
        if request.subscribe:
            self.room.subscribe(self, request.track_sids, paused=request.paused)
        else:
            self.room.unsubscribe(self, request.track_sids)
        await self.subscriber.negotiate()

    def _on_update_track_settings(self, request: sig.UpdateTrackSettingsRequest) -> None:
        """Checks every track first: a bad one changes nothing."""
        subscriptions = self.subscriber.subscriptions
        missing = [sid for sid in request.track_sids if sid not in subscriptions]
        if missing:
            raise NotFound(f"you are not subscribed to {', '.join(missing)}")
        audio = [sid for sid in request.track_sids if subscriptions[sid].track.kind != res.TRACK_KIND_VIDEO]
        if audio:
            raise InvalidArgument.field("update_track_settings.track_sids", f"not video: {', '.join(audio)}")
        # VIDEO_QUALITY_LOW (1) allows one layer, MEDIUM two, HIGH and unspecified all.
        layers = 0 if request.max_quality == res.VIDEO_QUALITY_HIGH else int(request.max_quality)
        preference = Preference(width=request.width, height=request.height, max_layers=layers)
        for sid in request.track_sids:
            self.subscriber.set_preference(sid, preference)

    # --- published tracks --------------------------------------------------------------------

    def _start(self, track: PublishedTrack) -> None:
        self.publisher.start(track)
        assert track.up is not None
        track.up.on_needed_layers = lambda rids: self.send(
            sig.ConnectResponse(subscribed_layers=sig.SubscribedLayersUpdate(track_sid=track.sid, rids=rids))
        )

    def _publish(self, track: PublishedTrack) -> None:
        """A track's media is negotiated: it is forwarded to everyone subscribed."""
        self._start(track)
        own = sig.TrackPublished(participant_identity=self.identity, track=track.info(), cid=track.cid)
        self.send(sig.ConnectResponse(track_published=own))
        others = sig.TrackPublished(participant_identity=self.identity, track=track.info())
        self._tell_others(sig.ConnectResponse(track_published=others))
        self.room.track_published(self, track)
        if self.media_connected:
            self._report_published(track)

    def _bring_back(self, track: PublishedTrack) -> None:
        """A track published before a resume arrives on the new connection: forwarded again
        under its sid, to the subscribers it had; only the client hears of it (for its cid)."""
        self._start(track)
        own = sig.TrackPublished(participant_identity=self.identity, track=track.info(), cid=track.cid)
        self.send(sig.ConnectResponse(track_published=own))
        if track.requested_muted is not None:
            self.set_muted(track, track.requested_muted)  # muted or unmuted while away
            track.requested_muted = None

    def _report_published(self, track: PublishedTrack) -> None:
        self.room.report(
            track_published=report.TrackPublished(identity=self.identity, track_sid=track.sid, source=track.source)  # type: ignore[arg-type]
        )

    def set_muted(self, track: PublishedTrack, muted: bool) -> None:
        if not self.publisher.set_muted(track, muted):
            return
        message = sig.TrackMuted(participant_identity=self.identity, track_sid=track.sid, muted=muted)
        self.send(sig.ConnectResponse(track_muted=message))
        self._tell_others(sig.ConnectResponse(track_muted=message))
        if self.media_connected:
            self.room.report(track_muted=report.TrackMuted(identity=self.identity, track_sid=track.sid, muted=muted))

    def unpublish(self, track: PublishedTrack) -> None:
        self.publisher.remove(track)
        message = sig.TrackUnpublished(participant_identity=self.identity, track_sid=track.sid)
        self.send(sig.ConnectResponse(track_unpublished=message))  # nothing once left
        self._tell_others(sig.ConnectResponse(track_unpublished=message))
        self.room.track_unpublished(track)
        if self.media_connected:  # an attempt whose media never connected reports no tracks
            self.room.report(track_unpublished=report.TrackUnpublished(identity=self.identity, track_sid=track.sid))


def _duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of fractional seconds (``Duration(seconds=int(...))`` would turn 0.3 s into 0)."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value
