"""The room client: joins a meeting on Parley's SFU the way bots, recorders and agents do.

    room = await Room.connect("grpc://127.0.0.1:7880", token)
    await room.publish(my_video_track, source="camera")
    async for event in room.events():
        if event.type == "track_subscribed":
            frame = await event.track.track.recv()   # a decoded av.VideoFrame / AudioFrame

Remote tracks arrive as aiortc ``MediaStreamTrack``\\ s (decoded by aiortc); local tracks are
any aiortc ``MediaStreamTrack``. Signaling runs over ``SignalService.Connect``; media over two
peer connections (publisher: offered here; subscriber: offered by the SFU). The room pings the
SFU at the interval the SFU announces, so a bot that only listens stays in the meeting.

When the signal stream drops (not a leave: the network, the SFU's side of a proxy), the room
resumes its session (``reconnecting``, then ``reconnected`` events): the others see no leave
and no join, its tracks keep their sids, and they see its media pause. It publishes its tracks
again on a new publisher connection and receives its subscriptions on a new subscriber
connection (``track_subscribed`` again, with new aiortc tracks for the same sids). When the
SFU no longer has the session (the grace period passed), it joins anew (new sids; the others
see it leave and join), and when it cannot reach the SFU within ``reconnect_within`` seconds
the room ends (``left``). With several SFU nodes (or workers), a node that answers that the
room meets on another (``ROOM_ON_ANOTHER_NODE``, the node's URL in the error's metadata: the
room moved after its node died) sends the room on there, on joining and on reconnecting.

Needs the ``bot`` extra (``pip install 'parley[bot]'``: aiortc, PyAV, numpy).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

try:
    from aiortc import (
        RTCBundlePolicy,
        RTCConfiguration,
        RTCIceServer,
        RTCPeerConnection,
        RTCRtpReceiver,
        RTCSessionDescription,
    )
    from aiortc.mediastreams import MediaStreamTrack
except ModuleNotFoundError as missing:  # `pip install parley` alone
    raise ModuleNotFoundError(
        f"parley.room needs the bot extra (no {missing.name!r}): pip install 'parley[bot]'", name=missing.name
    ) from missing

from ._enums import EnumNames
from ._errors import FailedPrecondition, NotFound, ParleyError, PermissionDenied, Unavailable
from ._tokens import TRACK_SOURCE_VALUES, TrackSourceName
from .sfu.v1 import resources_pb2 as sfu_res
from .sfu.v1 import signal_service_pb2 as sig
from .sfu.v1 import signal_service_pb2_grpc as sig_grpc

log = logging.getLogger(__name__)

EventType = Literal[
    "participant_joined",
    "participant_updated",
    "participant_left",
    "track_published",
    "track_unpublished",
    "track_muted",
    "track_subscribed",
    "data",
    "speakers_changed",
    "connection_quality",
    "room_updated",
    "reconnecting",
    "reconnected",
    "left",
    "error",
]
#: Track kinds as aiortc names them (``"audio"``, ``"video"``) ↔ ``parley.sfu.v1.TrackKind``.
KINDS: Mapping[str, sfu_res.TrackKind.ValueType] = EnumNames(sfu_res.TrackKind).values


#: How often to ping when the SFU does not say (its default).
DEFAULT_PING_INTERVAL = 10.0

#: What the SFU's refusals of a request or of the join raise: the :class:`ParleyError` subclass
#: of their code (``parley.PermissionDenied``, ``parley.ResourceExhausted``...). An alias kept
#: for code written before the typed errors.
SignalRequestError = ParleyError


@dataclass
class RemoteTrack:
    """A track someone else publishes; ``track`` is set once it is subscribed."""

    sid: str
    participant_identity: str
    info: sfu_res.Track
    track: MediaStreamTrack | None = None

    @property
    def muted(self) -> bool:
        return self.info.muted


@dataclass
class RemoteParticipant:
    info: sfu_res.Participant
    tracks: dict[str, RemoteTrack] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        return self.info.identity


@dataclass
class RoomEvent:
    type: EventType
    participant: RemoteParticipant | None = None
    track: RemoteTrack | None = None
    data: sfu_res.DataPacket | None = None
    speakers: list[sig.SpeakerInfo] = field(default_factory=list)
    qualities: list[sig.ConnectionQualityInfo] = field(default_factory=list)
    reason: int = 0
    error: ParleyError | None = None
    #: For events about this client's own tracks (a room admin muting one).
    local_track: sfu_res.Track | None = None
    #: For ``reconnected``: whether the session was resumed (False: joined anew).
    resumed: bool = False


def _published_with(cid: str) -> Callable[[sig.ConnectResponse], bool]:
    return lambda r: r.WhichOneof("message") == "track_published" and r.track_published.cid == cid


async def _open(channel: grpc.aio.Channel, join: sig.JoinRequest, within: float) -> tuple[Any, sig.JoinResponse]:
    """Opens a signal stream with ``join``; its refusal raises its typed ``ParleyError``."""
    call = sig_grpc.SignalServiceStub(channel).Connect()
    try:
        await call.write(sig.ConnectRequest(join=join))
        first = await asyncio.wait_for(call.read(), within)
    except grpc.aio.AioRpcError as error:
        raise ParleyError.from_rpc_error(error) from error
    except BaseException:
        call.cancel()
        raise
    if not isinstance(first, sig.ConnectResponse) or first.WhichOneof("message") != "joined":
        call.cancel()
        raise ParleyError("the SFU did not answer join")
    return call, first.joined


def _channel(url: str) -> grpc.aio.Channel:
    target, secure = _target(url)
    if secure:
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.aio.insecure_channel(target)


#: Moves from node to node a join follows before giving up.
_MAX_HOPS = 3


def _node_elsewhere(error: FailedPrecondition) -> str:
    """The URL of the node the room meets on, when the SFU node asked says it is another
    (several nodes or workers; the room moved after its node died)."""
    return error.metadata.get("node_url", "") if error.reason == "ROOM_ON_ANOTHER_NODE" else ""


def _target(url: str) -> tuple[str, bool]:
    for scheme, secure in (("grpc://", False), ("grpcs://", True), ("http://", False), ("https://", True)):
        if url.startswith(scheme):
            return url[len(scheme) :].rstrip("/"), secure
    return url, False


@dataclass
class _LocalTrack:
    """One of this client's tracks, as needed to publish it again after a reconnection."""

    track: MediaStreamTrack
    source: TrackSourceName
    name: str


class _Forward(MediaStreamTrack):
    """Sends a local track on one peer connection: aiortc stops the track a sender sends when
    the sender stops, so each connection gets its own forwarder and the track itself lives on
    to be published again after a reconnection. It has the track's id (the SDP's ``a=msid``,
    the ``cid`` the SFU knows the track by)."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source

    @property
    def id(self) -> str:
        return self._source.id

    async def recv(self) -> Any:
        return await self._source.recv()


#: Refusals of a resume after which the room joins anew (the session is gone, or not its own).
_JOIN_ANEW = (NotFound, PermissionDenied)


class Room:
    """A connection to one meeting. Use :meth:`connect`; :meth:`close` when done."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        call: Any,
        joined: sig.JoinResponse,
        *,
        token: str = "",
        auto_subscribe: bool = True,
        reconnect_within: float = 20.0,
        join_timeout: float = 20.0,
    ) -> None:
        self._channel = channel
        self._call = call
        self._token = token
        self._auto_subscribe = auto_subscribe
        self._join_timeout = join_timeout
        #: Seconds the room keeps trying to resume (or join anew) after its stream dropped;
        #: 0: a drop ends the room.
        self.reconnect_within = reconnect_within
        self._resume_token = joined.resume_token
        self.info = joined.room
        self.local = joined.participant
        self.participants: dict[str, RemoteParticipant] = {}
        for p in joined.other_participants:
            self._add_participant(p)
        #: Own tracks by cid, and the cid of each published sid.
        self._local_tracks: dict[str, _LocalTrack] = {}
        self._cids: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: The STUN servers and TURN relays (each with this participant's own time-limited
        #: credential) that the SFU handed out, and that the peer connections use.
        self.ice_servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential) for s in joined.ice_servers
        ]
        # max-bundle: one transport for all media, as the SFU uses.
        self._configuration = RTCConfiguration(iceServers=self.ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self._publisher: RTCPeerConnection | None = None
        self._subscriber: RTCPeerConnection | None = None
        self._events: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self._waiters: list[tuple[Callable[[sig.ConnectResponse], bool], int, asyncio.Future[sig.ConnectResponse]]] = []
        self._ids = itertools.count(1)
        self._write_lock = asyncio.Lock()  # one message at a time on the stream
        self._publish_lock = asyncio.Lock()
        self._mids: dict[str, str] = {}
        self.published: dict[str, sfu_res.Track] = {}
        self.closed = asyncio.Event()
        self._closing = False
        #: Seconds between pings: the SFU ends a session it hears nothing from for three.
        self.ping_interval = joined.ping_interval.ToTimedelta().total_seconds() or DEFAULT_PING_INTERVAL
        self._reader = asyncio.create_task(self._read())
        self._pinger = asyncio.create_task(self._keep_alive())

    @property
    def recording(self) -> bool:
        """Whether the meeting is being recorded (a recorder is in it); a ``room_updated``
        event says when this changes."""
        return self.info.recording

    # --- connecting --------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        auto_subscribe: bool = True,
        join_timeout: float = 20.0,
        reconnect_within: float = 20.0,
    ) -> Room:
        """Joins the meeting ``token`` grants, on the SFU at ``url`` (``grpc://host:port``).
        After a drop, the room tries to resume (or join anew) for ``reconnect_within`` seconds
        (0: a drop ends it)."""
        channel = _channel(url)
        join = sig.JoinRequest(token=token, manual_subscribe=not auto_subscribe)
        for hop in range(_MAX_HOPS + 1):
            try:
                call, joined = await _open(channel, join, join_timeout)
                break
            except FailedPrecondition as error:
                await channel.close()
                if hop == _MAX_HOPS or not _node_elsewhere(error):
                    raise
                channel = _channel(_node_elsewhere(error))
            except BaseException:
                await channel.close()
                raise
        return cls(
            channel,
            call,
            joined,
            token=token,
            auto_subscribe=auto_subscribe,
            reconnect_within=reconnect_within,
            join_timeout=join_timeout,
        )

    async def close(self) -> None:
        """Leaves the meeting and closes the connections."""
        self._closing = True
        if not self.closed.is_set():
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                async with self._write_lock:
                    await self._call.write(sig.ConnectRequest(leave=sig.LeaveRequest()))
                    await self._call.done_writing()
        # No await between the lock's release and these: the pinger is asleep or waiting for the
        # lock, never halfway through a write (cancelling a write would cancel the whole call).
        self._pinger.cancel()
        self._reader.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(self._pinger, self._reader, *self._tasks, return_exceptions=True)
        for pc in (self._publisher, self._subscriber):
            if pc is not None:
                await pc.close()
        await self._channel.close()
        self.closed.set()

    async def __aenter__(self) -> Room:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- requests ------------------------------------------------------------------------------

    async def _write(self, request: sig.ConnectRequest) -> None:
        async with self._write_lock:
            await self._call.write(request)

    async def _send(self, **message: Any) -> int:
        request_id = next(self._ids)
        await self._write(sig.ConnectRequest(request_id=request_id, **message))
        return request_id

    async def _keep_alive(self) -> None:
        """Pings every ``ping_interval`` until the session ends, so that the SFU, which ends
        sessions silent for three intervals, keeps a client that only listens."""
        while True:
            await asyncio.sleep(self.ping_interval)
            if self._closing or self.closed.is_set():
                return  # ends by itself within an interval of the session's end
            try:
                await self._send(ping=sig.Ping(timestamp=int(time.time() * 1000)))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                continue  # the stream dropped: the reader reconnects (or ends the room)

    def _expect(
        self, predicate: Callable[[sig.ConnectResponse], bool]
    ) -> tuple[int, asyncio.Future[sig.ConnectResponse]]:
        """Registers a wait for a response, failed by an ``error`` naming the next request id."""
        future: asyncio.Future[sig.ConnectResponse] = asyncio.get_running_loop().create_future()
        request_id = next(self._ids)
        self._waiters.append((predicate, request_id, future))
        return request_id, future

    async def _request(
        self, predicate: Callable[[sig.ConnectResponse], bool], within: float = 20.0, **message: Any
    ) -> sig.ConnectResponse:
        request_id, future = self._expect(predicate)
        try:
            await self._write(sig.ConnectRequest(request_id=request_id, **message))
            return await asyncio.wait_for(future, within)
        finally:
            self._waiters = [w for w in self._waiters if w[2] is not future]

    async def publish(
        self, track: MediaStreamTrack, *, source: TrackSourceName, name: str = "", muted: bool = False
    ) -> sfu_res.Track:
        """Publishes an aiortc track; returns it as the room sees it (with its sid)."""
        async with self._publish_lock:
            cid = track.id
            announce = sig.PublishTrackRequest(
                cid=cid, kind=KINDS[track.kind], source=TRACK_SOURCE_VALUES[source], name=name, muted=muted
            )
            announce_id, refused = self._expect(lambda r: False)  # settles only on an error
            published = asyncio.ensure_future(
                self._wait(lambda r: r.WhichOneof("message") == "track_published" and r.track_published.cid == cid)
            )
            try:
                await self._write(sig.ConnectRequest(request_id=announce_id, publish_track=announce))
                if self._publisher is None:
                    self._publisher = RTCPeerConnection(self._configuration)
                pc = self._publisher
                pc.addTransceiver(_Forward(track), direction="sendonly")
                await pc.setLocalDescription(await pc.createOffer())
                answer = await self._request(
                    lambda r: r.WhichOneof("message") == "answer",
                    offer=sig.SessionDescription(sdp=pc.localDescription.sdp),
                )
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.answer.sdp, type="answer"))
                done, _ = await asyncio.wait({published, refused}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
                if refused in done:
                    refused.result()  # raises the SFU's refusal
                if published not in done:
                    raise ParleyError(f"the SFU did not confirm track {cid}")
                info = published.result().track_published.track
            finally:
                published.cancel()
                if refused.done() and not refused.cancelled():
                    refused.exception()  # seen: the offer's refusal said the same
                self._waiters = [w for w in self._waiters if w[2] is not refused]
            self.published[info.sid] = info
            self._cids[info.sid] = cid
            self._local_tracks[cid] = _LocalTrack(track, source, name)
            return info

    async def _publish_again(self) -> None:
        """After a reconnection: announces every own track again (the same cids, so that a
        resumed session gets them back under their sids) and offers them on a new publisher
        connection, in one negotiation."""
        async with self._publish_lock:
            if not self._local_tracks:
                return
            before = {self._cids[sid]: info for sid, info in self.published.items() if sid in self._cids}
            self.published.clear()
            self._cids.clear()
            waiters = {cid: asyncio.ensure_future(self._wait(_published_with(cid))) for cid in self._local_tracks}
            try:
                pc = self._publisher = RTCPeerConnection(self._configuration)
                for cid, local in self._local_tracks.items():
                    earlier = before.get(cid)
                    announce = sig.PublishTrackRequest(
                        cid=cid,
                        kind=KINDS[local.track.kind],
                        source=TRACK_SOURCE_VALUES[local.source],
                        name=local.name,
                        muted=earlier.muted if earlier is not None else False,
                    )
                    await self._send(publish_track=announce)
                    pc.addTransceiver(_Forward(local.track), direction="sendonly")
                await pc.setLocalDescription(await pc.createOffer())
                answer = await self._request(
                    lambda r: r.WhichOneof("message") == "answer",
                    offer=sig.SessionDescription(sdp=pc.localDescription.sdp),
                )
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.answer.sdp, type="answer"))
                done, _ = await asyncio.wait(waiters.values(), timeout=10)
                for cid, waiter in waiters.items():
                    if waiter in done:
                        info = waiter.result().track_published.track
                        self.published[info.sid] = info
                        self._cids[info.sid] = cid
                    else:
                        log.warning("the SFU did not publish track %s again", cid)
            finally:
                for waiter in waiters.values():
                    waiter.cancel()

    async def _wait(self, predicate: Callable[[sig.ConnectResponse], bool]) -> sig.ConnectResponse:
        future: asyncio.Future[sig.ConnectResponse] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, -1, future))
        try:
            return await future
        finally:
            self._waiters = [w for w in self._waiters if w[2] is not future]

    async def unpublish(self, track_sid: str) -> None:
        await self._request(
            lambda r: r.WhichOneof("message") == "track_unpublished" and r.track_unpublished.track_sid == track_sid,
            unpublish_track=sig.UnpublishTrackRequest(track_sid=track_sid),
        )
        self.published.pop(track_sid, None)
        self._local_tracks.pop(self._cids.pop(track_sid, ""), None)

    async def set_muted(self, track_sid: str, muted: bool) -> None:
        await self._request(
            lambda r: r.WhichOneof("message") == "track_muted" and r.track_muted.track_sid == track_sid,
            mute_track=sig.MuteTrackRequest(track_sid=track_sid, muted=muted),
        )

    async def send_data(
        self, payload: bytes, *, topic: str = "", reliable: bool = True, destinations: Iterable[str] = ()
    ) -> None:
        kind = sfu_res.DATA_KIND_RELIABLE if reliable else sfu_res.DATA_KIND_LOSSY
        await self._send(
            data=sfu_res.DataPacket(kind=kind, topic=topic, payload=payload, destination_identities=list(destinations))
        )

    async def update_metadata(
        self, *, name: str | None = None, metadata: str | None = None, attributes: Mapping[str, str] | None = None
    ) -> None:
        request = sig.UpdateMetadataRequest(name=name, metadata=metadata, attributes=dict(attributes or {}))
        await self._request(
            lambda r: (
                r.WhichOneof("message") == "participant_updated"
                and r.participant_updated.participant.identity == self.local.identity
            ),
            update_metadata=request,
        )

    async def subscribe(self, track_sids: Iterable[str], *, subscribe: bool = True, paused: bool = False) -> None:
        await self._send(
            update_subscription=sig.UpdateSubscriptionRequest(
                track_sids=list(track_sids), subscribe=subscribe, paused=paused
            )
        )

    async def set_track_settings(
        self,
        track_sids: Iterable[str],
        *,
        width: int = 0,
        height: int = 0,
        max_quality: sfu_res.VideoQuality.ValueType = sfu_res.VIDEO_QUALITY_UNSPECIFIED,
    ) -> None:
        """Says at what size this client shows subscribed video tracks: of a track published
        in simulcast layers the SFU forwards the smallest layer that fills ``width`` ×
        ``height`` (within 20 %), at most ``max_quality``; 0 × 0: the best layer. The SFU
        keeps it across a resume."""
        await self._send(
            update_track_settings=sig.UpdateTrackSettingsRequest(
                track_sids=list(track_sids), width=width, height=height, max_quality=max_quality
            )
        )

    def receiver_of(self, track_sid: str) -> RTCRtpReceiver | None:
        """The aiortc receiver of a subscribed track, for code that reads its RTP stream
        itself (a recorder writing the track as it was sent); None until it is subscribed."""
        if self._subscriber is None:
            return None
        for transceiver in self._subscriber.getTransceivers():
            if self._mids.get(transceiver.mid or "") == track_sid:
                return transceiver.receiver
        return None

    async def ping(self, timestamp: int = 0) -> None:
        """Pings the SFU and waits for its pong (the room also pings by itself)."""
        await self._request(lambda r: r.WhichOneof("message") == "pong", ping=sig.Ping(timestamp=timestamp))

    # --- events --------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[RoomEvent]:
        """What happens in the meeting, in order, until the session ends."""
        while True:
            event = await self._events.get()
            yield event
            if event.type == "left":
                return

    async def wait_for(
        self, type_: EventType, predicate: Callable[[RoomEvent], bool] = lambda e: True, *, within: float = 20.0
    ) -> RoomEvent:
        """The next event of ``type_`` that satisfies ``predicate`` (others are skipped)."""

        async def find() -> RoomEvent:
            async for event in self.events():
                if event.type == type_ and predicate(event):
                    return event
            raise ParleyError(f"the session ended before a {type_} event")

        return await asyncio.wait_for(find(), within)

    def _emit(self, event: RoomEvent) -> None:
        self._events.put_nowait(event)

    def _add_participant(self, info: sfu_res.Participant) -> RemoteParticipant:
        participant = RemoteParticipant(info)
        for track in info.tracks:
            participant.tracks[track.sid] = RemoteTrack(track.sid, info.identity, track)
        self.participants[info.identity] = participant
        return participant

    def _find_track(self, track_sid: str) -> RemoteTrack | None:
        for participant in self.participants.values():
            if track_sid in participant.tracks:
                return participant.tracks[track_sid]
        return None

    async def _read(self) -> None:
        reason = 0
        try:
            while True:
                dropped = False
                try:
                    while (response := await self._call.read()) is not grpc.aio.EOF:
                        await self._handle(response)
                        if response.WhichOneof("message") == "left":
                            reason = response.left.reason
                    dropped = reason == 0  # ended without saying why: not by the SFU's decision
                except grpc.aio.AioRpcError as error:
                    log.info("signal stream ended: %s", error.code())
                    dropped = True
                if not dropped or self._closing or self.reconnect_within <= 0:
                    return
                if not await self._reconnect():
                    reason = sfu_res.LEAVE_REASON_CONNECTION_FAILED
                    return
        finally:
            for _, _, future in self._waiters:
                if not future.done():
                    future.set_exception(ParleyError("the session ended"))
            self._emit(RoomEvent("left", reason=reason))
            self.closed.set()

    async def _handle(self, response: sig.ConnectResponse) -> None:
        for predicate, _, future in list(self._waiters):
            if not future.done() and predicate(response):
                future.set_result(response)
        try:
            await self._dispatch(response)
        except Exception:
            log.exception("handling %s failed", response.WhichOneof("message"))

    # --- reconnecting ----------------------------------------------------------------------------

    async def _reconnect(self) -> bool:
        """The stream dropped: resumes the session (or, when the SFU no longer has it, joins
        anew), retrying while the SFU cannot be reached, for ``reconnect_within`` seconds.
        False when it gave up."""
        for _, _, future in self._waiters:  # their requests went with the stream
            if not future.done():
                future.set_exception(Unavailable("the signal stream dropped"))
        self._emit(RoomEvent("reconnecting"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_within
        delay = 0.1
        resume: sig.ResumeSession | None = sig.ResumeSession(
            participant_sid=self.local.sid, resume_token=self._resume_token
        )
        while not self._closing:
            join = sig.JoinRequest(token=self._token, manual_subscribe=not self._auto_subscribe, resume=resume)
            try:
                call, joined = await _open(self._channel, join, self._join_timeout)
            except _JOIN_ANEW as refused:
                if resume is None:
                    log.warning("joining anew was refused: %s", refused)
                    return False
                log.info("the SFU could not resume the session (%s); joining anew", refused)
                resume = None
                continue
            except FailedPrecondition as moved:
                node_url = _node_elsewhere(moved)
                if not node_url or loop.time() > deadline:
                    log.warning("reconnecting was refused: %s", moved)
                    return False
                log.info("the room meets on another node now (%s); joining there", node_url)
                await self._channel.close()
                self._channel = _channel(node_url)
                resume = None  # a session lives on one node
                continue
            except (ParleyError, TimeoutError) as error:
                if isinstance(error, ParleyError) and not isinstance(error, Unavailable):
                    log.warning("reconnecting was refused: %s", error)
                    return False
                if loop.time() + delay > deadline:
                    log.warning("could not reach the SFU for %.0f s; leaving", self.reconnect_within)
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            await self._take_over(call, joined)
            return True
        return False

    async def _take_over(self, call: Any, joined: sig.JoinResponse) -> None:
        """Continues on a new stream: new peer connections, the meeting caught up with events
        for what changed meanwhile, own tracks published again (in the background: their
        negotiation needs this reader)."""
        self._call.cancel()  # dropped already; this frees it
        self._call = call
        self._resume_token = joined.resume_token
        old = [pc for pc in (self._publisher, self._subscriber) if pc is not None]
        self._publisher = self._subscriber = None
        self._mids = {}
        for pc in old:
            await pc.close()
        resumed = joined.resumed
        self.info = joined.room
        self.local = joined.participant
        self._catch_up(joined.other_participants)
        task = asyncio.ensure_future(self._publish_again_logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("%s the session", "resumed" if resumed else "joined anew, after losing")
        self._emit(RoomEvent("reconnected", resumed=resumed))

    async def _publish_again_logged(self) -> None:
        try:
            await self._publish_again()
        except Exception:
            log.exception("publishing again after a reconnection failed")

    def _catch_up(self, others: Iterable[sfu_res.Participant]) -> None:
        """Events for what changed while the stream was down (its messages were lost)."""
        now = {p.identity: p for p in others}
        for identity in [i for i in self.participants if i not in now]:
            self._emit(RoomEvent("participant_left", participant=self.participants.pop(identity)))
        for identity, info in now.items():
            known = self.participants.get(identity)
            if known is None:
                self._emit(RoomEvent("participant_joined", participant=self._add_participant(info)))
                continue
            known.info = info
            sids = {t.sid: t for t in info.tracks}
            for sid in [sid for sid in known.tracks if sid not in sids]:
                self._emit(RoomEvent("track_unpublished", participant=known, track=known.tracks.pop(sid)))
            for sid, track in sids.items():
                if sid in known.tracks:
                    known.tracks[sid].info = track
                else:
                    added = known.tracks[sid] = RemoteTrack(sid, identity, track)
                    self._emit(RoomEvent("track_published", participant=known, track=added))

    async def _dispatch(self, response: sig.ConnectResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "offer":
            await self._on_offer(response.offer)
        elif kind == "participant_joined":
            participant = self._add_participant(response.participant_joined.participant)
            self._emit(RoomEvent("participant_joined", participant=participant))
        elif kind == "participant_updated":
            info = response.participant_updated.participant
            if info.identity == self.local.identity:
                self.local = info
            elif (changed := self.participants.get(info.identity)) is not None:
                changed.info = info
                self._emit(RoomEvent("participant_updated", participant=changed))
        elif kind == "participant_left":
            gone: RemoteParticipant | None = self.participants.pop(response.participant_left.identity, None)
            self._emit(RoomEvent("participant_left", participant=gone))
        elif kind == "track_published":
            added = response.track_published
            owner = self.participants.get(added.participant_identity)
            if owner is not None:
                track = owner.tracks[added.track.sid] = RemoteTrack(added.track.sid, owner.identity, added.track)
                self._emit(RoomEvent("track_published", participant=owner, track=track))
        elif kind == "track_unpublished":
            removed = response.track_unpublished
            owner = self.participants.get(removed.participant_identity)
            gone_track = owner.tracks.pop(removed.track_sid, None) if owner is not None else None
            if gone_track is not None:
                self._emit(RoomEvent("track_unpublished", participant=owner, track=gone_track))
        elif kind == "track_muted":
            muted = response.track_muted
            own = self.published.get(muted.track_sid)
            if own is not None:  # a room admin (or this client) muted one of its tracks
                own.muted = muted.muted
                self._emit(RoomEvent("track_muted", local_track=own))
            found = self._find_track(muted.track_sid)
            if found is not None:
                found.info.muted = muted.muted
                self._emit(
                    RoomEvent("track_muted", participant=self.participants.get(found.participant_identity), track=found)
                )
        elif kind == "data":
            self._emit(
                RoomEvent(
                    "data", participant=self.participants.get(response.data.participant_identity), data=response.data
                )
            )
        elif kind == "speakers_changed":
            self._emit(RoomEvent("speakers_changed", speakers=list(response.speakers_changed.speakers)))
        elif kind == "connection_quality":
            self._emit(RoomEvent("connection_quality", qualities=list(response.connection_quality.updates)))
        elif kind == "room_updated":
            self.info = response.room_updated.room
            self._emit(RoomEvent("room_updated"))
        elif kind == "error":
            error = ParleyError.from_status(response.error.status)
            for _, request_id, future in self._waiters:
                if request_id == response.error.request_id and not future.done():
                    future.set_exception(error)
            self._emit(RoomEvent("error", error=error))

    async def _on_offer(self, offer: sig.SessionDescription) -> None:
        if self._closing:
            return
        if self._subscriber is None:
            self._subscriber = RTCPeerConnection(self._configuration)
        pc = self._subscriber
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        await self._send(answer=sig.SessionDescription(sdp=pc.localDescription.sdp))
        for transceiver in pc.getTransceivers():
            track_sid = offer.track_sids.get(transceiver.mid or "")
            if track_sid is None or self._mids.get(transceiver.mid or "") == track_sid:
                continue
            self._mids[transceiver.mid or ""] = track_sid
            remote = self._find_track(track_sid)
            if remote is not None and transceiver.receiver.track is not None:
                remote.track = transceiver.receiver.track
                self._emit(
                    RoomEvent(
                        "track_subscribed", participant=self.participants.get(remote.participant_identity), track=remote
                    )
                )
