"""Egress service configuration: explicit arguments, else ``PARLEY_EGRESS_*`` variables, else a
clear error (the server kit's loader). Loaded once into a frozen object."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from parley.server import ConfigurationError, EnvSpec

__all__ = ["ENV", "ConfigurationError", "EgressSettings"]


def _default_node() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class EgressSettings:
    """Everything the egress service needs to run."""

    #: control's gRPC address: callers are authenticated by asking it, recorders get their
    #: join tokens from it, and egress status is reported to it.
    control_target: str
    #: This node's API key, ``pk_....secret``, with the scopes ``egress:report`` and
    #: ``tokens:create``.
    api_key: str = field(repr=False)
    #: Where files go by default when no bucket is configured (the embedded default).
    recordings_dir: Path = field(default_factory=lambda: Path.home() / ".local" / "share" / "parley" / "recordings")
    #: The default S3 bucket; when set, files go to S3 unless a request names another storage.
    recordings_bucket: str = ""
    #: S3 endpoint (MinIO, moto...); empty for AWS. Credentials come from boto3's usual places.
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    #: Where recorders spool what they have not uploaded yet (kept on a crash, then uploaded).
    spool_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "parley-egress-spool")
    #: A Ray cluster (``ray://host:10001`` or ``host:6379``); empty starts a local Ray.
    ray_address: str = ""
    #: CPUs of the local Ray; 0 means all of the machine's.
    ray_num_cpus: int = 0
    #: This node's name in reports.
    node: str = field(default_factory=_default_node)
    #: The longest recording, in seconds, when a request sets none (or more).
    max_duration: float = 6 * 3600.0
    #: Seconds between reports of a running egress to control (it fails recordings whose
    #: egress stays silent for its ``PARLEY_RECORDING_REPORT_TIMEOUT``).
    report_interval: float = 5.0
    #: Seconds a recorder waits in a room with nobody in it before it ends the recording.
    empty_room_timeout: float = 60.0
    #: Scales the measured cost model (``egress._costs``): Ray CPUs reserved per job.
    cpu_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.report_interval <= 0 or self.max_duration <= 0:
            raise ConfigurationError("report_interval and max_duration must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: object) -> EgressSettings:
        """Reads settings, explicit keyword arguments winning over ``PARLEY_EGRESS_*``
        variables (``PARLEY_EGRESS_API_KEY``, ``PARLEY_EGRESS_RECORDINGS_BUCKET``,
        ``PARLEY_CONTROL_TARGET``...: ``ENV.variables(EgressSettings)``)."""
        return ENV.load(cls, env, explicit)


#: Where each setting comes from: ``PARLEY_EGRESS_<FIELD>`` unless named here.
ENV = EnvSpec(prefix="PARLEY_EGRESS_", names={"control_target": "PARLEY_CONTROL_TARGET"})
