"""Who said what: attributing transcript segments to the participants of a speaker timeline
(the SFU's active-speaker turns)."""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import logging
import math
from collections.abc import Sequence

from ai._types import Segment, SpeakerTurn

logger = logging.getLogger(__name__)

#: How far (seconds) a segment may lie from the nearest turn and still take its speaker when no
#: turn overlaps it: the SFU's speaker detection lags speech onset and ends early.
NEAREST_TURN_MAX_GAP = 1.0

#: Overlaps closer than this (seconds) count as equal: float sums of the same length can
#: differ in the last bits, which must not decide a tie.
_TIE_TOLERANCE = 1e-6


def validate_timeline(timeline: Sequence[SpeakerTurn]) -> None:
    """Check a speaker timeline's turns.

    Args:
        timeline: The turns, in any order; they may overlap (people talk over each other).

    Raises:
        ValueError: A turn has an empty speaker, a negative or non-finite time, or ends
            before it starts. The message names the turn's index.
    """
    for index, turn in enumerate(timeline):
        if not turn.speaker.strip():
            raise ValueError(f"speaker turn {index}: the speaker is empty")
        if not (math.isfinite(turn.start) and math.isfinite(turn.end)):
            raise ValueError(f"speaker turn {index}: times must be finite, got {turn.start}–{turn.end}")
        if turn.start < 0 or turn.end < 0:
            raise ValueError(f"speaker turn {index}: times must not be negative, got {turn.start}–{turn.end}")
        if turn.end < turn.start:
            raise ValueError(f"speaker turn {index}: ends ({turn.end}) before it starts ({turn.start})")


def attribute_speakers(segments: Sequence[Segment], timeline: Sequence[SpeakerTurn]) -> list[Segment]:
    """Give each segment the speaker who talked during most of it.

    A segment's speaker is the one whose turns overlap it the longest (a speaker's own
    overlapping turns count once). On a tie, the speaker whose overlapping turn starts
    earliest wins. When no turn overlaps, the nearest turn within
    :data:`NEAREST_TURN_MAX_GAP` seconds gives the speaker (ties again to the earliest start);
    otherwise the speaker is ``""``. Any speaker the segments had is replaced.

    Runs in O((n + m) log m) plus the number of turns active during each segment, for ``n``
    segments and ``m`` turns, by sweeping both in time order.

    Args:
        segments: The transcript, in any order (usually time order).
        timeline: The speaker turns, in any order.

    Returns:
        New segments, in the order given, with ``speaker`` set.

    Raises:
        ValueError: The timeline is invalid (see :func:`validate_timeline`).
    """
    validate_timeline(timeline)
    turns = _merge_turns(timeline)
    if not turns:
        return [dataclasses.replace(segment, speaker="") for segment in segments]

    by_start = turns  # _merge_turns sorts by (start, end, speaker)
    starts = [turn.start for turn in by_start]
    by_end = sorted(turns, key=lambda turn: (turn.end, turn.start))
    ends = [turn.end for turn in by_end]

    speakers: list[str] = [""] * len(segments)
    order = sorted(range(len(segments)), key=lambda index: segments[index].start)
    # Turns that may overlap the current segment, keyed by end: segment starts only grow in
    # this order, so a turn ending at or before one segment's start is done for all later ones.
    active: list[tuple[float, int]] = []
    next_turn = 0
    for index in order:
        segment = segments[index]
        seg_start, seg_end = segment.start, max(segment.start, segment.end)
        while next_turn < len(by_start) and by_start[next_turn].start < seg_end:
            heapq.heappush(active, (by_start[next_turn].end, next_turn))
            next_turn += 1
        while active and active[0][0] <= seg_start:
            heapq.heappop(active)

        overlap: dict[str, float] = {}
        first_start: dict[str, float] = {}
        for _, turn_index in active:
            turn = by_start[turn_index]
            # Turns pushed for an earlier, longer segment can start after this one ends:
            # their overlap is not positive and they are skipped here.
            length = min(turn.end, seg_end) - max(turn.start, seg_start)
            if length > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + length
                first_start[turn.speaker] = min(first_start.get(turn.speaker, math.inf), turn.start)
        if overlap:
            best = max(overlap.values())
            speakers[index] = min(
                (speaker for speaker, length in overlap.items() if length >= best - _TIE_TOLERANCE),
                key=lambda speaker: (first_start[speaker], speaker),
            )
        else:
            speakers[index] = _nearest(seg_start, seg_end, by_start, starts, by_end, ends, active)
    return [dataclasses.replace(segment, speaker=speaker) for segment, speaker in zip(segments, speakers, strict=True)]


def interleave_speakers(files: Sequence[tuple[str, float, Sequence[Segment]]]) -> list[Segment]:
    """One transcript from the transcripts of one file per speaker.

    Args:
        files: ``(speaker, offset, segments)`` per file: who speaks in it, where it starts in
            the meeting (seconds), and its segments in the file's own time.

    Returns:
        Every segment moved to the meeting's time and named after its file's speaker, in order
        of start. Overlapping segments are kept as they are: people talk over each other.
    """
    placed = [
        dataclasses.replace(
            segment, start=round(segment.start + offset, 3), end=round(segment.end + offset, 3), speaker=speaker
        )
        for speaker, offset, segments in files
        for segment in segments
    ]
    placed.sort(key=lambda segment: (segment.start, segment.end))
    return placed


def _merge_turns(timeline: Sequence[SpeakerTurn]) -> list[SpeakerTurn]:
    """Each speaker's turns with overlapping or touching ones merged, sorted by start."""
    merged: list[SpeakerTurn] = []
    current: SpeakerTurn | None = None
    for turn in sorted(timeline, key=lambda turn: (turn.speaker, turn.start, turn.end)):
        if current is not None and current.speaker == turn.speaker and turn.start <= current.end:
            current = SpeakerTurn(speaker=current.speaker, start=current.start, end=max(current.end, turn.end))
            continue
        if current is not None:
            merged.append(current)
        current = turn
    if current is not None:
        merged.append(current)
    merged.sort(key=lambda turn: (turn.start, turn.end, turn.speaker))
    return merged


def _nearest(
    seg_start: float,
    seg_end: float,
    by_start: list[SpeakerTurn],
    starts: list[float],
    by_end: list[SpeakerTurn],
    ends: list[float],
    active: list[tuple[float, int]],
) -> str:
    """The speaker of the turn nearest to a segment no turn overlaps, or ``""`` beyond the gap."""
    candidates: list[SpeakerTurn] = []
    # The latest-ending turn that ends at or before the segment (earliest start among equals).
    before = bisect.bisect_right(ends, seg_start)
    if before:
        candidates.append(by_end[bisect.bisect_left(ends, ends[before - 1])])
    # The earliest-starting turn that starts at or after the segment's end.
    after = bisect.bisect_left(starts, seg_end)
    if after < len(by_start):
        candidates.append(by_start[after])
    # Active turns touching a zero-length segment, or starting right at its end.
    candidates.extend(by_start[turn_index] for _, turn_index in active)
    best: tuple[float, float, str] | None = None
    for turn in candidates:
        gap = max(turn.start - seg_end, seg_start - turn.end, 0.0)
        key = (gap, turn.start, turn.speaker)
        if gap <= NEAREST_TURN_MAX_GAP and (best is None or key < best):
            best = key
    return best[2] if best is not None else ""
