"""Session resumption: a bot whose signal stream drops (its TCP connection cut by a proxy
between it and the SFU) comes back as the same participant, with the same track sids; the
others see no leave and no join, and keep decoding its video after a pause. A session whose
grace period passed has left, and its client joins anew; a resume by anyone but the session's
own client is refused."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from av import VideoFrame

from parley import InvalidArgument, NotFound, ParleyError, PermissionDenied
from parley.room import Room, RoomEvent
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from sfu import SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET
from .conftest import KEY_ID, ColourTrack, Mint


class Proxy:
    """A TCP proxy in front of the SFU's gRPC port: ``cut()`` drops every connection through
    it as a network failure would; while ``refusing``, new connections are dropped at once."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.refusing = False
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"grpc://{host}:{port}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        host, port = self.target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._links |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


def _drain(room: Room) -> list[RoomEvent]:
    """The events the room has queued (without waiting)."""
    events = []
    while not room._events.empty():
        events.append(room._events.get_nowait())
    return events


async def _until(condition: Callable[[], bool], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.fixture
async def proxy(sfu: SfuServer) -> AsyncIterator[Proxy]:
    async with Proxy(sfu.target) as running:
        yield running


async def test_a_dropped_bot_resumes_as_the_same_participant(sfu: SfuServer, proxy: Proxy, token: Mint) -> None:
    room_id = f"resume-{uuid.uuid4().hex[:8]}"
    watcher = await Room.connect(sfu.target, token("watcher", room_id))
    bot = await Room.connect(proxy.url, token("bot", room_id))
    try:
        published = await bot.publish(ColourTrack(), source="camera")
        subscribed = await watcher.wait_for(
            "track_subscribed", lambda e: e.track is not None and e.track.sid == published.sid, within=30
        )
        assert subscribed.track is not None and subscribed.track.track is not None
        remote = subscribed.track.track
        assert isinstance(await asyncio.wait_for(remote.recv(), 20), VideoFrame)
        session = sfu.rooms.rooms[room_id].sessions["bot"]
        up = session.published[published.sid].up
        assert up is not None
        old_receiver = up.receiver
        _drain(watcher)

        proxy.cut()
        reconnected = await bot.wait_for("reconnected", within=30)
        assert reconnected.resumed and bot.local.sid == session.sid
        assert sfu.rooms.rooms[room_id].sessions["bot"] is session

        # Published again on a new connection under the same sid, continuing the same UpTrack.
        await _until(lambda: published.sid in bot.published)
        await _until(lambda: up.receiver is not old_receiver and up.stats.packets > 0)
        packets = up.stats.packets
        # The watcher decodes on from the same track (its old frames are long gone by the 30th).
        frames = [await asyncio.wait_for(remote.recv(), 20) for _ in range(30)]
        assert all(isinstance(f, VideoFrame) for f in frames)
        assert up.stats.packets > packets  # the new connection's packets, forwarded

        seen = [e.type for e in _drain(watcher)]
        for kind in ("participant_left", "participant_joined", "track_unpublished", "track_published"):
            assert kind not in seen, seen
        assert not [t for t in seen if t == "track_subscribed"]  # the same transceiver, the same track
        await watcher.ping()
    finally:
        await bot.close()
        await watcher.close()


async def test_a_session_that_does_not_resume_in_time_leaves_and_its_client_joins_anew(token: Mint) -> None:
    room_id = f"expire-{uuid.uuid4().hex[:8]}"
    settings = SfuSettings(token_secrets={KEY_ID: TOKEN_SECRET}, grpc_address="127.0.0.1:0", resume_grace=1.0)
    async with SfuServer(settings) as node, Proxy(node.target) as proxy:
        watcher = await Room.connect(node.target, token("watcher", room_id))
        bot = await Room.connect(proxy.url, token("bot", room_id), reconnect_within=60)
        try:
            published = await bot.publish(ColourTrack(), source="camera")
            await watcher.wait_for("track_published", lambda e: e.track is not None and e.track.sid == published.sid)
            first_sid = bot.local.sid

            proxy.refusing = True  # the bot cannot get back before the grace period ends
            proxy.cut()
            left = await watcher.wait_for(
                "participant_left", lambda e: e.participant is not None and e.participant.identity == "bot"
            )
            assert left.participant is not None
            assert "bot" not in node.rooms.rooms[room_id].sessions

            proxy.refusing = False  # back: the SFU no longer has the session, the bot joins anew
            reconnected = await bot.wait_for("reconnected", within=60)
            assert not reconnected.resumed and bot.local.sid != first_sid
            joined = await watcher.wait_for(
                "participant_joined", lambda e: e.participant is not None and e.participant.identity == "bot"
            )
            assert joined.participant is not None and joined.participant.info.sid == bot.local.sid
            again = await watcher.wait_for("track_published", lambda e: e.track is not None, within=30)
            assert again.track is not None and again.track.sid != published.sid
        finally:
            await bot.close()
            await watcher.close()


async def _resume(target: str, join_token: str, participant_sid: str, resume_token: str) -> ParleyError:
    async with grpc.aio.insecure_channel(target) as channel:
        call = sig_grpc.SignalServiceStub(channel).Connect()
        resume = sig.ResumeSession(participant_sid=participant_sid, resume_token=resume_token)
        await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=join_token, resume=resume)))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), 20)
        return ParleyError.from_rpc_error(refused.value)


async def test_a_resume_by_anyone_else_is_refused(sfu: SfuServer, token: Mint) -> None:
    room_id = f"forged-{uuid.uuid4().hex[:8]}"
    bot = await Room.connect(sfu.target, token("bot", room_id))
    try:
        session = sfu.rooms.rooms[room_id].sessions["bot"]
        guess = "A" * 43
        # Another participant's token with the bot's session id.
        forged = await _resume(sfu.target, token("mallory", room_id), session.sid, guess)
        assert isinstance(forged, PermissionDenied)
        # Even the bot's own identity (a second device) needs the session's resume token.
        wrong = await _resume(sfu.target, token("bot", room_id), session.sid, guess)
        assert isinstance(wrong, PermissionDenied)
        # Another participant's token with the right resume token: still not theirs.
        stolen = await _resume(sfu.target, token("mallory", room_id), session.sid, session.resume_token)
        assert isinstance(stolen, PermissionDenied)
        unknown = await _resume(sfu.target, token("bot", room_id), "PA_000000000000", guess)
        assert isinstance(unknown, NotFound) and unknown.reason == "SESSION_NOT_FOUND"
        invalid = await _resume(sfu.target, token("bot", room_id), session.sid, "short")
        assert isinstance(invalid, InvalidArgument)

        # The bot's session went on untouched.
        assert sfu.rooms.rooms[room_id].sessions["bot"] is session and not session.disconnected
        await bot.ping()
    finally:
        await bot.close()
