"""A real browser meets an SDK bot: headless Debian chromium (fake camera and microphone,
driven by npm playwright-core) opens the gateway's meeting page, which joins with the
TypeScript SDK's `Room` (the bundle built from sdk/typescript) through the WebSocket bridge
(/v1/signal). The bot decodes the browser's video; the browser decodes the bot's (getStats
framesDecoded); chat goes both ways; closing the browser leaves the meeting (not a drop that
waits for a resume); a signal socket closed under the page is survived (the session resumed:
same sids, no leave for the bot); a browser allowed to use TURN relays only meets the bot
through coturn, over UDP and over TCP. Also the bridge's own answers to bad frames and
refused tokens."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from av import VideoFrame

from gateway import GatewayServer
from parley.room import Room
from sfu import Coturn, SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET
from .browser import BROWSER_DIR, build_sdk_bundle, close_page, gateway_for, open_page, read_event
from .conftest import KEY_ID, ColourTrack, Mint
from .test_turn import _self_signed


@pytest.fixture(scope="module")
async def sdk_bundle() -> None:
    await build_sdk_bundle()


@pytest.fixture(scope="module")
async def gateway(sfu: SfuServer, sdk_bundle: None) -> AsyncIterator[GatewayServer]:
    async with gateway_for(sfu.target) as server:
        yield server


async def test_a_browser_and_a_bot_meet(sfu: SfuServer, gateway: GatewayServer, token: Mint) -> None:
    assert shutil.which("chromium"), "Debian chromium is missing: run ./scripts/setup --test"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").exists(), "run ./scripts/setup --test"
    room_id = f"browser-{uuid.uuid4().hex[:8]}"
    bot = await Room.connect(sfu.target, token("bot", room_id))
    await bot.publish(ColourTrack(640, 480), source="camera")
    page = f"{gateway.url}/meet.html#token={token('browser', room_id)}"
    browser = await open_page(page)
    try:
        ready = await read_event(browser)
        assert ready["event"] == "ready" and len(ready["published"]) == 2
        session = sfu.rooms.rooms[room_id].sessions["browser"]

        video = await bot.wait_for(
            "track_subscribed",
            lambda e: e.track is not None and e.track.participant_identity == "browser" and e.track.info.kind == 2,
            within=30,
        )
        assert video.track is not None and video.track.track is not None
        frames = [await asyncio.wait_for(video.track.track.recv(), 20) for _ in range(5)]
        assert all(isinstance(f, VideoFrame) and f.width == 640 and f.height == 480 for f in frames)

        decoded = await read_event(browser)
        assert decoded["event"] == "decoded" and decoded["framesDecoded"] > 10

        assert browser.stdin is not None
        browser.stdin.write(b"chat hello from chromium\n")
        await browser.stdin.drain()
        message = await bot.wait_for("data", lambda e: e.data is not None and e.data.topic == "chat")
        assert message.data is not None and message.data.payload == b"hello from chromium"
        assert message.data.participant_identity == "browser"
    finally:
        await close_page(browser)
        await bot.close()
    left = await asyncio.wait_for(_until_gone(sfu, room_id, "browser"), 10)
    assert left
    # Its browser closing, the page left (pagehide): the SFU did not take it for a network
    # drop, to keep its session for a resume while the bot saw a frozen participant.
    assert session.disconnected_since is None


async def test_a_browser_survives_its_signal_socket_closing(
    sfu: SfuServer, gateway: GatewayServer, token: Mint
) -> None:
    """The page's signal socket closes under it (a network drop): the room resumes its
    session, publishing its tracks again under the same sids, and receives the bot's again;
    the bot sees no leave and no join, and decodes the browser's video on from the same
    track; chat still works."""
    room_id = f"resume-{uuid.uuid4().hex[:8]}"
    bot = await Room.connect(sfu.target, token("bot", room_id))
    await bot.publish(ColourTrack(640, 480), source="camera")
    page = f"{gateway.url}/meet.html#token={token('browser', room_id)}"
    browser = await open_page(page)
    assert browser.stdin is not None
    try:
        ready = await read_event(browser)
        assert ready["event"] == "ready" and len(ready["published"]) == 2
        assert (await read_event(browser))["framesDecoded"] > 10
        video = await bot.wait_for(
            "track_subscribed",
            lambda e: e.track is not None and e.track.participant_identity == "browser" and e.track.info.kind == 2,
            within=30,
        )
        assert video.track is not None and video.track.track is not None
        remote = video.track.track
        assert isinstance(await asyncio.wait_for(remote.recv(), 20), VideoFrame)
        session = sfu.rooms.rooms[room_id].sessions["browser"]
        while not bot._events.empty():  # what the bot saw up to the drop
            bot._events.get_nowait()

        browser.stdin.write(b"drop\n")
        await browser.stdin.drain()
        resumed = await read_event(browser)
        assert resumed["event"] == "resumed"
        assert resumed["states"] == ["reconnecting", "connected"]
        # The same session: the same participant and track sids.
        assert resumed["resumed"] is True and resumed["sid"] == session.sid
        assert sorted(resumed["published"]) == sorted(resumed["before"])
        assert sfu.rooms.rooms[room_id].sessions["browser"] is session
        assert resumed["framesDecoded"] > 10
        # The bot decodes the browser's video on from the same track, once the new
        # connection's frames have replaced whatever was buffered.
        frames = [await asyncio.wait_for(remote.recv(), 20) for _ in range(30)]
        assert all(isinstance(f, VideoFrame) and f.width == 640 for f in frames)

        browser.stdin.write(b"chat still here\n")
        await browser.stdin.drain()
        seen = []  # every event the bot got since the drop, up to the chat message
        async with asyncio.timeout(20):
            async for event in bot.events():
                seen.append(event.type)
                if event.type == "data" and event.data is not None and event.data.payload == b"still here":
                    assert event.data.participant_identity == "browser"
                    break
        for kind in ("participant_left", "participant_joined", "track_unpublished", "track_published"):
            assert kind not in seen, seen
    finally:
        await close_page(browser)
        await bot.close()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_a_browser_allowed_only_relays_meets_through_turn(
    sdk_bundle: None, token: Mint, transport: str, tmp_path: Path
) -> None:
    """Chromium with ``iceTransportPolicy: "relay"`` (as behind a firewall that lets nothing
    but the TURN server through) gets the relay from the join response (one transport
    offered: UDP, TCP for networks that block UDP, or TLS for those that let only HTTPS-like
    traffic out), and media flows both ways through coturn."""
    if shutil.which("turnserver") is None:
        pytest.skip("coturn missing: ./scripts/setup --test")
    certificate, private_key = _self_signed(tmp_path) if transport == "tls" else (None, None)
    async with Coturn(secret=secrets.token_urlsafe(32), certificate=certificate, private_key=private_key) as turn:
        wanted = "turns:" if transport == "tls" else f"turn:127.0.0.1:{turn.port}?transport={transport}"
        settings = SfuSettings(
            token_secrets={KEY_ID: TOKEN_SECRET},
            grpc_address="127.0.0.1:0",
            turn_urls=tuple(u for u in turn.urls if u.startswith(wanted)),
            turn_secret=turn.secret,
        )
        async with SfuServer(settings) as sfu, gateway_for(sfu.target) as gateway:
            room_id = f"relay-{uuid.uuid4().hex[:8]}"
            bot = await Room.connect(sfu.target, token("bot", room_id))
            await bot.publish(ColourTrack(640, 480), source="camera")
            page = f"{gateway.url}/meet.html#token={token('browser', room_id)}&relay=1"
            # The test's own certificate: chromium checks a TLS relay's as an HTTPS site's
            # (without this flag the relay fails and nothing decodes).
            flags = "--ignore-certificate-errors" if transport == "tls" else ""
            browser = await open_page(page, chromium_args=flags)
            try:
                assert (await read_event(browser))["event"] == "ready"
                decoded = await read_event(browser)
                assert decoded["framesDecoded"] > 10
                assert decoded["route"] == {"candidateType": "relay", "relayProtocol": transport}
                video = await bot.wait_for(
                    "track_subscribed",
                    lambda e: (
                        e.track is not None and e.track.participant_identity == "browser" and e.track.info.kind == 2
                    ),
                    within=30,
                )
                assert video.track is not None and video.track.track is not None
                frames = [await asyncio.wait_for(video.track.track.recv(), 20) for _ in range(5)]
                assert all(isinstance(f, VideoFrame) and f.width == 640 for f in frames)
            finally:
                await close_page(browser)
                await bot.close()


async def _until_gone(sfu: SfuServer, room_id: str, identity: str) -> bool:
    while (room := sfu.rooms.rooms.get(room_id)) is not None and identity in room.sessions:
        await asyncio.sleep(0.1)
    return True


async def test_the_bridge_answers_bad_frames_and_refused_tokens(gateway: GatewayServer, token: Mint) -> None:
    url = gateway.url.replace("http://", "ws://") + "/v1/signal"
    async with websockets.connect(url) as ws:
        await ws.send("{not json")
        error = json.loads(await ws.recv())
        assert error["error"]["status"]["code"] == 3  # INVALID_ARGUMENT, and the socket stays open
        await ws.send(json.dumps({"join": {"token": "not-a-jwt"}}))
        refused = json.loads(await ws.recv())
        assert refused["error"]["status"]["code"] == 16  # UNAUTHENTICATED
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4016

    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"join": {"token": token("json-bot", "bridge-room")}}))
        joined = json.loads(await ws.recv())
        assert joined["joined"]["participant"]["identity"] == "json-bot"
        await ws.send(json.dumps({"requestId": "7", "ping": {"timestamp": "99"}}))
        pong = json.loads(await ws.recv())
        assert pong["pong"]["lastPingTimestamp"] == "99"
