"""The aiortc internals the SFU relies on (sfu/_media.py): these fail loudly when aiortc
changes, and the VP8 keyframe parser reads real encoder output."""

from __future__ import annotations

import fractions
import itertools
from typing import Any

import aiortc
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from av import VideoFrame

from sfu._media import (
    AIORTC_VERSION,
    AiortcChanged,
    DownTrack,
    IdleTrack,
    RtpHeader,
    SrtpSender,
    UpTrack,
    _probe_instances,
    check_aiortc,
)
from sfu._vp8 import Descriptor, keyframe_size, parse

#: Descriptors of a VP8 keyframe's first packet and of a delta frame's (S bit, then the tag).
KEY: Descriptor | None = parse(b"\x10\x00")
DELTA: Descriptor | None = parse(b"\x10\x01")


def test_the_pinned_aiortc_is_installed_with_every_internal_used() -> None:
    assert aiortc.__version__ == AIORTC_VERSION
    check_aiortc()


async def test_receivers_and_senders_have_the_private_state_used() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver(IdleTrack("video"), direction="sendrecv")
        _probe_instances(transceiver.receiver, transceiver.sender)
        assert isinstance(transceiver.sender._ssrc, int)
    finally:
        await pc.close()


async def test_transports_have_the_private_state_sending_uses() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver(IdleTrack("video"), direction="sendonly")
        send = SrtpSender(transceiver.sender.transport)
        assert send(b"not yet") is False  # DTLS is not connected
    finally:
        await pc.close()


_URIS = {
    "mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
    "abs_send_time": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "audio_level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
}


@pytest.mark.parametrize(
    ("ids", "mid"),
    [
        ({"mid": 1, "abs_send_time": 2, "audio_level": 3}, "0"),
        ({"mid": 4, "abs_send_time": 9}, "video-13"),
        ({"abs_send_time": 14}, None),
        ({"mid": 1, "audio_level": 10}, "a"),
        ({}, "1"),
        ({"mid": 1, "abs_send_time": 2}, "a-mid-of-sixteen"),
    ],
)
def test_rtp_headers_are_written_as_aiortc_serializes_them(ids: dict[str, int], mid: str | None) -> None:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=_URIS[k]) for k, i in ids.items()])
    )
    header = RtpHeader(extensions, mid)
    assert header.one_byte
    rng = np.random.default_rng(7)
    for index in range(200):
        level = None if index % 3 == 0 else (bool(index % 2), int(rng.integers(0, 128)))
        packet = RtpPacket(
            payload_type=int(rng.integers(96, 128)),
            marker=index % 2,
            sequence_number=int(rng.integers(0, 1 << 16)),
            timestamp=int(rng.integers(0, 1 << 32)),
            ssrc=int(rng.integers(0, 1 << 32)),
            payload=bytes(rng.integers(0, 256, size=int(rng.integers(1, 40)), dtype=np.uint8)),
        )
        packet.extensions.mid = mid
        packet.extensions.abs_send_time = int(rng.integers(0, 1 << 24))
        packet.extensions.audio_level = level
        fields = (packet.marker, packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc)
        written = header.write(*fields, packet.extensions.abs_send_time, level) + packet.payload
        assert written == packet.serialize(extensions)


def test_a_mid_beyond_the_one_byte_form_is_left_to_aiortc() -> None:
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=_URIS["mid"])]))
    assert not RtpHeader(extensions, "a-mid-of-seventeen"[:17]).one_byte


async def test_a_changed_aiortc_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "9.9.9")
    with pytest.raises(AiortcChanged, match=AIORTC_VERSION):
        check_aiortc()
    monkeypatch.undo()
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio")
        monkeypatch.delattr(transceiver.sender, "_RTCRtpSender__rtp_history")
        with pytest.raises(AiortcChanged, match="rtp_history"):
            _probe_instances(None, transceiver.sender)
    finally:
        await pc.close()


def test_vp8_keyframes_are_told_from_delta_frames() -> None:
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    encoder = get_encoder(codec)
    starts = []
    for index in range(3):
        rgb = np.full((120, 160, 3), 40 * index, dtype=np.uint8)
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = index * 3000, fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=index == 2)
        descriptors = [parse(p) for p in payloads]
        starts.append([d is not None and d.keyframe_start for d in descriptors])
        if index == 0:
            first = descriptors[0]
            assert first is not None and keyframe_size(payloads[0], first) == (160, 120)
    assert starts[0][0] and not any(starts[0][1:])  # first frame: keyframe, only its first packet
    assert not any(starts[1])  # a delta frame
    assert starts[2][0]  # a forced keyframe
    assert parse(b"") is None and parse(b"\x90") is None


class _Recorder:
    """Stands in for a DTLS transport: keeps what a DownTrack sends."""

    def __init__(self) -> None:
        self.sent: list[RtpPacket] = []
        self.state = "connected"

    def send(self, data: bytes) -> bool:
        if self.state != "connected":
            return False
        self.sent.append(RtpPacket.parse(data))
        return True


async def _down_track(kind: str, numbering: tuple[int, int] | None = None) -> tuple[DownTrack, _Recorder, Any]:
    pc = RTCPeerConnection()
    publisher = pc.addTransceiver(kind, direction="recvonly")
    subscriber = pc.addTransceiver(IdleTrack(kind), direction="sendonly")
    subscriber._codecs = [RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)]
    down = DownTrack(UpTrack(publisher.receiver, kind), subscriber, numbering)
    recorder = _Recorder()
    down._transport = recorder  # type: ignore[assignment]
    down._send = recorder.send
    return down, recorder, pc


async def test_numbering_runs_on_past_a_half_range_of_packets() -> None:
    down, recorder, pc = await _down_track("audio")
    try:
        for index in range(70_000):  # more than 32768 after the anchor: wraps the 16-bit numbers
            packet = RtpPacket(payload_type=96, sequence_number=(5000 + index) & 0xFFFF, timestamp=index * 960, ssrc=7)
            packet.payload = b"x"
            down.forward(packet, 0)
        assert len(recorder.sent) == 70_000 and down.stats.dropped == 0
        steps = {(b.sequence_number - a.sequence_number) & 0xFFFF for a, b in itertools.pairwise(recorder.sent)}
        assert steps == {1}
        assert {p.ssrc for p in recorder.sent} == {down.sender._ssrc} and recorder.sent[0].payload_type == 111
    finally:
        await pc.close()


async def test_a_reused_transceiver_continues_its_numbering() -> None:
    first, recorder, pc = await _down_track("audio")
    try:
        for index in range(3):
            packet = RtpPacket(payload_type=96, sequence_number=100 + index, timestamp=index * 960, ssrc=1)
            packet.payload = b"a"
            first.forward(packet, 0)
        second = DownTrack(first.up, first.transceiver, first.numbering)
        second._transport = recorder  # type: ignore[assignment]
        second._send = recorder.send
        packet = RtpPacket(payload_type=96, sequence_number=40000, timestamp=123456, ssrc=2)
        packet.payload = b"b"
        second.forward(packet, 0)
        assert recorder.sent[-1].sequence_number == (recorder.sent[-2].sequence_number + 1) & 0xFFFF
    finally:
        await pc.close()


async def test_video_starts_on_a_keyframe_sent_once_the_subscriber_is_connected() -> None:
    """A keyframe forwarded before the subscriber's DTLS is up would be lost, and its PLIs
    throttled behind the request made for it: the track starts on a keyframe sent after."""
    down, recorder, pc = await _down_track("video")
    try:
        down.transceiver._codecs = [RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)]
        requests: list[bool] = []
        down.up.request_keyframe = lambda *_: requests.append(True)  # type: ignore[method-assign]
        recorder.state = "connecting"

        def packet(sequence: int) -> RtpPacket:
            return RtpPacket(payload_type=96, sequence_number=sequence, timestamp=sequence * 3000, ssrc=5, payload=b"v")

        down.forward(packet(1), 0, KEY)  # a keyframe before DTLS is up: not sent
        assert recorder.sent == [] and requests == []
        recorder.state = "connected"
        down.forward(packet(2), 0, DELTA)  # a delta frame: still waiting, asks for a keyframe
        assert recorder.sent == [] and requests == [True]
        down.forward(packet(3), 0, KEY)
        down.forward(packet(4), 0, DELTA)
        assert len(recorder.sent) == 2
    finally:
        await pc.close()
