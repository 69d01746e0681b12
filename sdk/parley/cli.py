"""The ``parley`` command line: rooms, join tokens, API keys, meeting history and transcription
against a running server.

Connection settings come from the options, else ``PARLEY_URL`` / ``PARLEY_API_KEY`` /
``PARLEY_API_SECRET``, else the credentials ``parley up`` saved in its data folder.
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
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_service_pb2 as room_pb

from ._ai import EXPORT_FORMATS
from ._client import Client
from ._enums import EnumNames
from ._errors import ParleyError
from ._names import meeting_path
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
app.add_typer(rooms_app, name="rooms")
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")
app.add_typer(meetings_app, name="meetings")

_ACCESS = EnumNames(res.AccessLevel)
_PARTICIPANT_STATES = EnumNames(meeting_pb.ParticipantState)


class _Options:
    def __init__(
        self, url: str | None, api_key: str | None, api_secret: str | None, data_dir: Path | None, as_json: bool
    ) -> None:
        self.url, self.api_key, self.api_secret, self.data_dir, self.as_json = (
            url,
            api_key,
            api_secret,
            data_dir,
            as_json,
        )


@app.callback()
def _main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="gRPC address of control, host:port.")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key id (pk_...).")] = None,
    api_secret: Annotated[str | None, typer.Option(help="API key secret.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of `parley up` (credentials).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    ctx.obj = _Options(url, api_key, api_secret, data_dir, as_json)


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
