"""``python -m egress``: record rooms with settings from ``PARLEY_EGRESS_*`` variables
(``PARLEY_CONTROL_TARGET``, ``PARLEY_EGRESS_API_KEY``, ``PARLEY_EGRESS_RECORDINGS_BUCKET``,
``PARLEY_EGRESS_RAY_ADDRESS``...: ``egress._settings.ENV``), ``PARLEY_EGRESS_GRPC_ADDRESS``
(default ``0.0.0.0:50054``) and ``PARLEY_METRICS_ADDRESS`` (Prometheus ``/metrics``, default
``0.0.0.0:9467``; empty: off). SIGTERM stops the recordings (their files are finished), then
exits."""

from __future__ import annotations

import os

from parley.server import run_service

from ._server import EgressServer
from ._settings import EgressSettings


def _server() -> EgressServer:
    return EgressServer(
        EgressSettings.from_env(),
        address=os.environ.get("PARLEY_EGRESS_GRPC_ADDRESS", "0.0.0.0:50054"),
        metrics_address=os.environ.get("PARLEY_METRICS_ADDRESS", "0.0.0.0:9467"),
    )


if __name__ == "__main__":
    run_service("egress", _server)
