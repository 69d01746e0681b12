"""The metadata agent on Ray: one actor per room, named after it, so that at most one agent is
in a room however many recordings start it at once.

``start_metadata_agent`` gets the room's actor or creates it (``get_if_exists``: Ray decides
atomically, by name, in the ``parley`` namespace, so that services in other Ray jobs find the
same one) and asks it to ``run``. A ``run`` while the agent is already collecting joins that
collection: every caller gets the same timeline. Once the collection ends, the actor exits
(``retire``), which frees the name for the room's next recording; a ``run`` that reached it
first starts a new collection instead, and the actor stays. One that finds the actor already
exiting fails with ``RayActorError`` (``timeline`` raises it): a start in the same instant as
the previous recording's end, which the caller may retry.

The actor is not detached: it belongs to the process that created it (the service that started
the recording) and ends with it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import ray

from ._agent_timeline import Timeline

NAMESPACE = "parley"
NAME_PREFIX = "parley-metadata-agent:"
#: Ray CPUs reserved per agent. Measured on 2 shared cores: 4 CPU seconds per minute for one
#: participant's microphone (about 0.065 of a core: aiortc receiving and decoding, resampling,
#: VAD), 11-14 for three, 0.1 in an empty room; every microphone costs this whether its owner
#: speaks or not (browsers send silence too). The default fits a meeting of about four.
NUM_CPUS = 0.25
#: What the worker process needs of the environment (Ray workers do not inherit the caller's).
ENV_VARS = {"HF_HUB_OFFLINE": "1"}


@ray.remote(max_restarts=0, max_task_retries=0)
class MetadataAgentActor:
    def __init__(self) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("aioice").setLevel(logging.WARNING)
        self._task: asyncio.Task[Timeline] | None = None
        self._stop: asyncio.Event | None = None

    async def run(self, sfu_url: str, token: str, room: str) -> bytes:
        """Collects ``room``'s timeline (or joins the collection under way); its JSON."""
        from ._agent import MetadataCollector

        if self._task is None or self._task.done():
            self._stop = asyncio.Event()
            self._task = asyncio.ensure_future(MetadataCollector(sfu_url, token).run(self._stop))
            self._task.add_done_callback(lambda _: ray.get_runtime_context().current_actor.retire.remote())
            logging.getLogger(__name__).info("metadata agent for %s starting", room)
        # Shielded: one caller giving up (ray.cancel) must not end the others' collection.
        timeline = await asyncio.shield(self._task)
        return timeline.to_json()

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def retire(self) -> None:
        """Exits once the collection is over (unless a new one began meanwhile)."""
        if self._task is not None and self._task.done():
            ray.actor.exit_actor()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class MetadataAgent:
    """A room's agent as one caller started it."""

    room: str
    actor: Any
    #: The ``run`` call's result: the timeline's JSON.
    result: Any

    def stop(self) -> None:
        """Asks the agent to leave now (its timeline then comes back through ``timeline``)."""
        self.actor.stop.remote()

    async def timeline(self) -> Timeline:
        """Waits for the collection to end; its timeline."""
        return Timeline.from_json(await self.result)


def agent_name(room: str) -> str:
    """The Ray actor name of ``room``'s agent (``room`` as in the join token, ``rooms/`` or not)."""
    return NAME_PREFIX + room.removeprefix("rooms/")


def running_agent(room: str) -> Any | None:
    """``room``'s agent actor while one is alive, started by any process of the cluster."""
    try:
        return ray.get_actor(agent_name(room), namespace=NAMESPACE)
    except ValueError:
        return None


def start_metadata_agent(room: str, sfu_url: str, token: str, *, num_cpus: float = NUM_CPUS) -> MetadataAgent:
    """Starts ``room``'s metadata agent with a hidden, subscribe-only join ``token`` for the SFU
    at ``sfu_url``, or joins the one already running there. Ray must be initialised."""
    actor = MetadataAgentActor.options(  # type: ignore[attr-defined]
        name=agent_name(room),
        namespace=NAMESPACE,
        get_if_exists=True,
        num_cpus=num_cpus,
        runtime_env={"env_vars": ENV_VARS},
    ).remote()
    return MetadataAgent(room=room, actor=actor, result=actor.run.remote(sfu_url, token, room))
