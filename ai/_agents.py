"""Metadata agents as the AI service's resource (``MetadataAgentService``): who may start,
stop and read them, and the task that follows each one to its end::

    StartMetadataAgent ─► row RUNNING ─► start_metadata_agent (Ray, one actor per room)
        ─► the timeline, once the agent left ─► agents/{id}/timeline.json ─► SUCCEEDED
                                  (or FAILED, with the error)

The id is the caller's (control passes the recording's), so a start sent again finds its row
and starts nothing. The agent's Ray actor belongs to this process and ends with it: when the
service starts, ``resume`` fails the RUNNING rows whose room has no agent left ("the AI service
restarted"); a row whose room still has one is another replica's, and left to it. A service
that stops asks its agents to leave and stores what they wrote, for a few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc import StatusCode
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from parley.server.db import Sessions

from ._agent_actor import MetadataAgent, running_agent, start_metadata_agent
from ._agent_timeline import Timeline
from ._auth import Caller
from ._errors import AlreadyExists, NotFound
from ._models import JobState, MetadataAgentRow
from ._runner import now
from ._storage import BlobStore

log = logging.getLogger(__name__)

#: How long a stopping service waits for its agents' timelines.
DRAIN_SECONDS = 5.0


class MetadataAgents:
    def __init__(self, sessions: Sessions, store: BlobStore) -> None:
        self._sessions = sessions
        self._store = store
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._handles: dict[str, MetadataAgent] = {}

    # -- the rules -----------------------------------------------------------------------

    async def _row(self, agent_id: str) -> MetadataAgentRow | None:
        async with self._sessions.reads() as session:
            return await session.get(MetadataAgentRow, agent_id)

    async def _visible(self, caller: Caller, agent_id: str) -> MetadataAgentRow:
        row = await self._row(agent_id)
        # Other people's agents are reported missing: their existence is private too.
        if row is None or not (caller.sees_all() or row.owner == caller.owner):
            raise NotFound(f"metadataAgents/{agent_id} not found")
        return row

    @staticmethod
    def _same(caller: Caller, row: MetadataAgentRow, room: str) -> MetadataAgentRow:
        """The agent a start sent again asks for, if it is the same."""
        if row.owner != caller.owner or row.room != room:
            raise AlreadyExists(f"metadataAgents/{row.id} already exists", reason="AGENT_ID_TAKEN")
        return row

    async def start(self, caller: Caller, agent_id: str, *, room: str, sfu_url: str, token: str) -> MetadataAgentRow:
        caller.require("ai:write")
        found = await self._row(agent_id)
        if found is not None:
            return self._same(caller, found, room)
        stamp = now()
        row = MetadataAgentRow(
            id=agent_id, owner=caller.owner, room=room, state=JobState.RUNNING, created_at=stamp, updated_at=stamp
        )
        try:
            async with self._sessions.writes.begin() as session:
                session.add(row)
        except IntegrityError:  # the same start, sent twice at once: the other one won
            found = await self._row(agent_id)
            if found is None:
                raise
            return self._same(caller, found, room)
        try:
            handle = await asyncio.to_thread(start_metadata_agent, room, sfu_url, token)
        except Exception as error:
            log.exception("metadata agent %s could not be started in %s", agent_id, room)
            failure = (StatusCode.UNAVAILABLE, f"Ray refused the agent: {error}")
            await self._end(agent_id, JobState.FAILED, error=failure)
        else:
            self._handles[agent_id] = handle
            task = asyncio.create_task(self._collect(agent_id, handle), name=f"metadata-agent-{agent_id}")
            self._tasks[agent_id] = task
            task.add_done_callback(lambda _: self._forget(agent_id))
            log.info("metadata agent %s started in %s by %s", agent_id, room, caller.owner)
        return await self._visible(caller, agent_id)

    async def get(self, caller: Caller, agent_id: str) -> tuple[MetadataAgentRow, Timeline | None]:
        """The agent, and its timeline once it succeeded."""
        row = await self._visible(caller, agent_id)
        if row.state != JobState.SUCCEEDED:
            return row, None
        data = await asyncio.to_thread(self._store.get_bytes, row.timeline_key)
        return row, Timeline.from_json(data)

    async def stop(self, caller: Caller, agent_id: str) -> MetadataAgentRow:
        """Asks a running agent to leave; its row ends once its timeline is stored."""
        caller.require("ai:write")
        row = await self._visible(caller, agent_id)
        if row.state != JobState.RUNNING:
            return row
        handle = self._handles.get(agent_id)
        if handle is not None:
            handle.stop()
        else:  # started by another replica (or a previous process): the room's agent, if any
            actor = await asyncio.to_thread(running_agent, row.room)
            if actor is not None:
                actor.stop.remote()
        log.info("metadata agent %s asked to leave by %s", agent_id, caller.owner)
        return row

    # -- following the agents ------------------------------------------------------------

    def _forget(self, agent_id: str) -> None:
        self._tasks.pop(agent_id, None)
        self._handles.pop(agent_id, None)

    async def _collect(self, agent_id: str, handle: MetadataAgent) -> None:
        try:
            timeline = await handle.timeline()
            key = f"agents/{agent_id}/timeline.json"
            await asyncio.to_thread(self._store.put_bytes, key, timeline.to_json())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("metadata agent %s failed: %s", agent_id, error, exc_info=True)
            await self._end(agent_id, JobState.FAILED, error=(StatusCode.UNAVAILABLE, f"the agent failed: {error}"))
            return
        await self._end(agent_id, JobState.SUCCEEDED, timeline_key=key)
        log.info("metadata agent %s left with %d events", agent_id, len(timeline.events))

    async def _end(
        self, agent_id: str, state: JobState, *, error: tuple[StatusCode, str] | None = None, timeline_key: str = ""
    ) -> None:
        values: dict[str, object] = {"state": state, "ended_at": now(), "updated_at": now()}
        if timeline_key:
            values["timeline_key"] = timeline_key
        if error is not None:
            values |= {"error_code": error[0].name, "error_reason": "AGENT_FAILED", "error_message": error[1][:2000]}
        async with self._sessions.writes.begin() as session:
            await session.execute(
                update(MetadataAgentRow)
                .where(MetadataAgentRow.id == agent_id, MetadataAgentRow.state == JobState.RUNNING)
                .values(**values)
            )

    async def resume(self) -> None:
        """Fails the agents a previous process of this service left running: they went with it."""
        async with self._sessions.reads() as session:
            running = (
                await session.execute(
                    select(MetadataAgentRow.id, MetadataAgentRow.room).where(MetadataAgentRow.state == JobState.RUNNING)
                )
            ).all()
        for agent_id, room in running:
            if agent_id not in self._tasks and await asyncio.to_thread(running_agent, room) is None:
                log.info("metadata agent %s was lost with the previous process", agent_id)
                await self._end(agent_id, JobState.FAILED, error=(StatusCode.ABORTED, "the AI service restarted"))

    async def aclose(self) -> None:
        """Asks this process's agents to leave, keeps the timelines that come within
        ``DRAIN_SECONDS``, and stops following the others (``resume`` fails them later)."""
        for handle in list(self._handles.values()):
            with contextlib.suppress(Exception):
                handle.stop()
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
