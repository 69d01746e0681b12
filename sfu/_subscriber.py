"""The subscriber connection: the peer connection the SFU offers a participant to send it the
tracks it subscribes to, renegotiated as subscriptions come and go.

One offer at a time, in the manner of LiveKit's ``PCTransport``: changes made while an offer
waits for its answer are batched into the next offer, sent once the answer is in::

    STABLE ──change──► OFFER_DUE ──negotiate()──► AWAITING_ANSWER ──answer──► STABLE
                           ▲                             │ change
                           │                             ▼
                           └───answer─── AWAITING_ANSWER_THEN_OFFER

A client that leaves an offer unanswered for ``answer_timeout`` seconds would receive nothing
new again: ``on_answer_overdue`` is called (the session ends).

A transceiver whose subscription ended is made inactive and reused for a later subscription
only once an answer has seen it inactive: reused sooner, a browser would see the same mid and
msid and not announce a new track."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from parley.server import FailedPrecondition, InvalidArgument
from parley.sfu.v1 import signal_service_pb2 as sig

from ._congestion import Bandwidth, Demand, allocate, next_step, used
from ._layers import Preference
from ._media import DownTrack, IdleTrack, forwardable_preferences
from ._publisher import PublishedTrack, on_connected
from ._sdp import check_sdp

log = logging.getLogger(__name__)

#: Seconds between bursts of probe padding.
PAD_INTERVAL = 0.02


class Negotiation(enum.Enum):
    """Where the subscriber connection's offer / answer exchange stands."""

    #: Nothing changed since the last answer.
    STABLE = "stable"
    #: Subscriptions changed; the next ``negotiate()`` offers them.
    OFFER_DUE = "offer due"
    #: An offer is out (from the moment it is being created); nothing changed since.
    AWAITING_ANSWER = "awaiting answer"
    #: An offer is out and subscriptions changed since: offer again once it is answered.
    AWAITING_ANSWER_THEN_OFFER = "awaiting answer, then offer"


@dataclass(eq=False)
class Subscription:
    track: PublishedTrack
    transceiver: RTCRtpTransceiver
    #: Forwards the track once an answer negotiated the transceiver.
    down: DownTrack | None = None
    paused: bool = False
    #: The size the subscriber shows a simulcast track at, and its quality cap.
    preference: Preference = field(default_factory=Preference)


class Subscriber:
    """One participant's subscriber connection, created with its first subscription."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        *,
        answer_timeout: float,
        send_offer: Callable[[sig.SessionDescription], None],
        on_answer_overdue: Callable[[], None],
        on_connected: Callable[[], None] = lambda: None,
        label: str = "",
        congestion_control: bool = True,
    ) -> None:
        self._on_connected = on_connected
        self._configuration = configuration
        self._answer_timeout = answer_timeout
        self._send_offer = send_offer
        self._on_answer_overdue = on_answer_overdue
        self._label = label
        self.pc: RTCPeerConnection | None = None
        self.state = Negotiation.STABLE
        self.subscriptions: dict[str, Subscription] = {}
        #: Transceivers reusable (their inactivity answered), made inactive since the last
        #: offer, and made inactive by the offer waiting for its answer.
        self._free: list[RTCRtpTransceiver] = []
        self._retiring: list[RTCRtpTransceiver] = []
        self._offered_inactive: list[RTCRtpTransceiver] = []
        #: The last numbering sent on each reusable transceiver (its SRTP context expects it).
        self._numbering: dict[RTCRtpTransceiver, tuple[int, int]] = {}
        #: The subscriptions the offer waiting for its answer carries: only they start
        #: forwarding when it is answered (one added meanwhile waits for the next offer).
        self._offered: dict[str, RTCRtpTransceiver] = {}
        self._lock = asyncio.Lock()
        self._answer_due: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = False
        #: The downlink's congestion control, fed by the subscriber's feedback on every track.
        self.congestion_control = congestion_control
        self.bandwidth = Bandwidth()
        self.bandwidth.on_probe_failed = self._probe_failed
        self._sent_bytes = 0
        self._sent_at: float | None = None
        self._priority: Callable[[PublishedTrack], int] | None = None
        self._padding: asyncio.Future[None] | None = None

    @property
    def awaiting_answer(self) -> bool:
        return self.state in (Negotiation.AWAITING_ANSWER, Negotiation.AWAITING_ANSWER_THEN_OFFER)

    def _changed(self) -> None:
        if self.state is Negotiation.STABLE:
            self.state = Negotiation.OFFER_DUE
        elif self.state is Negotiation.AWAITING_ANSWER:
            self.state = Negotiation.AWAITING_ANSWER_THEN_OFFER

    # --- subscriptions ---------------------------------------------------------------------

    def add(self, track: PublishedTrack) -> None:
        """Subscribes to a track (the next offer carries it); nothing when already subscribed."""
        if track.sid in self.subscriptions or self._ended:
            return
        if self.pc is None:
            self.pc = RTCPeerConnection(self._configuration)
            on_connected(self.pc, self._on_connected)
        kind = track.media_kind
        transceiver = next((t for t in self._free if t.kind == kind), None)
        if transceiver is not None:  # an inactive one, its inactivity already answered
            self._free.remove(transceiver)
            transceiver.direction = "sendonly"
        else:
            transceiver = self.pc.addTransceiver(IdleTrack(kind), direction="sendonly")
            transceiver.setCodecPreferences(forwardable_preferences(kind))
        self.subscriptions[track.sid] = Subscription(track, transceiver)
        self._changed()

    def remove(self, track_sid: str) -> bool:
        """Unsubscribes from a track (the next offer makes its transceiver inactive); False
        when not subscribed."""
        sub = self.subscriptions.pop(track_sid, None)
        if sub is None:
            return False
        if sub.down is not None:
            sub.down.detach()
            self._numbering[sub.transceiver] = sub.down.numbering
        sub.transceiver.direction = "inactive"
        self._retiring.append(sub.transceiver)
        self._changed()
        return True

    def set_paused(self, track_sid: str, paused: bool) -> None:
        sub = self.subscriptions[track_sid]
        sub.paused = paused
        if sub.down is not None:
            sub.down.set_paused(paused)

    def set_preference(self, track_sid: str, preference: Preference) -> None:
        sub = self.subscriptions[track_sid]
        sub.preference = preference
        if sub.down is not None:
            sub.down.prefer(preference)

    # --- congestion control ----------------------------------------------------------------

    def allocate(self, now: float, priority: Callable[[PublishedTrack], int]) -> None:
        """Shares the downlink among the subscribed tracks (every tick: the bandwidth estimate
        and the layers' rates move)."""
        if not self.congestion_control:
            return
        self._priority = priority
        downs = [sub.down for sub in self.subscriptions.values() if sub.down is not None]
        total = sum(down.stats.bytes for down in downs)
        sent = 0.0
        if self._sent_at is not None and now > self._sent_at:
            sent = max(0, total - self._sent_bytes) * 8 / (now - self._sent_at)
        self._sent_bytes, self._sent_at = total, now
        demands: list[Demand] = [
            sub.down.demand(priority(sub.track))
            for sub in self.subscriptions.values()
            if sub.down is not None and not sub.paused
        ]
        current = allocate(self.bandwidth.limit, demands)
        limit = self.bandwidth.update(now, sent, next_step(current, demands), used(current, demands))
        for demand, allowed in allocate(limit, demands).items():
            assert isinstance(demand, DownTrack)
            demand.limit_layers(None if limit is None else allowed)
        if self.bandwidth.padding and (self._padding is None or self._padding.done()):
            self._padding = asyncio.ensure_future(self._pad())

    async def _pad(self) -> None:
        """Pads the downlink while a probe wants it, on a video track's RTX stream, in
        ``PAD_INTERVAL`` bursts."""
        while self.bandwidth.padding and not self._ended:
            size = int(self.bandwidth.padding * PAD_INTERVAL / 8)
            for sub in self.subscriptions.values():
                if sub.down is not None and sub.down.up.kind == "video" and sub.down.pad(size):
                    break
            await asyncio.sleep(PAD_INTERVAL)

    def _probe_failed(self) -> None:
        if self._priority is not None and not self._ended:
            self.allocate(time.perf_counter(), self._priority)

    @property
    def congested(self) -> int:
        """0: every track gets what the subscriber wants; 1: some get a lower layer than it
        wants; 2: some video is paused for bandwidth."""
        worst = 0
        for sub in self.subscriptions.values():
            down = sub.down
            if down is None or sub.paused or down.allowed is None:
                continue
            if down.allowed == 0:
                return 2
            if down.allowed < len(down.demand().costs):
                worst = 1
        return worst

    # --- negotiation -------------------------------------------------------------------------

    async def negotiate(self) -> None:
        """Sends an offer if one is due; otherwise nothing (an offer waiting for its answer is
        followed by another once answered)."""
        async with self._lock:
            pc = self.pc
            if pc is None or self.state is not Negotiation.OFFER_DUE or self._ended:
                return
            # The offer counts as out from here: changes made while it is created may miss it,
            # so they are offered again once it is answered.
            self.state = Negotiation.AWAITING_ANSWER
            offered = {sid: sub.transceiver for sid, sub in self.subscriptions.items()}
            try:
                offer = await pc.createOffer()
                await pc.setLocalDescription(offer)
            except BaseException:
                self.state = Negotiation.OFFER_DUE
                raise
            if self._ended:  # replaced meanwhile (its session resumed): this offer is for no one
                return
            self._answer_due = asyncio.get_running_loop().call_later(self._answer_timeout, self._answer_overdue)
            self._offered_inactive, self._retiring = self._retiring, []
            self._offered = offered
            track_sids = {s.transceiver.mid: sid for sid, s in self.subscriptions.items() if s.transceiver.mid}
            self._send_offer(sig.SessionDescription(sdp=pc.localDescription.sdp, track_sids=track_sids))

    def negotiate_soon(self) -> None:
        """Negotiates in the background (for changes others made: failures are logged)."""
        if self._ended:
            return
        task = asyncio.ensure_future(self._negotiate_logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _negotiate_logged(self) -> None:
        try:
            await self.negotiate()
        except Exception:
            log.exception("subscriber negotiation failed for %s", self._label)

    def _answer_overdue(self) -> None:
        if self.awaiting_answer and not self._ended:
            self._on_answer_overdue()

    async def apply_answer(self, answer: str) -> None:
        """Applies the client's answer to the waiting offer: newly negotiated subscriptions
        start forwarding, and changes made meanwhile are offered."""
        pc = self.pc
        if pc is None or not self.awaiting_answer or pc.signalingState != "have-local-offer":
            raise FailedPrecondition("no subscriber offer is waiting for an answer")
        check_sdp(answer, field="answer.sdp")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except Exception as error:  # the offer still waits for a good answer
            raise InvalidArgument([("answer.sdp", str(error))], "the answer was refused") from error
        if self._answer_due is not None:
            self._answer_due.cancel()
        if self.state is Negotiation.AWAITING_ANSWER_THEN_OFFER:
            self.state = Negotiation.OFFER_DUE
        else:
            self.state = Negotiation.STABLE
        self._free += self._offered_inactive
        self._offered_inactive = []
        for sid, sub in self.subscriptions.items():
            up = sub.track.up
            # A transceiver added after the offer was made is not negotiated yet: a DownTrack
            # made for it now sends what the subscriber never receives (its video stayed
            # black for good in about one join in four).
            if self._offered.get(sid) is not sub.transceiver:
                continue
            if sub.down is None and up is not None and not sub.track.unpublished:
                sub.down = DownTrack(up, sub.transceiver, self._numbering.get(sub.transceiver))
                if self.congestion_control:
                    sub.down.bandwidth = self.bandwidth
                sub.down.set_paused(sub.paused)
                if sub.preference != sub.down.preference:
                    sub.down.prefer(sub.preference)
        await self.negotiate()

    # --- the end -----------------------------------------------------------------------------

    def end(self) -> None:
        """Stops forwarding and negotiating (the connection itself closes with ``close``)."""
        self._ended = True
        for sub in self.subscriptions.values():
            if sub.down is not None:
                sub.down.detach()
        self.subscriptions.clear()
        if self._answer_due is not None:
            self._answer_due.cancel()
        current = asyncio.current_task()
        for task in [t for t in self._tasks if t is not current]:
            task.cancel()
        if self._padding is not None:
            self._padding.cancel()

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
