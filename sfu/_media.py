"""RTP forwarding on aiortc: the one module that touches aiortc's private parts.

aiortc (pinned to ``AIORTC_VERSION``) gives the SFU ICE, DTLS and SRTP, but its receivers
decode and its senders encode. Here a published track's receiver hands each RTP packet to an
``UpTrack`` instead of its jitter buffer and decoder, and each subscriber's sender is fed
rewritten packets by a ``DownTrack`` instead of an encoder. What this borrows from aiortc,
``check_aiortc`` verifies (and tests/sfu/test_media.py fails loudly when it changes):

* ``RTCRtpReceiver._handle_rtp_packet``: replaced per receiver (an instance attribute);
* the receiver's codec and RTX maps, remote bitrate estimator, RTCP SSRC and per-SSRC stream
  statistics (which its own RTCP task turns into receiver reports);
* ``RTCRtpSender._ssrc``, its retransmission history, sender-report counters and header
  extension ids, its RTX SSRC, payload type and sequence number (for padding probes),
  ``_send_keyframe`` (called on PLI / FIR) and ``_handle_rtcp_packet`` (wrapped per sender:
  the subscriber's REMB and receiver reports feed congestion control);
* the DTLS transport's state, SRTP session and counters, and its ICE connection's nominated
  pair: ``SrtpSender`` does what ``RTCDtlsTransport._send_rtp`` does without its three coroutine
  layers, and ``RtpHeader`` writes what ``RtpPacket.serialize`` writes, both once per
  subscriber per packet;
* ``RTCRtpTransceiver._codecs`` (the negotiated codecs, restricted to what can be forwarded);
* ``aiortc.codecs.HEADER_EXTENSIONS``, to which the RID header extensions are added (aiortc
  parses them but does not negotiate them: simulcast layers are told apart by them), and the
  DTLS transport's RTP router, which learns to route packets of SSRCs the SDP does not name
  (simulcast layers and their RTX) by their MID header extension.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiortc
from aioice.ice import StunProtocol
from aiortc import (
    RTCPeerConnection,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    clock,
)
from aiortc.codecs import HEADER_EXTENSIONS, is_rtx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from aiortc.utils import uint16_add, uint16_gt, uint32_add

from . import _vp8
from ._congestion import PRIORITY_CAMERA, Bandwidth, Demand
from ._dynacast import Dynacast
from ._layers import ACTIVE_WITHIN, Layer, Preference, choose
from ._metrics import MEDIA

log = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"
#: The codecs the SFU forwards (and so the only ones it negotiates), with their RTX.
FORWARDABLE = {"audio/opus", "video/vp8", "video/rtx"}
#: Packets at the start of a forwarding run during which packets from before it are dropped.
LATE_WINDOW = 1000
#: At most one keyframe request upstream per this many seconds per published track.
KEYFRAME_REQUEST_INTERVAL = 0.5
#: Bytes of padding per probe packet (the most RTP's one-byte padding count allows).
PADDING_SIZE = 255

_RECEIVER = "_RTCRtpReceiver__"
_SENDER = "_RTCRtpSender__"
_NTP_TIMESTAMP = _SENDER + "ntp_timestamp"
_RTP_TIMESTAMP = _SENDER + "rtp_timestamp"
_OCTET_COUNT = _SENDER + "octet_count"
_PACKET_COUNT = _SENDER + "packet_count"
_DTLS = "_RTCDtlsTransport__"
_TX_BYTES = _DTLS + "tx_bytes"
_TX_PACKETS = _DTLS + "tx_packets"
_RTX_PAYLOAD_TYPE = _SENDER + "rtx_payload_type"
_RTX_SEQUENCE = _SENDER + "rtx_sequence_number"
_EXTENSION_IDS = "_HeaderExtensionsMap__ids"
_RECEIVER_FIELDS = ("codecs", "rtx_ssrc", "remote_bitrate_estimator", "rtcp_ssrc", "remote_streams")
_SENDER_FIELDS = (
    "rtp_history",
    "rtx_payload_type",
    "rtx_sequence_number",
    "ntp_timestamp",
    "rtp_timestamp",
    "octet_count",
    "packet_count",
    "rtp_header_extensions_map",
)


class AiortcChanged(RuntimeError):
    """The installed aiortc lacks an internal the SFU relies on."""


def check_aiortc() -> None:
    """Raises ``AiortcChanged`` unless aiortc has every internal this module uses."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise AiortcChanged(f"the SFU is written against aiortc {AIORTC_VERSION}, found {aiortc.__version__}")
    for owner, name in (
        (RTCRtpReceiver, "_handle_rtp_packet"),
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_send_rtcp_nack"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpSender, "_send_keyframe"),
        (RTCRtpSender, "_retransmit"),
        (RTCRtpSender, "_handle_rtcp_packet"),
    ):
        if not callable(getattr(owner, name, None)):
            raise AiortcChanged(f"aiortc {owner.__name__}.{name} is gone")
    if not isinstance(HEADER_EXTENSIONS.get("video"), list):
        raise AiortcChanged("aiortc.codecs.HEADER_EXTENSIONS['video'] is gone")


#: The RTP header extensions that name a simulcast layer (RFC 8852), and the ids the SFU offers
#: them under (aiortc's own extensions use 1 to 3).
RID_EXTENSIONS = {
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id": 10,
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id": 11,
}


def negotiate_rid_extensions() -> None:
    """Makes aiortc accept the RID header extensions in offers (so that its answers carry
    them and its RTP parser reads them): without them simulcast layers cannot be told apart.
    Idempotent."""
    video = HEADER_EXTENSIONS["video"]
    known = {extension.uri for extension in video}
    video.extend(RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in RID_EXTENSIONS.items() if u not in known)


def route_by_mid(pc: RTCPeerConnection) -> None:
    """Routes the packets of SSRCs that ``pc``'s SDP does not name (simulcast layers, their
    RTX streams) to the receiver of their MID header extension; aiortc routes those only by
    payload type, and drops them when two video sections share it. Idempotent."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        router = getattr(transport, "_rtp_router", None)
        if router is None or getattr(router, "parley_routes_by_mid", False):
            continue
        by_payload_type = router.route_rtp

        def route(packet: RtpPacket, router: Any = router, by_payload_type: Any = by_payload_type) -> Any:
            if packet.ssrc not in router.ssrc_table and packet.extensions.mid is not None:
                receiver = router.mid_table.get(packet.extensions.mid)
                if receiver is not None:
                    router.ssrc_table[packet.ssrc] = receiver
                    return receiver
            return by_payload_type(packet)

        router.route_rtp = route
        router.parley_routes_by_mid = True


def _probe_instances(receiver: RTCRtpReceiver | None, sender: RTCRtpSender | None) -> None:
    missing = [f for f in _RECEIVER_FIELDS if receiver is not None and not hasattr(receiver, _RECEIVER + f)]
    missing += [f for f in _SENDER_FIELDS if sender is not None and not hasattr(sender, _SENDER + f)]
    missing += [f for f in ("_ssrc", "_rtx_ssrc") if sender is not None and not hasattr(sender, f)]
    if missing:
        raise AiortcChanged(f"aiortc internals are gone: {', '.join(missing)}")


def _probe_transport(dtls: RTCDtlsTransport) -> None:
    fields = (_TX_BYTES, _TX_PACKETS, "_state", "_tx_srtp")
    missing = [f for f in fields if not hasattr(dtls, f)]
    if not hasattr(getattr(dtls.transport, "_connection", None), "_nominated"):
        missing.append("RTCIceTransport._connection._nominated")
    if missing:
        raise AiortcChanged(f"aiortc internals are gone: {', '.join(missing)}")


class SrtpSender:
    """Sends RTP on a DTLS transport as its ``_send_rtp`` does (SRTP-protect, hand to the ICE
    connection's nominated pair, count), as one plain call: the stock path is three coroutines
    deep, and it runs once per subscriber per packet. A pair through a TURN relay (whose
    sending is a coroutine) sends in a task."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        _probe_transport(dtls)
        self.dtls = dtls
        self._vars = vars(dtls)

    def __call__(self, data: bytes) -> bool:
        """False when it cannot send yet (DTLS not connected, no nominated pair)."""
        state = self._vars
        if state["_state"] is not DtlsState.CONNECTED:
            return False
        pair = self.dtls.transport._connection._nominated.get(1)
        if pair is None:
            return False
        data = state["_tx_srtp"].protect(data)
        protocol = pair.protocol
        if type(protocol) is StunProtocol:
            if protocol.transport is None:
                return False
            protocol.transport.sendto(data, pair.remote_addr)
        else:
            _send_later(protocol.send_data(data, pair.remote_addr))
        state[_TX_BYTES] += len(data)
        state[_TX_PACKETS] += 1
        return True


def _send_later(sending: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(sending)
    _SENDING.add(task)
    task.add_done_callback(_SENDING.discard)


_SENDING: set[asyncio.Future[None]] = set()


class RtpHeader:
    """Writes a subscriber's RTP packets byte for byte as ``RtpPacket.serialize`` does with the
    sender's header extensions map (MID, abs-send-time, and audio level when the packet has
    one, in RFC 8285's one-byte form), in one ``struct`` call: only the fields that change
    are packed per packet."""

    def __init__(self, extensions: HeaderExtensionsMap, mid: str | None) -> None:
        ids: HeaderExtensions = getattr(extensions, _EXTENSION_IDS)
        self._mid = mid.encode() if mid is not None and ids.mid else b""
        self._ids = ids
        self.one_byte = all(0 < i <= 14 for i in (ids.mid, ids.abs_send_time, ids.audio_level) if i) and (
            len(self._mid) <= 16
        )
        self._layouts = {level: self._layout(level) for level in (False, True)}

    def _layout(self, with_level: bool) -> tuple[struct.Struct, tuple[int, ...]] | None:
        """The packing of a header (and the constant bytes after its variable fields)."""
        elements = 0
        fmt = ""
        constants: list[int] = []
        if self._mid:
            fmt += f"B{len(self._mid)}s"
            elements += 1 + len(self._mid)
        if self._ids.abs_send_time:
            fmt += "BHB"
            elements += 4
        if with_level and self._ids.audio_level:
            fmt += "BB"
            elements += 2
        if not elements:
            return None
        padding = -elements % 4
        constants += [0xBEDE, (elements + padding) >> 2]
        return struct.Struct(f"!BBHLLHH{fmt}{padding}x"), tuple(constants)

    def write(
        self,
        marker: int,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        abs_send_time: int,
        audio_level: tuple[bool, int] | None,
    ) -> bytes:
        ids = self._ids
        layout = self._layouts[audio_level is not None]
        if layout is None:
            return struct.pack("!BBHLL", 0x80, (marker << 7) | payload_type, sequence, timestamp, ssrc)
        packing, (profile, words) = layout
        values: list[Any] = [0x90, (marker << 7) | payload_type, sequence, timestamp, ssrc, profile, words]
        if self._mid:
            values += [(ids.mid << 4) | (len(self._mid) - 1), self._mid]
        if ids.abs_send_time:
            values += [(ids.abs_send_time << 4) | 2, abs_send_time >> 8, abs_send_time & 0xFF]
        if audio_level is not None and ids.audio_level:
            values += [ids.audio_level << 4, (0x80 if audio_level[0] else 0) | audio_level[1]]
        return packing.pack(*values)


def restrict_codecs(transceiver: RTCRtpTransceiver) -> bool:
    """Keeps only forwardable codecs among a transceiver's negotiated ones (after a remote
    offer was applied, before answering); False when none is left."""
    media = [c for c in transceiver._codecs if c.mimeType.lower() in FORWARDABLE and not is_rtx(c)]
    kept = {c.payloadType for c in media}
    # RTX only for kept codecs: browsers refuse an answer whose RTX points at a dropped one.
    rtx = [c for c in transceiver._codecs if is_rtx(c) and c.parameters.get("apt") in kept]
    transceiver._codecs = media + rtx
    return bool(media)


def ignore_receiver(receiver: RTCRtpReceiver) -> None:
    """Drops whatever a receiver gets (a refused or unpublished track): aiortc would otherwise
    decode it into a queue no one reads."""

    async def drop(packet: RtpPacket, arrival_time_ms: int) -> None:
        return None

    receiver._handle_rtp_packet = drop  # type: ignore[method-assign]


def forwardable_preferences(kind: str) -> list[Any]:
    """Codec preferences for a transceiver the SFU offers (public API: setCodecPreferences)."""
    capabilities = RTCRtpSender.getCapabilities(kind)
    return [c for c in capabilities.codecs if c.mimeType.lower() in FORWARDABLE]


class IdleTrack(MediaStreamTrack):
    """The track of a forwarding sender: it never yields a frame, so aiortc's own sending loop
    waits forever while the ``DownTrack`` writes packets itself."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()


@dataclass
class UpStats:
    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    nacks_sent: int = 0
    keyframe_requests: int = 0
    retransmissions: int = 0


class UpTrack:
    """One published track: takes its receiver's RTP packets (per SSRC receive state: RTX
    unwrapping, NACKs, statistics and receiver reports, bitrate estimation) and forwards each
    to the track's ``DownTrack``\\ s, undecoded."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str) -> None:
        _probe_instances(receiver, None)
        self.kind = kind
        self.receiver = receiver
        self.down: set[DownTrack] = set()
        self.stats = UpStats()
        self.mime_type = ""
        #: Audio level of the last packet: 0 (loudest) to 127 (silence), dBov below zero.
        self.audio_level = 127
        self.audio_level_time = 0.0
        self.forwarding = True
        self.arrival = 0.0
        self.on_first_packet: Callable[[UpTrack], None] | None = None
        #: Bits per second of payload, smoothed, as of the last ``measure``.
        self.bitrate = 0.0
        self._measured_at = 0.0
        self._measured_bytes = 0
        #: Simulcast layers by media SSRC (empty: one stream, without RIDs).
        self.layers: dict[int, Layer] = {}
        #: Changes whenever a layer appears, stops, comes back or gets its size: down tracks
        #: choose their layer again then.
        self.layers_version = 0
        self._active: frozenset[int] = frozenset()
        self._next_layer_check = 0.0
        #: Tells the publisher which layers its subscribers need (set by its session); the
        #: ``Dynacast`` that calls it starts with the track's first layer.
        self.on_needed_layers: Callable[[list[str]], None] | None = None
        self.dynacast: Dynacast | None = None
        #: The layers the publisher's offer names (``a=rid``).
        self.offered_rids: list[str] = []
        self._media_ssrc: int | None = None
        self._nacks: dict[int, NackGenerator] = {}
        self._loss_marks: dict[int, tuple[int, int]] = {}
        self._keyframe_requests: dict[int, float] = {}
        self._take(receiver)

    def _take(self, receiver: RTCRtpReceiver) -> None:
        self.receiver = receiver
        self._codecs: dict[int, Any] = getattr(receiver, _RECEIVER + "codecs")
        self._rtx_ssrc: dict[int, int] = getattr(receiver, _RECEIVER + "rtx_ssrc")
        self._streams: dict[int, StreamStatistics] = getattr(receiver, _RECEIVER + "remote_streams")
        self._estimator = getattr(receiver, _RECEIVER + "remote_bitrate_estimator")
        receiver._handle_rtp_packet = self._handle_rtp_packet  # type: ignore[method-assign]

    def attach(self, receiver: RTCRtpReceiver) -> None:
        """Continues the track from another receiver (the publisher resumed its session on a
        new connection): its down tracks stay and start a new run on the next keyframe, so
        subscribers keep their transceivers and see a pause, not a new track."""
        _probe_instances(receiver, None)
        ignore_receiver(self.receiver)  # packets still arriving on the old connection
        self._media_ssrc = None
        self._nacks.clear()
        self._loss_marks.clear()
        self.layers.clear()
        self.layers_version += 1
        if self.dynacast is not None:  # the new connection sends every layer again
            self.dynacast.close()
            self.dynacast = None
        self._take(receiver)
        for down in list(self.down):
            down.restart()

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.arrival = time.perf_counter()
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        if self._estimator is not None and packet.extensions.abs_send_time is not None:
            await self._estimate_bitrate(packet, arrival_time_ms)
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if is_rtx(codec):
            if packet.ssrc not in self._rtx_ssrc and packet.extensions.repaired_rtp_stream_id:
                self._pair_rtx(packet.ssrc, packet.extensions.repaired_rtp_stream_id)
            media_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if media_ssrc is None or len(packet.payload) < 2 or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=media_ssrc)
            codec = self._codecs[apt]
            self.stats.retransmissions += 1
        if self.kind == "video":
            nack = self._nacks.get(packet.ssrc)
            if nack is None:
                nack = self._nacks[packet.ssrc] = NackGenerator()
            if nack.add(packet):
                self.stats.nacks_sent += 1
                MEDIA.nacks_sent += 1
                await self.receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing))
        if not packet.payload:  # padding (bandwidth probes)
            return
        if self._media_ssrc is None:
            self.mime_type = codec.mimeType
            self._media_ssrc = packet.ssrc
            if self.on_first_packet is not None:
                self.on_first_packet(self)
        self._media_ssrc = packet.ssrc
        self.stats.packets += 1
        self.stats.bytes += len(packet.payload)
        if packet.extensions.audio_level is not None:
            self.audio_level = packet.extensions.audio_level[1]
            self.audio_level_time = time.monotonic()
        descriptor = _vp8.parse(packet.payload) if self.kind == "video" else None
        if descriptor is not None:
            self.stats.keyframes += descriptor.keyframe_start
            if packet.extensions.rtp_stream_id or self.layers:
                self._see_layer(packet, descriptor)
        if not self.forwarding:
            return
        ntp_time = clock.current_ntp_time()
        for down in list(self.down):
            try:
                down.forward(packet, ntp_time, descriptor)
            except Exception:  # one subscriber's failure must not cost the others this packet
                down.stats.dropped += 1
                if down.stats.dropped == 1 or down.stats.dropped % 1000 == 0:
                    log.exception("forwarding to a subscriber failed (%d dropped)", down.stats.dropped)

    def _see_layer(self, packet: RtpPacket, descriptor: _vp8.Descriptor) -> None:
        """Keeps the simulcast layers up to date: new ones (named by their RID), their sizes
        (from keyframes), and which are active (checked every 250 ms)."""
        layer = self.layers.get(packet.ssrc)
        if layer is None:
            rid = packet.extensions.rtp_stream_id
            if not rid:
                return  # a layer's later packets may omit the RID, never its first
            layer = self.layers[packet.ssrc] = Layer(ssrc=packet.ssrc, rid=rid)
            self.layers_version += 1
            if self.dynacast is None and self.on_needed_layers is not None:
                self.dynacast = Dynacast(
                    self.layers.values, lambda: self.down, self.on_needed_layers, offered=self.offered_rids
                )
            self.wanted_changed()
        layer.last_seen = self.arrival
        layer.bytes += len(packet.payload)
        if descriptor.keyframe_start:
            size = _vp8.keyframe_size(packet.payload, descriptor)
            if size is not None and size != (layer.width, layer.height):
                layer.width, layer.height = size
                self.layers_version += 1
                self.wanted_changed()
        if self.arrival >= self._next_layer_check:
            self._next_layer_check = self.arrival + 0.25
            active = frozenset(s for s, x in self.layers.items() if self.arrival - x.last_seen <= ACTIVE_WITHIN)
            if active != self._active:
                self._active = active
                self.layers_version += 1

    def measure(self, now: float) -> None:
        """Updates the bitrate of the track and of each active layer (``now``: from
        ``time.perf_counter``; called every half second or so)."""
        elapsed = now - self._measured_at
        if self._measured_at and elapsed > 0:
            self.bitrate = _smoothed(self.bitrate, (self.stats.bytes - self._measured_bytes) * 8 / elapsed)
            for layer in self.layers.values():
                if now - layer.last_seen <= ACTIVE_WITHIN:
                    layer.bitrate = _smoothed(layer.bitrate, (layer.bytes - layer.measured_bytes) * 8 / elapsed)
        for layer in self.layers.values():
            layer.measured_bytes = layer.bytes
        self._measured_at = now
        self._measured_bytes = self.stats.bytes

    def wanted_changed(self) -> None:
        """The layers or what the subscribers want of them changed: dynacast takes note."""
        if self.dynacast is not None:
            self.dynacast.update()

    def _pair_rtx(self, rtx_ssrc: int, rid: str) -> None:
        """An RTX stream the SDP did not pair (simulcast): its repaired RID names its layer."""
        for layer in self.layers.values():
            if layer.rid == rid:
                self._rtx_ssrc[rtx_ssrc] = layer.ssrc
                return

    async def _estimate_bitrate(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        remb = self._estimator.add(
            abs_send_time=packet.extensions.abs_send_time,
            arrival_time_ms=arrival_time_ms,
            payload_size=len(packet.payload) + packet.padding_size,
            ssrc=packet.ssrc,
        )
        rtcp_ssrc = getattr(self.receiver, _RECEIVER + "rtcp_ssrc")
        if remb is not None and rtcp_ssrc is not None:
            feedback = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb))
            await self.receiver._send_rtcp(feedback)

    def loss_since_last_call(self) -> float | None:
        """Fraction of the publisher's packets lost on the way in since the last call (None:
        nothing was expected), from the receive statistics of its SSRCs."""
        expected = received = 0
        for ssrc, stream in self._streams.items():
            if ssrc in self._rtx_ssrc or stream.max_seq is None:
                continue
            last_expected, last_received = self._loss_marks.get(ssrc, (0, 0))
            expected += stream.packets_expected - last_expected
            received += stream.packets_received - last_received
            self._loss_marks[ssrc] = (stream.packets_expected, stream.packets_received)
        MEDIA.inbound_expected += max(0, expected)
        MEDIA.inbound_received += max(0, received)
        if expected <= 0:
            return None
        return max(0.0, (expected - received) / expected)

    def request_keyframe(self, ssrc: int | None = None) -> None:
        """Asks the publisher for a keyframe of ``ssrc`` (a simulcast layer; default: the
        stream last heard), at most once per ``KEYFRAME_REQUEST_INTERVAL`` per SSRC."""
        ssrc = ssrc if ssrc is not None else self._media_ssrc
        if self.kind != "video" or ssrc is None:
            return
        now = time.monotonic()
        if now - self._keyframe_requests.get(ssrc, -KEYFRAME_REQUEST_INTERVAL) < KEYFRAME_REQUEST_INTERVAL:
            return
        self._keyframe_requests[ssrc] = now
        self.stats.keyframe_requests += 1
        MEDIA.plis_sent += 1
        task = asyncio.ensure_future(self.receiver._send_rtcp_pli(ssrc))
        task.add_done_callback(_log_failure)

    def close(self) -> None:
        for down in list(self.down):
            down.detach()
        if self.dynacast is not None:
            self.dynacast.close()


def _smoothed(average: float, sample: float) -> float:
    """A moving average of bitrates that smooths keyframes' bursts (the first sample as is)."""
    return sample if not average else 0.7 * average + 0.3 * sample


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("keyframe request failed: %s", task.exception())


#: Set by ``record_forwarding_delays``: every ``DownTrack`` then records its forwarding delays in ``DELAYS``.
RECORD_DELAYS = False
DELAYS: list[float] = []


def record_forwarding_delays() -> list[float]:
    """Makes every down track created from now on, in this process, record each packet's
    forwarding delay (seconds from its arrival to its sending); returns the list they append to.
    For benchmarks: it costs a clock read and an append per packet."""
    global RECORD_DELAYS
    RECORD_DELAYS = True
    return DELAYS


@dataclass
class DownStats:
    packets: int = 0
    #: Bytes sent (payload and RTP header).
    bytes: int = 0
    dropped: int = 0
    #: When a list: seconds from each packet's arrival in its ``UpTrack`` to its sending here.
    delays: list[float] | None = None


class DownTrack:
    """One subscriber's copy of an ``UpTrack``: sends its packets through the subscriber's
    sender with the sender's SSRC and payload type, and sequence numbers and timestamps
    continued from its own origin, so a subscriber sees one gap-free stream even when the
    source restarts or is paused. Starts (and restarts) video on a keyframe."""

    def __init__(self, up: UpTrack, transceiver: RTCRtpTransceiver, numbering: tuple[int, int] | None = None) -> None:
        """``numbering``: the last (sequence number, timestamp) sent on this transceiver by an
        earlier DownTrack; its SSRC's SRTP context refuses numbers far behind them."""
        sender = transceiver.sender
        _probe_instances(None, sender)
        self.up = up
        self.transceiver = transceiver
        self.sender = sender
        self.stats = DownStats(delays=DELAYS if RECORD_DELAYS else None)
        self.paused = False
        self._history: dict[int, RtpPacket] = getattr(sender, _SENDER + "rtp_history")
        # The sender's own attributes, written per packet without attribute lookups.
        self._sender_state: dict[str, Any] = vars(sender)
        self._ssrc = sender._ssrc
        self._transport = sender.transport
        self._send: Callable[[bytes], bool] = SrtpSender(sender.transport)
        self._extensions = getattr(sender, _SENDER + "rtp_header_extensions_map")
        self._header: RtpHeader | None = None  # once the transceiver has its MID
        self._need_keyframe = up.kind == "video"
        self._in_ssrc: int | None = None
        self._anchor_seq = 0
        #: Packets sent in this run: late packets (from before its anchor) are only looked
        #: for at its start, as sequence numbers compare only within half their range.
        self._run_packets = 0
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq, self._last_ts = numbering or (random.randint(0, 0xFFFF), random.getrandbits(32))
        self._renumbering = _vp8.Renumbering()
        #: What the subscriber wants of a simulcast track, and the layer that gives it (the
        #: SSRC to switch to, on its next keyframe), chosen again when either changes.
        self.preference = Preference()
        self._target: int | None = None
        self._target_version = -1
        #: The layers (from the bottom) the subscriber's bandwidth allows (None: no cap; 0:
        #: paused for bandwidth), set by its congestion control.
        self.allowed: int | None = None
        #: Where the subscriber's feedback on this track (REMB, receiver reports) goes.
        self.bandwidth: Bandwidth | None = None
        # PLI / FIR from the subscriber become (throttled) keyframe requests upstream.
        sender._send_keyframe = self.request_keyframe  # type: ignore[method-assign]
        sender._handle_rtcp_packet = self._handle_rtcp_packet  # type: ignore[method-assign]
        up.down.add(self)
        up.wanted_changed()
        # A keyframe asked for now, while the subscriber's DTLS is still connecting, would be
        # lost (``_send_rtp`` refuses it) and hold back the subscriber's own PLIs behind the
        # request's throttle (about 0.5 s more to the first frame): ask once it is connected.
        if self._transport.state == "connected":
            self.request_keyframe()

    def detach(self) -> None:
        self.up.down.discard(self)
        self.up.wanted_changed()
        if self.bandwidth is not None:
            self.bandwidth.forget(self._ssrc)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        """The subscriber's RTCP for this track: its loss and bandwidth estimate go to its
        congestion control, then aiortc handles it (NACKs, PLIs, round-trip time)."""
        bandwidth = self.bandwidth
        if bandwidth is not None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                if not bandwidth.retransmits():
                    MEDIA.nacks_ignored += 1
                    return
            elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for report in packet.reports:
                    if report.ssrc == self._ssrc:
                        bandwidth.loss(report.fraction_lost / 256)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass
                else:
                    bandwidth.remb(bitrate, ssrcs)
        await RTCRtpSender._handle_rtcp_packet(self.sender, packet)

    def pad(self, size: int) -> int:
        """Sends about ``size`` bytes of RTP padding on the track's RTX stream (a bandwidth
        probe: the subscriber's estimator counts it, its decoder never sees it); returns the
        bytes sent (0: no RTX negotiated, or not connected)."""
        state = self._sender_state
        payload_type = state.get(_RTX_PAYLOAD_TYPE)
        if payload_type is None or self._transport.state != "connected":
            return 0
        mid = self.transceiver.mid
        ntp_time = clock.current_ntp_time()
        sent = 0
        while sent < size:
            sequence = state[_RTX_SEQUENCE]
            state[_RTX_SEQUENCE] = uint16_add(sequence, 1)
            packet = RtpPacket(
                payload_type=payload_type, sequence_number=sequence, timestamp=self._last_ts, ssrc=self.sender._rtx_ssrc
            )
            packet.padding_size = PADDING_SIZE
            packet.extensions.mid = mid
            packet.extensions.abs_send_time = (ntp_time >> 14) & 0x00FFFFFF
            data = packet.serialize(self._extensions)
            if not self._send(data):
                break
            sent += len(data)
        return sent

    def demand(self, priority: int = PRIORITY_CAMERA) -> Demand:
        """What this track could use of the subscriber's bandwidth: the rate of each layer up
        to the one the subscriber wants (as ``choose`` picks from the active layers)."""
        up = self.up
        if not up.layers:
            return Demand(self, [up.bitrate], audio=up.kind == "audio", priority=priority)
        now = time.perf_counter()
        sized = sorted(
            (x for x in up.layers.values() if x.height and now - x.last_seen <= ACTIVE_WITHIN),
            key=lambda x: (x.height, x.width),
        )
        wanted = choose(sized, self.preference, now)
        costs = [x.bitrate for x in sized[: sized.index(wanted) + 1]] if wanted in sized else [up.bitrate]
        return Demand(self, costs, priority=priority)

    def limit_layers(self, allowed: int | None) -> None:
        """Caps the layers this subscriber gets at ``allowed`` from the bottom (0: none, the
        track pauses; None: no cap). Up, the switch happens on the new layer's next keyframe;
        down, the layer above the cap stops at once (a short freeze until the lower layer's
        keyframe: the link it overflows would lose more)."""
        if allowed == self.allowed:
            return
        resumed = self.allowed == 0
        self.allowed = allowed
        self._target_version = -1
        if resumed:
            self.restart()
        elif allowed != 0:
            current, target = self.layer, self._target_ssrc()
            lower = self.up.layers.get(target) if target is not None else None
            if current is not None and lower is not None and lower.height < current.height:
                self._in_ssrc = None
                self._need_keyframe = True
            self.request_keyframe()

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        self.up.wanted_changed()
        if not paused:
            self.restart()

    @property
    def numbering(self) -> tuple[int, int]:
        """The last (sequence number, timestamp) sent, for the transceiver's next DownTrack."""
        return self._last_seq, self._last_ts

    def restart(self) -> None:
        """The next packet starts a new run (continuing this track's numbering)."""
        self._in_ssrc = None
        self._need_keyframe = self.up.kind == "video"
        self.request_keyframe()

    def prefer(self, preference: Preference) -> None:
        """What the subscriber wants of a simulcast track: the switch to the layer that fits
        happens on that layer's next keyframe (asked for now); until then the current layer
        goes on."""
        self.preference = preference
        self._target_version = -1
        self.up.wanted_changed()
        self.request_keyframe()

    @property
    def layer(self) -> Layer | None:
        """The simulcast layer being forwarded (None: not simulcast, or not started)."""
        return self.up.layers.get(self._in_ssrc) if self._in_ssrc is not None else None

    def _target_ssrc(self) -> int | None:
        """The simulcast layer to forward (None: the track is not simulcast)."""
        up = self.up
        if not up.layers:
            return None
        if self._target_version != up.layers_version:
            self._target_version = up.layers_version
            preference = self.preference
            if self.allowed:  # the bandwidth's cap, within the subscriber's own
                cap = min(preference.max_layers or self.allowed, self.allowed)
                preference = dataclasses.replace(preference, max_layers=cap)
            chosen = choose(up.layers.values(), preference, time.perf_counter())
            target = chosen.ssrc if chosen is not None else None
            if target != self._target and target != self._in_ssrc and target is not None:
                up.request_keyframe(target)
            self._target = target
        return self._target

    def request_keyframe(self) -> None:
        """Asks for a keyframe of the layer this subscriber needs one of (a PLI or FIR from it,
        a start, a switch)."""
        target = self._target_ssrc()
        self.up.request_keyframe(target if target is not None else self._in_ssrc)

    def forward(self, packet: RtpPacket, ntp_time: int, descriptor: _vp8.Descriptor | None = None) -> None:
        """Sends one packet of the up track (``ntp_time``: now, read once per packet;
        ``descriptor``: a video packet's VP8 descriptor)."""
        codecs = self.transceiver._codecs
        if self.paused or self.allowed == 0 or not codecs:
            self.stats.dropped += 1
            return
        if packet.ssrc != self._in_ssrc:
            target = self._target_ssrc()
            if target is not None and packet.ssrc != target:
                return  # another simulcast layer than this subscriber's
            # A run starts on a keyframe: the first, after a restart, or a layer switch.
            need_keyframe = self._need_keyframe or (target is not None and descriptor is not None)
            if need_keyframe and self._transport.state != "connected":
                self.stats.dropped += 1  # not sendable yet: start on a keyframe sent after
                return
            if need_keyframe and (descriptor is None or not descriptor.keyframe_start):
                self.stats.dropped += 1
                self.up.request_keyframe(packet.ssrc)
                return
            # Anchor: this packet follows the last one sent, one frame (~33 ms at 90 kHz,
            # one 20 ms Opus packet at 48 kHz) later.
            self._need_keyframe = False
            self._in_ssrc = packet.ssrc
            self._anchor_seq = packet.sequence_number
            self._run_packets = 0
            step = 3000 if self.up.kind == "video" else 960
            self._seq_offset = uint16_add(uint16_add(self._last_seq, 1), -packet.sequence_number)
            self._ts_offset = uint32_add(uint32_add(self._last_ts, step), -packet.timestamp)
            if descriptor is not None:
                self._renumbering.start_run(descriptor)
        elif self._run_packets < LATE_WINDOW and uint16_gt(self._anchor_seq, packet.sequence_number):
            self.stats.dropped += 1  # late, from before this run started
            return
        self._run_packets += 1
        sequence = (packet.sequence_number + self._seq_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        payload_type = codecs[0].payloadType
        assert payload_type is not None  # negotiated codecs have one
        payload = packet.payload if descriptor is None else self._renumbering.apply(packet.payload, descriptor)
        out = RtpPacket(
            payload_type=payload_type,
            marker=packet.marker,
            sequence_number=sequence,
            timestamp=timestamp,
            ssrc=self._ssrc,
            payload=payload,
        )
        extensions = out.extensions
        extensions.mid = mid = self.transceiver.mid
        extensions.abs_send_time = abs_send_time = (ntp_time >> 14) & 0x00FFFFFF
        extensions.audio_level = audio_level = packet.extensions.audio_level
        if uint16_gt(sequence, self._last_seq):
            self._last_seq = sequence
            self._last_ts = timestamp
        # The sender's own NACK handling retransmits from this history (as RTX), and its
        # RTCP task reports these counters in sender reports.
        self._history[sequence % RTP_HISTORY_SIZE] = out
        state = self._sender_state
        state[_NTP_TIMESTAMP] = ntp_time
        state[_RTP_TIMESTAMP] = timestamp
        state[_OCTET_COUNT] += len(packet.payload)
        state[_PACKET_COUNT] += 1
        header = self._header
        if header is None:
            header = self._header = RtpHeader(self._extensions, mid)
        if header.one_byte:
            data = header.write(
                packet.marker, payload_type, sequence, timestamp, self._ssrc, abs_send_time, audio_level
            )
            data += payload
        else:  # ids or a MID beyond the one-byte form: aiortc's own (slower) serializer
            data = out.serialize(self._extensions)
        if not self._send(data):  # DTLS not connected (yet, or any more)
            self.stats.dropped += 1
            return
        self.stats.packets += 1
        self.stats.bytes += len(data)
        MEDIA.forwarded_packets += 1
        MEDIA.forwarded_bytes += len(packet.payload)
        if self.stats.delays is not None:
            self.stats.delays.append(time.perf_counter() - self.up.arrival)
