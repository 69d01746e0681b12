"""A private Redis for ``parley up --sfu-workers N``: the workers share rooms through the node
registry in Redis, and embedded defaults need no Redis of the user's. Debian's ``redis-server``
on a free loopback port, keeping nothing on disk, living as long as ``parley up``."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time

import redis.asyncio as redis


class RedisMissing(RuntimeError):
    """redis-server is not installed."""


class PrivateRedis:
    """``async with PrivateRedis() as server``: ``server.url`` is ``redis://127.0.0.1:PORT/0``."""

    def __init__(self) -> None:
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> PrivateRedis:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisMissing("redis-server is not installed (Debian: apt-get install redis-server)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._process = await asyncio.create_subprocess_exec(
            *(executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        try:
            await self._await_ready()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _await_ready(self) -> None:
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        try:
            while True:
                assert self._process is not None
                if self._process.returncode is not None:
                    raise RuntimeError(f"redis-server exited with {self._process.returncode} (port taken?)")
                try:
                    await client.ping()
                    return
                except (redis.ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not answer within 10 s") from None
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def __aexit__(self, *_: object) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
