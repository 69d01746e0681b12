"""Condensing a speaker's own track to its speech, and mapping times back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ai._chunking import SAMPLE_RATE, Chunk
from ai._condense import PAUSE, condense, plan_condensed
from ai._types import Segment

from .media import read_wav, speak


def test_regions_follow_each_other_with_a_pause_and_times_map_back() -> None:
    audio = np.arange(20 * SAMPLE_RATE, dtype=np.float32)
    regions = [Chunk(2 * SAMPLE_RATE, 4 * SAMPLE_RATE), Chunk(15 * SAMPLE_RATE, 16 * SAMPLE_RATE)]
    condensed = condense(audio, regions)
    assert len(condensed.audio) == (2 + 1 + 2 * PAUSE) * SAMPLE_RATE
    assert condensed.audio[0] == 2 * SAMPLE_RATE and condensed.audio[int((2 + PAUSE) * SAMPLE_RATE)] == 15 * SAMPLE_RATE
    assert condensed.regions() == [
        Chunk(0, 2 * SAMPLE_RATE),
        Chunk(int((2 + PAUSE) * SAMPLE_RATE), int((3 + PAUSE) * SAMPLE_RATE)),
    ]
    restored = condensed.restore(
        [
            Segment(start=0.5, end=1.5, text="in the first"),
            Segment(start=1.5, end=2.0 + PAUSE / 2, text="ends in the pause"),
            Segment(start=2.0 + PAUSE + 0.25, end=3.0 + PAUSE, text="in the second"),
        ]
    )
    assert [(s.start, s.end) for s in restored] == [(2.5, 3.5), (3.5, 4.0), (15.25, 16.0)]
    # Loose timestamps: a start in the pause before the speech, an end a little into the next
    # region, stay with the speech they belong to instead of spanning the silence between.
    loose = condensed.restore(
        [
            Segment(start=2.0 + PAUSE - 0.1, end=3.0 + PAUSE, text="late"),
            Segment(start=0.0, end=2.0 + PAUSE + 0.1, text="long"),
        ]
    )
    assert [(s.start, s.end) for s in loose] == [(15.0, 16.0), (2.0, 4.0)]


def test_nothing_said_condenses_to_nothing() -> None:
    condensed, chunks = plan_condensed(np.zeros(10 * SAMPLE_RATE, dtype=np.float32))
    assert len(condensed.audio) == 0 and chunks == []
    assert condensed.restore([]) == []


def test_a_mostly_silent_track_condenses_to_its_speech(tmp_path: Path) -> None:
    said, rate = read_wav(speak("Please send the offers before Friday.", tmp_path / "line.wav"))
    speech = np.interp(np.arange(int(len(said) * SAMPLE_RATE / rate)) * rate / SAMPLE_RATE, np.arange(len(said)), said)
    track = np.zeros(60 * SAMPLE_RATE, dtype=np.float32)
    for start in (5, 40):  # the speaker talks twice in a minute
        track[start * SAMPLE_RATE : start * SAMPLE_RATE + len(speech)] = speech
    condensed, chunks = plan_condensed(track)
    assert len(chunks) == 1 and len(condensed.audio) < 0.2 * len(track)
    # The second time they spoke is found at 40 s again, give or take the VAD's padding.
    second = condensed.regions()[-1]
    assert abs(condensed.original_time(second.start / SAMPLE_RATE) - 40.0) < 0.5
