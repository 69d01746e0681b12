"""The README's first command for real: `parley up` in a subprocess, then the `parley` CLI
against it, the way a newcomer types them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from parley import load_credentials, verify_join_token
from parley._loadtest import child_pids
from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import sfu_report_service_pb2_grpc as report_grpc
from parley.testing import WebhookReceiver

PARLEY = [sys.executable, "-c", "import launcher; launcher.main()"]


@contextlib.contextmanager
def parley_up(data_dir: Path, *options: str) -> Iterator[tuple[str, int]]:
    """Runs `parley up` (with ``options``) until the block ends; yields what it printed at
    start, and its pid."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [
            *PARLEY,
            "up",
            "--data-dir",
            str(data_dir),
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--ai-port",
            "0",
            "--sfu-port",
            "0",
            "--egress-port",
            "0",
            "--turn-port",
            "0",
            *options,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        output = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            output.append(line)
            if "PARLEY_API_SECRET=" in line or not line:
                break
        text = "".join(output)
        assert re.search(r"listening on 127\.0\.0\.1:\d+", text), text
        assert "development API key" in text, text
        try:
            yield text, process.pid
        finally:
            process.terminate()
            process.wait(timeout=20)
            process.stdout.close()
    assert process.returncode == 0


@dataclass(frozen=True)
class Running:
    data_dir: Path
    #: Where the REST API listens, as `parley up` printed it.
    rest_url: str
    #: The `parley up` process (control, SFU, AI and gateway).
    pid: int
    #: What it printed at start.
    printed: str


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir = tmp_path_factory.mktemp("parley-up")
    with parley_up(data_dir) as (printed, pid):
        found = re.search(r"REST API and web app on (http://\S+)", printed)
        assert found, printed
        yield Running(data_dir, found.group(1), pid, printed)


def cli(data_dir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    done = subprocess.run(
        [*PARLEY, "--data-dir", str(data_dir), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def test_rooms_lifecycle(running: Running) -> None:
    created = json.loads(
        cli(running.data_dir, "--json", "rooms", "create", "--name", "Weekly sync", "--access", "trusted").stdout
    )
    assert created["accessLevel"] == "ACCESS_LEVEL_TRUSTED"
    slug = created["slug"]
    assert slug in cli(running.data_dir, "rooms", "list").stdout
    assert json.loads(cli(running.data_dir, "--json", "rooms", "get", slug).stdout)["name"] == created["name"]
    cli(running.data_dir, "rooms", "delete", slug)
    assert "NOT_FOUND" in cli(running.data_dir, "rooms", "get", slug, ok=False).stderr


def test_token_create_prints_a_verifiable_jwt(running: Running) -> None:
    slug = json.loads(cli(running.data_dir, "--json", "rooms", "create").stdout)["slug"]
    token = cli(
        running.data_dir,
        "token",
        "create",
        "--room",
        slug,
        "--identity",
        "bot-1",
        "--source",
        "camera",
        "--no-data",
        "--ttl",
        "30m",
    ).stdout.strip()
    secret = json.loads((running.data_dir / "secrets.json").read_text())["token_secret"]
    claims = verify_join_token(token, secrets={"parley": secret})
    assert claims.identity == "bot-1"
    assert claims.grants.can_publish_sources == ("camera",)
    assert not claims.grants.can_publish_data


def test_keys_create_list_revoke(running: Running) -> None:
    out = cli(running.data_dir, "keys", "create", "--name", "ci bot", "--scope", "rooms:read").stdout
    key = re.search(r"PARLEY_API_KEY=(pk_\w+)", out)
    secret = re.search(r"PARLEY_API_SECRET=(\S+)", out)
    assert key and secret
    assert key.group(1) in cli(running.data_dir, "keys", "list").stdout
    narrow = ["--api-key", key.group(1), "--api-secret", secret.group(1)]
    assert "PERMISSION_DENIED" in cli(running.data_dir, *narrow, "rooms", "create", ok=False).stderr
    cli(running.data_dir, "keys", "revoke", key.group(1))
    assert "UNAUTHENTICATED" in cli(running.data_dir, *narrow, "rooms", "get", "abc-defg-hij", ok=False).stderr


def test_bad_input_is_reported_with_fields(running: Running) -> None:
    failed = cli(running.data_dir, "rooms", "create", "--slug", "Not A Slug", ok=False)
    assert "INVALID_ARGUMENT" in failed.stderr
    assert "room.slug" in failed.stderr


def test_restart_keeps_rooms_and_the_development_key(tmp_path: Path) -> None:
    with parley_up(tmp_path) as (first, _):
        assert "new development API key" in first
        slug = json.loads(cli(tmp_path, "--json", "rooms", "create").stdout)["slug"]
    key = json.loads((tmp_path / "credentials.json").read_text())["api_key"]
    with parley_up(tmp_path) as (second, _):
        assert "new development API key" not in second
        assert key in second
        assert slug in cli(tmp_path, "rooms", "list").stdout


def test_a_saved_key_short_of_a_scope_is_replaced(tmp_path: Path) -> None:
    """A data folder from before a scope existed (webhooks:manage) gets a development key that
    holds it; the old key is revoked."""
    with parley_up(tmp_path):
        out = cli(tmp_path, "keys", "create", "--name", "older dev key", "--scope", "rooms:read").stdout
    older = dict(line.split("=", 1) for line in out.splitlines())
    credentials = tmp_path / "credentials.json"
    saved = json.loads(credentials.read_text())
    credentials.write_text(
        json.dumps({**saved, "api_key": older["PARLEY_API_KEY"], "api_secret": older["PARLEY_API_SECRET"]})
    )
    with parley_up(tmp_path) as (printed, _):
        assert "new development API key" in printed
        assert "no webhooks" in cli(tmp_path, "webhooks", "list").stdout
        assert older["PARLEY_API_KEY"] not in cli(tmp_path, "keys", "list").stdout


def test_parley_up_saves_where_its_gateway_is(running: Running) -> None:
    """The CLI resolves recordings' download links (``/v1/files/...``) against it."""
    assert load_credentials(data_dir=running.data_dir, env={}).gateway_url == running.rest_url


async def test_parley_up_runs_a_turn_relay(running: Running) -> None:
    """With coturn installed, `parley up` runs it with a secret of the installation, and a
    credential made from that secret allocates a relay on it."""
    if shutil.which("turnserver") is None:
        assert "TURN relay not started: coturn is not installed" in running.printed
        pytest.skip("coturn missing: ./scripts/setup --test")
    from aioice.turn import create_turn_endpoint

    from sfu import turn_credentials

    found = re.search(r"TURN relay \(coturn\) on ([\d.]+):(\d+), UDP and TCP", running.printed)
    assert found, running.printed
    secret = json.loads((running.data_dir / "secrets.json").read_text())["turn_secret"]
    username, password = turn_credentials(secret, "PA_cli", ttl=60)
    for transport in ("udp", "tcp"):
        relay, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol,
            (found.group(1), int(found.group(2))),
            username,
            password,
            transport=transport,
        )
        assert relay.get_extra_info("sockname")[0] == found.group(1)  # the relayed address
        relay.close()


async def test_parley_up_runs_sfu_workers(tmp_path: Path) -> None:
    """`--sfu-workers 2`: two SFU processes sharing rooms through a private Redis. Rooms spread
    over them, a bot meets on its room's worker, its meeting reaches control's history, the
    gateway's /metrics answers for each worker, and stopping leaves no process behind."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server missing (Debian: redis-server)")
    from parley import Client
    from parley.room import Room

    options = ("--sfu-workers", "2", "--no-ai", "--no-recording", "--no-turn")
    with parley_up(tmp_path, *options) as (printed, pid):
        found = re.search(r"Parley SFU: 2 workers .* listening on (\S+), (\S+); rooms spread", printed)
        rest = re.search(r"REST API and web app on (http://\S+)", printed)
        assert found and rest, printed
        credentials = load_credentials(data_dir=tmp_path, env={})
        client = Client(credentials.url, bearer=credentials.bearer)
        try:
            rooms = [await client.rooms.create(display_name=f"Worker room {i}") for i in range(4)]
            grants = [await client.rooms.create_join_token(room.slug, identity="bot") for room in rooms]
            assert {grant.sfu_url for grant in grants} == {f"grpc://{found.group(1)}", f"grpc://{found.group(2)}"}
            bot = await Room.connect(grants[0].sfu_url, grants[0].token)
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{rest.group(1)}/metrics")).text
            await bot.close()
            assert re.search(r'parley_sfu_participants\{node="\w+",worker="[01]"\} 1\.0', metrics), metrics
            assert 'process_cpu_seconds_total{worker="0"}' in metrics
            assert 'process_cpu_seconds_total{worker="1"}' in metrics
            for _ in range(100):  # the worker reports the meeting to control in the background
                meetings = [m async for m in client.meetings.list(rooms[0].slug)]
                if meetings:
                    break
                await asyncio.sleep(0.1)
            assert len(meetings) == 1
        finally:
            await client.aclose()
        children = child_pids(pid)
        assert len(children) >= 3  # two workers and redis-server
    for _ in range(50):  # multiprocessing's resource tracker ends on its own once its parent has
        left = [child for child in children if os.path.exists(f"/proc/{child}")]  # noqa: ASYNC240
        if not left:
            break
        await asyncio.sleep(0.1)
    assert not left


def test_without_a_server_the_cli_says_how_to_start_one(tmp_path: Path) -> None:
    failed = cli(tmp_path / "nothing-here", "rooms", "list", ok=False)
    assert "parley up" in failed.stderr


def test_rest_api_with_the_dev_login(running: Running) -> None:
    """The README's promise: create a room over REST with the dev login."""
    with httpx.Client(base_url=running.rest_url) as http:
        login = http.post("/v1/users:devLogin", json={"subject": "newcomer"})
        assert login.status_code == 200
        headers = {"authorization": f"Bearer {login.json()['accessToken']}"}
        created = http.post("/v1/rooms", json={"displayName": "Over REST"}, headers=headers)
        assert created.status_code == 200
        assert created.json()["displayName"] == "Over REST"
        assert http.get(f"/v1/rooms/{created.json()['slug']}").json()["name"] == created.json()["name"]
        assert http.get("/healthz").json() == {"status": "ok"}


def test_a_taken_port_is_a_clear_error(running: Running, tmp_path: Path) -> None:
    port = running.rest_url.rsplit(":", 1)[1]
    done = subprocess.run(
        [
            *PARLEY,
            "up",
            "--data-dir",
            str(tmp_path),
            "--grpc-port",
            "0",
            "--http-port",
            port,
            "--ai-port",
            "0",
            "--sfu-port",
            "0",
            "--egress-port",
            "0",
            "--turn-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"port {port} is taken" in done.stderr
    assert "Traceback" not in done.stderr


def test_load_test_meets_through_the_embedded_sfu(running: Running) -> None:
    slug = json.loads(cli(running.data_dir, "--json", "rooms", "create", "--name", "Load").stdout)["slug"]
    done = cli(
        running.data_dir,
        "--json",
        "load-test",
        "--room",
        slug,
        "--video-publishers",
        "1",
        "--audio-publishers",
        "1",
        "--subscribers",
        "2",
        "--duration",
        "3",
        "--sfu-pid",
        str(running.pid),
    )
    report = json.loads(done.stdout)
    identities = [s["identity"] for s in report["subscribers"]]
    assert [i.rsplit("-", 1)[0] for i in identities] == ["load-subscriber-0", "load-subscriber-1"]
    assert len({i.rsplit("-", 1)[1] for i in identities}) == 1  # one run's suffix
    for subscriber in report["subscribers"]:
        assert subscriber["video_fps"] > 10, report  # 30 fps sent; a loaded CI machine still shows most
        assert subscriber["audio_packets_per_second"] > 25, report  # 50 sent
        assert subscriber["packets"] > 0
    assert report["sfu_cpu_percent"] > 0 and report["sfu_rss_mb"] > 0


def _report_a_meeting(data_dir: Path, room_id: str, node: str = "cli-test-node") -> None:
    """Reports a short meeting as an SFU node would (the development key holds sfu:report); a
    node reports each meeting once (control skips the sequence numbers it already applied)."""
    credentials = load_credentials(data_dir=data_dir, env={})
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    steps: list[dict[str, Any]] = [
        {"room_started": report_pb.RoomStarted()},
        {
            "participant_joined": report_pb.ParticipantJoined(
                identity="guest-cli", participant_sid="PA_1", display_name="Cli Guest"
            )
        },
        {"participant_left": report_pb.ParticipantLeft(identity="guest-cli", participant_sid="PA_1")},
        {"room_finished": report_pb.RoomFinished()},
    ]
    events = []
    for sequence, step in enumerate(steps, start=1):
        event = report_pb.SfuEvent(sequence=sequence, room=room_id, meeting_sid="RM_cli", **step)
        event.time.FromDatetime(start + timedelta(minutes=sequence))
        events.append(event)

    async def report() -> None:
        async with grpc.aio.insecure_channel(credentials.url.removeprefix("grpc://")) as channel:
            await report_grpc.SfuReportServiceStub(channel).ReportEvents(
                report_pb.ReportEventsRequest(node=node, node_url=f"grpc://{node}:1", events=events),
                metadata=(("authorization", f"Bearer {credentials.bearer}"),),
            )

    asyncio.run(report())


def test_meetings_list_and_participants(running: Running) -> None:
    created = json.loads(cli(running.data_dir, "--json", "rooms", "create", "--name", "History").stdout)
    slug, room_id = created["slug"], created["name"].removeprefix("rooms/")
    assert cli(running.data_dir, "meetings", "list", slug).stdout.strip() == "no meetings"
    _report_a_meeting(running.data_dir, room_id)
    [meeting] = json.loads(cli(running.data_dir, "--json", "meetings", "list", slug).stdout)
    assert meeting["startTime"] == "2026-03-01T09:01:00Z" and meeting["endTime"] == "2026-03-01T09:04:00Z"
    assert (meeting["peakParticipants"], meeting["participantCount"]) == (1, 1)
    meeting_id = meeting["name"].rsplit("/", 1)[1]
    table = cli(running.data_dir, "meetings", "list", slug, "--after", "2026-03-01").stdout
    assert meeting_id in table and "2026-03-01 09:01:00" in table
    assert "no meetings" in cli(running.data_dir, "meetings", "list", slug, "--before", "2026-03-01").stdout
    lines = cli(running.data_dir, "meetings", "participants", f"{slug}/{meeting_id}").stdout.splitlines()
    assert len(lines) == 1 and "guest-cli" in lines[0] and "left" in lines[0] and "0:01:00" in lines[0]
    [participant] = json.loads(cli(running.data_dir, "--json", "meetings", "participants", meeting["name"]).stdout)
    assert participant["displayName"] == "Cli Guest" and participant["duration"] == "60s"
    assert "ROOM/MEETING" in cli(running.data_dir, "meetings", "participants", meeting_id, ok=False).stderr


async def test_webhooks_create_deliver_redeliver_rotate_delete(running: Running) -> None:
    """`parley up` lets webhooks reach this machine: a receiver here gets a meeting's events, and
    the CLI manages the webhook and reads its delivery log."""
    assert (
        "webhooks:    loopback targets allowed (PARLEY_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8,::1/128)" in running.printed
    )

    async def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli, running.data_dir, *args, ok=ok)

    room = json.loads((await run("--json", "rooms", "create", "--name", "Hooked")).stdout)
    room_id = room["name"].removeprefix("rooms/")
    async with WebhookReceiver() as receiver:
        events_wanted = ["--event", "room_started", "--event", "room_finished"]
        out = (await run("webhooks", "create", receiver.url, *events_wanted, "--name", "sync")).stdout
        assert "shown once" in out
        webhook = re.search(r"^name: +webhooks/(\w+)$", out, re.M)
        key_id = re.search(r"^signing key id: +(\S+)$", out, re.M)
        secret = re.search(r"^secret: +(whsec_\S+)$", out, re.M)
        assert webhook and key_id and secret, out
        webhook_id = webhook.group(1)
        receiver.secrets[key_id.group(1)] = secret.group(1)
        listed = (await run("webhooks", "list")).stdout
        assert webhook_id in listed and receiver.url in listed and "room_started,room_finished" in listed

        await asyncio.to_thread(_report_a_meeting, running.data_dir, room_id, "cli-webhook-node")
        events = await receiver.wait_for_events(2)
        assert [e.type for e in events] == ["room_started", "room_finished"]  # in order, signatures checked

        table = (await run("webhooks", "deliveries", webhook_id)).stdout.splitlines()
        assert re.split(r"\s{2,}", table[0]) == [
            *("DELIVERY", "TIME (UTC)", "EVENT", "ROOM", "STATE"),
            *("ATTEMPTS", "STATUS", "LATENCY", "LAST ERROR"),
        ]
        assert len(table) == 3 and all(room_id in row and "delivered" in row and " 200 " in row for row in table[1:])
        assert "room_finished" in table[1] and "room_started" in table[2]  # newest first
        delivered = json.loads(
            (await run("--json", "webhooks", "deliveries", webhook_id, "--state", "delivered")).stdout
        )
        assert [d["event"] for d in delivered] == ["room_finished", "room_started"]
        assert (await run("webhooks", "deliveries", webhook_id, "--state", "failed")).stdout.strip() == "no deliveries"
        assert "--state" in (await run("webhooks", "deliveries", webhook_id, "--state", "lost", ok=False)).stderr

        # Sent again, the event keeps its id: receivers drop duplicates by it.
        started = delivered[1]
        out = (await run("webhooks", "redeliver", f"webhooks/{webhook_id}", started["name"].rsplit("/", 1)[1])).stdout
        assert "queued" in out
        await receiver.wait_for_events(3)
        assert receiver.events[2].id == events[0].id == started["eventId"]

        updated = json.loads(
            (await run("--json", "webhooks", "update", webhook_id, "--name", "renamed", "--all-events")).stdout
        )
        assert updated["displayName"] == "renamed" and "eventTypes" not in updated
        assert "give at least one" in (await run("webhooks", "update", webhook_id, ok=False)).stderr

        rotated = (await run("webhooks", "rotate-secret", webhook_id)).stdout
        new_key = re.search(r"^signing key id: +(\S+)$", rotated, re.M)
        assert "shown once" in rotated and new_key and new_key.group(1) != key_id.group(1)
        shown = json.loads((await run("--json", "webhooks", "get", webhook_id)).stdout)
        assert shown["signingKeyId"] == new_key.group(1)

        assert f"deleted webhooks/{webhook_id}" in (await run("webhooks", "delete", f"webhooks/{webhook_id}")).stdout
        assert "NOT_FOUND" in (await run("webhooks", "get", webhook_id, ok=False)).stderr
    assert (await run("webhooks", "list")).stdout.strip() == "no webhooks"


def test_webhooks_refuse_private_targets_and_unknown_events(running: Running) -> None:
    """Loopback is allowed by `parley up`; other private addresses stay refused (SSRF)."""
    refused = cli(running.data_dir, "webhooks", "create", "http://10.1.2.3/hook", ok=False)
    assert "INVALID_ARGUMENT" in refused.stderr and "webhook.url" in refused.stderr
    assert "PARLEY_WEBHOOK_ALLOWED_NETWORKS" in refused.stderr
    unknown = cli(running.data_dir, "webhooks", "create", "http://127.0.0.1:9/hook", "--event", "room_opened", ok=False)
    assert "room_opened" in unknown.stderr and "room_started" in unknown.stderr
