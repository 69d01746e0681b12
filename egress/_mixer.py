"""Mixes participants' audio onto the recording's timeline.

Each source pushes int16 samples at the position they belong to (the caller derives it from RTP
timestamps), in any order of arrival; ``pull`` mixes the next block of the timeline from all of
them. Sources that have nothing there are silent; late data is dropped, early data waits. The
sum goes through a limiter (instant attack, slow release) so that loud voices together are
turned down smoothly instead of wrapping around or clipping into a square wave.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import av
import numpy as np

__all__ = ["AudioMixer", "SourceResampler", "to_samples"]

FULL_SCALE = 32767
#: The limiter keeps the mix under this (about -0.2 dBFS).
LIMIT = 32000
#: The limiter's gain follows peaks per block of this many milliseconds.
BLOCK_MS = 1
#: How fast the gain comes back after a peak (time constant, seconds).
RELEASE_SECONDS = 0.3


def _layout(channels: int) -> str:
    if channels not in (1, 2):
        raise ValueError(f"{channels} channels: only mono and stereo are supported")
    return "mono" if channels == 1 else "stereo"


class SourceResampler:
    """Turns one source's decoded frames (any rate, layout or sample format) into int16
    (channels, n) at the mix's rate. One per source: a resampler keeps state between frames."""

    def __init__(self, sample_rate: int = 48000, channels: int = 2) -> None:
        self.channels = channels
        self._resampler = av.AudioResampler(format="s16p", layout=_layout(channels), rate=sample_rate)

    def __call__(self, frame: av.AudioFrame) -> np.ndarray:
        frames = self._resampler.resample(frame)
        if not frames:
            return np.zeros((self.channels, 0), np.int16)
        return np.concatenate([f.to_ndarray() for f in frames], axis=1).astype(np.int16, copy=False)


def to_samples(frame: av.AudioFrame, sample_rate: int = 48000, channels: int = 2) -> np.ndarray:
    """One frame as int16 (channels, n) at ``sample_rate``. For a stream of frames keep a
    ``SourceResampler`` instead: a fresh resampler per frame loses the filter's state."""
    return SourceResampler(sample_rate, channels)(frame)


@dataclass
class _Source:
    segments: deque[tuple[int, np.ndarray]] = field(default_factory=deque)
    end: int = 0  # timeline position after the last sample pushed
    buffered: int = 0


class AudioMixer:
    """Mixes the sources' samples, placed on a common timeline, block by block."""

    def __init__(
        self, sample_rate: int = 48000, channels: int = 2, *, max_buffer_seconds: float = 10.0, start: int = 0
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self._max_buffer = int(max_buffer_seconds * sample_rate)
        self._position = start
        self._sources: dict[str, _Source] = {}
        self._block = max(1, sample_rate * BLOCK_MS // 1000)
        self._release = 1 - math.exp(-self._block / (RELEASE_SECONDS * sample_rate))
        self._gain = 1.0

    @property
    def position(self) -> int:
        """The timeline position (in samples) that the next ``pull`` starts at."""
        return self._position

    @property
    def sources(self) -> list[str]:
        return list(self._sources)

    def push(self, source: str, samples: np.ndarray, start: int) -> None:
        """Adds int16 ``samples`` (channels, n) of ``source`` at timeline position ``start``.

        Mono is spread to every channel (and stereo averaged for a mono mix). Samples before
        the read position, or overlapping what the source already pushed, are dropped; beyond
        ``max_buffer_seconds`` of buffered audio the source's oldest samples go.
        """
        if samples.ndim != 2:
            raise ValueError(f"expected samples of shape (channels, n), got {samples.shape}")
        if samples.shape[0] != self.channels:
            if samples.shape[0] == 1:
                samples = np.repeat(samples, self.channels, axis=0)
            elif self.channels == 1:
                samples = samples.mean(axis=0, keepdims=True).astype(np.int16)
            else:
                raise ValueError(f"cannot mix {samples.shape[0]} channels into {self.channels}")
        state = self._sources.setdefault(source, _Source())
        skip = max(self._position, state.end) - start
        if skip > 0:
            samples, start = samples[:, skip:], start + skip
        if samples.shape[1] == 0:
            return
        # A copy: the caller may reuse its buffer, and a slice would keep the whole of it alive.
        state.segments.append((start, samples.astype(np.int16, copy=True)))
        state.end = start + samples.shape[1]
        state.buffered += samples.shape[1]
        while state.buffered > self._max_buffer and len(state.segments) > 1:
            _, dropped = state.segments.popleft()
            state.buffered -= dropped.shape[1]

    def remove(self, source: str) -> None:
        """Forgets a source and what it buffered (a participant who left)."""
        self._sources.pop(source, None)

    def pull(self, count: int) -> np.ndarray:
        """The next ``count`` samples of the mix, int16 (channels, count); the read position
        moves forward by ``count``."""
        begin, end = self._position, self._position + count
        mix = np.zeros((self.channels, count), np.float32)
        for state in self._sources.values():
            segments = state.segments
            while segments:
                start, samples = segments[0]
                stop = start + samples.shape[1]
                if start >= end:
                    break
                if stop > begin:
                    first, last = max(start, begin), min(stop, end)
                    mix[:, first - begin : last - begin] += samples[:, first - start : last - start]
                if stop <= end:
                    segments.popleft()
                    state.buffered -= samples.shape[1]
                else:
                    break
        self._position = end
        return self._limit(mix)

    def _limit(self, mix: np.ndarray) -> np.ndarray:
        """Scales the mix under ``LIMIT``: the gain drops at once to what a block's peak needs
        and comes back slowly, so a loud passage is turned down rather than clipped."""
        count = mix.shape[1]
        block = self._block
        blocks = -(-count // block)
        padded = np.zeros((self.channels, blocks * block), np.float32)
        padded[:, :count] = mix
        peaks = np.abs(padded).reshape(self.channels, blocks, block).max(axis=(0, 2))
        if self._gain >= 1.0 and peaks.max(initial=0.0) <= LIMIT:
            return mix.astype(np.int16)  # the usual case: nothing to limit
        targets = np.minimum(1.0, LIMIT / np.maximum(peaks, 1.0))
        gains = np.empty(blocks, np.float32)
        gain = self._gain
        for index, target in enumerate(targets.tolist()):
            gain = min(target, gain + (1.0 - gain) * self._release)
            gains[index] = gain
        # Within a block the gain moves linearly from the last block's (a smooth release), but
        # never above the block's own (no overshoot on an attack).
        previous = np.concatenate([[self._gain], gains[:-1]]).astype(np.float32)
        ramp = (np.arange(1, block + 1, dtype=np.float32) / block)[None, :]
        per_sample = previous[:, None] + (gains - previous)[:, None] * ramp
        per_sample = np.minimum(per_sample, gains[:, None]).reshape(-1)[:count]
        self._gain = float(gains[-1])
        return np.clip(np.round(mix * per_sample), -FULL_SCALE - 1, FULL_SCALE).astype(np.int16)
