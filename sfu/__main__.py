"""Runs one SFU node: ``python -m sfu``. Settings come from ``PARLEY_TOKEN_SECRET`` (the secret
control signs join tokens with), ``PARLEY_SFU_GRPC_ADDRESS`` and the other ``PARLEY_SFU_*``
variables (see ``sfu/_settings.py``)."""

from __future__ import annotations

import asyncio
import logging
import os

from ._server import SfuServer
from ._settings import SfuSettings


async def _main() -> None:
    async with SfuServer(SfuSettings.from_env()) as sfu:
        await sfu.wait_for_termination()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("PARLEY_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    asyncio.run(_main())
