"""The tap on aiortc's private parts (egress/_tap.py): fails loudly when aiortc changes, and
hands frames both to the tap and, asked to, to the decoder."""

from __future__ import annotations

import queue

import aiortc
import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame

from egress._tap import AIORTC_VERSION, AiortcChanged, check_aiortc, tap_encoded_frames


def test_the_pinned_aiortc_has_what_the_tap_uses() -> None:
    assert aiortc.__version__ == AIORTC_VERSION
    check_aiortc()


async def test_a_changed_aiortc_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "9.9.9")
    with pytest.raises(AiortcChanged, match=AIORTC_VERSION):
        check_aiortc()
    monkeypatch.undo()
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        check_aiortc(receiver)
        monkeypatch.delattr(receiver, "_RTCRtpReceiver__active_ssrc")
        with pytest.raises(AiortcChanged, match="SSRC"):
            check_aiortc(receiver)
    finally:
        await pc.close()


@pytest.mark.parametrize("decode", [False, True])
async def test_frames_reach_the_tap_and_the_decoder_only_when_asked(decode: bool) -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        tapped: list[tuple[bytes, int]] = []
        tap_encoded_frames(receiver, lambda data, timestamp: tapped.append((data, timestamp)), decode=decode)
        decoder: queue.Queue[object] = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        decoder.put(("opus", JitterFrame(b"\x01\x02", 960)))
        assert tapped == [(b"\x01\x02", 960)]
        assert decoder.qsize() == (1 if decode else 0)
        decoder.put(None)  # the receiver stopping always reaches the decoder thread
        assert decoder.qsize() == (2 if decode else 1)
    finally:
        await pc.close()
