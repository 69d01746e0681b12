"""Minutes: a transcript with names from each participant's own audio against the usual way,
transcribing the mixed recording and naming speakers by who spoke when, side by side on the
same generated meeting, then the summary.

The meeting is espeak-ng speech of four voices (``--minutes`` long, default 10), each speaker
with sentences of their own, taking turns with short pauses; every ``--overlap-every``-th
sentence starts ``--overlap`` seconds before the previous one ends (people talking over each
other). It exists as four files, one per speaker (what a TRANSCRIPT recording keeps beside
its composite), and as their mix (the composite). Both sides run the AI service's pipeline
with its default pool (1 speech actor × 2 chunks at once × 1 thread, tiny.en int8 beam 5) on a
local Ray, from the files to a named transcript:

- per-track: decode each speaker's file, keep its speech only (``plan_condensed``: VAD regions
  one after the other, as the service does for ``speaker_tracks``), chunks of each, all
  transcribed at once on the pool, times mapped back, interleaved with each file's name
  (``interleave_speakers``); and the same on the whole files (chunks of 30 s that are mostly
  silence: what condensing saves);
- mixed (baseline): decode the mix, VAD chunks, transcribed on the pool, each segment named
  after the speaker who talked most during it (``attribute_speakers``) by the exact timeline
  of who spoke when (the generator's: a perfect metadata agent, the baseline's best case).

For each: wall seconds, CPU seconds (this process and the speech actor's, from /proc), WER
with speakers ignored (all words in time order), the speaker-attributed WER (cpWER: each
speaker's words against what they said, summed; a word with the wrong name counts as an error
twice, as in the CHiME-6 metric), and the share of speaker-specific words (words only one
speaker ever says) that carry the right name. Then the summary of the per-track transcript
with the light engine (llama.cpp, SmolLM2): seconds, so that "transcript ready" and "summary
ready" after the recording's files exist can be read off.

    python -m bench.minutes_bench [--minutes 10] [--overlap-every 4] [--overlap 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
import wave
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ai import (
    LlamaCppEngine,
    Segment,
    SpeakerTurn,
    SpeechPool,
    SpeechPoolOptions,
    attribute_speakers,
    decode_audio,
    interleave_speakers,
    merge,
    plan_chunks,
    plan_condensed,
    resolve_model,
    smollm2_gguf_path,
    start_ray,
    summarize,
    to_text,
)
from parley._loadtest import process_cpu_seconds
from tests.ai.media import read_wav, speak
from tests.ai.speech import normalise, word_error_rate

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "parley-models"
RATE = 16000

VOICES = {"Alice": "en-us+f3", "Bob": "en-gb", "Carol": "en-us+f5", "Dave": "en-us+m3"}
LINES = {
    "Alice": [
        "Good morning everyone and welcome to the weekly planning meeting.",
        "The budget for the new office near the station is finally approved.",
        "I will send the contract to the landlord before Friday.",
        "Please keep your receipts until the accountant has checked them.",
        "Let us meet again next Tuesday at ten.",
    ],
    "Bob": [
        "The heating engineer phoned about the broken boiler in the basement.",
        "We should replace the windows on the north side before winter.",
        "I can order the furniture once the floor plan is fixed.",
        "The parking permits arrive by post next month.",
        "Sorry, my microphone was muted for a moment.",
    ],
    "Carol": [
        "Our customers asked for longer opening hours on Saturdays.",
        "The survey questions will be ready during this week.",
        "Three volunteers offered to help at the library open day.",
        "The newsletter goes out on the first Monday of each month.",
        "I agree with that proposal completely.",
    ],
    "Dave": [
        "The website redesign is two weeks behind schedule.",
        "Our developers need access to the staging server.",
        "Travel requests must be approved by the director in advance.",
        "The printer on the second floor needs new toner cartridges.",
        "Could somebody share the slides after the call?",
    ],
}


@dataclass(frozen=True)
class Said:
    speaker: str
    text: str
    start: float
    end: float


def make_meeting(
    folder: Path, minutes: float, overlap_every: int, overlap: float
) -> tuple[dict[str, Path], Path, list[Said]]:
    """Per-speaker WAVs, their mix and who said what when."""
    clips: dict[tuple[str, str], np.ndarray] = {}
    rate = 22050
    said: list[Said] = []
    at, index = 0.0, 0
    names = list(VOICES)
    while at < minutes * 60:
        speaker = names[index % len(names)]
        text = LINES[speaker][(index // len(names)) % len(LINES[speaker])]
        if (speaker, text) not in clips:
            samples, rate = read_wav(speak(text, folder / "clip.wav", voice=VOICES[speaker]))
            clips[speaker, text] = samples
        length = len(clips[speaker, text]) / rate
        start = max(0.0, at - overlap) if index and index % overlap_every == 0 else at
        said.append(Said(speaker, text, start, start + length))
        at = max(at, start + length) + 0.6
        index += 1
    total = int((max(s.end for s in said) + 1.0) * rate)
    tracks = {name: np.zeros(total, np.float32) for name in names}
    for line in said:
        clip = clips[line.speaker, line.text]
        begin = int(line.start * rate)
        tracks[line.speaker][begin : begin + len(clip)] += clip
    files = {name: _write(folder / f"{name}.wav", samples, rate) for name, samples in tracks.items()}
    mixed = _write(folder / "mixed.wav", sum(tracks.values(), np.zeros(total, np.float32)), rate)
    return files, mixed, said


def _write(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


async def per_track(pool: SpeechPool, files: dict[str, Path], *, condensed: bool = True) -> list[Segment]:
    """As the AI service transcribes ``speaker_tracks``: each file's speech only (condensed), or,
    with ``condensed=False``, each whole file as if it were a mixed recording."""
    audios = {name: await asyncio.to_thread(decode_audio, path) for name, path in files.items()}
    if condensed:
        plans = {name: await asyncio.to_thread(plan_condensed, audio) for name, audio in audios.items()}
        inputs = {name: (shrunk.audio, chunks) for name, (shrunk, chunks) in plans.items()}
    else:
        inputs = {name: (audio, await asyncio.to_thread(plan_chunks, audio)) for name, audio in audios.items()}
    results = await asyncio.gather(*(pool.transcribe(*inputs[name]) for name in files))
    placed = []
    for name, result in zip(files, results, strict=True):
        segments = merge(r.segments for r in result)
        placed.append((name, 0.0, plans[name][0].restore(segments) if condensed else segments))
    return interleave_speakers(placed)


async def mixed_file(pool: SpeechPool, mixed: Path, said: list[Said]) -> list[Segment]:
    audio = await asyncio.to_thread(decode_audio, mixed)
    chunks = await asyncio.to_thread(plan_chunks, audio)
    results = await pool.transcribe(audio, chunks)
    turns = [SpeakerTurn(speaker=s.speaker, start=s.start, end=s.end) for s in said]
    return attribute_speakers(merge(r.segments for r in results), turns)


@dataclass(frozen=True)
class Scores:
    wer: float
    cp_wer: float
    named: float


def score(segments: list[Segment], said: list[Said]) -> Scores:
    reference = " ".join(s.text for s in sorted(said, key=lambda s: s.start))
    wer = word_error_rate(reference, " ".join(s.text for s in segments))
    errors = words = 0.0
    for name in VOICES:
        theirs = " ".join(s.text for s in said if s.speaker == name)
        heard = " ".join(s.text for s in segments if s.speaker == name)
        count = len(normalise(theirs))
        errors += word_error_rate(theirs, heard) * count
        words += count
    spoken: dict[str, set[str]] = {}
    for line in said:
        spoken.setdefault(line.speaker, set()).update(normalise(line.text))
    own = {n: w - set().union(*(o for m, o in spoken.items() if m != n)) for n, w in spoken.items()}
    right = wrong = 0
    for segment in segments:
        for word in normalise(segment.text):
            owners = [name for name, mine in own.items() if word in mine]
            if owners:
                right += owners == [segment.speaker]
                wrong += owners != [segment.speaker]
    return Scores(wer=wer, cp_wer=errors / max(words, 1), named=right / max(right + wrong, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--overlap-every", type=int, default=4)
    parser.add_argument("--overlap", type=float, default=1.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-minutes-") as tmp:
        print(f"generating a {args.minutes:g}-minute meeting of {len(VOICES)} voices with espeak-ng ...", flush=True)
        files, mixed, said = make_meeting(Path(tmp), args.minutes, args.overlap_every, args.overlap)
        overlapping = sum(1 for a, b in itertools.pairwise(said) if b.start < a.end)
        meeting = max(s.end for s in said)

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        start_ray(num_cpus=os.cpu_count() or 1, temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        pool = SpeechPool(resolve_model("tiny.en", cache_dir=CACHE), SpeechPoolOptions(actors=1, concurrency=2))
        pool.start()
        actor_pid = asyncio.run(_warm_up(pool, files["Alice"]))

        rows = []
        runs: list[tuple[str, Callable[[], Coroutine[Any, Any, list[Segment]]]]] = [
            ("mixed file + exact timeline — baseline", lambda: mixed_file(pool, mixed, said)),
            ("per-track, whole files", lambda: per_track(pool, files, condensed=False)),
            ("per-track, speech only (Parley)", lambda: per_track(pool, files)),
        ]
        for label, run in runs:
            cpu = process_cpu_seconds(os.getpid()) + process_cpu_seconds(actor_pid)
            started = time.perf_counter()
            segments = asyncio.run(run())
            wall = time.perf_counter() - started
            cpu = process_cpu_seconds(os.getpid()) + process_cpu_seconds(actor_pid) - cpu
            rows.append((label, wall, cpu, score(segments, said), segments))
        pool.stop()

    print(
        f"\n## Transcript with names: {meeting / 60:.1f} min meeting, {len(VOICES)} speakers, "
        f"{len(said)} sentences, {overlapping} of them over the previous one\n"
    )
    print(
        "| pipeline | wall s | CPU s | WER (speakers ignored) | cpWER "
        "| speaker-specific words named right | speed vs baseline |"
    )
    print("|---|---|---|---|---|---|---|")
    base_wall = rows[0][1]
    for label, wall, cpu, scores, _ in rows:
        print(
            f"| {label} | {wall:.1f} | {cpu:.1f} | {scores.wer:.1%} | {scores.cp_wer:.1%} | {scores.named:.1%} "
            f"| {base_wall / wall:.2f}x |"
        )

    transcript = to_text(rows[-1][4])
    engine = LlamaCppEngine(smollm2_gguf_path())
    started = time.perf_counter()
    summary = summarize(transcript, engine, language="en")
    summary_seconds = time.perf_counter() - started
    print("\n## After the files exist\n")
    print(
        f"transcript ready (per-track): {rows[-1][1]:.1f} s; summary ready: {rows[-1][1] + summary_seconds:.1f} s "
        f"(summary {summary_seconds:.1f} s, light engine)\n"
    )
    print(json.dumps(summary.to_dict(), indent=2))


async def _warm_up(pool: SpeechPool, path: Path) -> int:
    """Loads the model (left out of the timings); returns the speech actor's pid."""
    audio = decode_audio(path)[: 8 * RATE]
    await pool.transcribe(audio, plan_chunks(audio))
    return int(await pool.actors[0].pid.remote())


if __name__ == "__main__":
    main()
