"""Summary engines and map-reduce summarizing.

The light engine (llama.cpp running the packaged SmolLM2-135M GGUF) runs in this process. vLLM
runs in subprocesses only — ``vllm.LLM`` starts worker processes and ``import vllm`` warns,
which this suite turns into errors — both as ``python scripts/summary_check.py --engine vllm`` and as
vLLM's own OpenAI-compatible server, the real endpoint for :class:`OpenAIEngine`. Those tests
carry the ``vllm`` marker and are skipped where the ``vllm`` extra is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ai._summarize import _COMBINE, _PIECE, summarize
from ai._summary_engines import LlamaCppEngine, OpenAIEngine, SummaryEngine, SummaryError
from ai._summary_models import smollm2_gguf_path

REPO_ROOT = Path(__file__).resolve().parents[2]
SUMMARY_CHECK = REPO_ROOT / "scripts" / "summary_check.py"
#: Converted models, kept between runs (git-ignored) so a CI run converts SmolLM2 once.
MODEL_CACHE = REPO_ROOT / ".cache" / "parley-models"

SHORT_TRANSCRIPT = """\
Maria: Good morning everyone. Today we need to decide on the release date for version 2.4.
Tom: The payment bug from last week is fixed. QA signed off on it yesterday.
Maria: Great. Are there any other blockers?
Aisha: The Android build still crashes on older phones. I need two more days to fix it.
Tom: Then I suggest we release on Thursday instead of Tuesday.
Maria: Agreed, the release moves to Thursday. Aisha, please fix the Android crash by Wednesday.
Aisha: Will do.
Maria: Tom, please update the release notes and tell the support team about the new date.
Tom: Sure, I will send the email today.
Maria: Thanks everyone, see you on Thursday.
"""

# A long meeting: several agenda items, each a few minutes of conversation.
_AGENDA = [
    (
        "budget",
        [
            "Maria: Let's start with the budget for the next quarter.",
            "Jonas: Marketing asked for twenty thousand euros more for the trade fair in Berlin.",
            "Maria: That is a lot. What do we get for it?",
            "Jonas: A bigger booth and two evening events with customers. Last year the fair brought us fifteen leads.",
            "Aisha: Engineering needs new test phones too, about three thousand euros.",
            "Maria: The test phones are approved. For the fair we approve ten thousand, not twenty.",
            "Jonas: Fine, I will tell marketing to plan with ten thousand.",
        ],
    ),
    (
        "hiring",
        [
            "Maria: Next point is hiring. Tom, how is the search for the backend developer going?",
            "Tom: We had six interviews. Two candidates are strong, Lena and Karim.",
            "Aisha: I liked Karim, he knows PostgreSQL very well and has run large databases.",
            "Tom: Lena has more experience with Python and with our kind of video software.",
            "Maria: Can we invite both for a second interview with the whole team?",
            "Tom: Yes, I will schedule both second interviews for next week.",
            "Maria: Good. We decide after the second interviews.",
        ],
    ),
    (
        "customer",
        [
            "Maria: Now the complaint from the city library, our biggest customer.",
            "Aisha: Their meetings drop when more than forty people join. We reproduced it.",
            "Tom: It is the media server running out of memory. A bigger server fixes it for now.",
            "Maria: Please move them to the bigger server today and write to their IT team.",
            "Aisha: I will do the move this afternoon and Tom writes the email.",
            "Tom: For a real fix we need to limit video quality for large rooms. That takes two weeks.",
            "Maria: Put the real fix into the next sprint.",
        ],
    ),
    (
        "office",
        [
            "Jonas: One more thing: the office move in June.",
            "Maria: Yes, the new office is ready on the first of June.",
            "Jonas: We need someone to organize the movers and the new internet line.",
            "Aisha: I can order the internet line, I did that for the old office.",
            "Jonas: Then I organize the movers. Everyone packs their own desk on the last Friday of May.",
            "Maria: Please send everyone a reminder a week before.",
            "Jonas: Will do.",
        ],
    ),
    (
        "security",
        [
            "Tom: Last topic from me: the security audit.",
            "Tom: The auditors found that old API keys never expire.",
            "Maria: How hard is it to fix?",
            "Tom: We can add an expiry date to every key and warn users a month before.",
            "Aisha: We must also tell our customers, some of them use keys in scripts.",
            "Maria: Agreed. Tom builds the expiry, Aisha writes the customer announcement.",
            "Tom: I can have it ready by the end of the month.",
            "Maria: Thank you all. That was everything for today.",
        ],
    ),
]
LONG_TRANSCRIPT = "\n".join(line for _, lines in _AGENDA for line in lines) + "\n"


def _text_in(prompt: str, template: str) -> str:
    """The text an instruction template was filled with, or "" if the prompt is not from it."""
    before, after = template.split("{text}")
    if not (prompt.startswith(before) and prompt.endswith(after)):
        return ""
    return prompt[len(before) : len(prompt) - len(after)]


def _is_markdown_summary(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) >= 2 and any(line.startswith("#") for line in lines) and len(text) > 40


# ---------------------------------------------------------------------------------------------
# A scripted engine: fast unit tests of splitting, budgets, recursion and post-processing.
# ---------------------------------------------------------------------------------------------


@dataclass
class ScriptedEngine:
    """Counts one token per whitespace-separated word and answers with ``reply_factor`` times
    ``max_tokens`` words (a model that fills its budget, or overruns it when above 1)."""

    context_tokens: int
    reply_factor: float = 0.5
    reply: str | None = None
    name: str = "scripted"
    prompts: list[tuple[str, str, int]] = field(default_factory=list)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, system: str, user: str, *, max_tokens: int) -> str:
        used = self.count_tokens(system) + self.count_tokens(user) + max_tokens
        assert used <= self.context_tokens, f"prompt and answer need {used} > {self.context_tokens} tokens"
        self.prompts.append((system, user, max_tokens))
        if self.reply is not None:
            return self.reply
        words = max(1, int(max_tokens * self.reply_factor))
        return "\n".join(f"- point {n} of call {len(self.prompts)}" for n in range(words // 6 + 1))


def _long_text(lines: int) -> str:
    return "\n".join(f"Speaker{n % 4}: item {n} we talked about the plan for step {n} and agreed" for n in range(lines))


@pytest.mark.parametrize("reply_factor", [0.3, 1.0, 3.0])
def test_map_reduce_prompts_fit_and_recursion_ends(reply_factor: float) -> None:
    """Every prompt fits the context, also when the model fills or overruns its answer budget."""
    engine = ScriptedEngine(context_tokens=512, reply_factor=reply_factor)
    progress: list[float] = []
    transcript = _long_text(1500)  # ~20k words: dozens of pieces, several reduce levels
    summary = summarize(transcript, engine, max_summary_tokens=200, on_progress=progress.append)

    assert summary.startswith("## Summary\n\n- point")
    pieces = [text for _, user, _ in engine.prompts if (text := _text_in(user, _PIECE))]
    assert len(pieces) > 10
    # Every transcript line went to exactly one map call, in order.
    assert "\n".join(pieces) == transcript
    assert len(engine.prompts) < 2 * len(pieces) + 10  # reduce levels shrink, they do not loop
    assert len(progress) == len(engine.prompts)
    assert progress == sorted(progress) and progress[-1] == 1.0 and all(p < 1.0 for p in progress[:-1])


def test_one_call_when_the_transcript_fits() -> None:
    engine = ScriptedEngine(context_tokens=2048, reply="## Summary\n\n- Release moves to Thursday.")
    progress: list[float] = []
    summary = summarize(SHORT_TRANSCRIPT, engine, on_progress=progress.append)
    assert summary == "## Summary\n\n- Release moves to Thursday."
    assert len(engine.prompts) == 1 and progress == [1.0]
    assert SHORT_TRANSCRIPT.strip() in engine.prompts[0][1]


def test_a_line_longer_than_the_context_is_split() -> None:
    engine = ScriptedEngine(context_tokens=512)
    words = [f"word{n}" for n in range(3000)]
    summarize(" ".join(words), engine, max_summary_tokens=100)
    sent = " ".join(_text_in(user, _PIECE) for _, user, _ in engine.prompts)
    assert sent.split() == words


def test_markdown_post_processing() -> None:
    fenced = ScriptedEngine(context_tokens=2048, reply="```markdown\n# Weekly sync\n\n- Ship Thursday.\n```")
    assert summarize(SHORT_TRANSCRIPT, fenced) == "# Weekly sync\n\n- Ship Thursday."
    plain = ScriptedEngine(context_tokens=2048, reply="  The release moves to Thursday.  ")
    assert summarize(SHORT_TRANSCRIPT, plain) == "## Summary\n\nThe release moves to Thursday."
    chatty = ScriptedEngine(
        context_tokens=2048, reply="Here are five bullet points summarizing it:\n\n* Ship Thursday."
    )
    assert summarize(SHORT_TRANSCRIPT, chatty) == "## Summary\n\n* Ship Thursday."


def test_nothing_returned_is_an_error() -> None:
    with pytest.raises(SummaryError, match="empty summary"):
        summarize(SHORT_TRANSCRIPT, ScriptedEngine(context_tokens=2048, reply="  \n"))
    with pytest.raises(SummaryError, match="nothing for any part"):
        summarize(_long_text(200), ScriptedEngine(context_tokens=512, reply=""))


def test_unusable_inputs() -> None:
    with pytest.raises(ValueError, match="empty"):
        summarize(" \n ", ScriptedEngine(context_tokens=2048))
    with pytest.raises(ValueError, match="too small"):
        summarize(SHORT_TRANSCRIPT, ScriptedEngine(context_tokens=160))


# ---------------------------------------------------------------------------------------------
# The light engine: llama.cpp with the packaged SmolLM2-135M-Instruct.
# ---------------------------------------------------------------------------------------------


@dataclass
class Call:
    user: str
    max_tokens: int
    answer: str


class CountingEngine:
    """Wraps an engine and records every call."""

    def __init__(self, inner: SummaryEngine, *, context_tokens: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.context_tokens = context_tokens or inner.context_tokens
        self.calls: list[Call] = []

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def complete(self, system: str, user: str, *, max_tokens: int) -> str:
        answer = self.inner.complete(system, user, max_tokens=max_tokens)
        self.calls.append(Call(user, max_tokens, answer))
        return answer


@pytest.fixture(scope="module")
def light() -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(smollm2_gguf_path())
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def light_512() -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(smollm2_gguf_path(), context_tokens=512)
    yield engine
    engine.close()


def test_light_engine_counts_tokens(light: LlamaCppEngine) -> None:
    assert light.name == "light" and light.context_tokens == 2048
    assert light.count_tokens("") == 0
    assert 1 <= light.count_tokens("Hello world") <= 4
    tokens = light.count_tokens(SHORT_TRANSCRIPT)
    assert len(SHORT_TRANSCRIPT) / 8 < tokens < len(SHORT_TRANSCRIPT) / 2
    assert light.count_tokens(SHORT_TRANSCRIPT + SHORT_TRANSCRIPT) == pytest.approx(2 * tokens, abs=2)


def test_light_engine_summarizes_a_short_transcript(light: LlamaCppEngine) -> None:
    engine = CountingEngine(light)
    progress: list[float] = []
    summary = summarize(SHORT_TRANSCRIPT, engine, max_summary_tokens=200, on_progress=progress.append)
    assert _is_markdown_summary(summary), summary
    assert len(engine.calls) == 1 and progress == [1.0]
    assert light.count_tokens(engine.calls[0].answer) <= 200


def test_light_engine_map_reduce(light_512: LlamaCppEngine) -> None:
    engine = CountingEngine(light_512)
    progress: list[float] = []
    assert light_512.count_tokens(LONG_TRANSCRIPT) > 512  # cannot fit one call
    summary = summarize(LONG_TRANSCRIPT, engine, max_summary_tokens=128, on_progress=progress.append)

    assert _is_markdown_summary(summary), summary
    maps = [call for call in engine.calls if _text_in(call.user, _PIECE)]
    # Reduce calls: condensing (intermediate levels) and combining share their opening.
    reduces = [call for call in engine.calls if call.user.startswith(_COMBINE.split("{text}")[0])]
    assert len(maps) > 1 and len(reduces) >= 1 and len(maps) + len(reduces) == len(engine.calls)
    assert engine.calls[: len(maps)] == maps  # map first, then reduce
    # The last reduce call read the answers of the calls before it.
    earlier = [line.strip() for call in engine.calls[:-1] for line in call.answer.splitlines()]
    assert any(len(line) > 10 and not line.startswith("```") and line in engine.calls[-1].user for line in earlier)
    assert len(progress) == len(engine.calls)
    assert progress == sorted(progress) and progress[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# vLLM (CPU build in CI) — in subprocesses.
# ---------------------------------------------------------------------------------------------

needs_vllm = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed (the vllm extra)"),
]
#: No hub access at run time; 1 GiB of KV cache is plenty for SmolLM2 at 2048 tokens (vLLM's
#: CPU default reserves more than a small CI machine can spare).
VLLM_ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def _stop(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """Stop a process started in its own session and whatever it started (vLLM's engine core)."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # The group outlives its leader when the leader is killed before shutting down its children.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _summary_check(*args: str, output: Path, timeout: float) -> dict[str, object]:
    log_path = output.with_suffix(".log")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(SUMMARY_CHECK), *args, "--output", str(output)],
            cwd=REPO_ROOT,
            env=VLLM_ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/summary_check.py did not finish in {timeout} s:\n{log_path.read_text()[-5000:]}")
    finally:
        _stop(process, grace=10)
    assert returncode == 0, log_path.read_text()[-5000:]
    result = json.loads(output.read_text())
    assert isinstance(result, dict)
    return result


@pytest.fixture(scope="module")
def smollm2_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 converted to a Hugging Face folder (once; kept in the repository's model cache)."""
    result = _summary_check(
        "--engine",
        "vllm",
        "--resolve-model",
        "--cache-dir",
        str(MODEL_CACHE),
        output=tmp_path_factory.mktemp("resolve") / "model.json",
        timeout=600,
    )
    return Path(str(result["model_path"]))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="class")
def endpoint(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's OpenAI-compatible server on SmolLM2, for the tests of one class (it takes ~30 s to start)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(smollm2_hf),
        "--served-model-name",
        "smollm2",
        "--max-model-len",
        "2048",
        "--dtype",
        "bfloat16",
        "--enforce-eager",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # Output to a file: a pipe nobody reads would fill up and stall the server.
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=VLLM_ENV, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"vLLM server exited ({process.returncode}):\n{log_path.read_text()[-5000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not ready in 300 s:\n{log_path.read_text()[-5000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield base_url
    finally:
        _stop(process, grace=30)


class TestOpenAIEngine:
    """Against vLLM's OpenAI-compatible server, started once for this class."""

    pytestmark = needs_vllm

    def test_summarizes_through_the_http_api(self, endpoint: str) -> None:
        engine = OpenAIEngine(endpoint, model="smollm2", context_tokens=2048)
        try:
            progress: list[float] = []
            summary = summarize(SHORT_TRANSCRIPT, engine, max_summary_tokens=200, on_progress=progress.append)
            assert _is_markdown_summary(summary), summary
            assert progress == [1.0]
            # The estimate errs on the high side of the real tokenizer's count.
            assert engine.count_tokens(SHORT_TRANSCRIPT) >= len(SHORT_TRANSCRIPT) / 4
        finally:
            engine.close()

    def test_map_reduce_over_http(self, endpoint: str) -> None:
        http = OpenAIEngine(endpoint, model="smollm2", context_tokens=2048)
        # A smaller context than the server's, so that the long transcript needs map-reduce.
        engine = CountingEngine(http, context_tokens=768)
        try:
            summary = summarize(LONG_TRANSCRIPT, engine, max_summary_tokens=128)
        finally:
            http.close()
        assert _is_markdown_summary(summary), summary
        assert len(engine.calls) > 2

    def test_server_errors_are_summary_errors(self, endpoint: str) -> None:
        engine = OpenAIEngine(endpoint, model="no-such-model")
        try:
            with pytest.raises(SummaryError, match="answered 404"):
                engine.complete("system", "user", max_tokens=5)
        finally:
            engine.close()


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed (the vllm extra)")
def test_vllm_engine_summarizes(smollm2_hf: Path, tmp_path: Path) -> None:
    """``vllm.LLM`` on the converted SmolLM2 folder, through the check CLI in its own process."""
    transcript = tmp_path / "meeting.txt"
    transcript.write_text(SHORT_TRANSCRIPT)
    result = _summary_check(
        "--engine",
        "vllm",
        "--model-path",
        str(smollm2_hf),
        "--transcript",
        str(transcript),
        "--max-summary-tokens",
        "200",
        "--speed-tokens",
        "64",
        output=tmp_path / "result.json",
        timeout=600,
    )
    assert result["engine"] == "vllm" and result["context_tokens"] == 2048
    assert isinstance(result["summary"], str) and _is_markdown_summary(result["summary"]), result
    assert isinstance(result["tokens_per_second"], float) and result["tokens_per_second"] > 0
    assert isinstance(result["load_seconds"], float) and result["load_seconds"] > 0
