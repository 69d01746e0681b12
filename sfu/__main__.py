"""Runs the SFU: ``python -m sfu``. Settings come from ``PARLEY_TOKEN_SECRET`` (the secret
control signs join tokens with), ``PARLEY_REDIS_URL``, the ``PARLEY_SFU_*`` variables
(``sfu._settings.ENV.variables(SfuSettings)``) and ``PARLEY_METRICS_ADDRESS`` (Prometheus ``/metrics``,
default ``0.0.0.0:9466``; empty: off). ``PARLEY_SFU_WORKERS`` (0: one per core) runs several
nodes in worker processes on the same Redis, the metrics of all of them on that one address.
SIGTERM tells every participant the server is shutting down, drains, then exits."""

from __future__ import annotations

import os

from parley.server import Service, run_service

from ._server import SfuServer
from ._settings import SfuSettings
from ._workers import SfuWorkers, worker_count


def _server() -> Service:
    settings = SfuSettings.from_env()
    metrics_address = os.environ.get("PARLEY_METRICS_ADDRESS", "0.0.0.0:9466")
    if worker_count(settings.workers) > 1:
        return SfuWorkers(settings, metrics_address=metrics_address)
    return SfuServer(settings, metrics_address=metrics_address)


if __name__ == "__main__":
    run_service("sfu", _server)
