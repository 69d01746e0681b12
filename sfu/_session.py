"""One participant's session: its signal stream, its two peer connections, its published
tracks and its subscriptions.

The client offers the *publisher* connection (its tracks, announced first with
``publish_track`` so the SFU knows their source); the SFU offers the *subscriber* connection,
one negotiation at a time: changes that arrive while an offer waits for its answer are
batched into the next offer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
    sdp,
)
from google.protobuf import duration_pb2
from google.rpc import code_pb2, status_pb2

from parley import TRACK_SOURCE_NAMES, JoinTokenClaims
from parley.control.v1 import resources_pb2 as control_res
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig

from ._media import DownTrack, IdleTrack, UpTrack, forwardable_preferences, ignore_receiver, restrict_codecs
from ._room import Room, new_sid, timestamp

log = logging.getLogger(__name__)

SOURCE_KINDS: dict[int, int] = {
    control_res.TRACK_SOURCE_CAMERA: res.TRACK_KIND_VIDEO,
    control_res.TRACK_SOURCE_SCREEN_SHARE: res.TRACK_KIND_VIDEO,
    control_res.TRACK_SOURCE_MICROPHONE: res.TRACK_KIND_AUDIO,
    control_res.TRACK_SOURCE_SCREEN_SHARE_AUDIO: res.TRACK_KIND_AUDIO,
}
KIND_NAMES: dict[int, str] = {res.TRACK_KIND_AUDIO: "audio", res.TRACK_KIND_VIDEO: "video"}
#: Messages waiting for a slow client before its session is ended (reliable) or dropped (lossy).
OUTBOX_LIMIT = 2000
MAX_ATTRIBUTES = 32
LOSSY_LIMIT = 200


class SignalFailure(Exception):
    """A request that fails without ending the session."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class PublishedTrack:
    sid: str
    cid: str
    kind: int
    source: int
    name: str
    muted: bool
    up: UpTrack | None = None
    transceiver: RTCRtpTransceiver | None = None

    def info(self) -> res.Track:
        return res.Track(
            sid=self.sid,
            kind=self.kind,  # type: ignore[arg-type]
            source=self.source,  # type: ignore[arg-type]
            name=self.name,
            muted=self.muted,
            mime_type=self.up.mime_type if self.up else "",
        )


@dataclass(eq=False)
class Subscription:
    owner: Session
    track_sid: str
    transceiver: RTCRtpTransceiver
    down: DownTrack | None = None
    paused: bool = False


@dataclass(eq=False)
class Session:
    room: Room
    claims: JoinTokenClaims
    manual_subscribe: bool = False
    sid: str = field(default_factory=lambda: new_sid("PA"))
    join_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    published: dict[str, PublishedTrack] = field(default_factory=dict)
    announced: dict[str, PublishedTrack] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    #: Where connections being closed are kept, for the server to wait for at shutdown.
    closing: set[asyncio.Future[None]] = field(default_factory=set)
    left: asyncio.Event = field(default_factory=asyncio.Event)
    leave_reason: int = res.LEAVE_REASON_UNSPECIFIED

    def __post_init__(self) -> None:
        grants = self.claims.grants
        self.identity = self.claims.identity
        self.name = self.claims.name
        self.metadata = self.claims.metadata
        self.permission = res.ParticipantPermission(
            can_subscribe=grants.can_subscribe or grants.recorder,
            can_publish=grants.can_publish,
            can_publish_data=grants.can_publish_data,
            can_publish_sources=[s for s, n in TRACK_SOURCE_NAMES.items() if n in grants.can_publish_sources],  # type: ignore[misc]
            hidden=grants.hidden,
            recorder=grants.recorder,
            room_admin=grants.room_admin,
        )
        self.outbox: asyncio.Queue[sig.ConnectResponse | None] = asyncio.Queue()
        # One transport for all media (max-bundle): fewer ICE checks, and aiortc leaks the
        # sockets of transports it merges away when bundling later.
        configuration = RTCConfiguration(
            iceServers=[RTCIceServer(urls=u) for u in self.room.settings.ice_servers],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
        self._configuration = configuration
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self._awaiting_answer = False
        self._renegotiate = False
        #: Subscriber transceivers: reusable (their inactivity answered), made inactive since
        #: the last offer, and made inactive by the offer waiting for its answer.
        self._free: list[RTCRtpTransceiver] = []
        self._retiring: list[RTCRtpTransceiver] = []
        self._offered_inactive: list[RTCRtpTransceiver] = []
        #: The last numbering sent on each reusable transceiver (its SRTP context expects it).
        self._numbering: dict[RTCRtpTransceiver, tuple[int, int]] = {}
        #: Publisher transceivers already published or refused.
        self._settled: set[RTCRtpTransceiver] = set()
        self._negotiation_lock = asyncio.Lock()
        self._answer_due: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Runs background work owned by this session (cancelled when it ends)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- what others see -------------------------------------------------------------------

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
        if self.left.is_set():
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

    # --- joining and leaving ---------------------------------------------------------------

    def joined(self) -> sig.ConnectResponse:
        others = [s.info() for s in self.room.visible(exclude=self)]
        return sig.ConnectResponse(
            joined=sig.JoinResponse(
                room=self.room.info(),
                participant=self.info(),
                other_participants=others,
                ice_servers=[res_ice(u) for u in self.room.settings.ice_servers],
                ping_interval=_duration(self.room.settings.ping_interval),
            )
        )

    async def start(self) -> None:
        """Announces the session and subscribes it to what the room already publishes."""
        self._tell_others(sig.ConnectResponse(participant_joined=sig.ParticipantJoined(participant=self.info())))
        if self.permission.can_subscribe and not self.manual_subscribe:
            for owner, track_sid in list(self.room.tracks()):
                if owner is not self:
                    self._subscribe(owner, track_sid)
            await self._negotiate()

    async def end(self, reason: int) -> None:
        """Leaves the room: tells the others, stops forwarding, closes the connections."""
        if self.left.is_set():
            return
        self.leave_reason = reason
        self.left.set()
        for track in list(self.published.values()):
            self._drop_track(track)
        if self.room.remove(self):
            self._tell_others(
                sig.ConnectResponse(participant_left=sig.ParticipantLeft(identity=self.identity, sid=self.sid))
            )
        for sub in self.subscriptions.values():
            if sub.down is not None:
                sub.down.detach()
        self.subscriptions.clear()
        if reason != res.LEAVE_REASON_CLIENT_INITIATED:
            self.outbox.put_nowait(sig.ConnectResponse(left=sig.Left(reason=reason)))  # type: ignore[arg-type]
        self.outbox.put_nowait(None)
        if self._answer_due is not None:
            self._answer_due.cancel()
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
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()

    # --- requests ----------------------------------------------------------------------------

    async def handle(self, request: sig.ConnectRequest) -> None:
        kind = request.WhichOneof("message")
        if kind == "offer":
            await self._on_offer(request.offer)
        elif kind == "answer":
            await self._on_answer(request.answer)
        elif kind == "trickle":
            await self._on_trickle(request.trickle)
        elif kind == "publish_track":
            self._on_publish_track(request.publish_track)
        elif kind == "unpublish_track":
            self._drop_track(self._own_track(request.unpublish_track.track_sid))
        elif kind == "mute_track":
            self.set_muted(self._own_track(request.mute_track.track_sid), request.mute_track.muted)
        elif kind == "update_subscription":
            await self._on_update_subscription(request.update_subscription)
        elif kind == "data":
            self._on_data(request.data)
        elif kind == "update_metadata":
            self._on_update_metadata(request.update_metadata)
        elif kind == "ping":
            self.send(sig.ConnectResponse(pong=sig.Pong(last_ping_timestamp=request.ping.timestamp)))
        elif kind == "join":
            raise SignalFailure(grpc.StatusCode.FAILED_PRECONDITION, "already joined")
        else:  # "leave" is handled by the stream
            raise SignalFailure(grpc.StatusCode.INVALID_ARGUMENT, f"unknown request {kind!r}")

    async def _on_trickle(self, trickle: sig.IceCandidate) -> None:
        """A remote candidate (browsers trickle theirs; the SFU's own are in its SDP, as
        aiortc gathers before offering or answering)."""
        pc = self.publisher if trickle.target == sig.SIGNAL_TARGET_PUBLISHER else self.subscriber
        if pc is None:
            raise SignalFailure(grpc.StatusCode.FAILED_PRECONDITION, "that connection is not negotiated yet")
        line = trickle.candidate.removeprefix("a=").removeprefix("candidate:")
        if not line:
            return  # end of candidates
        try:
            candidate = sdp.candidate_from_sdp(line)
        except (ValueError, IndexError) as error:
            raise SignalFailure(grpc.StatusCode.INVALID_ARGUMENT, f"not an ICE candidate: {error}") from error
        candidate.sdpMid = trickle.sdp_mid or None
        candidate.sdpMLineIndex = trickle.sdp_mline_index
        await pc.addIceCandidate(candidate)

    def _own_track(self, track_sid: str) -> PublishedTrack:
        track = self.published.get(track_sid)
        if track is None:
            raise SignalFailure(grpc.StatusCode.NOT_FOUND, f"you publish no track {track_sid}")
        return track

    # --- publishing --------------------------------------------------------------------------

    def _on_publish_track(self, request: sig.PublishTrackRequest) -> None:
        source = TRACK_SOURCE_NAMES[request.source]
        if not self.claims.grants.may_publish(source):
            raise SignalFailure(grpc.StatusCode.PERMISSION_DENIED, f"your token does not allow publishing {source}")
        if SOURCE_KINDS[request.source] != request.kind:
            raise SignalFailure(grpc.StatusCode.INVALID_ARGUMENT, f"a {source} track is not {KIND_NAMES[request.kind]}")
        if request.cid in self.announced or any(t.cid == request.cid for t in self.published.values()):
            raise SignalFailure(grpc.StatusCode.ALREADY_EXISTS, f"track {request.cid} is already announced")
        if len(self.published) + len(self.announced) >= self.room.settings.max_tracks_per_participant:
            raise SignalFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many tracks")
        self.announced[request.cid] = PublishedTrack(
            sid=new_sid("TR"),
            cid=request.cid,
            kind=request.kind,
            source=request.source,
            name=request.name,
            muted=request.muted,
        )

    async def _on_offer(self, offer: sig.SessionDescription) -> None:
        if not self.permission.can_publish:
            raise SignalFailure(grpc.StatusCode.PERMISSION_DENIED, "your token does not allow publishing")
        # Tracks are matched to their announcement by the track id of each section's a=msid
        # (aiortc reads it only under an a=msid-semantic naming the stream; browsers often
        # publish without streams).
        track_ids = {m.rtp.muxId: m.msid.split()[-1] for m in _check_sdp(offer.sdp).media if m.msid}
        first = self.publisher is None
        pc = self.publisher if self.publisher is not None else RTCPeerConnection(self._configuration)
        self.publisher = pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as error:
            if first:
                self.publisher = None
                await pc.close()
            raise SignalFailure(grpc.StatusCode.INVALID_ARGUMENT, f"the offer was refused: {error}") from error
        new: list[PublishedTrack] = []
        refused: list[str] = []
        for transceiver in pc.getTransceivers():
            track = transceiver.receiver.track
            # Every remote offer resets the negotiated codecs: keep them forwardable.
            forwardable = restrict_codecs(transceiver)
            if track is None or transceiver in self._settled:
                continue
            self._settled.add(transceiver)
            track_id = track_ids.get(transceiver.mid or "", track.id)
            announced = self.announced.pop(track_id, None)
            if announced is None or KIND_NAMES[announced.kind] != transceiver.kind:
                refused.append(f"{track_id} was not announced with publish_track")
            elif not forwardable:
                refused.append(f"{track_id} offers no codec the SFU forwards (VP8, Opus)")
            else:
                announced.transceiver = transceiver
                new.append(announced)
                continue
            transceiver.direction = "inactive"  # refused: answered inactive, and ignored
            ignore_receiver(transceiver.receiver)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        if self.left.is_set():  # ended meanwhile (removed, replaced, expired)
            await pc.close()
            return
        self.send(sig.ConnectResponse(answer=sig.SessionDescription(sdp=pc.localDescription.sdp)))
        for fresh in new:
            self._start_forwarding(fresh)
        if refused:
            raise SignalFailure(grpc.StatusCode.FAILED_PRECONDITION, "; ".join(refused))

    def _start_forwarding(self, track: PublishedTrack) -> None:
        """A track's media is negotiated: forward it to everyone subscribed."""
        assert track.transceiver is not None
        track.up = UpTrack(track.transceiver.receiver, track.transceiver.kind)
        track.up.forwarding = not track.muted
        self.published[track.sid] = track
        own = sig.TrackPublished(participant_identity=self.identity, track=track.info(), cid=track.cid)
        self.send(sig.ConnectResponse(track_published=own))
        others = sig.TrackPublished(participant_identity=self.identity, track=track.info())
        self._tell_others(sig.ConnectResponse(track_published=others))
        for other in self.room.sessions.values():
            if other is not self and other.permission.can_subscribe and not other.manual_subscribe:
                other._subscribe(self, track.sid)
                other.spawn(other._negotiate_logged())

    def set_muted(self, track: PublishedTrack, muted: bool) -> None:
        if track.muted == muted:
            return
        track.muted = muted
        if track.up is not None:
            track.up.forwarding = not muted
            if not muted:
                for down in track.up.down:
                    down.restart()  # continues on a keyframe
        message = sig.TrackMuted(participant_identity=self.identity, track_sid=track.sid, muted=muted)
        self.send(sig.ConnectResponse(track_muted=message))
        self._tell_others(sig.ConnectResponse(track_muted=message))

    def _drop_track(self, track: PublishedTrack) -> None:
        self.published.pop(track.sid, None)
        if track.up is not None:
            track.up.close()
        message = sig.TrackUnpublished(participant_identity=self.identity, track_sid=track.sid)
        if not self.left.is_set():
            self.send(sig.ConnectResponse(track_unpublished=message))
        self._tell_others(sig.ConnectResponse(track_unpublished=message))
        for other in self.room.sessions.values():
            if track.sid in other.subscriptions:
                other._unsubscribe(track.sid)
                other.spawn(other._negotiate_logged())

    # --- subscribing ---------------------------------------------------------------------------

    def _subscribe(self, owner: Session, track_sid: str) -> None:
        if track_sid in self.subscriptions or self.left.is_set():
            return
        track = owner.published[track_sid]
        if self.subscriber is None:
            self.subscriber = RTCPeerConnection(self._configuration)
        kind = KIND_NAMES[track.kind]
        transceiver = next((t for t in self._free if t.kind == kind), None)
        if transceiver is not None:  # an inactive one, its inactivity already answered
            self._free.remove(transceiver)
            transceiver.direction = "sendonly"
        else:
            transceiver = self.subscriber.addTransceiver(IdleTrack(kind), direction="sendonly")
            transceiver.setCodecPreferences(forwardable_preferences(kind))
        self.subscriptions[track_sid] = Subscription(owner, track_sid, transceiver)
        self._renegotiate = True

    def _unsubscribe(self, track_sid: str) -> None:
        sub = self.subscriptions.pop(track_sid, None)
        if sub is None:
            return
        if sub.down is not None:
            sub.down.detach()
            self._numbering[sub.transceiver] = sub.down.numbering
        sub.transceiver.direction = "inactive"
        # Reusable once an answer has seen it inactive: reused sooner, a browser would see the
        # same mid and msid and not announce a new track.
        self._retiring.append(sub.transceiver)
        self._renegotiate = True

    async def _on_update_subscription(self, request: sig.UpdateSubscriptionRequest) -> None:
        if not self.permission.can_subscribe:
            raise SignalFailure(grpc.StatusCode.PERMISSION_DENIED, "your token does not allow subscribing")
        owners = {sid: owner for owner, sid in self.room.tracks() if not owner.permission.hidden or owner is self}
        unknown = [sid for sid in request.track_sids if sid not in owners or owners[sid] is self]
        if unknown:
            raise SignalFailure(grpc.StatusCode.NOT_FOUND, f"no such track: {', '.join(unknown)}")
        for track_sid in request.track_sids:
            if not request.subscribe:
                self._unsubscribe(track_sid)
                continue
            self._subscribe(owners[track_sid], track_sid)
            sub = self.subscriptions[track_sid]
            sub.paused = request.paused
            if sub.down is not None:
                sub.down.set_paused(request.paused)
        await self._negotiate()

    async def _negotiate_logged(self) -> None:
        try:
            await self._negotiate()
        except Exception:
            log.exception("subscriber negotiation failed for %s", self.identity)

    async def _negotiate(self) -> None:
        """Offers the subscriber connection again if something changed and no offer waits."""
        async with self._negotiation_lock:
            pc = self.subscriber
            if pc is None or not self._renegotiate or self._awaiting_answer or self.left.is_set():
                return
            self._renegotiate = False
            try:
                offer = await pc.createOffer()
                await pc.setLocalDescription(offer)
            except Exception:
                self._renegotiate = True
                raise
            self._awaiting_answer = True
            self._answer_due = asyncio.get_running_loop().call_later(
                self.room.settings.answer_timeout, self._answer_overdue
            )
            self._offered_inactive, self._retiring = self._retiring, []
            track_sids = {s.transceiver.mid: sid for sid, s in self.subscriptions.items() if s.transceiver.mid}
            description = sig.SessionDescription(sdp=pc.localDescription.sdp, track_sids=track_sids)
            self.send(sig.ConnectResponse(offer=description))

    def _answer_overdue(self) -> None:
        """A client that does not answer would receive nothing new: its session ends."""
        if self._awaiting_answer and not self.left.is_set():
            log.warning("%s did not answer a subscriber offer; ending its session", self.identity)
            self.spawn(self.end(res.LEAVE_REASON_CONNECTION_FAILED))

    async def _on_answer(self, answer: sig.SessionDescription) -> None:
        pc = self.subscriber
        if pc is None or not self._awaiting_answer:
            raise SignalFailure(grpc.StatusCode.FAILED_PRECONDITION, "no subscriber offer is waiting for an answer")
        try:
            _check_sdp(answer.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        except SignalFailure:
            raise
        except Exception as error:  # the offer still waits for a good answer
            raise SignalFailure(grpc.StatusCode.INVALID_ARGUMENT, f"the answer was refused: {error}") from error
        self._awaiting_answer = False
        if self._answer_due is not None:
            self._answer_due.cancel()
        self._free += self._offered_inactive
        self._offered_inactive = []
        for sub in self.subscriptions.values():
            track = sub.owner.published.get(sub.track_sid)
            if sub.down is None and track is not None and track.up is not None:
                sub.down = DownTrack(track.up, sub.transceiver, self._numbering.get(sub.transceiver))
                sub.down.set_paused(sub.paused)
        await self._negotiate()

    # --- data and metadata ---------------------------------------------------------------------

    def _on_data(self, packet: res.DataPacket) -> None:
        if not self.permission.can_publish_data:
            raise SignalFailure(grpc.StatusCode.PERMISSION_DENIED, "your token does not allow sending data")
        deliver(self.room, packet, sender=self)

    def _on_update_metadata(self, request: sig.UpdateMetadataRequest) -> None:
        attributes = dict(self.attributes)
        for key, value in request.attributes.items():
            if value:
                attributes[key] = value
            else:
                attributes.pop(key, None)
        if len(attributes) > MAX_ATTRIBUTES:  # checked before anything changes
            raise SignalFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {MAX_ATTRIBUTES} attributes")
        self.attributes = attributes
        if request.HasField("name"):
            self.name = request.name
        if request.HasField("metadata"):
            self.metadata = request.metadata
        self.announce_update()

    def announce_update(self) -> None:
        message = sig.ConnectResponse(participant_updated=sig.ParticipantUpdated(participant=self.info()))
        self.send(message)
        self._tell_others(message)


def _check_sdp(text: str) -> sdp.SessionDescription:
    """Refuses a description that does not parse or carries no audio / video section (aiortc
    would accept those, and answer with an empty session)."""
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as error:
        raise SignalFailure(grpc.StatusCode.INVALID_ARGUMENT, f"the SDP does not parse: {error}") from error
    if not any(m.kind in ("audio", "video") for m in description.media):
        raise SignalFailure(grpc.StatusCode.INVALID_ARGUMENT, "the SDP has no audio or video section")
    return description


def deliver(room: Room, packet: res.DataPacket, *, sender: Session | None) -> None:
    """Hands a data message to its destinations (everyone else when it names none)."""
    out = res.DataPacket()
    out.CopyFrom(packet)
    out.participant_identity = sender.identity if sender is not None else ""
    message = sig.ConnectResponse(data=out)
    lossy = packet.kind == res.DATA_KIND_LOSSY
    targets = set(packet.destination_identities)
    for session in list(room.sessions.values()):
        if session is not sender and (not targets or session.identity in targets):
            session.send(message, lossy=lossy)


def res_ice(url: str) -> sig.IceServer:
    return sig.IceServer(urls=[url])


def _duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of fractional seconds (``Duration(seconds=int(...))`` would turn 0.3 s into 0)."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def failure_status(error: SignalFailure) -> status_pb2.Status:
    return status_pb2.Status(code=getattr(code_pb2, error.code.name), message=str(error))
