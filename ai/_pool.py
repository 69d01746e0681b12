"""Ray actors that hold models, and the pool that spreads chunks of audio over them.

Each ``SpeechActor`` loads one faster-whisper model once and serves ``concurrency`` chunks at
a time (one CTranslate2 worker each). The pool keeps every actor busy, and when an actor
dies mid-chunk (``RayActorError``) the chunk goes to another actor (Ray restarts the dead
one: ``max_restarts=-1``), so a job survives the loss of a worker.

``SummaryActor`` holds a summary engine (``num_gpus`` for GPU engines) and streams progress
back with a Ray streaming generator, which is also what lets a cancel stop it between
model calls."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError

from ._chunking import Chunk
from ._types import Segment
from ._whisper import ChunkResult, SpeechModel

log = logging.getLogger(__name__)

#: Attempts per chunk before the job fails (first try included).
CHUNK_ATTEMPTS = 3
#: Samples at the end of a chunk heard again to prime the chunk after it (5 s).
_TAIL = 5 * 16000


@ray.remote(max_restarts=-1, max_task_retries=0)
class SpeechActor:
    """One speech model in one Ray worker process."""

    def __init__(self, folder: str, device: str, threads: int, workers: int, beam_size: int) -> None:
        logging.basicConfig(level=logging.INFO)
        self._model = SpeechModel(Path(folder), device=device, threads=threads, workers=workers, beam_size=beam_size)

    def transcribe(
        self,
        pieces: list[np.ndarray],
        offsets: list[float],
        language: str,
        prompt: str,
        contexts: list[Segment | None],
    ) -> list[ChunkResult]:
        """Transcribes a batch of chunks, each with what was heard before it (one Ray round
        trip, one batched pass)."""
        results = self._model.transcribe_batch(pieces, offsets, language=language, prompt=prompt, contexts=contexts)
        # Whisper may place a last timestamp past the audio it was given: keep it inside.
        return [
            ChunkResult(segments=[_clamp(s, offset + len(piece) / 16000) for s in r.segments], language=r.language)
            for piece, offset, r in zip(pieces, offsets, results, strict=True)
        ]

    def pid(self) -> int:
        return os.getpid()


def _last(result: ChunkResult) -> Segment | None:
    """The last sentence heard: what primes the next chunk."""
    return result.segments[-1] if result.segments else None


def _clamp(segment: Segment, limit: float) -> Segment:
    if segment.end <= limit:
        return segment
    return Segment(start=min(segment.start, limit), end=limit, text=segment.text, language=segment.language)


@dataclass(frozen=True, kw_only=True)
class SpeechPoolOptions:
    actors: int = 1
    #: Chunks one actor transcribes at once (CTranslate2 workers sharing the model's weights).
    concurrency: int = 2
    #: CPU threads per chunk being transcribed.
    threads: int = 1
    device: str = "cpu"
    beam_size: int = 5
    #: Streams of chunks per slot: one call carries a chunk of each, transcribed in one
    #: batched pass. More streams: bigger batches, fewer chunks primed with what came before.
    batch_size: int = 1
    #: Ray resources per actor; GPU engines ask for ``num_gpus``.
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class SpeechPool:
    """Actors for one speech model."""

    folder: Path
    options: SpeechPoolOptions
    actors: list[Any] = field(default_factory=list)

    def start(self) -> None:
        o = self.options
        factory = SpeechActor.options(  # type: ignore[attr-defined]
            max_concurrency=o.concurrency, num_cpus=o.num_cpus, num_gpus=o.num_gpus
        )
        self.actors = [
            factory.remote(str(self.folder), o.device, o.threads, o.concurrency, o.beam_size) for _ in range(o.actors)
        ]

    def stop(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    async def transcribe(
        self,
        audio: np.ndarray,
        chunks: Sequence[Chunk],
        *,
        language: str = "",
        prompt: str = "",
        on_chunk_done: Callable[[Chunk, ChunkResult], None] | None = None,
    ) -> list[ChunkResult]:
        """Transcribes ``chunks`` of ``audio`` on every actor at once; results in chunk order.

        ``prompt``: words to expect (names, the room's title), given to every chunk.

        The chunks are cut into contiguous streams, ``batch_size`` per slot (actors ×
        concurrency); a stream's chunks go one after the other, each primed with the last
        sentence of the one before it (context across a boundary, as plain Whisper keeps
        across its windows: the first words after a boundary are the ones a chunk without
        context gets wrong), and one call carries one chunk of each of a slot's streams
        (one Ray round trip, one batched decoder pass). At most one call per slot is in
        flight, so a long file never floods Ray's queues and a cancel (cancelling this
        coroutine) leaves little queued work behind.
        """
        if not self.actors:
            self.start()
        results: list[ChunkResult | None] = [None] * len(chunks)
        slots = asyncio.Queue[Any]()
        for actor in self.actors:
            for _ in range(self.options.concurrency):
                slots.put_nowait(actor)
        rotate = itertools.cycle(range(len(self.actors)))
        count = slots.qsize()
        per_stream = -(-len(chunks) // max(1, min(len(chunks), count * self.options.batch_size)))
        streams = [list(range(i, min(i + per_stream, len(chunks)))) for i in range(0, len(chunks), per_stream)]

        async def call(spans: list[Chunk], contexts: list[Segment | None]) -> list[ChunkResult]:
            actor = await slots.get()
            try:
                pieces = [audio[c.start : c.end] for c in spans]
                offsets = [c.offset for c in spans]
                attempt = 0
                while True:
                    attempt += 1
                    ref = actor.transcribe.remote(pieces, offsets, language, prompt, contexts)
                    try:
                        done: list[ChunkResult] = await ref
                    except asyncio.CancelledError:
                        ray.cancel(ref)
                        raise
                    except RayActorError as error:
                        if attempt == CHUNK_ATTEMPTS:
                            raise
                        log.warning(
                            "speech actor lost during chunks %s (attempt %d): %s; retrying", offsets, attempt, error
                        )
                        # Try another actor: the lost one is being restarted by Ray.
                        actor = self.actors[next(rotate)]
                        continue
                    return done
            finally:
                slots.put_nowait(actor)

        async def run(group: list[list[int]]) -> None:
            # A stream that starts after another gets its context from a quick look at the
            # end of the chunk before it (the last seconds only: a short decode).
            tails = [chunks[s[0] - 1] for s in group if s[0] > 0]
            heard: list[Segment | None] = []
            if tails:
                ends = [Chunk(max(c.start, c.end - _TAIL), c.end) for c in tails]
                heard = [_last(r) for r in await call(ends, [None] * len(ends))]
            contexts = [heard.pop(0) if s[0] > 0 else None for s in group]
            for step in range(max(len(s) for s in group)):
                active = [k for k, s in enumerate(group) if step < len(s)]
                batch = [group[k][step] for k in active]
                done = await call([chunks[i] for i in batch], [contexts[k] for k in active])
                for k, index, result in zip(active, batch, done, strict=True):
                    results[index] = result
                    contexts[k] = _last(result)
                    if on_chunk_done is not None:
                        on_chunk_done(chunks[index], result)

        tasks = [asyncio.ensure_future(run(streams[g::count])) for g in range(min(count, len(streams)))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in results if r is not None]


@ray.remote(max_restarts=-1, max_task_retries=0)
class SummaryActor:
    """A summary engine loaded once in one Ray worker process."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        logging.basicConfig(level=logging.INFO)
        self._engine = factory()

    def describe(self) -> str:
        return str(self._engine.name)

    def summarize(self, transcript: str, language: str) -> Any:
        """Yields ``("progress", fraction)`` items, then ``("result", minutes)`` (``Minutes.to_dict()``).

        The engine works in a thread and reports through a queue (summarize() takes a
        progress callback; a generator cannot yield from inside it). When the consumer
        cancels, the generator is closed and the next progress report stops the work.
        """
        import queue
        import threading

        from ._summarize import summarize

        updates: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()

        def report(fraction: float) -> None:
            if stop.is_set():
                raise _Stopped
            updates.put(("progress", fraction))

        def work() -> None:
            try:
                minutes = summarize(transcript, self._engine, language=language, on_progress=report)
                updates.put(("result", minutes.to_dict()))
            except _Stopped:
                updates.put(("stopped", None))
            except Exception as error:
                updates.put(("error", error))

        threading.Thread(target=work, name="summarize", daemon=True).start()
        try:
            while True:
                kind, value = updates.get()
                if kind == "error":
                    raise value
                if kind == "stopped":
                    return
                yield (kind, value)
                if kind == "result":
                    return
        finally:
            stop.set()


class _Stopped(Exception):
    """Raised inside a summary's progress callback once its consumer has gone."""


async def stream_summary(actor: Any, transcript: str, language: str) -> AsyncIterator[tuple[str, Any]]:
    """Progress and result items of ``SummaryActor.summarize``; cancelling the consumer
    cancels the actor's generator."""
    generator = actor.summarize.options(num_returns="streaming").remote(transcript, language)
    try:
        async for ref in generator:
            yield await ref
    except asyncio.CancelledError:
        ray.cancel(generator)
        raise
