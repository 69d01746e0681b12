"""Fixtures of the SFU's tests: a live SFU node on loopback, join tokens, and media tracks
whose content a receiver can check (a solid colour per second of video, a sine tone)."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import redis.asyncio as redis
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

from parley import VideoGrants, create_join_token
from sfu import SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET

KEY_ID = "parley"
#: The machine's Redis; each test keeps its node registry under a fresh prefix (``prefix``).
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Colours the test video cycles through, one per `COLOUR_SECONDS`.
COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 230, 40)]
COLOUR_SECONDS = 0.5


@pytest.fixture(scope="session")
async def sfu() -> AsyncIterator[SfuServer]:
    # A short grace period: tests that cut a stream see its participant leave soon after.
    settings = SfuSettings(
        token_secrets={KEY_ID: TOKEN_SECRET}, grpc_address="127.0.0.1:0", empty_timeout=2.0, resume_grace=5.0
    )
    async with SfuServer(settings) as server:
        yield server


Mint = Callable[..., str]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A fresh key prefix for a node registry in ``REDIS_URL``, deleted afterwards."""
    value = f"parley-test:{uuid.uuid4().hex[:10]}"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(f"{value}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def token() -> Mint:
    def mint(identity: str, room: str, **grants: Any) -> str:
        base = VideoGrants(room=room)
        value, _ = create_join_token(
            key_id=KEY_ID, secret=TOKEN_SECRET, identity=identity, name=identity.title(), grants=replace(base, **grants)
        )
        return value

    return mint


class ColourTrack(VideoStreamTrack):
    """Video of solid colours: ``COLOURS[i]`` during the i-th ``COLOUR_SECONDS`` (cycling)."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.started = time.monotonic()

    def colour_at(self, elapsed: float) -> tuple[int, int, int]:
        return COLOURS[int(elapsed / COLOUR_SECONDS) % len(COLOURS)]

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        rgb[:, :] = self.colour_at(time.monotonic() - self.started)
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(AudioStreamTrack):
    """A sine tone at ``frequency`` Hz, 48 kHz mono, 20 ms frames."""

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.5) -> None:
        super().__init__()
        self.frequency, self.amplitude = frequency, amplitude
        self._sample = 0

    async def recv(self) -> AudioFrame:
        rate, samples = 48000, 960
        if hasattr(self, "_start"):
            wait = self._start + (self._sample + samples) / rate - time.time()
            await asyncio.sleep(max(0.0, wait))
        else:
            self._start = time.time()
        t = (np.arange(self._sample, self._sample + samples) / rate).astype(np.float64)
        wave = (self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = self._sample
        frame.time_base = fractions.Fraction(1, rate)
        self._sample += samples
        return frame


def mean_colour(frame: object) -> tuple[int, int, int]:
    assert isinstance(frame, VideoFrame), frame
    rgb = frame.to_ndarray(format="rgb24")
    h, w, _ = rgb.shape
    centre = rgb[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)
    return int(centre[0]), int(centre[1]), int(centre[2])


def nearest_colour(rgb: tuple[int, int, int]) -> int:
    return min(range(len(COLOURS)), key=lambda i: sum((a - b) ** 2 for a, b in zip(rgb, COLOURS[i], strict=True)))


def dominant_frequency(frames: Sequence[object]) -> float:
    """The strongest frequency (Hz) in decoded audio frames (first channel)."""
    audio = [f for f in frames if isinstance(f, AudioFrame)]
    assert audio and len(audio) == len(frames)
    samples = np.concatenate(
        [f.to_ndarray().reshape(-1, f.layout.nb_channels if f.format.is_packed else 1)[:, 0] for f in audio]
    )
    rate = audio[0].sample_rate
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])
