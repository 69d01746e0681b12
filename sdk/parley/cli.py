"""The ``parley`` command line: rooms, join tokens, API keys, meeting history, webhooks,
recordings and transcription against a running server.

Connection settings come from the options, else ``PARLEY_URL`` / ``PARLEY_API_KEY`` /
``PARLEY_API_SECRET`` (``PARLEY_GATEWAY_URL`` for downloads), else the credentials ``parley up``
saved in its data folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from google.protobuf import json_format, message

from parley.ai.v1 import resources_pb2 as ai_res
from parley.control.v1 import meeting_service_pb2 as meeting_pb
from parley.control.v1 import recording_service_pb2 as recording_pb
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_service_pb2 as room_pb
from parley.control.v1 import webhook_service_pb2 as webhook_pb

from ._ai import EXPORT_FORMATS
from ._client import RECORDING_MODES, Client, RecordingModeName
from ._config import load_credentials
from ._download import download, resolve_link
from ._enums import EnumNames
from ._errors import ParleyError
from ._names import meeting_path, parse_recording_path, recording_path, webhook_delivery_path, webhook_path
from ._scopes import WEBHOOK_EVENT_TYPES
from ._tokens import TRACK_SOURCE_VALUES, TRACK_SOURCES

T = TypeVar("T")

app = typer.Typer(name="parley", help="Parley: self-hosted video meetings, gRPC first.", no_args_is_help=True)
rooms_app = typer.Typer(help="Create, list, show and delete rooms.", no_args_is_help=True)
token_app = typer.Typer(help="Mint join tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys (needs the keys:manage scope).", no_args_is_help=True)
meetings_app = typer.Typer(
    help="The history of a room's meetings (owners and administrators; API keys with rooms:read).",
    no_args_is_help=True,
)
webhooks_app = typer.Typer(
    help="Webhooks: where Parley POSTs meeting events (needs the webhooks:manage scope).", no_args_is_help=True
)
app.add_typer(rooms_app, name="rooms")
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")
app.add_typer(meetings_app, name="meetings")
recordings_app = typer.Typer(
    help="Record meetings (room owners and administrators; API keys with recordings:write).", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(recordings_app, name="recordings")

_ACCESS = EnumNames(res.AccessLevel)
_PARTICIPANT_STATES = EnumNames(meeting_pb.ParticipantState)
_DELIVERY_STATES = EnumNames(webhook_pb.WebhookDeliveryState)
_RECORDING_STATES = EnumNames(recording_pb.RecordingState)
_JOB_STATES = EnumNames(ai_res.JobState)


@dataclasses.dataclass(frozen=True)
class _Options:
    url: str | None
    api_key: str | None
    api_secret: str | None
    data_dir: Path | None
    as_json: bool
    gateway_url: str | None = None


@app.callback()
def _main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="gRPC address of control, host:port.")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key id (pk_...).")] = None,
    api_secret: Annotated[str | None, typer.Option(help="API key secret.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of `parley up` (credentials).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    gateway_url: Annotated[
        str | None, typer.Option(help="URL of the REST gateway, for downloads (http://host:port).")
    ] = None,
) -> None:
    ctx.obj = _Options(url, api_key, api_secret, data_dir, as_json, gateway_url)


def _run(ctx: typer.Context, work: Callable[[Client], Awaitable[T]]) -> T:
    options: _Options = ctx.obj

    async def go() -> T:
        async with Client.connect(
            url=options.url, api_key=options.api_key, api_secret=options.api_secret, data_dir=options.data_dir
        ) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except ParleyError as error:
        typer.echo(f"error: {error}", err=True)
        for violation in error.field_violations:
            typer.echo(f"  {violation.field}: {violation.description}", err=True)
        raise typer.Exit(1) from None


def _to_dict(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg)


def _emit(ctx: typer.Context, data: Any, text: str) -> None:
    if ctx.obj.as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(text)


def _room_line(room: res.Room) -> str:
    level = _ACCESS.names.get(room.access_level, "unspecified")
    return f"{room.slug:<16} {level:<10} {room.name:<40} {room.display_name}"


@rooms_app.command("create")
def rooms_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    slug: Annotated[str, typer.Option(help="Meeting code; chosen for you when empty.")] = "",
    access: Annotated[str, typer.Option(help=f"{', '.join(_ACCESS.values)}.")] = "public",
) -> None:
    """Create a room."""
    if access not in _ACCESS.values:
        raise typer.BadParameter(f"use one of {', '.join(_ACCESS.values)}", param_hint="--access")
    room = _run(ctx, lambda c: c.rooms.create(display_name=name, slug=slug, access_level=_ACCESS.value(access)))
    _emit(ctx, _to_dict(room), _room_line(room))


@rooms_app.command("list")
def rooms_list(
    ctx: typer.Context,
    filter: Annotated[str, typer.Option(help='For example: access_level = "ACCESS_LEVEL_PUBLIC".')] = "",
) -> None:
    """List rooms."""

    async def work(client: Client) -> list[res.Room]:
        return [room async for room in client.rooms.list(filter=filter)]

    rooms = _run(ctx, work)
    _emit(ctx, [_to_dict(r) for r in rooms], "\n".join(_room_line(r) for r in rooms) or "no rooms")


@rooms_app.command("get")
def rooms_get(ctx: typer.Context, room: Annotated[str, typer.Argument(help="Room id or slug.")]) -> None:
    """Show a room."""
    found = _run(ctx, lambda c: c.rooms.get(room))
    _emit(ctx, _to_dict(found), str(found).strip())


@rooms_app.command("delete")
def rooms_delete(ctx: typer.Context, room: Annotated[str, typer.Argument(help="Room id or slug.")]) -> None:
    """Delete a room."""
    _run(ctx, lambda c: c.rooms.delete(room))
    _emit(ctx, {"deleted": room}, f"deleted {room}")


_DURATION = re.compile(r"^(\d+)([smhd])$")


def _parse_ttl(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter("use a number and s, m, h or d, like 30m", param_hint="--ttl")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    room: Annotated[str, typer.Option(help="Room id or slug.")],
    identity: Annotated[str, typer.Option(help="Participant identity.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    metadata: Annotated[str, typer.Option(help="Application data for the others.")] = "",
    publish: Annotated[bool, typer.Option(help="May publish media.")] = True,
    subscribe: Annotated[bool, typer.Option(help="May receive media.")] = True,
    data: Annotated[bool, typer.Option(help="May send data messages.")] = True,
    source: Annotated[
        list[str] | None, typer.Option(help=f"Allowed source ({', '.join(TRACK_SOURCES)}); repeat.")
    ] = None,
    hidden: Annotated[bool, typer.Option(help="Invisible to others.")] = False,
    recorder: Annotated[bool, typer.Option(help="Records the meeting.")] = False,
    admin: Annotated[bool, typer.Option(help="Room admin: may moderate.")] = False,
    ttl: Annotated[str, typer.Option(help="Validity, like 30m or 6h.")] = "6h",
) -> None:
    """Mint a join token and print it (the JWT alone, unless --json)."""
    unknown = [s for s in source or [] if s not in TRACK_SOURCE_VALUES]
    if unknown:
        raise typer.BadParameter(f"unknown source {unknown[0]!r}", param_hint="--source")
    grants = room_pb.JoinGrants(
        can_publish=publish,
        can_subscribe=subscribe,
        can_publish_data=data,
        publish_sources=[TRACK_SOURCE_VALUES[s] for s in source or []],
        hidden=hidden,
        recorder=recorder,
        room_admin=admin,
    )
    grant = _run(
        ctx,
        lambda c: c.rooms.create_join_token(
            room, identity=identity, display_name=name, metadata=metadata, grants=grants, ttl=_parse_ttl(ttl)
        ),
    )
    _emit(ctx, _to_dict(grant), grant.token)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: Annotated[list[str], typer.Option(help="Scope to grant (rooms:create, ..., keys:manage); repeat.")],
) -> None:
    """Create an API key; its secret is printed once."""
    created = _run(ctx, lambda c: c.api_keys.create(display_name=name, scopes=scope))
    key_id = created.api_key.name.removeprefix("apiKeys/")
    _emit(
        ctx,
        {**_to_dict(created.api_key), "secret": created.secret},
        f"PARLEY_API_KEY={key_id}\nPARLEY_API_SECRET={created.secret}",
    )


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List API keys."""

    async def work(client: Client) -> list[res.ApiKey]:
        return [key async for key in client.api_keys.list()]

    keys = _run(ctx, work)
    lines = [f"{k.name.removeprefix('apiKeys/'):<30} {','.join(k.scopes):<60} {k.display_name}" for k in keys]
    _emit(ctx, [_to_dict(k) for k in keys], "\n".join(lines) or "no keys")


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key: Annotated[str, typer.Argument(help="Key id, pk_...")]) -> None:
    """Revoke (delete) an API key."""
    _run(ctx, lambda c: c.api_keys.delete(key))
    _emit(ctx, {"revoked": key}, f"revoked {key}")


def _parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or time; without a time zone, UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            "use an ISO 8601 date or time, like 2026-03-01 or 2026-03-01T09:30", param_hint=option
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(stamp: Any, present: bool) -> str:
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S") if present else "-"


def _meeting_line(meeting: meeting_pb.Meeting) -> str:
    ended = _when(meeting.end_time, meeting.HasField("end_time")) if not meeting.active else "ongoing"
    return (
        f"{meeting.name.rsplit('/', 1)[1]}  {_when(meeting.start_time, True)}  {ended:<19}  "
        f"peak {meeting.peak_participants:<4} people {meeting.participant_count}"
    )


def _participant_line(participant: meeting_pb.MeetingParticipant) -> str:
    state = _PARTICIPANT_STATES.names.get(participant.state, "unspecified")
    seconds = int(participant.duration.ToTimedelta().total_seconds())
    duration = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return (
        f"{participant.identity:<34} {state:<8} {_when(participant.join_time, True)}  "
        f"{_when(participant.leave_time, participant.HasField('leave_time')):<19}  {duration:>9}  "
        f"{participant.display_name}"
    )


@meetings_app.command("list")
def meetings_list(
    ctx: typer.Context,
    room: Annotated[str, typer.Argument(help="Room id or slug.")],
    after: Annotated[str | None, typer.Option(help="Only meetings that started at or after this time (UTC).")] = None,
    before: Annotated[str | None, typer.Option(help="Only meetings that started before this time (UTC).")] = None,
) -> None:
    """List a room's meetings, newest first: id, start, end, peak and how many took part."""
    start_after, start_before = _parse_time(after, "--after"), _parse_time(before, "--before")

    async def work(client: Client) -> list[meeting_pb.Meeting]:
        found = client.meetings.list(room, start_time_after=start_after, start_time_before=start_before)
        return [meeting async for meeting in found]

    meetings = _run(ctx, work)
    _emit(ctx, [_to_dict(m) for m in meetings], "\n".join(_meeting_line(m) for m in meetings) or "no meetings")


@meetings_app.command("participants")
def meetings_participants(
    ctx: typer.Context,
    meeting: Annotated[str, typer.Argument(help="ROOM/MEETING (room id or slug, meeting id), or the meeting's name.")],
) -> None:
    """List who took part in a meeting, in the order they joined."""
    if not meeting.startswith("rooms/"):
        room, _, meeting_id = meeting.partition("/")
        if not room or not meeting_id:
            raise typer.BadParameter("use ROOM/MEETING or rooms/ROOM/meetings/MEETING", param_hint="MEETING")
        meeting = meeting_path(room, meeting_id)

    async def work(client: Client) -> list[meeting_pb.MeetingParticipant]:
        return [participant async for participant in client.meetings.list_participants(meeting)]

    participants = _run(ctx, work)
    _emit(
        ctx,
        [_to_dict(p) for p in participants],
        "\n".join(_participant_line(p) for p in participants) or "no participants",
    )


#: The WEBHOOK argument of the ``parley webhooks`` commands.
_WebhookArg = Annotated[str, typer.Argument(help="Webhook id, or its name webhooks/ID.")]


def _webhook_events(events: list[str] | None) -> list[str]:
    unknown = [e for e in events or [] if e not in WEBHOOK_EVENT_TYPES]
    if unknown:
        raise typer.BadParameter(
            f"unknown event {unknown[0]!r}; use {', '.join(WEBHOOK_EVENT_TYPES)}", param_hint="--event"
        )
    return list(events or [])


def _webhook_health(webhook: webhook_pb.Webhook) -> str:
    if webhook.HasField("paused_until") and webhook.paused_until.ToDatetime(tzinfo=UTC) > datetime.now(UTC):
        return f"paused until {_when(webhook.paused_until, True)}"
    if webhook.consecutive_failures:
        return f"failing ({webhook.consecutive_failures} in a row)"
    return "ok"


def _webhook_row(webhook: webhook_pb.Webhook) -> tuple[str, ...]:
    return (
        webhook.name.removeprefix("webhooks/"),
        _webhook_health(webhook),
        webhook.url,
        ",".join(webhook.event_types) or "all",
        webhook.display_name,
    )


def _webhook_text(webhook: webhook_pb.Webhook) -> str:
    rows = [
        ("name", webhook.name),
        ("display name", webhook.display_name or "-"),
        ("url", webhook.url),
        ("events", ", ".join(webhook.event_types) or "all (present and future)"),
        ("signing key id", webhook.signing_key_id),
        ("deliveries", _webhook_health(webhook)),
        ("created", _when(webhook.create_time, webhook.HasField("create_time"))),
        ("updated", _when(webhook.update_time, webhook.HasField("update_time"))),
    ]
    return "\n".join(f"{label + ':':<16}{value}" for label, value in rows)


def _secret_text(secret: str) -> str:
    return (
        f"{'secret:':<16}{secret}\n"
        "The secret is shown once: keep it with your receiver, which checks each delivery with\n"
        "parley.verify_webhook(body, authorization, secrets={signing key id: secret})."
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns aligned to their widest cell; the last one runs free."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in [header, *rows]
    )


@webhooks_app.command("create")
def webhooks_create(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where events are POSTed: an http:// or https:// URL.")],
    event: Annotated[
        list[str] | None, typer.Option(help=f"Event to send ({', '.join(WEBHOOK_EVENT_TYPES)}); repeat. Default: all.")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="What the webhook is for.")] = "",
) -> None:
    """Create a webhook; its signing secret is printed once."""
    events = _webhook_events(event)
    created = _run(ctx, lambda c: c.webhooks.create(url, event_types=events, display_name=name))
    _emit(
        ctx,
        {**_to_dict(created.webhook), "secret": created.secret},
        f"{_webhook_text(created.webhook)}\n{_secret_text(created.secret)}",
    )


@webhooks_app.command("list")
def webhooks_list(ctx: typer.Context) -> None:
    """List webhooks, oldest first: id, how their deliveries fare, URL, events, display name."""

    async def work(client: Client) -> list[webhook_pb.Webhook]:
        return [webhook async for webhook in client.webhooks.list()]

    webhooks = _run(ctx, work)
    header = ("WEBHOOK", "DELIVERIES", "URL", "EVENTS", "NAME")
    _emit(
        ctx,
        [_to_dict(w) for w in webhooks],
        _table(header, [_webhook_row(w) for w in webhooks]) if webhooks else "no webhooks",
    )


@webhooks_app.command("get")
def webhooks_get(ctx: typer.Context, webhook: _WebhookArg) -> None:
    """Show a webhook."""
    found = _run(ctx, lambda c: c.webhooks.get(webhook))
    _emit(ctx, _to_dict(found), _webhook_text(found))


@webhooks_app.command("update")
def webhooks_update(
    ctx: typer.Context,
    webhook: _WebhookArg,
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    event: Annotated[list[str] | None, typer.Option(help="Event to send instead of the current ones; repeat.")] = None,
    all_events: Annotated[bool, typer.Option("--all-events", help="Send every event, present and future.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="New display name.")] = None,
) -> None:
    """Change a webhook's URL, events or display name; what is not given stays."""
    if event and all_events:
        raise typer.BadParameter("give --event or --all-events, not both", param_hint="--all-events")
    changes = webhook_pb.Webhook(name=webhook_path(webhook))
    mask = []
    if url is not None:
        changes.url = url
        mask.append("url")
    if event or all_events:
        changes.event_types.extend(_webhook_events(event))
        mask.append("event_types")
    if name is not None:
        changes.display_name = name
        mask.append("display_name")
    if not mask:
        raise typer.BadParameter("give at least one of --url, --event, --all-events, --name")
    updated = _run(ctx, lambda c: c.webhooks.update(changes, update_mask=mask))
    _emit(ctx, _to_dict(updated), _webhook_text(updated))


@webhooks_app.command("delete")
def webhooks_delete(ctx: typer.Context, webhook: _WebhookArg) -> None:
    """Delete a webhook and the events still waiting for it."""
    _run(ctx, lambda c: c.webhooks.delete(webhook))
    _emit(ctx, {"deleted": webhook}, f"deleted {webhook}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate_secret(ctx: typer.Context, webhook: _WebhookArg) -> None:
    """Replace a webhook's signing secret; the new one is printed once, under a new key id."""
    rotated = _run(ctx, lambda c: c.webhooks.rotate_secret(webhook))
    _emit(
        ctx,
        {**_to_dict(rotated.webhook), "secret": rotated.secret},
        f"{'signing key id:':<16}{rotated.webhook.signing_key_id}\n{_secret_text(rotated.secret)}\n"
        "Deliveries are signed with it from now on; let your receiver accept the old key id too while it switches.",
    )


#: How much of a delivery's last error a table row shows (``--json`` has all of it).
_ERROR_CHARS = 80


def _delivery_row(delivery: webhook_pb.WebhookDelivery) -> tuple[str, ...]:
    sent = delivery.attempts > 0
    ms = delivery.last_latency.ToTimedelta().total_seconds() * 1000
    error = " ".join(delivery.last_error.split())
    return (
        delivery.name.rsplit("/", 1)[1],
        _when(delivery.create_time, delivery.HasField("create_time")),
        delivery.event,
        delivery.room.removeprefix("rooms/"),
        _DELIVERY_STATES.names.get(delivery.state, "unspecified"),
        str(delivery.attempts),
        str(delivery.last_status_code) if sent and delivery.last_status_code else "-",
        (f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms") if sent and ms > 0 else "-",  # 0: refused before sending
        error if len(error) <= _ERROR_CHARS else error[: _ERROR_CHARS - 1] + "…",
    )


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    ctx: typer.Context,
    webhook: _WebhookArg,
    state: Annotated[
        str | None, typer.Option(help=f"Only deliveries in this state: {', '.join(_DELIVERY_STATES.values)}.")
    ] = None,
) -> None:
    """A webhook's delivery log, newest first: each event on its way, and its latest attempt."""
    if state is not None and state not in _DELIVERY_STATES.values:
        raise typer.BadParameter(f"use one of {', '.join(_DELIVERY_STATES.values)}", param_hint="--state")
    wanted = _DELIVERY_STATES.value(state) if state else webhook_pb.WEBHOOK_DELIVERY_STATE_UNSPECIFIED

    async def work(client: Client) -> list[webhook_pb.WebhookDelivery]:
        return [delivery async for delivery in client.webhooks.list_deliveries(webhook, state=wanted)]

    deliveries = _run(ctx, work)
    header = ("DELIVERY", "TIME (UTC)", "EVENT", "ROOM", "STATE", "ATTEMPTS", "STATUS", "LATENCY", "LAST ERROR")
    _emit(
        ctx,
        [_to_dict(d) for d in deliveries],
        _table(header, [_delivery_row(d) for d in deliveries]) if deliveries else "no deliveries",
    )


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    ctx: typer.Context,
    webhook: _WebhookArg,
    delivery: Annotated[str, typer.Argument(help="Delivery id (see `parley webhooks deliveries`), or its name.")],
) -> None:
    """Send a delivery again: it is queued as new, whatever its state."""
    name = webhook_delivery_path(webhook, delivery)
    if not name.startswith(webhook_path(webhook) + "/"):
        raise typer.BadParameter(f"{delivery} is not a delivery of {webhook_path(webhook)}", param_hint="DELIVERY")
    queued = _run(ctx, lambda c: c.webhooks.redeliver(name))
    _emit(ctx, _to_dict(queued), f"queued {queued.name} ({queued.event}) to be sent again")


async def _follow(label: str, updates: AsyncIterator[Any], *, quiet: bool) -> Any:
    """Shows a job's progress as a bar on stderr until it ends; returns its last state."""
    last = None
    with typer.progressbar(length=1000, label=label, file=sys.stderr, hidden=quiet) as bar:
        done = 0
        async for update in updates:
            last = update
            step = int(update.progress * 1000) - done
            if step > 0:
                bar.update(step)
                done += step
    if last is None or last.state != ai_res.JOB_STATE_SUCCEEDED:
        state = ai_res.JobState.Name(last.state) if last else "unknown"
        reason = last.error.message if last is not None and last.error.message else state.lower()
        raise ParleyError(f"{label.strip()} did not succeed: {reason}")
    return last


@app.command("transcribe")
def transcribe(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Audio or video file (wav, webm, ogg, mp4, mp3...).", exists=True)],
    summarize: Annotated[bool, typer.Option(help="Also write a summary of the transcript.")] = False,
    language: Annotated[str, typer.Option(help="Spoken language (en, fr...); empty to detect.")] = "",
    model: Annotated[str, typer.Option(help="Speech model of the AI service; empty for its default.")] = "",
    output_format: Annotated[
        str, typer.Option("--format", help=f"Transcript format: {', '.join(EXPORT_FORMATS.values)}.")
    ] = "text",
) -> None:
    """Transcribe a media file (uploaded to the AI service) and print the transcript, with a
    progress bar on stderr; --summarize prints a Markdown summary after it."""
    if output_format not in EXPORT_FORMATS.values:
        raise typer.BadParameter(f"choose {', '.join(EXPORT_FORMATS.values)}", param_hint="--format")
    quiet = ctx.obj.as_json or not sys.stderr.isatty()

    async def work(client: Client) -> None:
        size = file.stat().st_size
        with typer.progressbar(length=size, label="uploading   ", file=sys.stderr, hidden=quiet) as bar:
            upload = await client.transcriptions.upload(
                file, on_progress=lambda sent, _total: bar.update(sent - bar.pos)
            )
        job = await client.transcriptions.create(upload=upload.name, language=language, model=model)
        # Asked for now, the summary starts as soon as the transcript exists.
        summary = await client.summaries.create(transcription=job.name) if summarize else None
        finished = await _follow("transcribing", client.transcriptions.watch(job.name), quiet=quiet)
        transcript = await client.transcriptions.export(job.name, output_format)  # type: ignore[arg-type]
        markdown = ""
        if summary is not None:
            done = await _follow("summarizing ", client.summaries.watch(summary.name), quiet=quiet)
            markdown = (await client.summaries.get(done.name)).markdown
        if ctx.obj.as_json:
            data: dict[str, Any] = {"transcription": _to_dict(finished), "transcript": transcript}
            if summary is not None:
                data["summary"] = markdown
            typer.echo(json.dumps(data, indent=2))
            return
        typer.echo(transcript.rstrip("\n"))
        if summary is not None:
            typer.echo("\n" + markdown.strip())

    _run(ctx, work)


# -- recordings ----------------------------------------------------------------------------------

#: The NAME argument of the ``parley recordings`` commands.
_RecordingArg = Annotated[
    str, typer.Argument(help="ROOM/RECORDING (room id or slug, recording id), or rooms/ROOM/recordings/ID.")
]


def _recording_name(text: str) -> str:
    if text.startswith("rooms/"):
        return text
    room, _, recording = text.partition("/")
    if not room or not recording:
        raise typer.BadParameter("use ROOM/RECORDING or rooms/ROOM/recordings/RECORDING", param_hint="NAME")
    return recording_path(room, recording)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _recording_row(recording: recording_pb.Recording) -> tuple[str, ...]:
    try:
        room, recording_id = parse_recording_path(recording.name)
    except ValueError:
        room, recording_id = "", recording.name
    saved = recording.HasField("file") and recording.file.size_bytes > 0
    return (
        f"{room}/{recording_id}",
        RECORDING_MODES.names.get(recording.mode, "-"),
        _RECORDING_STATES.names.get(recording.state, "-"),
        _when(recording.create_time, recording.HasField("create_time")),
        _size(recording.file.size_bytes) if saved else "-",
    )


def _recording_text(recording: recording_pb.Recording) -> str:
    name, mode, state, created, size = _recording_row(recording)
    options = recording.options
    lines = [
        f"recording:  {name}  ({recording.name})",
        f"mode:       {mode}" + (f", language {options.language}" if options.language else ""),
        f"state:      {state}" + (f": {recording.error.message}" if recording.error.message else ""),
        f"created:    {created}",
    ]
    times = (("started", recording.start_time), ("stopped", recording.stop_time), ("saved", recording.save_time))
    lines += [f"{label + ':':<11} {_when(stamp, True)}" for label, stamp in times if stamp.ByteSize()]
    if recording.HasField("file"):
        seconds = int(recording.file.duration.ToTimedelta().total_seconds())
        lines.append(f"file:       {recording.file.content_type}, {size}, {seconds // 60}:{seconds % 60:02d}")
    jobs = (("transcript", recording.transcription), ("summary", recording.summary))
    lines += [f"{label + ':':<11} {value}" for label, value in jobs if value]
    return "\n".join(lines)


@recordings_app.command("start")
def recordings_start(
    ctx: typer.Context,
    room: Annotated[str, typer.Argument(help="Room id or slug.")],
    audio_only: Annotated[bool, typer.Option(help="Audio only, to be transcribed (the transcript mode).")] = False,
    transcribe: Annotated[bool, typer.Option(help="Transcribe the saved recording, then summarize it.")] = False,
    language: Annotated[
        str, typer.Option(help="Spoken language (en, fr...) for the transcript; empty to detect.")
    ] = "",
    metadata: Annotated[bool, typer.Option(help="Collect who spoke when, for the transcript's speakers.")] = False,
) -> None:
    """Start recording a room's meeting (video and audio, or audio only); everyone in the
    meeting sees that it is recorded."""
    mode: RecordingModeName = "transcript" if audio_only else "screen_recording"
    started = _run(
        ctx,
        lambda c: c.recordings.start(
            room, mode=mode, language=language, transcribe=transcribe, collect_metadata=metadata
        ),
    )
    _emit(ctx, _to_dict(started), _recording_text(started))


@recordings_app.command("stop")
def recordings_stop(ctx: typer.Context, name: _RecordingArg) -> None:
    """Stop a recording; its file is then saved."""
    stopped = _run(ctx, lambda c: c.recordings.stop(_recording_name(name)))
    _emit(ctx, _to_dict(stopped), _recording_text(stopped))


@recordings_app.command("list")
def recordings_list(
    ctx: typer.Context,
    room: Annotated[str, typer.Argument(help="Room id or slug; all the rooms you may see when left out.")] = "-",
) -> None:
    """List recordings, newest first: ROOM/RECORDING, mode, state, when asked for, file size."""

    async def work(client: Client) -> list[recording_pb.Recording]:
        return [recording async for recording in client.recordings.list(room)]

    recordings = _run(ctx, work)
    header = ("RECORDING", "MODE", "STATE", "CREATED", "SIZE")
    _emit(
        ctx,
        [_to_dict(r) for r in recordings],
        _table(header, [_recording_row(r) for r in recordings]) if recordings else "no recordings",
    )


@recordings_app.command("get")
def recordings_get(ctx: typer.Context, name: _RecordingArg) -> None:
    """Show a recording."""
    found = _run(ctx, lambda c: c.recordings.get(_recording_name(name)))
    _emit(ctx, _to_dict(found), _recording_text(found))


@recordings_app.command("delete")
def recordings_delete(ctx: typer.Context, name: _RecordingArg) -> None:
    """Delete a stopped recording and its file."""
    full = _recording_name(name)
    _run(ctx, lambda c: c.recordings.delete(full))
    _emit(ctx, {"deleted": full}, f"deleted {full}")


def _recording_job(recording: recording_pb.Recording, job: str) -> str:
    """The name of a recording's AI job (``transcription`` or ``summary``), or a clear error."""
    name: str = getattr(recording, job)
    if not name:
        state = _RECORDING_STATES.names.get(recording.state, "-")
        asked = recording.options.transcribe or recording.mode == recording_pb.RECORDING_MODE_TRANSCRIPT
        why = "it is not finished yet" if asked else "it was not asked for (--transcribe)"
        raise ParleyError(f"{recording.name} ({state}) has no {job}: {why}")
    return name


@recordings_app.command("transcript")
def recordings_transcript(
    ctx: typer.Context,
    name: _RecordingArg,
    output_format: Annotated[
        str, typer.Option("--format", help=f"Transcript format: {', '.join(EXPORT_FORMATS.values)}.")
    ] = "text",
) -> None:
    """Print the transcript of a recording (one that was transcribed), with the speakers' names."""
    if output_format not in EXPORT_FORMATS.values:
        raise typer.BadParameter(f"choose {', '.join(EXPORT_FORMATS.values)}", param_hint="--format")

    async def work(client: Client) -> tuple[str, str]:
        recording = await client.recordings.get(_recording_name(name))
        transcription = _recording_job(recording, "transcription")
        return transcription, await client.transcriptions.export(transcription, output_format)  # type: ignore[arg-type]

    transcription, transcript = _run(ctx, work)
    data = {"transcription": transcription, "format": output_format, "transcript": transcript}
    _emit(ctx, data, transcript.rstrip("\n"))


@recordings_app.command("summary")
def recordings_summary(ctx: typer.Context, name: _RecordingArg) -> None:
    """Print the minutes of a recording (one that was transcribed) as Markdown: a summary, the
    topics, the next steps and who owns them; with --json, the summary with its structure."""

    async def work(client: Client) -> ai_res.Summary:
        recording = await client.recordings.get(_recording_name(name))
        summary = await client.summaries.get(_recording_job(recording, "summary"))
        if summary.state != ai_res.JOB_STATE_SUCCEEDED:
            state = _JOB_STATES.names.get(summary.state, "-")
            detail = f": {summary.error.message}" if summary.error.message else f" ({summary.progress:.0%} done)"
            raise ParleyError(f"{summary.name} is {state}{detail}")
        return summary

    summary = _run(ctx, work)
    _emit(ctx, _to_dict(summary), summary.markdown.strip())


@recordings_app.command("download")
def recordings_download(
    ctx: typer.Context,
    name: _RecordingArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write it; default: its name, here.", dir_okay=False)
    ] = None,
) -> None:
    """Download a saved recording's file, with a progress bar on stderr."""
    options: _Options = ctx.obj
    link = _run(ctx, lambda c: c.recordings.download_link(_recording_name(name)))
    gateway_url = load_credentials(
        url=options.url,
        api_key=options.api_key,
        api_secret=options.api_secret,
        gateway_url=options.gateway_url,
        data_dir=options.data_dir,
    ).gateway_url
    target = output or Path(Path(link.filename).name or f"{name.rsplit('/', 1)[-1]}.bin")
    quiet = options.as_json or not sys.stderr.isatty()
    try:
        url = resolve_link(link.url, gateway_url)
        total = link.file.size_bytes
        with typer.progressbar(
            length=total or 1, label="downloading", file=sys.stderr, hidden=quiet or not total
        ) as bar:
            size = download(url, target, on_progress=lambda received, _total: bar.update(received - bar.pos))
    except ParleyError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    _emit(ctx, {"file": str(target), "sizeBytes": size}, f"saved {target} ({_size(size)})")


def main() -> None:
    app(prog_name="parley")


if __name__ == "__main__":
    main()


@app.command("load-test")
def load_test(
    ctx: typer.Context,
    room: Annotated[str, typer.Option(help="Room id or slug (it must exist).")],
    video_publishers: Annotated[int, typer.Option(help="Participants sending 640x480 30 fps VP8.", min=0)] = 1,
    audio_publishers: Annotated[int, typer.Option(help="Participants sending Opus.", min=0)] = 1,
    subscribers: Annotated[int, typer.Option(help="Participants receiving everything.", min=0)] = 4,
    duration: Annotated[float, typer.Option(help="Seconds to measure, once everyone has joined.", min=1)] = 10.0,
    sfu_pid: Annotated[int | None, typer.Option(help="PID of the SFU on this machine, to report its CPU.")] = None,
) -> None:
    """Load a room like `lk load-test`: publishers of pre-encoded media, subscribers that count
    what arrives; prints per-subscriber fps, packet loss and join time."""
    try:
        from ._loadtest import format_report, run_load_test  # aiortc: only for this command
    except ModuleNotFoundError as missing:
        typer.echo(f"error: load-test needs the bot extra (no {missing.name!r}): pip install 'parley[bot]'", err=True)
        raise typer.Exit(1) from None

    async def work(client: Client) -> None:
        async def tokens(identity: str) -> tuple[str, str]:
            grant = await client.rooms.create_join_token(room, identity=identity)
            return grant.sfu_url, grant.token

        report = await run_load_test(
            tokens,
            video_publishers=video_publishers,
            audio_publishers=audio_publishers,
            subscribers=subscribers,
            seconds=duration,
            sfu_pid=sfu_pid,
            progress=lambda line: typer.echo(line, err=True),
        )
        _emit(ctx, dataclasses.asdict(report), format_report(report))

    _run(ctx, work)
