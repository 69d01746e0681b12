"""The control plane: its use cases over one database, one object per concern.

Servicers validate input and call a use case with the caller's ``Principal``; each use case runs
one transaction and returns rows (the mapper turns them into protos). Who may do what is decided
in ``_policy``; the use cases live in ``_users``, ``_rooms``, ``_joining``, ``_accesses``,
``_lobby``, ``_keys``, ``_meetings`` (meeting history, from the SFU's reports), ``_webhooks``
(webhook resources; the SFU's reports write their events to the outbox, ``_outbox``, and the
server's ``WebhookDispatcher`` sends them) and ``_recordings`` (recordings, through the egress
service, ``_egress_client``, their files, ``_recording_storage``, and their metadata agents
on the AI service, ``_recording_agents``; the server's
``RecordingFollowups`` has them transcribed through the AI service, ``_ai_client``).
"""

from __future__ import annotations

from collections.abc import Sequence

from parley.server.db import Sessions
from parley.sfu_registry import SfuRegistry

from ._accesses import AccessUseCases
from ._ai_client import AiClient
from ._auth import Identity, Principal
from ._domain import Page
from ._egress_client import EgressClient
from ._joining import JoinUseCases
from ._keys import ApiKeyUseCases
from ._lobby import LobbyUseCases
from ._meetings import MeetingUseCases
from ._models import ApiKeyRow, UserRow
from ._outbox import OutboxSignal
from ._recording_agents import RecordingAgents
from ._recording_storage import recording_storage
from ._recordings import RecordingUseCases
from ._rooms import RoomUseCases
from ._settings import ControlSettings
from ._users import UserUseCases
from ._webhooks import WebhookUseCases


class ControlPlane:
    """Use cases of the control plane, over one database."""

    def __init__(self, settings: ControlSettings, sessions: Sessions) -> None:
        self.settings = settings
        self.sfu_registry = (
            SfuRegistry(settings.redis_url, prefix=settings.sfu_registry_prefix) if settings.redis_url else None
        )
        self.users = UserUseCases(settings, sessions)
        self.rooms = RoomUseCases(settings, sessions)
        self.joining = JoinUseCases(settings, sessions, self.sfu_registry)
        self.accesses = AccessUseCases(settings, sessions)
        self.lobby = LobbyUseCases(settings, sessions)
        self.api_keys = ApiKeyUseCases(settings, sessions)
        #: Wakes this process's webhook worker when a transaction wrote events.
        self.outbox_signal = OutboxSignal()
        self.meetings = MeetingUseCases(settings, sessions, self.outbox_signal)
        self.webhooks = WebhookUseCases(settings, sessions, self.outbox_signal)
        egress = EgressClient(settings.egress_url, settings.service_api_key) if settings.egress_url else None
        #: The AI service that transcribes saved recordings (``RecordingFollowups``) and sends
        #: metadata agents into recorded meetings, if any.
        self.ai = AiClient(settings.ai_url, settings.service_api_key) if settings.ai_url else None
        agents = RecordingAgents(self.joining, self.ai) if self.ai is not None else None
        self.recordings = RecordingUseCases(settings, sessions, egress, recording_storage(settings), agents)

    def use_service_key(self, api_key: str) -> None:
        """Control's own API key, for its calls to the egress and AI services, set once
        control runs (``parley up`` creates it through control itself)."""
        if self.recordings.egress is not None:
            self.recordings.egress.use_api_key(api_key)
        if self.ai is not None:
            self.ai.use_api_key(api_key)

    async def aclose(self) -> None:
        """Closes the channels to other services."""
        if self.recordings.egress is not None:
            await self.recordings.egress.aclose()
        if self.ai is not None:
            await self.ai.aclose()

    # -- entry points beyond the servicers: authentication, `parley up`, `python -m control keys`

    async def user_for(self, identity: Identity) -> UserRow:
        """The user behind an authenticated identity, created on first sight."""
        return await self.users.user_for(identity)

    async def authenticate_api_key(self, key_id: str, secret: str) -> Principal:
        return await self.api_keys.authenticate_api_key(key_id, secret)

    async def create_api_key(
        self, caller: Principal | None, display_name: str, scopes: Sequence[str]
    ) -> tuple[ApiKeyRow, str]:
        """Creates a key; ``caller`` None is the operator bootstrapping the first key."""
        return await self.api_keys.create_api_key(caller, display_name, scopes)

    async def list_api_keys(self, caller: Principal | None, *, page_size: int, page_token: str) -> Page[ApiKeyRow]:
        """Lists keys; ``caller`` None is the operator (``python -m control keys list``)."""
        return await self.api_keys.list_api_keys(caller, page_size=page_size, page_token=page_token)

    async def delete_api_key(self, caller: Principal | None, key_id: str) -> None:
        """Deletes a key; ``caller`` None is the operator (``python -m control keys revoke``)."""
        await self.api_keys.delete_api_key(caller, key_id)
