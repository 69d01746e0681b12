"""The two SFUs the benchmark compares, each run as its own process so its CPU can be read:

    python -m bench._sfu_servers parley PORT   # Parley's SFU (RTP forwarding)
    python -m bench._sfu_servers relay PORT    # aiortc's MediaRelay: decode once, encode per subscriber

Each prints ``ready`` when it listens, and on SIGTERM one JSON line of what it measured. Parley's
also prints, on each SIGUSR1, one JSON line of the forwarding delays since the last one (so that
a run can measure several windows), and reads from the environment where to report
(``PARLEY_CONTROL_TARGET``, ``PARLEY_SFU_REPORT_API_KEY``, ``PARLEY_SFU_REPORT_BUFFER``) and
where to serve its Prometheus metrics (``PARLEY_SFU_METRICS_ADDRESS``, ``host:port``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import numpy as np

BENCH_SECRET = "bench-token-secret-" + "b" * 32


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    array = np.array(values) * 1000
    return {"p50_ms": float(np.percentile(array, 50)), "p99_ms": float(np.percentile(array, 99))}


async def _until_term() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def parley(port: int) -> dict[str, Any]:
    from sfu import SfuServer, SfuSettings, record_forwarding_delays

    delays = record_forwarding_delays()

    def mark() -> None:  # SIGUSR1: the delays of the window that ends now
        print(json.dumps(_percentiles(delays)), flush=True)
        delays.clear()

    # Reporting to control when the benchmark asks for it (``--report``).
    settings = SfuSettings(
        token_secrets={"bench": BENCH_SECRET},
        grpc_address=f"127.0.0.1:{port}",
        control_target=os.environ.get("PARLEY_CONTROL_TARGET", ""),
        report_api_key=os.environ.get("PARLEY_SFU_REPORT_API_KEY", ""),
        report_buffer=int(os.environ.get("PARLEY_SFU_REPORT_BUFFER") or SfuSettings.report_buffer),
    )
    async with SfuServer(settings, metrics_address=os.environ.get("PARLEY_SFU_METRICS_ADDRESS", "")):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, mark)
        print("ready", flush=True)
        await _until_term()
        return _percentiles(delays)


async def relay(port: int) -> dict[str, Any]:
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    media_relay = MediaRelay()
    sources: dict[str, Any] = {}
    connections: list[RTCPeerConnection] = []

    def new_pc() -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        connections.append(pc)
        return pc

    async def publish(request: web.Request) -> web.Response:
        offer = await request.json()
        pc = new_pc()
        pc.on("track", lambda track: sources.__setitem__(track.kind, track))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    async def subscribe(request: web.Request) -> web.Response:
        offer = await request.json()
        pc = new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        for kind in ("video", "audio"):
            if kind in sources:
                # buffered=False: a late encoder drops decoded frames rather than queueing them
                pc.addTrack(media_relay.subscribe(sources[kind], buffered=kind == "audio"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    app = web.Application()
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await _until_term()
    for pc in connections:
        await pc.close()
    await runner.cleanup()
    return _percentiles([])


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    result = asyncio.run(parley(port) if mode == "parley" else relay(port))
    print(json.dumps(result), flush=True)
