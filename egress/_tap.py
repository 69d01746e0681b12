"""The one module of the egress service that touches aiortc's private parts: it reads a
receiver's encoded frames (depayloaded by aiortc, reassembled by its jitter buffer) before
they reach its decoder, so that a track egress writes the track as it was sent, without
decoding or re-encoding it.

What it uses, checked by ``check_aiortc`` (and tests/egress/test_tap.py, which fails loudly
when aiortc changes):

* ``RTCRtpReceiver.__decoder_queue``: the queue ``_handle_rtp_packet`` puts ``(codec,
  JitterFrame)`` on, on the event loop, for the decoder thread;
* ``JitterFrame.data`` / ``.timestamp`` (the RTP timestamp, mapped to start at 0);
* ``RTCRtpReceiver.__active_ssrc`` and ``_send_rtcp_pli``, to ask the sender for a keyframe.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import aiortc
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame

AIORTC_VERSION = "1.16.0"
_QUEUE = "_RTCRtpReceiver__decoder_queue"
_ACTIVE_SSRC = "_RTCRtpReceiver__active_ssrc"

#: Called with each encoded frame's bytes and RTP timestamp (from 0), on the event loop.
OnFrame = Callable[[bytes, int], None]


class AiortcChanged(RuntimeError):
    """aiortc no longer has an internal this module relies on."""


def check_aiortc(receiver: RTCRtpReceiver | None = None) -> None:
    """Raises ``AiortcChanged`` unless aiortc (and ``receiver``, when given) has what the tap uses."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise AiortcChanged(f"the tap is written against aiortc {AIORTC_VERSION}, found {aiortc.__version__}")
    if not callable(getattr(RTCRtpReceiver, "_send_rtcp_pli", None)):
        raise AiortcChanged("RTCRtpReceiver._send_rtcp_pli is gone")
    if not {"data", "timestamp"} <= set(JitterFrame(b"", 0).__dict__):
        raise AiortcChanged("JitterFrame no longer carries data and timestamp")
    if receiver is not None:
        if not isinstance(getattr(receiver, _QUEUE, None), queue.Queue):
            raise AiortcChanged("RTCRtpReceiver no longer hands frames to its decoder through a queue")
        if not isinstance(getattr(receiver, _ACTIVE_SSRC, None), dict):
            raise AiortcChanged("RTCRtpReceiver no longer keeps its active SSRCs")


def tap_encoded_frames(receiver: RTCRtpReceiver, on_frame: OnFrame, *, decode: bool = False) -> None:
    """Sends ``receiver``'s encoded frames to ``on_frame``: instead of its decoder (which then
    decodes nothing; it still ends when the receiver stops), or also to it with ``decode``."""
    check_aiortc(receiver)
    frames: queue.Queue[Any] = getattr(receiver, _QUEUE)
    forward = frames.put

    def put(item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopping: let the decoder thread end
            forward(item, block, timeout)
            return
        _, frame = item
        on_frame(frame.data, frame.timestamp)
        if decode:
            forward(item, block, timeout)

    frames.put = put  # type: ignore[method-assign]


async def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Asks the sender of ``receiver``'s stream for a keyframe (an RTCP PLI)."""
    for ssrc in list(getattr(receiver, _ACTIVE_SSRC)):
        await receiver._send_rtcp_pli(ssrc)
