"""Meeting minutes: the structure a summary is written in, the JSON schema that holds an engine
to it, the checks on what came back, and its Markdown.

The schema is built per transcript: a next step's owner is one of the participants' names
found in the transcript (``Name: text`` lines, see ``_formats.to_text``) or empty, so engines
that decode under the schema cannot invent one. What comes back is still checked
(:func:`validate`): an engine may follow the schema loosely (an OpenAI-compatible server that
ignores it) or be cut short by its token budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Minutes", "NextStep", "minutes_schema", "participants", "to_markdown", "to_notes", "validate"]

#: A speaker's prefix in transcript text: a short name before a colon at a line's start.
_SPEAKER = re.compile(r"^(\S[^:\n]{0,59}?):[ \t]", re.MULTILINE)
#: Longer "names" are sentences with a colon in them, not speakers.
_MAX_NAME_WORDS = 4
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class NextStep:
    """A task agreed in the meeting, and who took it on (a participant's name, or empty)."""

    description: str
    owner: str = ""


@dataclass(frozen=True)
class Minutes:
    """The minutes of a meeting: a short summary, the topics discussed, the next steps."""

    summary: str
    topics: tuple[str, ...] = ()
    next_steps: tuple[NextStep, ...] = field(default=())

    def is_empty(self) -> bool:
        return not (self.summary or self.topics or self.next_steps)

    def to_dict(self) -> dict[str, Any]:
        """The minutes as JSON data (``summary``, ``topics``, ``next_steps``), as stored."""
        return {
            "summary": self.summary,
            "topics": list(self.topics),
            "next_steps": [{"description": s.description, "owner": s.owner} for s in self.next_steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Minutes:
        """Minutes from :meth:`to_dict`'s data (already validated: nothing is checked)."""
        return cls(
            summary=data.get("summary", ""),
            topics=tuple(data.get("topics", ())),
            next_steps=tuple(NextStep(s["description"], s.get("owner", "")) for s in data.get("next_steps", ())),
        )


def participants(transcript: str) -> list[str]:
    """The speakers' names of a transcript, in the order they first speak.

    Args:
        transcript: Text with one ``Name: what they said`` paragraph per turn.

    Returns:
        The distinct names; empty when the transcript names no speakers.
    """
    names: dict[str, None] = {}
    for match in _SPEAKER.finditer(transcript):
        name = _SPACES.sub(" ", match.group(1)).strip()
        if len(name.split(" ")) <= _MAX_NAME_WORDS:
            names.setdefault(name, None)
    return list(names)


def minutes_schema(
    names: Sequence[str], *, summary_chars: int = 600, topics: int = 6, next_steps: int = 8, item_chars: int = 160
) -> dict[str, Any]:
    """The JSON schema of minutes whose owners are ``names`` (or empty).

    Lengths and counts are bounded so that a constrained engine ends its answer within a token
    budget instead of being cut off; the engines turn the schema into a grammar (llama.cpp) or
    guided decoding (vLLM, OpenAI-compatible ``json_schema`` response format).

    Args:
        names: The participants who may own a next step.
        summary_chars: Longest summary, in characters.
        topics: Most topics.
        next_steps: Most next steps.
        item_chars: Longest topic or next step, in characters.

    Returns:
        A JSON schema (draft 2020-12 subset that llama.cpp, xgrammar and OpenAI accept).
    """

    def text(limit: int) -> dict[str, Any]:
        return {"type": "string", "maxLength": limit}

    step = {
        "type": "object",
        "properties": {"description": text(item_chars), "owner": {"type": "string", "enum": [*names, ""]}},
        "required": ["description", "owner"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            # Never empty: the one part every meeting has (items may be, and are dropped then).
            "summary": {**text(summary_chars), "minLength": 1},
            "topics": {"type": "array", "items": text(item_chars), "maxItems": topics},
            "next_steps": {"type": "array", "items": step, "maxItems": next_steps},
        },
        "required": ["summary", "topics", "next_steps"],
        "additionalProperties": False,
    }


def _text(value: Any) -> str:
    return _SPACES.sub(" ", value).strip() if isinstance(value, str) else ""


def validate(data: Any, names: Sequence[str]) -> Minutes:
    """Minutes from an engine's JSON answer, repaired where a small model got it wrong.

    Whitespace is collapsed; empty and repeated topics and next steps are dropped; an owner
    that is not one of ``names`` (compared without case) becomes empty, and one that is takes
    the name's spelling. Missing or mistyped fields count as empty.

    Args:
        data: The parsed answer (anything: only a JSON object yields content).
        names: The participants who may own a next step.

    Returns:
        The minutes; possibly empty (:meth:`Minutes.is_empty`).
    """
    if not isinstance(data, Mapping):
        return Minutes(summary="")
    known = {name.casefold(): name for name in names}
    topics: dict[str, str] = {}
    raw_topics, raw_steps = data.get("topics"), data.get("next_steps")
    for item in raw_topics if isinstance(raw_topics, list) else ():
        if topic := _text(item):
            topics.setdefault(topic.casefold(), topic)
    steps: dict[str, NextStep] = {}
    for item in raw_steps if isinstance(raw_steps, list) else ():
        if not isinstance(item, Mapping) or not (description := _text(item.get("description"))):
            continue
        owner = known.get(_text(item.get("owner")).casefold(), "")
        steps.setdefault(description.casefold(), NextStep(description, owner))
    return Minutes(summary=_text(data.get("summary")), topics=tuple(topics.values()), next_steps=tuple(steps.values()))


def to_markdown(minutes: Minutes) -> str:
    """The minutes as Markdown, under the headings Summary, Topics and Next steps."""
    none = "_None._"
    topics = "\n".join(f"- {topic}" for topic in minutes.topics) or none
    steps = (
        "\n".join(f"- {s.description}" + (f" — **{s.owner}**" if s.owner else "") for s in minutes.next_steps) or none
    )
    return f"## Summary\n\n{minutes.summary or none}\n\n## Topics\n\n{topics}\n\n## Next steps\n\n{steps}\n"


def to_notes(minutes: Minutes) -> str:
    """The minutes of a part of a meeting as compact text, the input of the reduce calls."""
    lines = [f"Summary: {minutes.summary}"] if minutes.summary else []
    if minutes.topics:
        lines.append("Topics: " + "; ".join(minutes.topics))
    lines += [f"Next step: {s.description}" + (f" (owner: {s.owner})" if s.owner else "") for s in minutes.next_steps]
    return "\n".join(lines)
