"""``python -m control``: serve the control plane with settings from ``PARLEY_*`` variables
(``PARLEY_DATABASE_URL``, ``PARLEY_TOKEN_SECRET``, ``PARLEY_OIDC_ISSUER`` / ``_AUDIENCE``,
``PARLEY_SFU_URL``...: ``control._settings.ENV.variables(ControlSettings)``), ``PARLEY_GRPC_ADDRESS``
(default ``0.0.0.0:50051``) and ``PARLEY_METRICS_ADDRESS`` (Prometheus ``/metrics``, default
``0.0.0.0:9464``; empty: off). SIGTERM drains calls in flight, then exits.

``python -m control keys create|list|revoke`` manage API keys in the database directly
(``control/_manage.py``; ``--help`` lists them)."""

from __future__ import annotations

import os
import sys

from parley.server import run_service

from ._server import ControlServer
from ._settings import ControlSettings


def _server() -> ControlServer:
    return ControlServer(
        ControlSettings.from_env(),
        address=os.environ.get("PARLEY_GRPC_ADDRESS", "0.0.0.0:50051"),
        metrics_address=os.environ.get("PARLEY_METRICS_ADDRESS", "0.0.0.0:9464"),
    )


if __name__ == "__main__":
    if sys.argv[1:2] not in ([], ["serve"]):
        from ._manage import main

        raise SystemExit(main(sys.argv[1:]))
    run_service("control", _server)
