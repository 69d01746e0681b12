"""Janus 1.1.2 (Debian ``janus``, C), an independent production SFU, as a peer in
``bench.sfu_bench``: its VideoRoom plugin behind its HTTP API, loaded alone (a plugins and a
transports folder holding only VideoRoom and HTTP), and the benchmark's clients speaking that
API: one publisher (the same pre-encoded VP8 and Opus) and N subscribers (the same aiortc
counting receivers). Janus gathers no ICE candidates on loopback: run it inside a private
network namespace with a veth pair (``bench._netns``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from parley._loadmedia import FrameCounter, audio_track, video_track

#: Where Debian installs Janus's plugins and transports.
_LIBRARIES = Path("/usr/lib/x86_64-linux-gnu/janus")
_ROOM = 1234


class JanusMissing(RuntimeError):
    pass


class JanusServer:
    """``async with JanusServer(port) as janus``: Janus on ``janus.url`` (``http://127.0.0.1:PORT/janus``),
    its process ``janus.pid``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/janus"
        self._folder = Path(tempfile.mkdtemp(prefix="parley-bench-janus-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def _configure(self) -> Path:
        folder = self._folder
        for kind, library in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")):
            (folder / kind).mkdir()
            (folder / kind / library).symlink_to(_LIBRARIES / kind / library)
        for empty in ("events", "loggers"):
            (folder / empty).mkdir()
        (folder / "janus.jcfg").write_text(
            f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder / "plugins"}"
    transports_folder = "{folder / "transports"}"
    events_folder = "{folder / "events"}"
    loggers_folder = "{folder / "loggers"}"
    debug_level = 2
    session_timeout = 120
}}
media: {{
    rtp_port_range = "20000-60000"
}}
nat: {{
    ignore_mdns = true
}}
"""
        )
        (folder / "janus.transport.http.jcfg").write_text(
            f"""general: {{
    base_path = "/janus"
    http = true
    port = {self.port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
"""
        )
        (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
        return folder / "janus.jcfg"

    async def __aenter__(self) -> JanusServer:
        executable = shutil.which("janus")
        if executable is None or not (_LIBRARIES / "plugins" / "libjanus_videoroom.so").exists():
            raise JanusMissing("Janus is not installed (Debian: apt-get install janus)")
        config = self._configure()
        self._process = subprocess.Popen(  # noqa: ASYNC220 (once per run, before media flows)
            [executable, "--config", str(config), "--configs-folder", str(self._folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient() as http:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"janus exited with {self._process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/info")).status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError("janus did not answer on HTTP within 20 s")
                await asyncio.sleep(0.1)

    async def __aexit__(self, *_: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                await asyncio.to_thread(self._process.wait, 10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        shutil.rmtree(self._folder, ignore_errors=True)


class _Session:
    """A Janus session over HTTP: requests, and their events read by one long poll."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=60)
        self.id = 0
        self._transactions = (f"t{i}" for i in itertools.count())
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.id = (await self._post(self.url, {"janus": "create"}))["data"]["id"]
        self._poller = asyncio.create_task(self._poll())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        with contextlib.suppress(httpx.HTTPError):
            await self._post(f"{self.url}/{self.id}", {"janus": "destroy"})
        await self.http.aclose()

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": next(self._transactions)}
        answer: dict[str, Any] = (await self.http.post(url, json=body)).json()
        if answer.get("janus") == "error":
            raise RuntimeError(f"janus: {answer['error']}")
        return answer

    async def attach(self) -> int:
        answer = await self._post(f"{self.url}/{self.id}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        return int(answer["data"]["id"])

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (``create``): its answer's data."""
        answer = await self._post(f"{self.url}/{self.id}/{handle}", {"janus": "message", "body": body})
        data: dict[str, Any] = answer["plugindata"]["data"]
        if "error" in data:
            raise RuntimeError(f"janus videoroom: {data['error']}")
        return data

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        """An asynchronous plugin request (``join``, ``publish``, ``start``): the event that
        answers it (its ``plugindata.data`` and ``jsep``)."""
        transaction = next(self._transactions)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        answer = (await self.http.post(f"{self.url}/{self.id}/{handle}", json=request)).json()
        if answer.get("janus") == "error":
            self._waiting.pop(transaction, None)
            raise RuntimeError(f"janus: {answer['error']}")
        event = await asyncio.wait_for(future, 30)
        data = event["plugindata"]["data"]
        if "error" in data:
            raise RuntimeError(f"janus videoroom: {data['error']}")
        return event

    async def _poll(self) -> None:
        while True:
            try:
                events = (await self.http.get(f"{self.url}/{self.id}", params={"maxev": 10})).json()
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                future = self._waiting.pop(event.get("transaction", ""), None)
                if future is not None and event.get("janus") == "event" and not future.done():
                    future.set_result(event)


def publishing_connection() -> RTCPeerConnection:
    """A peer connection sending the benchmark's pre-encoded VP8 video and Opus audio (what a
    publisher of a peer SFU offers; Parley's own publisher is a ``Room``)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in (video_track(), audio_track()):
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if track.kind == "video":
            codecs = transceiver.sender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType in ("video/VP8", "video/rtx")])
    return pc


def _sdp(pc: RTCPeerConnection) -> dict[str, Any]:
    return {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp, "trickle": False}


class JanusClients:
    """The benchmark's publisher and ``subscribers`` counting receivers, in one VideoRoom."""

    def __init__(self, url: str) -> None:
        self.session = _Session(url)
        self.pcs: list[RTCPeerConnection] = []
        self.subscriber_pcs: list[RTCPeerConnection] = []
        self.counters: list[FrameCounter] = []
        self.video: list[FrameCounter] = []

    def _count(self, track: Any) -> None:
        counter = FrameCounter.start(track)
        self.counters.append(counter)
        if track.kind == "video":
            self.video.append(counter)

    async def start(self, subscribers: int) -> None:
        session = self.session
        await session.open()
        publisher = await session.attach()
        await session.request(
            publisher,
            {"request": "create", "room": _ROOM, "publishers": 1, "videocodec": "vp8", "audiocodec": "opus"},
        )
        joined = await session.message(publisher, {"request": "join", "ptype": "publisher", "room": _ROOM})
        feed = joined["plugindata"]["data"]["id"]
        pc = publishing_connection()
        self.pcs.append(pc)
        await pc.setLocalDescription(await pc.createOffer())
        published = await session.message(publisher, {"request": "publish", "audio": True, "video": True}, _sdp(pc))
        await pc.setRemoteDescription(RTCSessionDescription(**{k: published["jsep"][k] for k in ("sdp", "type")}))
        for _ in range(subscribers):
            handle = await session.attach()
            attached = await self._subscribe(handle, feed)
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.on("track", self._count)
            self.pcs.append(pc)
            self.subscriber_pcs.append(pc)
            offer = attached["jsep"]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
            await pc.setLocalDescription(await pc.createAnswer())
            await session.message(handle, {"request": "start"}, _sdp(pc))

    async def _subscribe(self, handle: int, feed: int) -> dict[str, Any]:
        """Joins ``handle`` as a subscriber of ``feed``, which Janus offers once the publisher's
        connection is up (until then: "No such feed")."""
        deadline = time.monotonic() + 20
        while True:
            try:
                return await self.session.message(
                    handle, {"request": "join", "ptype": "subscriber", "room": _ROOM, "streams": [{"feed": feed}]}
                )
            except RuntimeError as error:
                if "No such feed" not in str(error) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        for counter in self.counters:
            counter.stop()
        for pc in self.pcs:
            await pc.close()
        await self.session.close()
