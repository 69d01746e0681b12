"""Keeping a session alive: the SFU ends a session it hears nothing from for three ping
intervals, and the room client pings at the interval the SFU announces, so a bot that only
listens stays in the meeting."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from parley.room import Room
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from sfu import SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET
from .conftest import KEY_ID, Mint

PING_INTERVAL = 0.3
#: Longer than the SFU's silence limit of three intervals, with room to spare.
IDLE = 4 * 3 * PING_INTERVAL


async def test_an_idle_bot_stays_in_the_meeting(token: Mint) -> None:
    room_id = f"idle-{uuid.uuid4().hex[:8]}"
    settings = SfuSettings(
        token_secrets={KEY_ID: TOKEN_SECRET}, grpc_address="127.0.0.1:0", ping_interval=PING_INTERVAL
    )
    async with SfuServer(settings) as sfu:
        # Without pings, a session ends (which is what a silent client would see).
        async with grpc.aio.insecure_channel(sfu.target) as channel:
            call = sig_grpc.SignalServiceStub(channel).Connect()
            await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=token("silent", room_id))))
            kinds = []
            async for response in call:
                kinds.append(response.WhichOneof("message"))
                if kinds[-1] == "left":
                    assert response.left.reason == res.LEAVE_REASON_CONNECTION_FAILED
                    break
            assert kinds[0] == "joined" and kinds[-1] == "left"
            call.cancel()

        bot = await Room.connect(sfu.target, token("bot", room_id))
        try:
            assert bot.ping_interval == PING_INTERVAL  # as the SFU announced it in `joined`
            await asyncio.sleep(IDLE)  # the bot does nothing at all
            assert not bot.closed.is_set()
            assert "bot" in sfu.rooms.rooms[room_id].sessions
            alice = await Room.connect(sfu.target, token("alice", room_id))
            try:
                await alice.send_data(b"still there?", topic="chat")
                seen = []
                async for event in bot.events():  # in order: nothing has ended the session
                    seen.append(event.type)
                    if event.type == "data":
                        assert event.data is not None and event.data.payload == b"still there?"
                        break
                assert "left" not in seen and "participant_joined" in seen
            finally:
                await alice.close()
        finally:
            await bot.close()
        assert bot._pinger.done() and bot._reader.done()
