"""Summary engines, minutes and map-reduce summarizing.

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
from typing import Any

import httpx
import pytest

from ai._minutes import Minutes, NextStep, minutes_schema, participants, to_markdown, to_notes, validate
from ai._summarize import _COMBINE, _PIECE, _owners, summarize
from ai._summary_engines import LlamaCppEngine, OpenAIEngine, SummaryEngine, SummaryError, parse_json_object
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


def _text_in(prompt: str, template: str, names: list[str] | None = None) -> str:
    """The text an instruction template was filled with, or "" if the prompt is not from it."""
    before, after = template.replace("{owners}", _owners(names or [])).split("{text}")
    if not (prompt.startswith(before) and prompt.endswith(after)):
        return ""
    return prompt[len(before) : len(prompt) - len(after)]


def _is_markdown_minutes(text: str) -> bool:
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    return headings == ["## Summary", "## Topics", "## Next steps"] and len(text) > 60


def _check_minutes(minutes: Minutes, names: set[str]) -> None:
    """What every engine's minutes must be, whatever the model wrote."""
    assert minutes.summary.strip(), minutes
    assert all(topic.strip() for topic in minutes.topics), minutes
    assert all(step.description.strip() for step in minutes.next_steps), minutes
    assert {step.owner for step in minutes.next_steps} <= names | {""}, minutes
    assert _is_markdown_minutes(to_markdown(minutes))


# ---------------------------------------------------------------------------------------------
# A scripted engine: fast unit tests of splitting, budgets, recursion and post-processing.
# ---------------------------------------------------------------------------------------------


@dataclass
class ScriptedEngine:
    """Counts one token per whitespace-separated word and answers with ``reply_factor`` times
    ``max_tokens`` words of minutes (a model that fills its budget, or overruns it when above 1)."""

    context_tokens: int
    reply_factor: float = 0.5
    reply: dict[str, Any] | None = None
    name: str = "scripted"
    prompts: list[tuple[str, str, int]] = field(default_factory=list)
    schemas: list[dict[str, object]] = field(default_factory=list)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, system: str, user: str, *, max_tokens: int) -> str:
        raise AssertionError("summaries ask for JSON")

    def complete_json(self, system: str, user: str, *, schema: dict[str, object], max_tokens: int) -> dict[str, object]:
        used = self.count_tokens(system) + self.count_tokens(user) + max_tokens
        assert used <= self.context_tokens, f"prompt and answer need {used} > {self.context_tokens} tokens"
        self.prompts.append((system, user, max_tokens))
        self.schemas.append(schema)
        if self.reply is not None:
            return self.reply
        words = max(1, int(max_tokens * self.reply_factor))
        call = len(self.prompts)
        return {
            "summary": " ".join(f"point{n}-of-call{call}" for n in range(max(1, words - 4))),
            "topics": [f"topic of call {call}"],
            "next_steps": [{"description": "do it", "owner": "Speaker1"}],
        }


def _long_text(lines: int) -> str:
    return "\n".join(f"Speaker{n % 4}: item {n} we talked about the plan for step {n} and agreed" for n in range(lines))


@pytest.mark.parametrize("reply_factor", [0.3, 1.0, 3.0])
def test_map_reduce_prompts_fit_and_recursion_ends(reply_factor: float) -> None:
    """Every prompt fits the context, also when the model fills or overruns its answer budget."""
    engine = ScriptedEngine(context_tokens=512, reply_factor=reply_factor)
    progress: list[float] = []
    transcript = _long_text(1500)  # ~20k words: dozens of pieces, several reduce levels
    minutes = summarize(transcript, engine, max_summary_tokens=200, on_progress=progress.append)

    names = ["Speaker0", "Speaker1", "Speaker2", "Speaker3"]
    assert minutes.summary.startswith("point0-of-call") and minutes.next_steps == (NextStep("do it", "Speaker1"),)
    pieces = [text for _, user, _ in engine.prompts if (text := _text_in(user, _PIECE, names))]
    assert len(pieces) > 10
    # Every transcript line went to exactly one map call, in order.
    assert "\n".join(pieces) == transcript
    assert len(engine.prompts) < 2 * len(pieces) + 10  # reduce levels shrink, they do not loop
    assert len(progress) == len(engine.prompts)
    assert progress == sorted(progress) and progress[-1] == 1.0 and all(p < 1.0 for p in progress[:-1])
    if reply_factor < 1:  # (overlong notes are clipped to their beginning)
        # Reduce calls read the notes of the calls before them, owners included.
        assert "Next step: do it (owner: Speaker1)" in engine.prompts[-1][1]
    # Notes on parts are held to fewer items than the minutes.
    assert engine.schemas[0]["properties"]["topics"]["maxItems"] == 3  # type: ignore[index]
    assert engine.schemas[-1]["properties"]["topics"]["maxItems"] == 6  # type: ignore[index]


def test_one_call_when_the_transcript_fits() -> None:
    reply = {"summary": "The release moves to Thursday.", "topics": ["Release date"], "next_steps": []}
    engine = ScriptedEngine(context_tokens=2048, reply=reply)
    progress: list[float] = []
    minutes = summarize(SHORT_TRANSCRIPT, engine, on_progress=progress.append)
    assert minutes == Minutes("The release moves to Thursday.", ("Release date",))
    assert len(engine.prompts) == 1 and progress == [1.0]
    assert SHORT_TRANSCRIPT.strip() in engine.prompts[0][1]


def test_owners_are_the_speakers() -> None:
    """The prompt names who may own a next step, and the schema allows only them (or nobody)."""
    reply = {
        "summary": "Release on Thursday.",
        "topics": [],
        "next_steps": [
            {"description": "Fix the Android crash", "owner": "aisha"},
            {"description": "Update the release notes", "owner": "the support team"},
        ],
    }
    engine = ScriptedEngine(context_tokens=2048, reply=reply)
    minutes = summarize(SHORT_TRANSCRIPT, engine)
    assert "one of Maria, Tom, Aisha, or empty" in engine.prompts[0][1]
    owner = engine.schemas[0]["properties"]["next_steps"]["items"]["properties"]["owner"]  # type: ignore[index]
    assert owner == {"type": "string", "enum": ["Maria", "Tom", "Aisha", ""]}
    assert minutes.next_steps == (NextStep("Fix the Android crash", "Aisha"), NextStep("Update the release notes", ""))


def test_a_line_longer_than_the_context_is_split() -> None:
    engine = ScriptedEngine(context_tokens=512)
    words = [f"word{n}" for n in range(3000)]
    summarize(" ".join(words), engine, max_summary_tokens=100)
    sent = " ".join(_text_in(user, _PIECE) for _, user, _ in engine.prompts)
    assert sent.split() == words


def test_nothing_returned_is_an_error() -> None:
    empty = {"summary": " ", "topics": [""], "next_steps": [{"description": "", "owner": ""}]}
    with pytest.raises(SummaryError, match="empty summary"):
        summarize(SHORT_TRANSCRIPT, ScriptedEngine(context_tokens=2048, reply=empty))
    with pytest.raises(SummaryError, match="nothing for any part"):
        summarize(_long_text(200), ScriptedEngine(context_tokens=512, reply=empty))


def test_unusable_inputs() -> None:
    with pytest.raises(ValueError, match="empty"):
        summarize(" \n ", ScriptedEngine(context_tokens=2048))
    with pytest.raises(ValueError, match="too small"):
        summarize(SHORT_TRANSCRIPT, ScriptedEngine(context_tokens=160))


# ---------------------------------------------------------------------------------------------
# Minutes: participants, validation, rendering, and JSON cut short.
# ---------------------------------------------------------------------------------------------


def test_participants_in_order_of_first_words() -> None:
    text = "Maria Lopez: Hello.\n\nTom: Hi.\nMaria Lopez: Agenda: budget.\nno speaker here\n" + (
        "This sentence has far too many words before its colon: it is not a name.\n"
    )
    assert participants(text) == ["Maria Lopez", "Tom"]
    assert participants("nobody is named here") == []


def test_validation_repairs_what_small_models_get_wrong() -> None:
    data = {
        "summary": "  Release\n moves  to Thursday. ",
        "topics": ["Release date", "", "release date", 7, "Android crash"],
        "next_steps": [
            {"description": "Send the offers", "owner": "MARIA"},
            {"description": "Fix the crash", "owner": "Bob"},
            {"description": " ", "owner": "Tom"},
            {"description": "send the offers", "owner": "Tom"},
            "not a step",
            {"owner": "Tom"},
        ],
    }
    minutes = validate(data, ["Maria", "Tom"])
    assert minutes == Minutes(
        "Release moves to Thursday.",
        ("Release date", "Android crash"),
        (NextStep("Send the offers", "Maria"), NextStep("Fix the crash", "")),
    )
    assert validate({"summary": 3, "topics": "x", "next_steps": {}}, ["Maria"]).is_empty()
    assert validate(["not", "an", "object"], []).is_empty()
    assert Minutes.from_dict(minutes.to_dict()) == minutes


def test_markdown_and_notes() -> None:
    minutes = Minutes(
        "Release on Thursday.", ("Release date",), (NextStep("Send the offers", "Maria"), NextStep("Tidy up"))
    )
    assert to_markdown(minutes) == (
        "## Summary\n\nRelease on Thursday.\n\n## Topics\n\n- Release date\n\n"
        "## Next steps\n\n- Send the offers — **Maria**\n- Tidy up\n"
    )
    assert to_markdown(Minutes("Short.")).endswith("## Topics\n\n_None._\n\n## Next steps\n\n_None._\n")
    assert to_notes(minutes) == (
        "Summary: Release on Thursday.\nTopics: Release date\n"
        "Next step: Send the offers (owner: Maria)\nNext step: Tidy up"
    )


def test_the_schema_bounds_the_answer() -> None:
    schema = minutes_schema(["Maria"], summary_chars=100, topics=2, next_steps=3, item_chars=50)
    assert schema["required"] == ["summary", "topics", "next_steps"]
    properties = schema["properties"]
    assert properties["summary"] == {"type": "string", "maxLength": 100, "minLength": 1}
    assert properties["topics"]["maxItems"] == 2 and properties["topics"]["items"]["maxLength"] == 50
    assert properties["next_steps"]["maxItems"] == 3
    assert properties["next_steps"]["items"]["properties"]["owner"]["enum"] == ["Maria", ""]


def test_json_cut_short_is_closed() -> None:
    whole = '{"summary": "Ship Thursday.", "topics": ["Release"], "next_steps": []}'
    assert parse_json_object(f"```json\n{whole}\n```") == json.loads(whole)
    # Cut inside a value: the string and its containers are closed.
    assert parse_json_object('{"summary": "Ship Thurs') == {"summary": "Ship Thurs"}
    assert parse_json_object('{"summary": "a", "topics": ["Release", "Andr') == {
        "summary": "a",
        "topics": ["Release", "Andr"],
    }
    # Cut inside a key or an escape: back to the last complete value.
    assert parse_json_object('{"summary": "a \\"b\\"", "top') == {"summary": 'a "b"'}
    assert parse_json_object('{"summary": "a", "next_steps": [{"description": "x", "owner": "Ma') == {
        "summary": "a",
        "next_steps": [{"description": "x", "owner": "Ma"}],
    }
    assert parse_json_object('{"summary') == {}
    assert parse_json_object('{"summary": "a", "topics": [') == {"summary": "a", "topics": []}
    for junk in ("", "no json here", "[1, 2]"):
        with pytest.raises(SummaryError, match="not a JSON object"):
            parse_json_object(junk)


# ---------------------------------------------------------------------------------------------
# The light engine: llama.cpp with the packaged SmolLM2-135M-Instruct.
# ---------------------------------------------------------------------------------------------


@dataclass
class Call:
    user: str
    max_tokens: int
    answer: dict[str, object]


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
        return self.inner.complete(system, user, max_tokens=max_tokens)

    def complete_json(self, system: str, user: str, *, schema: dict[str, object], max_tokens: int) -> dict[str, object]:
        answer = self.inner.complete_json(system, user, schema=schema, max_tokens=max_tokens)
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


def test_light_engine_holds_to_the_schema(light: LlamaCppEngine) -> None:
    """The grammar forces the structure, the enum and the bounds, whatever the model would write."""
    schema = minutes_schema(["Maria", "Tom"], summary_chars=80, topics=2, next_steps=2, item_chars=40)
    answer = light.complete_json(
        "You are a helpful assistant.", "Write a poem about the sea.", schema=schema, max_tokens=300
    )
    assert set(answer) == {"summary", "topics", "next_steps"}, answer
    assert isinstance(answer["summary"], str) and len(answer["summary"]) <= 80
    assert len(answer["topics"]) <= 2 and all(len(topic) <= 40 for topic in answer["topics"])
    assert len(answer["next_steps"]) <= 2
    assert all(step["owner"] in ("Maria", "Tom", "") for step in answer["next_steps"])
    # Cut short by its budget, the answer is still an object.
    assert isinstance(light.complete_json("System.", "Write a poem.", schema=schema, max_tokens=5), dict)


OFFERS_TRANSCRIPT = """Maria: Welcome. Two points today: the offers for the new customer and the team trip.
Jonas: The customer wants prices for fifty licences and for a hundred licences.
Maria: I will send the offers on Friday.
Jonas: Good. For the trip, I found a hotel in Lyon for the second week of June.
Maria: Lyon is fine. Jonas, please book the hotel before the end of the month.
Jonas: I will book it tomorrow.
"""


def test_light_engine_writes_minutes_with_owners_from_the_transcript(light: LlamaCppEngine) -> None:
    engine = CountingEngine(light)
    progress: list[float] = []
    minutes = summarize(OFFERS_TRANSCRIPT, engine, max_summary_tokens=300, on_progress=progress.append)
    _check_minutes(minutes, {"Maria", "Jonas"})
    assert len(engine.calls) == 1 and progress == [1.0]
    owners = engine.calls[0].answer["next_steps"]
    assert isinstance(owners, list) and {step["owner"] for step in owners} <= {"Maria", "Jonas", ""}


def test_light_engine_summarizes_a_short_transcript(light: LlamaCppEngine) -> None:
    minutes = summarize(SHORT_TRANSCRIPT, light, max_summary_tokens=300)
    _check_minutes(minutes, {"Maria", "Tom", "Aisha"})


def test_light_engine_map_reduce(light_512: LlamaCppEngine) -> None:
    engine = CountingEngine(light_512)
    progress: list[float] = []
    assert light_512.count_tokens(LONG_TRANSCRIPT) > 512  # cannot fit one call
    minutes = summarize(LONG_TRANSCRIPT, engine, max_summary_tokens=128, on_progress=progress.append)

    _check_minutes(minutes, {"Maria", "Jonas", "Aisha", "Tom"})
    names = participants(LONG_TRANSCRIPT)
    maps = [call for call in engine.calls if _text_in(call.user, _PIECE, names)]
    # Reduce calls: condensing (intermediate levels) and combining share their opening.
    reduces = [call for call in engine.calls if call.user.startswith(_COMBINE.split("{text}")[0])]
    assert len(maps) > 1 and len(reduces) >= 1 and len(maps) + len(reduces) == len(engine.calls)
    assert engine.calls[: len(maps)] == maps  # map first, then reduce
    # The last reduce call read the notes of the calls before it.
    summaries = [" ".join(str(call.answer.get("summary", "")).split()) for call in engine.calls[:-1]]
    assert any(len(text) > 10 and text in engine.calls[-1].user for text in summaries)
    assert len(progress) == len(engine.calls)
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_openai_engine_asks_for_the_schema() -> None:
    """The request carries a strict ``json_schema`` response format (vLLM's server and OpenAI
    decode under it; the real server is in TestOpenAIEngine, which needs vLLM)."""
    bodies: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        content = '{"summary": "Ship on Thursday.", "topics": [], "next_steps": [{"description": "Tell supp'
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}]})

    engine = OpenAIEngine("http://llm/v1", model="m", transport=httpx.MockTransport(answer))
    schema = minutes_schema(["Maria"])
    try:
        result = engine.complete_json("system", "user", schema=schema, max_tokens=50)
    finally:
        engine.close()
    assert bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "minutes", "schema": schema, "strict": True},
    }
    assert bodies[0]["max_tokens"] == 50
    # Cut short by max_tokens: closed where it stopped.
    assert result == {"summary": "Ship on Thursday.", "topics": [], "next_steps": [{"description": "Tell supp"}]}


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
        # Compact JSON under a schema (see OpenAIEngine.complete_json).
        "--structured-outputs-config",
        '{"backend": "xgrammar", "disable_any_whitespace": true}',
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
            minutes = summarize(SHORT_TRANSCRIPT, engine, max_summary_tokens=200, on_progress=progress.append)
            _check_minutes(minutes, {"Maria", "Tom", "Aisha"})
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
            minutes = summarize(LONG_TRANSCRIPT, engine, max_summary_tokens=128)
        finally:
            http.close()
        _check_minutes(minutes, {"Maria", "Jonas", "Aisha", "Tom"})
        assert len(engine.calls) > 2

    def test_the_server_holds_to_the_schema(self, endpoint: str) -> None:
        engine = OpenAIEngine(endpoint, model="smollm2", context_tokens=2048)
        schema = minutes_schema(["Maria", "Tom"], summary_chars=80, topics=2, next_steps=2, item_chars=40)
        try:
            answer = engine.complete_json(
                "You are a helpful assistant.", "Write a poem.", schema=schema, max_tokens=300
            )
        finally:
            engine.close()
        assert set(answer) == {"summary", "topics", "next_steps"}, answer
        assert all(step["owner"] in ("Maria", "Tom", "") for step in answer["next_steps"])

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
    assert isinstance(result["summary"], str) and _is_markdown_minutes(result["summary"]), result
    assert isinstance(result["minutes"], dict)
    _check_minutes(validate(result["minutes"], ["Maria", "Tom", "Aisha"]), {"Maria", "Tom", "Aisha"})
    assert validate(result["minutes"], ["Maria", "Tom", "Aisha"]).to_dict() == result["minutes"]
    assert isinstance(result["tokens_per_second"], float) and result["tokens_per_second"] > 0
    assert isinstance(result["load_seconds"], float) and result["load_seconds"] > 0
