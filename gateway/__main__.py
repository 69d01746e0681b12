"""``python -m gateway``: serve the REST facade with settings from ``PARLEY_*`` variables
(``PARLEY_CONTROL_TARGET``, ``PARLEY_SESSION_SECRET``, ``PARLEY_AI_TARGET`` (optional: the AI
service's gRPC address; without it the transcription and summary routes answer 503),
``PARLEY_OIDC_ISSUER`` / ``_CLIENT_ID`` / ``_CLIENT_SECRET``...: ``gateway._settings.ENV``) and
``PARLEY_HTTP_ADDRESS`` (default ``0.0.0.0:8080``). Its metrics are on ``/metrics``. SIGTERM
stops it after the requests in flight."""

from __future__ import annotations

import asyncio
import os
import sys

from parley.server import ConfigurationError, configure_logging, configure_tracing, stop_signals

from ._server import GatewayServer
from ._settings import GatewaySettings


async def _serve() -> None:
    host, _, port = os.environ.get("PARLEY_HTTP_ADDRESS", "0.0.0.0:8080").rpartition(":")
    with stop_signals() as stop:
        async with GatewayServer(GatewaySettings.from_env(), host=host, port=int(port)):
            await stop


if __name__ == "__main__":
    configure_logging()
    configure_tracing("gateway")
    try:
        asyncio.run(_serve())
    except ConfigurationError as error:
        print(f"gateway: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
