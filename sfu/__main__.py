"""Runs one SFU node: ``python -m sfu``. Settings come from ``PARLEY_TOKEN_SECRET`` (the secret
control signs join tokens with), ``PARLEY_REDIS_URL``, the ``PARLEY_SFU_*`` variables
(``sfu._settings.ENV.variables(SfuSettings)``) and ``PARLEY_METRICS_ADDRESS`` (Prometheus ``/metrics``,
default ``0.0.0.0:9466``; empty: off). SIGTERM tells every participant the server is shutting
down, drains, then exits."""

from __future__ import annotations

import os

from parley.server import run_service

from ._server import SfuServer
from ._settings import SfuSettings


def _server() -> SfuServer:
    return SfuServer(SfuSettings.from_env(), metrics_address=os.environ.get("PARLEY_METRICS_ADDRESS", "0.0.0.0:9466"))


if __name__ == "__main__":
    run_service("sfu", _server)
