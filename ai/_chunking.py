"""Splitting long audio on silences so that several workers can transcribe it at once.

Speech regions come from the Silero VAD model that ships inside faster-whisper. Consecutive
regions are packed into chunks of at most ``max_chunk_seconds`` (Whisper's window is 30 s),
so no chunk starts or ends inside a word; silences longer than ``min_silence_ms`` are never
transcribed at all. Segment times are shifted back by each chunk's start when merged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ._types import Segment

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Chunk:
    """Samples ``[start, end)`` of the whole audio."""

    start: int
    end: int

    @property
    def offset(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def speech_regions(audio: np.ndarray, *, min_silence_ms: int = 700, max_speech_seconds: float = 30.0) -> list[Chunk]:
    """Where people speak, as sample ranges (padded a little so word edges survive)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        min_silence_duration_ms=min_silence_ms, max_speech_duration_s=max_speech_seconds, speech_pad_ms=200
    )
    return [Chunk(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(audio, options)]


def pack(regions: Sequence[Chunk], *, max_chunk_seconds: float = 30.0, breaks: Sequence[float] = ()) -> list[Chunk]:
    """Packs consecutive speech regions into chunks no longer than ``max_chunk_seconds``
    (a region longer than that on its own stays one chunk: the VAD already caps regions).

    ``breaks``: times (seconds) where another person starts speaking (from a speaker
    timeline): a chunk never runs across one, so that no transcribed segment spans two
    speakers (Whisper may make one segment of a whole chunk, and a segment is named whole)."""
    limit = int(max_chunk_seconds * SAMPLE_RATE)
    cuts = sorted(int(b * SAMPLE_RATE) for b in breaks)
    chunks: list[Chunk] = []
    current: Chunk | None = None
    for region in regions:
        # A break from a second before the chunk's end (timelines and VAD padding differ by
        # a little) up to the region's end: the region starts another person's turn.
        crosses = current is not None and any(current.end - SAMPLE_RATE <= cut <= region.end for cut in cuts)
        if current is not None and region.end - current.start <= limit and not crosses:
            current = Chunk(current.start, region.end)
            continue
        if current is not None:
            chunks.append(current)
        current = region
    if current is not None:
        chunks.append(current)
    return chunks


def plan_chunks(
    audio: np.ndarray, *, max_chunk_seconds: float = 30.0, min_silence_ms: int = 700, breaks: Sequence[float] = ()
) -> list[Chunk]:
    """The chunks to transcribe: speech only, each at most ``max_chunk_seconds``, none across
    a speaker change in ``breaks`` (``pack``)."""
    regions = speech_regions(audio, min_silence_ms=min_silence_ms, max_speech_seconds=max_chunk_seconds)
    return pack(regions, max_chunk_seconds=max_chunk_seconds, breaks=breaks)


def merge(results: Iterable[Sequence[Segment]]) -> list[Segment]:
    """Chunk results (already offset) in chunk order → one transcript whose times never go
    backwards (a segment may end a hair after the next chunk's first starts: clamp it)."""
    merged: list[Segment] = []
    for segments in results:
        for segment in segments:
            if merged and segment.start < merged[-1].end:
                last = merged[-1]
                merged[-1] = Segment(
                    start=last.start,
                    end=max(last.start, segment.start),
                    text=last.text,
                    speaker=last.speaker,
                    language=last.language,
                )
            merged.append(segment)
    return merged
