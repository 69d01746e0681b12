"""This node's place among SFU nodes: with Redis, a registry entry kept alive by heartbeats
(its URL and load) and the rooms assigned to it; without, it hosts every room."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from parley.sfu.v1 import resources_pb2 as res
from parley.sfu_registry import NoSfuNode, SfuNode, SfuRegistry

from ._room import Rooms
from ._settings import SfuSettings

log = logging.getLogger(__name__)


class Cluster:
    def __init__(self, settings: SfuSettings, rooms: Rooms) -> None:
        self.settings = settings
        self.rooms = rooms
        self.node_id = secrets.token_hex(6)
        self.url = settings.public_url
        self.registry = (
            SfuRegistry(settings.redis_url, prefix=settings.registry_prefix, ttl=3 * settings.heartbeat_interval)
            if settings.redis_url
            else None
        )
        self._task: asyncio.Task[None] | None = None
        rooms.on_closed = self._released

    async def start(self, url: str) -> None:
        """Registers this node, reachable at ``url`` unless settings name a public URL."""
        self.url = self.settings.public_url or url
        if self.registry is not None:
            await self._beat()
            self._task = asyncio.create_task(self._heartbeats())
            log.info("sfu node %s registered at %s", self.node_id, self.url)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.registry is not None:
            with contextlib.suppress(Exception):
                await self.registry.leave(self.node_id)
            await self.registry.aclose()

    async def owner_elsewhere(self, room: str) -> str | None:
        """None when ``room`` is (now) this node's to host, else the URL of its node. A room
        whose node died is taken here: its participants come back to this node (a restarted
        worker on the dead one's port) or were sent here by control or the gateway."""
        if self.registry is None:
            return None
        for _ in range(3):  # the owner may expire between the claim and the read
            owner = await self.registry.claim(room, self.node_id)
            if owner == self.node_id:
                return None
            node = await self.registry.node(owner)
            if node is not None:
                return node.url
        raise NoSfuNode(f"the node of room {room} keeps dying")

    async def _beat(self) -> None:
        assert self.registry is not None
        participants = sum(len(r.sessions) for r in self.rooms.rooms.values())
        node = SfuNode(self.node_id, self.url, participants=participants, rooms=len(self.rooms.rooms))
        await self.registry.heartbeat(node)
        for room_id, room in list(self.rooms.rooms.items()):
            if room.closed or await self.registry.claim(room_id, self.node_id) == self.node_id:
                continue
            # This node missed heartbeats and the room was given to another: its participants
            # leave here and rejoin there (through control), so the meeting does not split.
            log.warning("room %s moved to another node; ending its sessions here", room_id)
            for session in list(room.sessions.values()):
                await session.end(res.LEAVE_REASON_MOVED)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await self._beat()
            except Exception as error:  # Redis away: keep serving, retry next beat
                log.warning("heartbeat failed: %s", error)

    def _released(self, room: str) -> None:
        if self.registry is not None:
            task = asyncio.ensure_future(self.registry.release(room, self.node_id))
            self.rooms.closing.add(task)
            task.add_done_callback(self.rooms.closing.discard)
