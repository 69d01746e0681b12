"""Where rooms meet when several SFU nodes share the load: a registry in Redis.

SFU nodes register themselves and send heartbeats (their URL and load); a room lives on one
node, chosen on its first join as the live node with the fewest rooms; a room whose node
stopped sending heartbeats moves to another node on its next join. Control asks the registry
which node to send a joining participant to; the node checks that a room it is asked to host
is its own. Keys (under ``prefix``):

* ``{prefix}:node:{id}``: the node's URL and load (JSON), expiring ``ttl`` after its last heartbeat;
* ``{prefix}:rooms``: sorted set, node id -> rooms assigned to it;
* ``{prefix}:room:{room}``: the id of the node a room lives on.

Server-side (control, the SFU and the gateway use it): needs ``parley[server]`` (redis), and
``import parley`` does not import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as redis

DEFAULT_PREFIX = "parley:sfu"

# Assigns a room atomically: keep its node while that node is alive, else move it to the
# live node with the fewest rooms. KEYS: room key, rooms zset. ARGV: prefix.
_ASSIGN = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('EXISTS', ARGV[1] .. ':node:' .. current) == 1 then
  return current
end
local best, best_rooms = nil, nil
local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local node, rooms = entries[i], tonumber(entries[i + 1])
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. node) == 1 then
    if best == nil or rooms < best_rooms then best, best_rooms = node, rooms end
  else
    redis.call('ZREM', KEYS[2], node)
  end
end
if best == nil then return false end
if current and redis.call('ZSCORE', KEYS[2], current) then redis.call('ZINCRBY', KEYS[2], -1, current) end
redis.call('SET', KEYS[1], best)
redis.call('ZINCRBY', KEYS[2], 1, best)
return best
"""

# Releases a room if it is still assigned to the node. KEYS: room key, rooms zset. ARGV: node.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('ZSCORE', KEYS[2], ARGV[1]) then redis.call('ZINCRBY', KEYS[2], -1, ARGV[1]) end
  return 1
end
return 0
"""


# Confirms a node still hosts a room: claims it when unassigned or its node is dead. Returns
# the node the room is assigned to. KEYS: room key, rooms zset. ARGV: prefix, node.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[2] then return current end
if current and redis.call('EXISTS', ARGV[1] .. ':node:' .. current) == 1 then return current end
if current and redis.call('ZSCORE', KEYS[2], current) then redis.call('ZINCRBY', KEYS[2], -1, current) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZINCRBY', KEYS[2], 1, ARGV[2])
return ARGV[2]
"""


@dataclass(frozen=True)
class SfuNode:
    id: str
    url: str
    participants: int = 0
    rooms: int = 0


class NoSfuNode(Exception):
    """No SFU node is alive."""


class SfuRegistry:
    """The registry in Redis at ``url`` (``redis://host:6379/0``)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, ttl: float = 10.0) -> None:
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.ttl = ttl
        self._assign = self._redis.register_script(_ASSIGN)
        self._release = self._redis.register_script(_RELEASE)
        self._claim = self._redis.register_script(_CLAIM)

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _node_key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}:room:{room}"

    async def heartbeat(self, node: SfuNode) -> None:
        """Says the node is alive (call more often than ``ttl``)."""
        value = json.dumps({"url": node.url, "participants": node.participants, "rooms": node.rooms})
        async with self._redis.pipeline() as pipe:
            pipe.set(self._node_key(node.id), value, px=int(self.ttl * 1000))
            pipe.zadd(f"{self.prefix}:rooms", {node.id: 0}, nx=True)
            await pipe.execute()

    async def leave(self, node_id: str) -> None:
        """Takes a stopping node out at once (its rooms move on their next join)."""
        async with self._redis.pipeline() as pipe:
            pipe.delete(self._node_key(node_id))
            pipe.zrem(f"{self.prefix}:rooms", node_id)
            await pipe.execute()

    async def node(self, node_id: str) -> SfuNode | None:
        raw = await self._redis.get(self._node_key(node_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return SfuNode(node_id, data["url"], data.get("participants", 0), data.get("rooms", 0))

    async def assign(self, room: str) -> SfuNode:
        """The node ``room`` lives on, choosing one on its first join (or when its node died)."""
        for _ in range(3):  # a node may expire between the script and the read
            node_id = await self._assign(keys=[self._room_key(room), f"{self.prefix}:rooms"], args=[self.prefix])
            if not node_id:
                raise NoSfuNode("no SFU node is alive")
            node = await self.node(node_id)
            if node is not None:
                return node
        raise NoSfuNode("no SFU node stays alive")

    async def owner(self, room: str) -> str | None:
        """The id of the node ``room`` is assigned to, if any."""
        owner = await self._redis.get(self._room_key(room))
        return None if owner is None else str(owner)

    async def claim(self, room: str, node_id: str) -> str:
        """Keeps ``room`` on ``node_id`` unless another live node took it meanwhile (after this
        node missed heartbeats); returns the node it is assigned to."""
        owner = await self._claim(keys=[self._room_key(room), f"{self.prefix}:rooms"], args=[self.prefix, node_id])
        return str(owner)

    async def release(self, room: str, node_id: str) -> None:
        """Forgets a closed room (if it still lives on ``node_id``)."""
        await self._release(keys=[self._room_key(room), f"{self.prefix}:rooms"], args=[node_id])
