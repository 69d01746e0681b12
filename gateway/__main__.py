"""``python -m gateway``: serve the REST facade with settings from ``PARLEY_*`` variables
(``PARLEY_CONTROL_TARGET``, ``PARLEY_SESSION_SECRET``, ``PARLEY_AI_TARGET`` (optional: the AI
service's gRPC address; without it the transcription and summary routes answer 503),
``PARLEY_OIDC_ISSUER`` / ``_CLIENT_ID`` / ``_CLIENT_SECRET``) and ``PARLEY_HTTP_ADDRESS``
(default ``0.0.0.0:8080``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from ._server import GatewayServer
from ._settings import GatewaySettings


async def _serve() -> None:
    host, _, port = os.environ.get("PARLEY_HTTP_ADDRESS", "0.0.0.0:8080").rpartition(":")
    server = GatewayServer(GatewaySettings.from_env(), host=host, port=int(port))
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    level = os.environ.get("PARLEY_LOG_LEVEL", "INFO").upper()  # INFO logs one line per call
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve())
