"""Summarizing a meeting transcript with a summary engine (``_summary_engines``).

:func:`summarize` fits a transcript of any length into an engine's context: in one call when it
fits, otherwise map-reduce (summarize pieces, then summarize the joined partial summaries, again
as often as needed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

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
    "You are a meeting assistant. You write accurate, concise summaries of meeting transcripts in Markdown, "
    "using only facts stated in the transcript. Write in {language}."
)
# The text comes first and the instruction after it: small models (SmolLM2-135M) follow an
# instruction they read last, and echo the transcript when it comes after the instruction. A
# concrete number of bullet points also keeps them from rambling; the Markdown heading is added
# afterwards (see _as_markdown) because asking for sections makes small models copy the text.
# One call over the whole transcript.
_WHOLE = (
    "Here is a meeting transcript:\n\n{text}\n\n"
    "Write five short bullet points that summarize the decisions and tasks of this meeting."
)
# Map: one piece of a transcript too long for one call.
_PIECE = (
    "Here is a part of a meeting transcript:\n\n{text}\n\n"
    "Write three short bullet points that summarize the decisions and tasks in this part."
)
# Reduce, intermediate level: notes still too long for the final call are condensed in groups.
_CONDENSE = (
    "Here are notes on consecutive parts of one meeting:\n\n{text}\n\n"
    "Write three short bullet points that summarize the decisions and tasks in these notes."
)
# Reduce, final level.
_COMBINE = (
    "Here are notes on consecutive parts of one meeting:\n\n{text}\n\n"
    "Write five short bullet points that summarize the decisions and tasks of the whole meeting."
)
#: Tokens reserved per call for what count_tokens does not see: chat-template role markers and
#: BOS, and tokenizer merges across the seams of system prompt, instruction and text.
_FRAMING_TOKENS = 48
#: Fewer tokens of room for transcript text than this makes summaries pointless.
_MIN_TEXT_TOKENS = 64
_PARTS_SEPARATOR = "\n\n"


def _language_name(code: str) -> str:
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return _LANGUAGES.get(base, f"the language with code '{code}'")


class _Budget:
    """Token budgets of one summarize run, derived from the engine's context length.

    ``*_room`` is how many tokens of text fit into the instruction of that kind of call, after
    the system prompt, the instruction, framing and the tokens reserved for the answer.
    """

    def __init__(self, engine: SummaryEngine, system: str, max_summary_tokens: int) -> None:
        context = engine.context_tokens
        fixed = engine.count_tokens(system) + _FRAMING_TOKENS

        def overhead(template: str) -> int:
            return fixed + engine.count_tokens(template.format(text=""))

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


_FENCE = re.compile(r"^```[a-zA-Z]*\n(.*)\n```$", re.DOTALL)
_PREAMBLE = re.compile(r"^(here (is|are)|sure|certainly)\b[^\n]*:[ \t]*\n", re.IGNORECASE)


def _clean(text: str) -> str:
    text = text.strip()
    # Models like to wrap Markdown in a code fence; the caller wants the Markdown itself.
    fenced = _FENCE.match(text)
    text = fenced.group(1).strip() if fenced else text
    # Chat models open with "Here are five bullet points summarizing ...:"; the summary is what follows.
    return _PREAMBLE.sub("", text, count=1).strip()


def _as_markdown(text: str) -> str:
    if not any(line.lstrip().startswith("#") for line in text.splitlines()):
        text = f"## Summary\n\n{text}"
    return text


def summarize(
    transcript: str,
    engine: SummaryEngine,
    *,
    language: str = "en",
    max_summary_tokens: int = 512,
    on_progress: Callable[[float], None] | None = None,
) -> str:
    """Summarize a meeting transcript as Markdown, within the engine's context length.

    A transcript that fits the context (minus the prompt and the tokens reserved for the answer)
    is summarized in one call. A longer one is split on line boundaries into pieces that fit and
    each piece is summarized (map); the partial summaries are joined and summarized once more
    (reduce), in groups and over several levels while the joined partials still do not fit.

    Args:
        transcript: Transcript text, one utterance per line (e.g. ``Alice: ...``).
        engine: The engine to run the calls on.
        language: Language code of the summary (``en``, ``de``, ...).
        max_summary_tokens: Upper bound on the summary's length; at most half of the context
            left after the prompt is used.
        on_progress: Called after every engine call with calls done / calls planned, a
            non-decreasing value that ends at exactly 1.0.

    Returns:
        The summary as Markdown, starting with a heading (``## Summary`` is added when the model
        wrote none).

    Raises:
        ValueError: The transcript is empty, or the context is too small to summarize anything.
        SummaryError: The engine returned nothing.
    """
    text = transcript.strip()
    if not text:
        raise ValueError("nothing to summarize: the transcript is empty")
    system = _SYSTEM.format(language=_language_name(language))
    budget = _Budget(engine, system, max_summary_tokens)
    progress = _Progress(on_progress)
    count = engine.count_tokens

    def call(template: str, body: str, max_tokens: int, *, last: bool = False) -> str:
        answer = _clean(engine.complete(system, template.format(text=body), max_tokens=max_tokens))
        progress.step(last=last)
        return answer

    def final(template: str, body: str) -> str:
        progress.expect(1)
        answer = call(template, body, budget.final_tokens, last=True)
        if not answer:
            raise SummaryError(f"the {engine.name} engine returned an empty summary")
        return _as_markdown(answer)

    if count(text) <= budget.whole_room:
        return final(_WHOLE, text)

    pieces = _split_transcript(text, budget.piece_room, count)
    progress.expect(
        len(pieces) + _estimate_reduce_calls(len(pieces), budget.part_tokens, budget.combine_room, budget.condense_room)
    )
    # A piece the model had nothing to say about yields an empty answer; it is left out.
    parts = [part for piece in pieces if (part := call(_PIECE, piece, budget.part_tokens))]
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
        parts = [part for group in groups if (part := call(_CONDENSE, group, budget.part_tokens))]
        if not parts:
            raise SummaryError(f"the {engine.name} engine returned nothing when condensing partial summaries")
