"""``python -m ai``: serve transcription and summaries with settings from ``PARLEY_AI_*``
variables (``PARLEY_AI_DATABASE_URL``, ``PARLEY_AI_STORAGE``, ``PARLEY_CONTROL_TARGET``,
``PARLEY_AI_RAY_ADDRESS``, ``PARLEY_AI_SUMMARY_ENGINE``...: ``ai._settings.ENV``),
``PARLEY_AI_GRPC_ADDRESS`` (default ``0.0.0.0:50053``) and ``PARLEY_METRICS_ADDRESS``
(Prometheus ``/metrics``, default ``0.0.0.0:9465``; empty: off). SIGTERM drains calls in
flight, then exits."""

from __future__ import annotations

import os

from parley.server import run_service

from ._server import AiServer
from ._settings import AiSettings


def _server() -> AiServer:
    return AiServer(
        AiSettings.from_env(),
        address=os.environ.get("PARLEY_AI_GRPC_ADDRESS", "0.0.0.0:50053"),
        metrics_address=os.environ.get("PARLEY_METRICS_ADDRESS", "0.0.0.0:9465"),
    )


if __name__ == "__main__":
    run_service("ai", _server)
