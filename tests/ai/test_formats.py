"""ai._formats: exact SRT, WebVTT, text and JSON exports of a small hand-written transcript."""

from __future__ import annotations

import json

import pytest

from ai._formats import format_timestamp, to_json, to_srt, to_text, to_webvtt
from ai._types import Segment

SEGMENTS = [
    Segment(start=0.0, end=2.5, text=" Good morning, everyone.", speaker="Ada Lovelace"),
    Segment(start=2.5, end=4.0, text="Let's start with Q3 & Q4.", speaker="Ada Lovelace"),
    Segment(start=4.2, end=6.0, text="Is <b>revenue</b> > costs?", speaker="Grace <Admiral>"),
    Segment(start=6.0, end=7.25, text="   "),  # silence Whisper transcribed as blanks
    Segment(start=3725.004, end=3727.5, text="Sorry, I was\nmuted.", language="en"),
    Segment(start=3727.5, end=3729.9996, text="Bye!", speaker="Ada Lovelace"),
]


@pytest.mark.parametrize(
    ("seconds", "sep", "expected"),
    [
        (0.0, ",", "00:00:00,000"),
        (1.5, ".", "00:00:01.500"),
        (59.9996, ",", "00:01:00,000"),  # rounds up across the minute, not "00:00:59,1000"
        (3723.004, ",", "01:02:03,004"),
        (90000.0, ".", "25:00:00.000"),  # no wrap at 24 h
        (-0.2, ",", "00:00:00,000"),
    ],
)
def test_format_timestamp(seconds: float, sep: str, expected: str) -> None:
    assert format_timestamp(seconds, sep=sep) == expected


def test_format_timestamp_rejects_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        format_timestamp(float("nan"), sep=",")


def test_srt() -> None:
    assert to_srt(SEGMENTS) == (
        "1\n"
        "00:00:00,000 --> 00:00:02,500\n"
        "Ada Lovelace: Good morning, everyone.\n"
        "\n"
        "2\n"
        "00:00:02,500 --> 00:00:04,000\n"
        "Ada Lovelace: Let's start with Q3 & Q4.\n"
        "\n"
        "3\n"
        "00:00:04,200 --> 00:00:06,000\n"
        "Grace <Admiral>: Is <b>revenue</b> > costs?\n"
        "\n"
        "4\n"
        "01:02:05,004 --> 01:02:07,500\n"
        "Sorry, I was\n"
        "muted.\n"
        "\n"
        "5\n"
        "01:02:07,500 --> 01:02:10,000\n"
        "Ada Lovelace: Bye!\n"
    )


def test_webvtt() -> None:
    assert to_webvtt(SEGMENTS) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:02.500\n"
        "<v Ada Lovelace>Good morning, everyone.\n"
        "\n"
        "00:00:02.500 --> 00:00:04.000\n"
        "<v Ada Lovelace>Let's start with Q3 &amp; Q4.\n"
        "\n"
        "00:00:04.200 --> 00:00:06.000\n"
        "<v Grace &lt;Admiral&gt;>Is &lt;b&gt;revenue&lt;/b&gt; &gt; costs?\n"
        "\n"
        "01:02:05.004 --> 01:02:07.500\n"
        "Sorry, I was\n"
        "muted.\n"
        "\n"
        "01:02:07.500 --> 01:02:10.000\n"
        "<v Ada Lovelace>Bye!\n"
    )


def test_text() -> None:
    assert to_text(SEGMENTS) == (
        "Ada Lovelace: Good morning, everyone. Let's start with Q3 & Q4.\n"
        "\n"
        "Grace <Admiral>: Is <b>revenue</b> > costs?\n"
        "\n"
        "Sorry, I was muted.\n"
        "\n"
        "Ada Lovelace: Bye!\n"
    )


def test_json() -> None:
    document = to_json(SEGMENTS[:3] + SEGMENTS[4:5], language="en", duration=3730.12345)

    assert json.loads(document) == {
        "language": "en",
        "duration": 3730.123,
        "segments": [
            {"start": 0.0, "end": 2.5, "speaker": "Ada Lovelace", "text": "Good morning, everyone."},
            {"start": 2.5, "end": 4.0, "speaker": "Ada Lovelace", "text": "Let's start with Q3 & Q4."},
            {"start": 4.2, "end": 6.0, "speaker": "Grace <Admiral>", "text": "Is <b>revenue</b> > costs?"},
            {"start": 3725.004, "end": 3727.5, "speaker": "", "text": "Sorry, I was\nmuted."},
        ],
    }
    assert document.endswith("}\n")


def test_json_keeps_non_ascii_and_rejects_nan() -> None:
    segment = Segment(start=0.0, end=1.0, text="Grüße, 你好", speaker="Zoë")

    assert '"Grüße, 你好"' in to_json([segment], language="de", duration=1.0)
    with pytest.raises(ValueError, match="JSON"):
        to_json([segment], language="de", duration=float("nan"))


def test_empty_transcript() -> None:
    assert to_srt([]) == ""
    assert to_webvtt([]) == "WEBVTT\n"
    assert to_text([]) == ""
    assert json.loads(to_json([], language="", duration=0.0)) == {"language": "", "duration": 0.0, "segments": []}


def test_cue_with_end_before_start_is_clamped() -> None:
    glitch = [Segment(start=5.0, end=4.0, text="hm")]

    assert to_srt(glitch) == "1\n00:00:05,000 --> 00:00:05,000\nhm\n"
