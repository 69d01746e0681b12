"""Parley's AI service: transcription (faster-whisper) and summaries (a light llama.cpp engine,
vLLM or an OpenAI-compatible endpoint), as jobs whose work runs on Ray actors.

Besides the server, the building blocks of its pipeline are public for benchmarks and custom
deployments: audio decoding, speech chunking, the speech model and its pool of Ray actors, the
light summary engine and its speed measure."""

from parley.server.ray_runtime import start_ray

from ._audio import decode_audio
from ._chunking import merge, plan_chunks
from ._condense import plan_condensed
from ._errors import AiError
from ._formats import to_text
from ._pool import SpeechPool, SpeechPoolOptions
from ._server import SERVICE_NAMES, AiServer, start_runtime
from ._settings import AiSettings, ConfigurationError
from ._speakers import attribute_speakers, interleave_speakers
from ._summarize import summarize
from ._summary_engines import LlamaCppEngine, tokens_per_second
from ._summary_models import smollm2_gguf_path
from ._types import Segment, SpeakerTurn
from ._whisper import SpeechModel, resolve_model

__all__ = [
    "SERVICE_NAMES",
    "AiError",
    "AiServer",
    "AiSettings",
    "ConfigurationError",
    "LlamaCppEngine",
    "Segment",
    "SpeakerTurn",
    "SpeechModel",
    "SpeechPool",
    "SpeechPoolOptions",
    "attribute_speakers",
    "decode_audio",
    "interleave_speakers",
    "merge",
    "plan_chunks",
    "plan_condensed",
    "resolve_model",
    "smollm2_gguf_path",
    "start_ray",
    "start_runtime",
    "summarize",
    "to_text",
    "tokens_per_second",
]
