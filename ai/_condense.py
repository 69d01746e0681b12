"""Speech without its long silences, and the way back to the original times.

One participant's own track is mostly silence: they speak a sentence, then listen while others
talk. Whisper encodes 30 s windows whatever they hold, so chunks cut from such a track cost as
much as chunks of dense speech and hold a third of it. Condensing keeps only the speech regions
(VAD), each followed by a short pause, so the chunks are as dense as a mixed recording's;
segment times are then mapped back to the track's own time (as faster-whisper's ``vad_filter``
does for one call)."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ._chunking import SAMPLE_RATE, Chunk, pack, speech_regions
from ._types import Segment

#: Silence kept after each speech region (seconds): enough for Whisper to end a sentence.
PAUSE = 0.5
#: A segment belongs to the speech regions it overlaps by at least this much (seconds).
MIN_OVERLAP = 0.5


@dataclass(frozen=True)
class Condensed:
    """Condensed audio; ``pieces[i] = (start here, start in the original, length)`` in samples."""

    audio: np.ndarray
    pieces: tuple[tuple[int, int, int], ...]

    def regions(self) -> list[Chunk]:
        """The speech regions, in the condensed audio's samples."""
        return [Chunk(start, start + length) for start, _, length in self.pieces]

    def original_time(self, seconds: float) -> float:
        """Where a time of the condensed audio lies in the original (a pause maps to the end of
        the speech before it)."""
        if not self.pieces:
            return seconds
        at = round(seconds * SAMPLE_RATE)
        index = max(0, bisect.bisect_right([start for start, _, _ in self.pieces], at) - 1)
        start, original, length = self.pieces[index]
        return (original + min(max(at - start, 0), length)) / SAMPLE_RATE

    def restore(self, segments: Iterable[Segment]) -> list[Segment]:
        """Segments with their times mapped back to the original audio.

        Whisper's timestamps are loose by a few tenths of a second: a segment's start may fall
        in the pause before its speech, its end a little into the next region. Mapped naively,
        either would stretch it over everything said by others in between. So a segment spans
        the regions it overlaps by at least ``MIN_OVERLAP`` (one, unless Whisper ran sentences
        together), clamped to them."""
        restored = []
        for segment in segments:
            start, end = self._span(segment.start, segment.end)
            restored.append(dataclasses.replace(segment, start=round(start, 3), end=round(end, 3)))
        return restored

    def _span(self, start: float, end: float) -> tuple[float, float]:
        first, last = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
        least = MIN_OVERLAP * SAMPLE_RATE
        touched = [p for p in self.pieces if min(last, p[0] + p[2]) - max(first, p[0]) >= least]
        if not touched:  # a sliver: map its ends as they are
            mapped = self.original_time(start)
            return mapped, max(mapped, self.original_time(end))
        (here, there, length), (end_here, end_there, end_length) = touched[0], touched[-1]
        mapped_start = there + min(max(first - here, 0), length)
        mapped_end = end_there + min(max(last - end_here, 0), end_length)
        return mapped_start / SAMPLE_RATE, max(mapped_start, mapped_end) / SAMPLE_RATE


def condense(audio: np.ndarray, regions: Sequence[Chunk], *, pause: float = PAUSE) -> Condensed:
    """The ``regions`` of ``audio`` one after the other, each followed by ``pause`` seconds of
    silence."""
    gap = np.zeros(int(pause * SAMPLE_RATE), dtype=audio.dtype)
    parts: list[np.ndarray] = []
    pieces: list[tuple[int, int, int]] = []
    at = 0
    for region in regions:
        speech = audio[region.start : region.end]
        pieces.append((at, region.start, len(speech)))
        parts += [speech, gap]
        at += len(speech) + len(gap)
    joined = np.concatenate(parts) if parts else audio[:0]
    return Condensed(audio=joined, pieces=tuple(pieces))


def plan_condensed(audio: np.ndarray, *, max_chunk_seconds: float = 30.0) -> tuple[Condensed, list[Chunk]]:
    """The condensed speech of ``audio`` and the chunks to transcribe it in."""
    condensed = condense(audio, speech_regions(audio, max_speech_seconds=max_chunk_seconds))
    return condensed, pack(condensed.regions(), max_chunk_seconds=max_chunk_seconds)
