"""The publisher connection: the peer connection a participant offers to send its tracks,
and the tracks it publishes over it.

A track is announced first (``publish_track``: its source, kind and name, so the SFU knows
what it carries), then arrives in an offer, matched to its announcement by the track id of its
section's ``a=msid``. Sections that were not announced, or offer no codec the SFU forwards,
are answered inactive and whatever they carry is ignored.

When its session resumes after a drop, the connection is replaced (aiortc has no ICE
restart): the published tracks wait (``resuming``) for the client to announce them again
with the same ``cid`` on the new connection, which gives them back their sid and their
``UpTrack`` (``UpTrack.attach``), so that subscribers keep receiving them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from parley import TRACK_SOURCE_NAMES, VideoGrants
from parley.control.v1 import resources_pb2 as control_res
from parley.server import AlreadyExists, EnumNames, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig

from ._media import UpTrack, ignore_receiver, restrict_codecs, route_by_mid
from ._room import new_sid
from ._sdp import answer_simulcast, check_sdp, simulcast_layers

#: The kind of track each source carries (tests/test_enums.py checks that every source has one).
SOURCE_KINDS: dict[int, int] = {
    control_res.TRACK_SOURCE_CAMERA: res.TRACK_KIND_VIDEO,
    control_res.TRACK_SOURCE_SCREEN_SHARE: res.TRACK_KIND_VIDEO,
    control_res.TRACK_SOURCE_MICROPHONE: res.TRACK_KIND_AUDIO,
    control_res.TRACK_SOURCE_SCREEN_SHARE_AUDIO: res.TRACK_KIND_AUDIO,
}
#: Track kinds as aiortc names them (``"audio"``, ``"video"``), read from the contract.
TRACK_KINDS = EnumNames(res.TrackKind)


def on_connected(pc: RTCPeerConnection, callback: Callable[[], None]) -> None:
    """Calls ``callback`` each time ``pc``'s connection state becomes ``connected``."""

    @pc.on("connectionstatechange")
    def _changed() -> None:
        if pc.connectionState == "connected":
            callback()


@dataclass(eq=False)
class PublishedTrack:
    """A track a participant announced, and once negotiated, forwards through the SFU."""

    sid: str
    cid: str
    kind: int
    source: int
    name: str
    muted: bool
    up: UpTrack | None = None
    transceiver: RTCRtpTransceiver | None = None
    #: Set once unpublished: no subscriber starts forwarding it any more.
    unpublished: bool = False
    #: The mute state the client announced when it brought the track back after a resume.
    requested_muted: bool | None = None
    #: The simulcast layers its offer sends (``a=rid``), empty when it is not simulcast.
    rids: list[str] = field(default_factory=list)

    @property
    def media_kind(self) -> str:
        """``audio`` or ``video``, as aiortc names the kind."""
        return TRACK_KINDS.name(self.kind)

    def info(self) -> res.Track:
        return res.Track(
            sid=self.sid,
            kind=self.kind,  # type: ignore[arg-type]
            source=self.source,  # type: ignore[arg-type]
            name=self.name,
            muted=self.muted,
            mime_type=self.up.mime_type if self.up else "",
        )


@dataclass(frozen=True)
class AcceptedOffer:
    """What applying a client's offer gave: the answer to send, the announced tracks it
    negotiated (to start forwarding once the answer is out), and why others were refused."""

    answer: str
    tracks: list[PublishedTrack] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class Publisher:
    """One participant's publisher connection and its tracks: announced (waiting for an offer)
    and published (negotiated, forwarded)."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        *,
        grants: VideoGrants,
        max_tracks: int,
        on_connected: Callable[[], None] = lambda: None,
    ) -> None:
        self._configuration = configuration
        self._on_connected = on_connected
        self._grants = grants
        self._max_tracks = max_tracks
        #: Created by the client's first offer.
        self.pc: RTCPeerConnection | None = None
        self.announced: dict[str, PublishedTrack] = {}
        self.published: dict[str, PublishedTrack] = {}
        #: Published tracks, by cid, that the client has not brought back since a resume.
        self.resuming: dict[str, PublishedTrack] = {}
        #: Transceivers already published or refused.
        self._settled: set[RTCRtpTransceiver] = set()

    def announce(self, request: sig.PublishTrackRequest) -> None:
        """Takes note of a track the client's next offer will carry."""
        source = TRACK_SOURCE_NAMES[request.source]
        back = self.resuming.get(request.cid)
        if back is not None and back.kind == request.kind and back.source == request.source:
            # Brought back after a resume: the same track (sid, subscribers) once negotiated.
            del self.resuming[request.cid]
            self.announced[request.cid] = back
            back.requested_muted = request.muted
            return
        if not self._grants.may_publish(source):
            raise PermissionDenied(f"your token does not allow publishing {source}")
        if SOURCE_KINDS[request.source] != request.kind:
            raise InvalidArgument.field(
                "publish_track.kind", f"a {source} track is not {TRACK_KINDS.name(request.kind)}"
            )
        if request.cid in self.announced or any(
            t.cid == request.cid for t in self.published.values() if t.cid not in self.resuming
        ):
            raise AlreadyExists(f"track {request.cid} is already announced")
        if len(self.published) + len(self.announced) >= self._max_tracks:
            raise ResourceExhausted("too many tracks")
        self.announced[request.cid] = PublishedTrack(
            sid=new_sid("TR"),
            cid=request.cid,
            kind=request.kind,
            source=request.source,
            name=request.name,
            muted=request.muted,
        )

    async def accept_offer(self, offer: str) -> AcceptedOffer:
        """Applies a client's offer (the first one creates the connection) and answers it."""
        # Tracks are matched to their announcement by the track id of each section's a=msid
        # (aiortc reads it only under an a=msid-semantic naming the stream; browsers often
        # publish without streams).
        track_ids = {m.rtp.muxId: m.msid.split()[-1] for m in check_sdp(offer, field="offer.sdp").media if m.msid}
        layers = simulcast_layers(offer)
        first = self.pc is None
        if self.pc is None:
            self.pc = RTCPeerConnection(self._configuration)
            on_connected(self.pc, self._on_connected)
        pc = self.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as error:
            if first:
                self.pc = None
                await pc.close()
            raise InvalidArgument([("offer.sdp", str(error))], "the offer was refused") from error
        accepted: list[PublishedTrack] = []
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
            if announced is None or announced.media_kind != transceiver.kind:
                refused.append(f"{track_id} was not announced with publish_track")
            elif not forwardable:
                refused.append(f"{track_id} offers no codec the SFU forwards (VP8, Opus)")
            else:
                announced.transceiver = transceiver
                announced.rids = layers.get(transceiver.mid or "", [])
                accepted.append(announced)
                continue
            transceiver.direction = "inactive"  # refused: answered inactive, and ignored
            ignore_receiver(transceiver.receiver)
        route_by_mid(pc)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return AcceptedOffer(answer_simulcast(offer, pc.localDescription.sdp), accepted, refused)

    def start(self, track: PublishedTrack) -> None:
        """A track's media is negotiated: it is published, its packets ready to forward."""
        assert track.transceiver is not None
        if track.up is None:
            track.up = UpTrack(track.transceiver.receiver, track.transceiver.kind)
        else:  # brought back after a resume
            track.up.attach(track.transceiver.receiver)
        track.up.offered_rids = track.rids
        track.up.forwarding = not track.muted
        self.published[track.sid] = track

    def restart(self) -> RTCPeerConnection | None:
        """The session resumed: the next offer creates a new connection, on which published
        tracks are announced again to be brought back; returns the old connection, to close."""
        old, self.pc = self.pc, None
        self.announced.clear()
        self._settled.clear()
        self.resuming = {t.cid: t for t in self.published.values()}
        for track in self.resuming.values():
            track.transceiver = None
        return old

    def track(self, track_sid: str) -> PublishedTrack:
        track = self.published.get(track_sid)
        if track is None:
            raise NotFound(f"you publish no track {track_sid}")
        return track

    def set_muted(self, track: PublishedTrack, muted: bool) -> bool:
        """Pauses or resumes forwarding a track; False when it already was so."""
        if track.muted == muted:
            return False
        track.muted = muted
        if track.up is not None:
            track.up.forwarding = not muted
            if not muted:
                for down in track.up.down:
                    down.restart()  # continues on a keyframe
        return True

    def remove(self, track: PublishedTrack) -> None:
        """Stops publishing a track: its subscribers' copies stop."""
        self.published.pop(track.sid, None)
        self.resuming.pop(track.cid, None)
        track.unpublished = True
        if track.up is not None:
            track.up.close()

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
