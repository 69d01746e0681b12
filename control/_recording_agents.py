"""Metadata agents for recordings: when a recording that collects metadata starts (the
``collect_metadata`` option, and always for ``TRANSCRIPT`` recordings), control sends the AI
service's metadata agent into the room (``MetadataAgentService.StartMetadataAgent``, the
recording's id as the agent's) with a hidden, subscribe-only join token, and stops it when it
stops the recording. The agent's timeline later names the speakers of a mixed recording's
transcript (``_recording_followups``).

Best effort: an AI service that is away or refuses costs the recording its metadata, never the
recording itself. The token has no recorder grant: the SFU marks a room recorded while a
recorder's session is in it, and the agent leaves by itself when that mark falls."""

from __future__ import annotations

import logging

from parley.control.v1 import room_service_pb2 as room_pb

from ._ai_client import AiCallFailed, AiClient
from ._errors import Unavailable
from ._joining import JoinUseCases
from ._models import RoomRow

log = logging.getLogger(__name__)

#: The agent's identity and display name in the meeting (hidden: no one sees them).
AGENT_IDENTITY = "metadata-agent"
AGENT_NAME = "Metadata agent"
#: What the agent may do: receive, unseen. Nothing more, recorder included.
AGENT_GRANTS = room_pb.JoinGrants(can_subscribe=True, hidden=True)


class RecordingAgents:
    def __init__(self, joining: JoinUseCases, ai: AiClient) -> None:
        self.joining = joining
        self.ai = ai

    async def start(self, room: RoomRow, recording_id: str) -> str:
        """Sends an agent into ``room`` for the recording; its name, or "" when none came."""
        try:
            grant = await self.joining.service_grant(room, AGENT_IDENTITY, AGENT_NAME, AGENT_GRANTS)
            agent = await self.ai.start_metadata_agent(
                recording_id, room=grant.room, sfu_url=grant.sfu_url, join_token=grant.token
            )
        except (AiCallFailed, Unavailable) as failure:
            log.warning("recording %s goes on without metadata: no agent could be started (%s)", recording_id, failure)
            return ""
        except Exception:  # whatever it is, the recording is worth more than its metadata
            log.exception("recording %s goes on without metadata: starting its agent failed", recording_id)
            return ""
        log.info("recording %s: metadata agent %s in room %s", recording_id, agent.name, room.id)
        return agent.name

    async def stop(self, name: str) -> None:
        """Asks the agent to leave now (it leaves anyway once the recorder has)."""
        try:
            await self.ai.stop_metadata_agent(name)
        except AiCallFailed as failure:
            log.warning("metadata agent %s could not be told to leave (%s); it leaves with the recorder", name, failure)
