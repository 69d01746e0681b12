"""Parley's AI service: transcription (faster-whisper) and summaries (a light llama.cpp engine,
vLLM or an OpenAI-compatible endpoint), as jobs whose work runs on Ray actors."""

from ._errors import AiError
from ._server import SERVICE_NAMES, AiServer, start_runtime
from ._settings import AiSettings, ConfigurationError

__all__ = ["SERVICE_NAMES", "AiError", "AiServer", "AiSettings", "ConfigurationError", "start_runtime"]
