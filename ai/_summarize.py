"""Summarizing a meeting transcript into minutes with a summary engine (``_summary_engines``).

:func:`summarize` fits a transcript of any length into an engine's context: in one call when it
fits, otherwise map-reduce (notes on pieces, then minutes of the joined notes, condensed again as
often as needed). Every call asks for JSON under the minutes schema (``_minutes``), which the
engine enforces while decoding; partial minutes go into the reduce calls as compact text notes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ._minutes import Minutes, minutes_schema, participants, to_notes, validate
from ._summary_engines import SummaryEngine, SummaryError

__all__ = ["summarize"]


_LANGUAGES = {
    "ar": "Arabic",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "hi": "Hindi",
    "hu": "Hungarian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}

_SYSTEM = (
    "You are a meeting assistant. You write accurate, concise minutes of meeting transcripts, "
    "using only facts stated in the transcript. Write in {language}."
)
# The text comes first and the instruction after it: small models (SmolLM2-135M) follow an
# instruction they read last, and echo the transcript when it comes after the instruction.
# {owners} names who may own a next step (see _owners). One call over the whole transcript:
_WHOLE = (
    "Here is a meeting transcript:\n\n{text}\n\n"
    "Write the minutes of this meeting: a short summary, the topics discussed, and the next steps{owners}."
)
# Map: one piece of a transcript too long for one call.
_PIECE = (
    "Here is a part of a meeting transcript:\n\n{text}\n\n"
    "Write notes on this part: a short summary, the topics discussed, and the next steps{owners}."
)
# Reduce, intermediate level: notes still too long for the final call are condensed in groups.
_CONDENSE = (
    "Here are notes on consecutive parts of one meeting:\n\n{text}\n\n"
    "Combine these notes: a short summary, the topics discussed, and the next steps{owners}."
)
# Reduce, final level.
_COMBINE = (
    "Here are notes on consecutive parts of one meeting:\n\n{text}\n\n"
    "Write the minutes of the whole meeting: a short summary, the topics discussed, and the next steps{owners}."
)
#: Tokens reserved per call for what count_tokens does not see: chat-template role markers and
#: BOS, and tokenizer merges across the seams of system prompt, instruction and text.
_FRAMING_TOKENS = 48
#: Fewer tokens of room for transcript text than this makes summaries pointless.
_MIN_TEXT_TOKENS = 64
_PARTS_SEPARATOR = "\n\n"


def _owners(names: Sequence[str]) -> str:
    if not names:
        return ""
    return f", each with its owner: one of {', '.join(names)}, or empty when nobody took it on"


def _fill(template: str, owners: str, text: str) -> str:
    # replace(), not format(): names and transcript text may hold braces.
    return template.replace("{owners}", owners).replace("{text}", text)


def _schema(names: Sequence[str], max_tokens: int, *, final: bool) -> dict[str, object]:
    # Strings bounded so that a grammar-held answer ends within its budget (about 4 characters
    # a token, and a summary taking at most half of it); notes on parts are shorter than minutes.
    summary_chars = max(60, min(600 if final else 300, max_tokens * 2))
    counts = {"topics": 6, "next_steps": 8} if final else {"topics": 3, "next_steps": 4}
    return minutes_schema(names, summary_chars=summary_chars, **counts)


def _language_name(code: str) -> str:
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return _LANGUAGES.get(base, f"the language with code '{code}'")


class _Budget:
    """Token budgets of one summarize run, derived from the engine's context length.

    ``*_room`` is how many tokens of text fit into the instruction of that kind of call, after
    the system prompt, the instruction, framing and the tokens reserved for the answer.
    """

    def __init__(self, engine: SummaryEngine, system: str, owners: str, max_summary_tokens: int) -> None:
        context = engine.context_tokens
        fixed = engine.count_tokens(system) + _FRAMING_TOKENS

        def overhead(template: str) -> int:
            return fixed + engine.count_tokens(_fill(template, owners, ""))

        free = context - max(overhead(t) for t in (_WHOLE, _PIECE, _CONDENSE, _COMBINE))
        if free < 2 * _MIN_TEXT_TOKENS:
            raise ValueError(f"the {engine.name} engine's context of {context} tokens is too small for summaries")
        # The final summary may take at most half of what is left, so that the text it is made
        # from still gets the other half.
        self.final_tokens = max(1, min(max_summary_tokens, free // 2))
        # Partial summaries are kept to a fifth of the room, so that a reduce call can take at
        # least four of them: each reduce level shrinks the number of partials.
        self.part_tokens = max(1, min(self.final_tokens, free // 5))
        self.whole_room = context - overhead(_WHOLE) - self.final_tokens
        self.combine_room = context - overhead(_COMBINE) - self.final_tokens
        self.piece_room = context - overhead(_PIECE) - self.part_tokens
        self.condense_room = context - overhead(_CONDENSE) - self.part_tokens


class _Progress:
    """Reports calls done / calls planned, never going backwards, and 1.0 only at the end.

    The number of reduce calls depends on how long the partial summaries turn out, so the plan
    is re-estimated along the way; reporting the maximum so far keeps the value monotonic.
    """

    def __init__(self, callback: Callable[[float], None] | None) -> None:
        self._callback = callback
        self.done = 0
        self._planned = 1
        self._last = 0.0

    def expect(self, remaining: int) -> None:
        self._planned = self.done + max(1, remaining)

    def step(self, *, last: bool = False) -> None:
        self.done += 1
        # Below 1.0 until the final call: an estimate that turns out short must not claim "done".
        value = 1.0 if last else min(self.done / self._planned, 0.99)
        self._last = max(self._last, value)
        if self._callback is not None:
            self._callback(self._last)


def _estimate_reduce_calls(parts: int, part_tokens: int, combine_room: int, condense_room: int) -> int:
    # Simulate the reduce levels assuming every partial is part_tokens long.
    calls = 0
    item = part_tokens + 2  # + separator
    while parts > 1 and parts * item > combine_room:
        per_call = max(2, condense_room // item)
        parts = math.ceil(parts / per_call)
        calls += parts
    return calls + 1


def _split_hard(text: str, room: int, count: Callable[[str], int]) -> list[str]:
    """Split one line longer than ``room`` tokens: on spaces, or inside a word if need be."""
    pieces: list[str] = []
    words = text.split(" ")
    current: list[str] = []
    for word in words:
        if count(word) > room:
            if current:
                pieces.append(" ".join(current))
                current = []
            pieces.extend(_split_chars(word, room, count))
            continue
        if current and count(" ".join([*current, word])) > room:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _fitting_prefix(text: str, room: int, count: Callable[[str], int]) -> int:
    """Length in characters of the longest prefix of ``text`` within ``room`` tokens (at least 1)."""
    low, high = 1, len(text)
    while low < high:  # binary search: token counts grow with prefix length
        middle = (low + high + 1) // 2
        if count(text[:middle]) <= room:
            low = middle
        else:
            high = middle - 1
    return low


def _split_chars(word: str, room: int, count: Callable[[str], int]) -> list[str]:
    pieces: list[str] = []
    rest = word
    while rest:
        size = _fitting_prefix(rest, room, count)
        pieces.append(rest[:size])
        rest = rest[size:]
    return pieces


def _pack(units: Sequence[str], separator: str, room: int, count: Callable[[str], int]) -> list[str]:
    """Join consecutive units into as few texts as possible, each at most ``room`` tokens.

    Every unit must itself fit. Sizes are summed per unit (cheap) and the joined text is then
    counted once; where tokenization across the seams makes it longer than the sum, the group
    is split again.
    """
    sep_tokens = count(separator)
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for unit in units:
        tokens = count(unit)
        if current and size + sep_tokens + tokens > room:
            groups.append(current)
            current, size = [], 0
        size += (sep_tokens if current else 0) + tokens
        current.append(unit)
    if current:
        groups.append(current)

    texts: list[str] = []
    pending = groups[::-1]
    while pending:
        group = pending.pop()
        joined = separator.join(group)
        if len(group) == 1 or count(joined) <= room:
            texts.append(joined)
        else:
            half = len(group) // 2
            pending.extend([group[half:], group[:half]])
    return texts


def _split_transcript(text: str, room: int, count: Callable[[str], int]) -> list[str]:
    units: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if count(line) > room:
            units.extend(_split_hard(line, room, count))
        else:
            units.append(line)
    return _pack(units, "\n", room, count)


def _clip(text: str, room: int, count: Callable[[str], int]) -> str:
    """The beginning of ``text`` that fits ``room`` tokens (only for runaway partial summaries)."""
    if count(text) <= room:
        return text
    prefix = text[: _fitting_prefix(text, room, count)]
    # Cut at the last line or word boundary rather than inside a word, where there is one.
    boundary = max(prefix.rfind("\n"), prefix.rfind(" "))
    return prefix[:boundary].rstrip() if boundary > 0 else prefix


def summarize(
    transcript: str,
    engine: SummaryEngine,
    *,
    language: str = "en",
    max_summary_tokens: int = 512,
    on_progress: Callable[[float], None] | None = None,
) -> Minutes:
    """Write the minutes of a meeting transcript, within the engine's context length.

    A transcript that fits the context (minus the prompt and the tokens reserved for the answer)
    takes one call. A longer one is split on line boundaries into pieces that fit, and notes are
    taken on each piece (map); the notes are joined and turned into the minutes (reduce), in
    groups and over several levels while the joined notes still do not fit. Next steps are
    owned by the transcript's speakers (``Name: ...`` lines) or by nobody.

    Args:
        transcript: Transcript text, one utterance per line (e.g. ``Alice: ...``).
        engine: The engine to run the calls on.
        language: Language code of the minutes (``en``, ``de``, ...).
        max_summary_tokens: Upper bound on the final answer's length; at most half of the
            context left after the prompt is used.
        on_progress: Called after every engine call with calls done / calls planned, a
            non-decreasing value that ends at exactly 1.0.

    Returns:
        The validated minutes (see ``_minutes.validate``); render them with ``to_markdown``.

    Raises:
        ValueError: The transcript is empty, or the context is too small to summarize anything.
        SummaryError: The engine returned nothing usable.
    """
    text = transcript.strip()
    if not text:
        raise ValueError("nothing to summarize: the transcript is empty")
    names = participants(text)
    owners = _owners(names)
    system = _SYSTEM.format(language=_language_name(language))
    budget = _Budget(engine, system, owners, max_summary_tokens)
    progress = _Progress(on_progress)
    count = engine.count_tokens

    def call(template: str, body: str, max_tokens: int, *, last: bool = False) -> Minutes:
        schema = _schema(names, max_tokens, final=last)
        answer = engine.complete_json(system, _fill(template, owners, body), schema=schema, max_tokens=max_tokens)
        progress.step(last=last)
        return validate(answer, names)

    def notes(template: str, body: str) -> str:
        # A piece the model had nothing to say about yields empty notes; the caller leaves them out.
        return to_notes(call(template, body, budget.part_tokens))

    def final(template: str, body: str) -> Minutes:
        progress.expect(1)
        minutes = call(template, body, budget.final_tokens, last=True)
        if minutes.is_empty():
            raise SummaryError(f"the {engine.name} engine returned an empty summary")
        return minutes

    if count(text) <= budget.whole_room:
        return final(_WHOLE, text)

    pieces = _split_transcript(text, budget.piece_room, count)
    progress.expect(
        len(pieces) + _estimate_reduce_calls(len(pieces), budget.part_tokens, budget.combine_room, budget.condense_room)
    )
    parts = [part for piece in pieces if (part := notes(_PIECE, piece))]
    if not parts:
        raise SummaryError(f"the {engine.name} engine returned nothing for any part of the transcript")

    while True:
        joined = _PARTS_SEPARATOR.join(parts)
        if count(joined) <= budget.combine_room:
            return final(_COMBINE, joined)
        if len(parts) == 1:
            # One partial longer than the final call can take (only with a tiny context or an
            # engine that overruns max_tokens): keep its beginning rather than loop.
            return final(_COMBINE, _clip(parts[0], budget.combine_room, count))
        # Any two clipped partials fit one condense call, so every level at least halves the
        # number of partials and the loop ends. (Partials are normally far below the limit.)
        limit = budget.condense_room // 2 - count(_PARTS_SEPARATOR)
        while True:
            clipped = [_clip(part, limit, count) for part in parts]
            groups = _pack(clipped, _PARTS_SEPARATOR, budget.condense_room, count)
            if len(groups) < len(parts):
                break
            if limit <= 1:
                raise SummaryError("partial summaries cannot be condensed within the context")
            # Joined partials counted longer than their parts (tokens merging differently at
            # the seams): clip harder until pairs fit.
            limit //= 2
        average = max(1, sum(count(part) for part in clipped) // len(clipped))
        progress.expect(
            len(groups)
            + _estimate_reduce_calls(
                len(groups), min(average, budget.part_tokens), budget.combine_room, budget.condense_room
            )
        )
        parts = [part for group in groups if (part := notes(_CONDENSE, group))]
        if not parts:
            raise SummaryError(f"the {engine.name} engine returned nothing when condensing partial summaries")
