"""Media for load tests (`parley load-test`, bench/sfu_bench.py): VP8 and Opus encoded once with PyAV (cached),
sent in real time as pre-encoded packets (no per-packet encoding), and received by counting
RTP packets without decoding."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import rtcrtpreceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parley" / "load-media"
FPS = 30
VIDEO_SECONDS = 10


class _Packet:
    """What aiortc's sender packs without encoding (duck-types ``av.Packet``)."""

    __slots__ = ("data", "pts", "time_base")

    def __init__(self, data: bytes, pts: int, time_base: fractions.Fraction) -> None:
        self.data, self.pts, self.time_base = data, pts, time_base

    def __bytes__(self) -> bytes:
        return self.data


def _save(path: Path, packets: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(struct.pack("!I", len(p)) + p for p in packets))
    tmp.replace(path)


def _load(path: Path) -> list[bytes]:
    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        (size,) = struct.unpack_from("!I", data, pos)
        out.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out


def video_packets() -> list[bytes]:
    """640×480, 30 fps VP8 at about 800 kb/s, a keyframe every 2 s: moving gradient bars."""
    path = CACHE / "video-vp8.bin"
    if not path.exists():
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = 640, 480, "yuv420p"
        codec.time_base = fractions.Fraction(1, FPS)
        codec.bit_rate = 800_000
        codec.gop_size = 2 * FPS
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        packets = []
        x = np.arange(640, dtype=np.uint16)
        for index in range(FPS * VIDEO_SECONDS):
            rgb = np.empty((480, 640, 3), dtype=np.uint8)
            rgb[:, :, 0] = ((x + 4 * index) % 256).astype(np.uint8)
            rgb[:, :, 1] = np.arange(480, dtype=np.uint16)[:, None] % 256
            rgb[:, :, 2] = (index * 3) % 256
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            packets += [bytes(p) for p in codec.encode(frame)]
        packets += [bytes(p) for p in codec.encode(None)]
        _save(path, packets)
    return _load(path)


def audio_packets() -> list[bytes]:
    """48 kHz Opus, 20 ms packets: a tone that rises and falls (a voice's loudness varies)."""
    path = CACHE / "audio-opus.bin"
    if not path.exists():
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate, codec.layout, codec.format = 48000, "stereo", "s16"
        codec.bit_rate = 32000
        packets = []
        for index in range(50 * VIDEO_SECONDS):
            t = (np.arange(960) + index * 960) / 48000
            wave = (8000 * np.sin(2 * np.pi * 300 * t) * (0.5 + 0.5 * np.sin(t))).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(
                np.repeat(wave[None, :], 2, axis=0).T.reshape(1, -1), format="s16", layout="stereo"
            )
            frame.sample_rate, frame.pts = 48000, index * 960
            packets += [bytes(p) for p in codec.encode(frame)]
        _save(path, packets)
    return _load(path)


class PreEncodedTrack(MediaStreamTrack):
    """Loops pre-encoded packets in real time; aiortc only packetizes them."""

    def __init__(self, kind: str, packets: list[bytes], interval: float, ticks: int, clock_rate: int) -> None:
        super().__init__()
        self.kind = kind
        self._packets, self._interval, self._ticks = packets, interval, ticks
        self._time_base = fractions.Fraction(1, clock_rate)
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._index * self._interval - time.monotonic()))
        packet = _Packet(self._packets[self._index % len(self._packets)], self._index * self._ticks, self._time_base)
        self._index += 1
        return packet


def video_track() -> PreEncodedTrack:
    return PreEncodedTrack("video", video_packets(), 1 / FPS, 90000 // FPS, 90000)


def audio_track() -> PreEncodedTrack:
    return PreEncodedTrack("audio", audio_packets(), 0.02, 960, 48000)


class _Undecoded:
    """What a receiver yields instead of a decoded frame in a load-generating process."""

    __slots__ = ()


_UNDECODED = _Undecoded()


class _CountingDecoder:
    """Replaces aiortc's decoders: each encoded frame comes out as one ``_Undecoded``."""

    def __init__(self, codec: Any) -> None:
        pass

    def decode(self, encoded_frame: Any) -> list[Any]:
        return [_UNDECODED]


def stop_decoding() -> None:
    """Makes this process's receivers hand out placeholders instead of decoded frames (a
    load generator measures the SFU, not its own decoders)."""
    rtcrtpreceiver.get_decoder = _CountingDecoder  # type: ignore[attr-defined,assignment]


@dataclass
class FrameCounter:
    """Frames received on one remote track, counted by a task that drains it."""

    frames: int = 0
    task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, track: MediaStreamTrack) -> FrameCounter:
        counter = cls()

        async def drain() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    counter.frames += 1

        counter.task = asyncio.create_task(drain())
        return counter

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
