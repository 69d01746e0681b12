"""Transcript exports: JSON, plain text, SubRip (SRT) and WebVTT.

The JSON shape (stable; clients parse it)::

    {
      "language": "en",          # detected or requested language, "" when unknown
      "duration": 93.5,          # media duration in seconds
      "segments": [
        {"start": 0.0, "end": 4.2, "speaker": "Ada", "text": "Good morning."},
        ...
      ]
    }

Times are seconds as floats rounded to milliseconds; ``speaker`` is ``""`` when unknown.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence

from ai._types import Segment

logger = logging.getLogger(__name__)


def format_timestamp(seconds: float, *, sep: str) -> str:
    """Format a time as ``HH:MM:SS<sep>mmm`` (SRT uses ``,``, WebVTT ``.``).

    Hours are not wrapped at 24 (a cue at 25 h is ``25:00:00,000``); negative times clamp to
    zero. Rounding is to the nearest millisecond.

    Args:
        seconds: The time in seconds.
        sep: The separator between seconds and milliseconds.

    Returns:
        The formatted time, e.g. ``01:02:03,004``.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite time: {seconds!r}")
    # Integer milliseconds first: formatting the float parts separately can yield "…:60,000".
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def to_json(segments: Sequence[Segment], *, language: str, duration: float) -> str:
    """The transcript as JSON in the shape documented in this module's docstring.

    Args:
        segments: The transcript, in time order.
        language: The transcript's language code, ``""`` when unknown.
        duration: The media's duration in seconds.

    Returns:
        A JSON document (UTF-8 text, non-ASCII characters kept as they are).

    Raises:
        ValueError: A time is NaN or infinite (JSON has no such numbers).
    """
    document = {
        "language": language,
        "duration": _seconds(duration),
        "segments": [
            {
                "start": _seconds(segment.start),
                "end": _seconds(segment.end),
                "speaker": segment.speaker,
                "text": segment.text.strip(),
            }
            for segment in segments
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def to_text(segments: Sequence[Segment]) -> str:
    """The transcript as readable plain text.

    Consecutive segments of the same speaker form one paragraph (``Speaker: text text…``); a
    change of speaker starts a new paragraph, separated by a blank line. Segments without a
    known speaker are joined the same way, without a prefix. Empty segments are left out.

    Args:
        segments: The transcript, in time order.

    Returns:
        The text, ending in a newline (empty when there is no speech).
    """
    paragraphs: list[str] = []
    for speaker, texts in _paragraphs(segments):
        body = " ".join(texts)
        paragraphs.append(f"{speaker}: {body}" if speaker else body)
    return "\n\n".join(paragraphs) + "\n" if paragraphs else ""


def to_srt(segments: Sequence[Segment]) -> str:
    """The transcript as SubRip subtitles.

    Cues are numbered from 1; a known speaker prefixes the text as ``Speaker: ``. Segments
    without text are left out (numbering stays consecutive).

    Args:
        segments: The transcript, in time order.

    Returns:
        The SRT document (cues separated by blank lines).
    """
    cues: list[str] = []
    for segment in segments:
        text = _cue_text(segment.text)
        if not text:
            continue
        if segment.speaker:
            text = f"{segment.speaker}: {text}"
        start, end = _cue_times(segment)
        cues.append(
            f"{len(cues) + 1}\n{format_timestamp(start, sep=',')} --> {format_timestamp(end, sep=',')}\n{text}\n"
        )
    return "\n".join(cues)


def to_webvtt(segments: Sequence[Segment]) -> str:
    """The transcript as WebVTT subtitles.

    A known speaker becomes a voice tag (``<v Ada>text``); ``&``, ``<`` and ``>`` in texts and
    speaker names are escaped so a transcript cannot inject markup into a player.

    Args:
        segments: The transcript, in time order.

    Returns:
        The WebVTT document, starting with the ``WEBVTT`` header.
    """
    cues = ["WEBVTT\n"]
    for segment in segments:
        text = _cue_text(segment.text)
        if not text:
            continue
        text = _escape_vtt(text)
        if segment.speaker:
            text = f"<v {_escape_vtt(segment.speaker)}>{text}"
        start, end = _cue_times(segment)
        cues.append(f"{format_timestamp(start, sep='.')} --> {format_timestamp(end, sep='.')}\n{text}\n")
    return "\n".join(cues)


def _paragraphs(segments: Iterable[Segment]) -> list[tuple[str, list[str]]]:
    paragraphs: list[tuple[str, list[str]]] = []
    for segment in segments:
        text = " ".join(segment.text.split())
        if not text:
            continue
        if paragraphs and paragraphs[-1][0] == segment.speaker:
            paragraphs[-1][1].append(text)
        else:
            paragraphs.append((segment.speaker, [text]))
    return paragraphs


def _cue_text(text: str) -> str:
    # A blank line ends a cue in both formats, so a text's own line breaks (rare in Whisper
    # output, possible in edited transcripts) must not leave an empty line inside a cue.
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _cue_times(segment: Segment) -> tuple[float, float]:
    # Players drop cues that end before they start; such a segment (a model's timestamp
    # glitch) still shows, for an instant, at its start.
    start = max(0.0, segment.start)
    return start, max(start, segment.end)


def _escape_vtt(text: str) -> str:
    # Order matters: "&" first, or the entities of "<" and ">" would be escaped again. The
    # "-->" arrow cannot survive escaping ">" so it needs no rule of its own.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _seconds(value: float) -> float:
    return round(value, 3)
