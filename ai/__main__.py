"""``python -m ai``: serve transcription and summaries with settings from ``PARLEY_AI_*``
variables (``PARLEY_AI_DATABASE_URL``, ``PARLEY_AI_STORAGE``, ``PARLEY_CONTROL_TARGET``,
``PARLEY_AI_RAY_ADDRESS``, ``PARLEY_AI_SUMMARY_ENGINE``...) and ``PARLEY_AI_GRPC_ADDRESS``
(default ``0.0.0.0:50053``)."""

from __future__ import annotations

import asyncio
import logging
import os

from ._server import AiServer
from ._settings import AiSettings


async def _serve() -> None:
    server = AiServer(AiSettings.from_env(), address=os.environ.get("PARLEY_AI_GRPC_ADDRESS", "0.0.0.0:50053"))
    await server.start()
    try:
        await server.wait_for_termination()
    finally:
        await server.stop()


if __name__ == "__main__":
    level = os.environ.get("PARLEY_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve())
