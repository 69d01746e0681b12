"""The aiortc internals the SFU relies on (sfu/_media.py): these fail loudly when aiortc
changes, and the VP8 keyframe parser reads real encoder output."""

from __future__ import annotations

import fractions

import aiortc
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame

from sfu._media import AIORTC_VERSION, AiortcChanged, IdleTrack, _probe_instances, check_aiortc, vp8_is_keyframe_start


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
        starts.append([vp8_is_keyframe_start(p) for p in payloads])
    assert starts[0][0] and not any(starts[0][1:])  # first frame: keyframe, only its first packet
    assert not any(starts[1])  # a delta frame
    assert starts[2][0]  # a forced keyframe
    assert not vp8_is_keyframe_start(b"") and not vp8_is_keyframe_start(b"\x90")
