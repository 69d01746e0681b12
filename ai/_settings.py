"""AI service configuration: explicit arguments, else ``PARLEY_AI_*`` environment variables,
else a clear error (the server kit's loader). Loaded once into a frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from parley.server import ConfigurationError, EnvSpec
from parley.server.db import DATABASE_SCHEMES

__all__ = ["ENV", "AiSettings", "ConfigurationError", "SummaryEngineKind"]

SummaryEngineKind = Literal["light", "vllm", "openai"]


@dataclass(frozen=True, kw_only=True)
class AiSettings:
    """Everything the AI service needs to run."""

    #: ``postgresql://...`` or ``sqlite:///path``: job records.
    database_url: str
    #: control's gRPC address: callers are authenticated by asking it who they are.
    control_target: str
    #: Where uploads and results go: a folder (``/path`` or ``file:///path``) or
    #: ``s3://bucket/prefix``.
    storage: str
    #: S3 endpoint for ``s3://`` storage and S3 sources (MinIO, moto...); empty for AWS.
    #: Credentials come from boto3's usual places (``AWS_ACCESS_KEY_ID``...).
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    #: A Ray cluster (``ray://host:10001`` or ``host:6379``); empty starts a local Ray.
    ray_address: str = ""
    #: CPUs of the local Ray; 0 means all of the machine's.
    ray_num_cpus: int = 0
    #: Speech actors per model, chunks each transcribes at once, CPU threads per chunk.
    speech_actors: int = 1
    speech_concurrency: int = 2
    speech_threads: int = 1
    #: ``cpu`` or ``cuda`` (float16 on GPUs, int8 on CPUs).
    speech_device: str = "cpu"
    #: GPUs per speech actor on a GPU cluster.
    speech_gpus: float = 0.0
    #: The model used when a job names none.
    default_speech_model: str = "tiny.en"
    #: Extra speech models, name to CTranslate2 folder.
    speech_models: Mapping[str, str] = field(default_factory=dict)
    #: Longest chunk handed to one worker, in seconds (Whisper's window is 30).
    chunk_seconds: float = 30.0
    summary_engine: SummaryEngineKind = "light"
    #: light: a GGUF file (default: the packaged SmolLM2); vllm: a Hugging Face folder or a GGUF.
    summary_model_path: str = ""
    #: openai: the endpoint (``http://host:8000/v1``), model name and key.
    summary_base_url: str = ""
    summary_model: str = ""
    summary_api_key: str = field(default="", repr=False)
    #: GPUs for the summary actor (vLLM on a GPU cluster).
    summary_gpus: float = 0.0
    #: Ray CPUs reserved per speech actor and by the summary actor. The summary actor reserves
    #: none by default: on a small machine it must be placeable beside the speech actors that
    #: already hold every CPU (it is idle between summaries; the OS shares the cores).
    speech_cpus: float = 1.0
    summary_cpus: float = 0.0
    #: Converted and joined model weights.
    model_cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "parley" / "models")
    #: Largest accepted upload.
    max_upload_bytes: int = 4 << 30

    def __post_init__(self) -> None:
        if not self.database_url.startswith(DATABASE_SCHEMES):
            raise ConfigurationError("database_url must be postgresql://... or sqlite:///path")
        if self.summary_engine not in ("light", "vllm", "openai"):
            raise ConfigurationError(f"summary_engine must be light, vllm or openai, not {self.summary_engine!r}")
        if self.summary_engine == "openai" and not self.summary_base_url:
            raise ConfigurationError("summary_engine openai needs summary_base_url (PARLEY_AI_SUMMARY_BASE_URL)")
        if self.speech_actors < 1 or self.speech_concurrency < 1 or self.speech_threads < 1:
            raise ConfigurationError("speech_actors, speech_concurrency and speech_threads must be at least 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: object) -> AiSettings:
        """Reads settings, explicit keyword arguments winning over ``PARLEY_AI_*`` variables
        (``PARLEY_AI_DATABASE_URL``, ``PARLEY_AI_STORAGE``, ``PARLEY_CONTROL_TARGET``,
        ``PARLEY_AI_SPEECH_MODELS=name=/folder,other=/folder``...: ``ENV.variables(AiSettings)``)."""
        return ENV.load(cls, env, explicit)


#: Where each setting comes from: ``PARLEY_AI_<FIELD>`` unless named here.
ENV = EnvSpec(prefix="PARLEY_AI_", names={"control_target": "PARLEY_CONTROL_TARGET"})
