"""``python -m control``: serve the control plane with settings from ``PARLEY_*`` variables
(``PARLEY_DATABASE_URL``, ``PARLEY_TOKEN_SECRET``, ``PARLEY_OIDC_ISSUER`` / ``_AUDIENCE``,
``PARLEY_SFU_URL``) and ``PARLEY_GRPC_ADDRESS`` (default ``0.0.0.0:50051``).

``python -m control keys create|list|revoke`` manage API keys in the database directly
(``control/_manage.py``; ``--help`` lists them)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from ._server import ControlServer
from ._settings import ControlSettings


async def _serve() -> None:
    server = ControlServer(ControlSettings.from_env(), address=os.environ.get("PARLEY_GRPC_ADDRESS", "0.0.0.0:50051"))
    await server.start()
    try:
        await server.wait_for_termination()
    finally:
        await server.stop()


if __name__ == "__main__":
    if sys.argv[1:2] not in ([], ["serve"]):
        from ._manage import main

        raise SystemExit(main(sys.argv[1:]))
    level = os.environ.get("PARLEY_LOG_LEVEL", "INFO").upper()  # INFO logs one line per call
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve())
