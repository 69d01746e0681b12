"""What the metadata agent saw in a meeting: who joined, left, renamed themselves, spoke (from
when to when) and wrote what in the chat, stored beside the recording as
``{recording}-metadata.json``.

Times are seconds from ``started_at`` (when the agent joined, ISO 8601 UTC). A participant's
speech events alternate, start then end, and every start has its end (the agent closes open
speech when it leaves). ``speaker_turns`` turns them into the speaker timeline that
``ai._speakers.attribute_speakers`` names a mixed recording's transcript from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ._types import SpeakerTurn

VERSION = 1

EventType = Literal["joined", "left", "renamed", "speech_start", "speech_end", "chat"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True, kw_only=True)
class TimelineEvent:
    type: EventType
    #: Seconds from the timeline's ``started_at``.
    time: float
    identity: str
    #: The participant's display name then (the new one for ``renamed``).
    name: str = ""
    #: A chat message's text.
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class Timeline:
    #: When time 0 was, ISO 8601 UTC.
    started_at: str
    #: Every participant seen, identity → latest display name.
    participants: Mapping[str, str] = field(default_factory=dict)
    #: In time order.
    events: tuple[TimelineEvent, ...] = ()
    version: int = VERSION

    def to_json(self) -> bytes:
        events: list[dict[str, Any]] = []
        for event in self.events:
            item: dict[str, Any] = {
                "type": event.type,
                "time": round(event.time, 3),
                "identity": event.identity,
                "name": event.name,
            }
            if event.text:
                item["text"] = event.text
            events.append(item)
        document = {
            "version": self.version,
            "started_at": self.started_at,
            "participants": dict(self.participants),
            "events": events,
        }
        return json.dumps(document, ensure_ascii=False, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Timeline:
        """Reads ``to_json``'s output; ValueError for anything else (another version included)."""
        try:
            document = json.loads(data)
            if document["version"] != VERSION:
                raise ValueError(f"timeline version {document['version']}: only {VERSION} is known")
            events = []
            for item in document["events"]:
                if item["type"] not in EVENT_TYPES:
                    raise ValueError(f"unknown timeline event {item['type']!r}")
                events.append(
                    TimelineEvent(
                        type=item["type"],
                        time=float(item["time"]),
                        identity=str(item["identity"]),
                        name=str(item.get("name", "")),
                        text=str(item.get("text", "")),
                    )
                )
            return cls(
                started_at=str(document["started_at"]),
                participants={str(k): str(v) for k, v in document["participants"].items()},
                events=tuple(events),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a metadata timeline: {error!r}") from error

    def speaker_turns(self) -> list[SpeakerTurn]:
        """Each speech start / end pair as a turn, named with the participant's latest display
        name (their identity when they have none), so that one person keeps one name in a
        transcript even after renaming. A start without its end is left out."""
        started: dict[str, float] = {}
        turns: list[SpeakerTurn] = []
        for event in self.events:
            if event.type == "speech_start":
                started.setdefault(event.identity, event.time)
            elif event.type == "speech_end" and event.identity in started:
                start = started.pop(event.identity)
                speaker = self.participants.get(event.identity) or event.identity
                turns.append(SpeakerTurn(speaker=speaker, start=start, end=max(start, event.time)))
        return turns
