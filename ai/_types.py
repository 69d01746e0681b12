"""Value objects shared by the AI pipeline's stages (decoding, transcription, attribution,
export, summaries). Plain frozen dataclasses: they cross Ray process boundaries by pickling."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Segment:
    """One stretch of transcribed speech; times in seconds from the start of the media."""

    start: float
    end: float
    text: str
    #: Who spoke (a participant identity or display name), empty when unknown.
    speaker: str = ""
    #: BCP-47-ish language code Whisper detected or was told, e.g. ``en``.
    language: str = ""


@dataclass(frozen=True, kw_only=True)
class SpeakerTurn:
    """One participant speaking from ``start`` to ``end`` seconds (a speaker timeline entry)."""

    speaker: str
    start: float
    end: float
