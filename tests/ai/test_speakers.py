"""ai._speakers: attributing segments to the speaker timeline, and timeline validation."""

from __future__ import annotations

import random

import pytest

from ai._speakers import attribute_speakers, interleave_speakers, validate_timeline
from ai._types import Segment, SpeakerTurn


def seg(start: float, end: float, text: str = "…", speaker: str = "") -> Segment:
    return Segment(start=start, end=end, text=text, speaker=speaker)


def turn(speaker: str, start: float, end: float) -> SpeakerTurn:
    return SpeakerTurn(speaker=speaker, start=start, end=end)


def speakers_of(segments: list[Segment], timeline: list[SpeakerTurn]) -> list[str]:
    return [segment.speaker for segment in attribute_speakers(segments, timeline)]


def test_majority_overlap_wins() -> None:
    timeline = [turn("ada", 0, 3), turn("bob", 3, 10)]

    assert speakers_of([seg(1, 4), seg(2, 6), seg(0, 3)], timeline) == ["ada", "bob", "ada"]


def test_overlaps_of_one_speaker_add_up() -> None:
    # Bob talks twice (1 s + 1 s) during the segment, Ada once for 1.5 s: Bob said more of it.
    timeline = [turn("bob", 0, 1), turn("ada", 1, 2.5), turn("bob", 2.5, 3.5)]

    assert speakers_of([seg(0, 3.5)], timeline) == ["bob"]


def test_self_overlapping_turns_count_once() -> None:
    # Duplicate turns of Ada (two detectors) must not double her 2 s against Bob's 3 s.
    timeline = [turn("ada", 0, 2), turn("ada", 0, 2), turn("ada", 1, 2), turn("bob", 2, 5)]

    assert speakers_of([seg(0, 5)], timeline) == ["bob"]


def test_tie_goes_to_earliest_turn_start() -> None:
    timeline = [turn("bob", 2, 4), turn("ada", 0, 2)]

    assert speakers_of([seg(1, 3)], timeline) == ["ada"]
    # Overlapping talkers with equal shares: the one who started first.
    assert speakers_of([seg(5, 6)], [turn("zed", 4.5, 7), turn("amy", 4.9, 6)]) == ["zed"]
    # Float sums that differ in the last bits are still a tie.
    assert speakers_of([seg(0.1, 0.7)], [turn("b", 0.4, 0.7), turn("a", 0.1, 0.4)]) == ["a"]


def test_gap_takes_nearest_turn_within_one_second() -> None:
    timeline = [turn("ada", 0, 2), turn("bob", 5, 8)]

    assert speakers_of(
        [
            seg(2.5, 3.0),  # 0.5 s after Ada, 2 s before Bob
            seg(4.2, 4.8),  # 2.2 s after Ada, 0.2 s before Bob
            seg(3.0, 4.0),  # exactly 1.0 s from both: tie, earliest start
            seg(9.5, 10.0),  # 1.5 s after Bob: too far
            seg(-3.0, -1.5),  # 1.5 s before Ada: too far
            seg(8.0, 8.5),  # touches Bob's end
        ],
        timeline,
    ) == ["ada", "bob", "ada", "", "", "bob"]


def test_zero_length_segment_inside_a_turn() -> None:
    timeline = [turn("ada", 0, 10), turn("bob", 10, 20)]

    assert speakers_of([seg(5, 5), seg(10, 10), seg(25, 25)], timeline) == ["ada", "ada", ""]


def test_order_fields_and_existing_speakers() -> None:
    segments = [
        Segment(start=10, end=12, text="later", speaker="stale", language="de"),
        Segment(start=0, end=1, text="first", speaker="stale"),
    ]

    result = attribute_speakers(segments, [turn("ada", 0, 1), turn("bob", 10, 12)])

    assert result == [
        Segment(start=10, end=12, text="later", speaker="bob", language="de"),
        Segment(start=0, end=1, text="first", speaker="ada"),
    ]
    assert attribute_speakers(segments, []) == [
        Segment(start=10, end=12, text="later", language="de"),
        Segment(start=0, end=1, text="first"),
    ]
    assert attribute_speakers([], [turn("ada", 0, 1)]) == []


def test_unsorted_overlapping_segments_and_a_long_turn() -> None:
    # A participant sharing screen audio "talks" for the whole hour; real talkers come and go.
    timeline = [turn("screen", 0, 3550), *(turn(f"p{i % 3}", i * 100.0, i * 100.0 + 80) for i in range(36))]
    segments = [seg(3540, 3570), seg(0, 2000), seg(150, 170), seg(3580.5, 3581), seg(3681, 3682)]

    # Equal shares go to the screen (its turn started first); longer ones to the talker.
    assert speakers_of(segments, timeline) == ["p2", "screen", "screen", "p2", ""]
    assert speakers_of(segments, timeline) == reference(segments, timeline)


def reference(segments: list[Segment], timeline: list[SpeakerTurn]) -> list[str]:
    """The rules spelled out directly, O(n·m), on inputs with one turn per speaker at a time."""
    result = []
    for segment in segments:
        shares: dict[str, float] = {}
        first: dict[str, float] = {}
        for t in timeline:
            length = min(t.end, segment.end) - max(t.start, segment.start)
            if length > 0:
                shares[t.speaker] = shares.get(t.speaker, 0.0) + length
                first[t.speaker] = min(first.get(t.speaker, t.start), t.start)
        if shares:
            top = max(shares.values())
            result.append(min((s for s in shares if shares[s] >= top - 1e-6), key=lambda s: (first[s], s)))
            continue
        gaps = [(max(t.start - segment.end, segment.start - t.end, 0.0), t.start, t.speaker) for t in timeline]
        gap, _, speaker = min(gaps)
        result.append(speaker if gap <= 1.0 else "")
    return result


def test_matches_reference_on_random_timelines() -> None:
    rng = random.Random(42)
    for _ in range(20):
        timeline = []
        for speaker in ("ada", "bob", "cy", "dee"):
            clock = rng.uniform(0, 5)
            for _ in range(15):  # each speaker's own turns never overlap; speakers do
                start = clock + rng.uniform(0, 6)
                clock = start + rng.uniform(0.2, 8)
                timeline.append(turn(speaker, round(start, 2), round(clock, 2)))
        segments = []
        for _ in range(60):
            start = round(rng.uniform(-2, 120), 2)
            segments.append(seg(start, round(start + rng.choice([0, rng.uniform(0.1, 12)]), 2)))
        rng.shuffle(timeline)

        assert speakers_of(segments, timeline) == reference(segments, timeline)


def test_thousands_of_segments_and_turns() -> None:
    # 2000 turns of 5 s, speakers rotating through 7 names, with 0.4 s of silence between turns
    # after every 4th; 5000 segments of 2 s every 2 s cover 10 000 s.
    timeline = []
    for index in range(2000):
        start = index * 5.0
        end = start + (4.6 if index % 4 == 3 else 5.0)
        timeline.append(turn(f"speaker-{index % 7}", start, end))
    segments = [seg(index * 2.0, index * 2.0 + 2.0) for index in range(5000)]

    result = speakers_of(segments, list(reversed(timeline)))

    expected = []
    for index in range(5000):
        start, end = index * 2.0, index * 2.0 + 2.0
        first_turn = int(start // 5)
        inside = min(end, first_turn * 5.0 + (4.6 if first_turn % 4 == 3 else 5.0)) - start
        # A segment straddling two turns goes to whichever holds more of it (ties: the first).
        second_share = max(0.0, end - (first_turn + 1) * 5.0)
        winner = first_turn if inside >= second_share else first_turn + 1
        expected.append(f"speaker-{winner % 7}" if winner < 2000 else "")
    assert result == expected


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (turn("ada", 2, 1), r"speaker turn 1: ends \(1\) before it starts \(2\)"),
        (turn("ada", -1, 1), "speaker turn 1: times must not be negative"),
        (turn("ada", 1, float("inf")), "speaker turn 1: times must be finite"),
        (turn("ada", float("nan"), 1), "speaker turn 1: times must be finite"),
        (turn("", 0, 1), "speaker turn 1: the speaker is empty"),
        (turn("  ", 0, 1), "speaker turn 1: the speaker is empty"),
    ],
)
def test_invalid_timeline(bad: SpeakerTurn, message: str) -> None:
    timeline = [turn("bob", 0, 1), bad]

    with pytest.raises(ValueError, match=message):
        validate_timeline(timeline)
    with pytest.raises(ValueError, match=message):
        attribute_speakers([seg(0, 1)], timeline)


def test_valid_timeline() -> None:
    validate_timeline([])
    validate_timeline([turn("ada", 0, 0), turn("bob", 0, 5), turn("ada", 3, 4)])


def test_one_file_per_speaker_interleaves_by_start_and_keeps_overlaps() -> None:
    ann = [Segment(start=0.0, end=4.0, text="first"), Segment(start=6.0, end=7.0, text="third")]
    bob = [Segment(start=0.5, end=2.0, text="second", speaker="someone else")]
    merged = interleave_speakers([("Ann", 10.0, ann), ("Bob", 12.0, bob)])
    assert [(s.speaker, s.start, s.end, s.text) for s in merged] == [
        ("Ann", 10.0, 14.0, "first"),
        ("Bob", 12.5, 14.0, "second"),  # said while Ann still talked: kept, not clipped
        ("Ann", 16.0, 17.0, "third"),
    ]
