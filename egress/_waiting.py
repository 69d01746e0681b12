"""Waiting on an event for at most a while, without ``asyncio.wait_for``: on Python 3.11 a task
cancelled inside ``wait_for(event.wait(), ...)`` was seen to hang for minutes (it held an egress
node's shutdown), while ``asyncio.wait`` returns at once."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Returns when ``event`` is set or ``seconds`` have passed."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
