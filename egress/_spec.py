"""What the egress service hands a recorder process, and what the recorder says back: plain
dataclasses, so that they cross into Ray actors (pickled) unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class Storage:
    """Where the file goes: a folder (``bucket`` empty) or an S3 bucket."""

    folder: Path | None = None
    bucket: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"


@dataclass(frozen=True, kw_only=True)
class RecordingSpec:
    egress_id: str
    room: str
    sfu_url: str
    token: str
    audio_only: bool
    layout: str  # "GRID", "SPEAKER", "SINGLE_SPEAKER"
    width: int
    height: int
    fps: int
    bitrate: int
    storage: Storage
    key: str
    content_type: str
    spool_dir: Path
    max_duration: float
    empty_room_timeout: float
    #: libx264's speed preset for a composite.
    x264_preset: str = "superfast"
    #: A track egress: the track to write as it was sent (``key`` then lacks its extension,
    #: which the track's kind decides). Empty for a room composite.
    track_sid: str = ""
    #: A composite also writes each participant's audio track as it was sent.
    participant_audio: bool = False


Phase = Literal["joining", "recording", "ending", "done"]
Outcome = Literal["complete", "limit_reached", "aborted", "failed"]


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    location: str
    key: str
    size_bytes: int
    content_type: str
    duration: float
    #: Wall-clock (epoch seconds) of the first and last media written; 0 when none.
    media_start: float
    media_end: float


@dataclass(frozen=True, kw_only=True)
class ParticipantAudioInfo:
    """One participant's audio file beside a composite."""

    identity: str
    name: str
    track_sid: str
    file: FileInfo
    #: Seconds on the composite's timeline where the file's first sample lies.
    offset: float


@dataclass(frozen=True, kw_only=True)
class Progress:
    phase: Phase
    file: FileInfo | None = None
    #: Composite frames skipped so far to keep up with real time.
    dropped_frames: int = 0
    participant_audio: tuple[ParticipantAudioInfo, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Result:
    outcome: Outcome
    error: str = ""
    file: FileInfo | None = None
    participant_audio: tuple[ParticipantAudioInfo, ...] = ()
