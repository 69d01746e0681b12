"""``parley up``: control on embedded defaults (SQLite in the data folder, dev login), the AI
service (local Ray, packaged models), the egress service (recordings in the data folder, on
the same local Ray) and the REST gateway in front of them, with a development API key created
on first start and saved where the CLI finds it.

The services are imported only when ``parley up`` runs, so that the ``parley`` command works
with the SDK alone (``pip install parley``); ``parley up`` needs ``parley[server]`` (and
``parley[ai]`` for the AI service)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from parley import Credentials, ParleyError, default_data_dir, load_credentials, save_credentials

if TYPE_CHECKING:
    from ai import AiServer, AiSettings
    from control import ControlServer
    from egress import EgressServer
    from gateway import GatewayServer
    from sfu import Coturn

log = logging.getLogger("parley.up")

_SECRETS_FILE = "secrets.json"


def _secret(data_dir: Path, name: str) -> str:
    """A secret of this installation (join tokens, session cookies), made once and kept in the
    data folder, readable by its owner only."""
    path = data_dir / _SECRETS_FILE
    saved = json.loads(path.read_text()) if path.exists() else {}
    if name not in saved:
        saved[name] = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(json.dumps(saved))
    return str(saved[name])


async def _ensure_dev_key(
    server: ControlServer, data_dir: Path, ai_url: str, gateway_url: str, egress_url: str = ""
) -> tuple[Credentials, bool]:
    """The saved development key if it still works and holds every scope, else a new one (all
    scopes), which replaces a saved key made before a scope existed (``webhooks:manage``...).
    Saved with the addresses of this run (the CLI downloads recordings from the gateway)."""
    from control import ALL_SCOPES, Unauthenticated

    addresses = {"url": server.target, "ai_url": ai_url, "gateway_url": gateway_url, "egress_url": egress_url}

    try:
        saved = load_credentials(data_dir=data_dir, env={})
        principal = await server.control.authenticate_api_key(saved.api_key, saved.api_secret)
        credentials, created = (
            Credentials(api_key=saved.api_key, api_secret=saved.api_secret, **addresses),
            False,
        )
    except (ParleyError, Unauthenticated) as missing:  # no saved key, or one the database lost
        log.debug("creating a development API key: %s", missing)
        principal = None
    if principal is None or not set(ALL_SCOPES) <= principal.scopes:
        row, secret = await server.control.create_api_key(None, "development key (parley up)", ALL_SCOPES)
        if principal is not None:  # an older key, short of the newer scopes
            await server.control.delete_api_key(None, saved.api_key)
        credentials, created = Credentials(api_key=row.id, api_secret=secret, **addresses), True
    save_credentials(data_dir, credentials)
    return credentials, created


async def _service_key(server: ControlServer, data_dir: Path, name: str, scopes: list[str]) -> str:
    """An API key (``key.secret``) an embedded service calls with (the SFU's ``sfu:report``,
    the egress node's, control's own): the one kept in the data folder under ``name`` if control
    still knows it with those scopes, else a new one."""
    from control import Unauthenticated

    path = data_dir / _SECRETS_FILE
    saved = json.loads(path.read_text()) if path.exists() else {}
    key = str(saved.get(name, ""))
    if key:
        key_id, _, secret = key.partition(".")
        with contextlib.suppress(Unauthenticated):
            if set(scopes) <= (await server.control.authenticate_api_key(key_id, secret)).scopes:
                return key
    row, secret = await server.control.create_api_key(None, f"{name.replace('_', ' ')} (parley up)", scopes)
    saved[name] = f"{row.id}.{secret}"
    path.touch(mode=0o600)
    path.write_text(json.dumps(saved))
    return str(saved[name])


#: The keys of the embedded services: name in secrets.json, scopes.
_SFU_KEY = ("sfu_report_key", ["sfu:report"])
_EGRESS_KEY = ("egress_node_key", ["egress:report", "tokens:create"])
_CONTROL_KEY = ("control_service_key", ["egress:manage", "ai:read", "ai:write"])


def _free_port(host: str) -> int:
    """A port free now, for a service whose address another must know before it starts."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _PortTaken(Exception):
    def __init__(self, option: str, port: int) -> None:
        super().__init__(f"port {port} is taken: stop what uses it or pass another {option} (0 picks a free one)")


def _ai_settings(data_dir: Path, control_target: str) -> AiSettings:
    """The AI service on embedded defaults: SQLite and a folder in the data folder, a local Ray
    with the machine's CPUs, Whisper tiny.en and the light summary engine (all from packages).
    ``PARLEY_AI_*`` variables still apply (e.g. PARLEY_AI_RAY_ADDRESS for a cluster)."""
    from ai import AiSettings

    return AiSettings.from_env(
        database_url=os.environ.get("PARLEY_AI_DATABASE_URL", f"sqlite:///{data_dir / 'ai.db'}"),
        control_target=control_target,
        storage=os.environ.get("PARLEY_AI_STORAGE", str(data_dir / "ai-storage")),
        model_cache_dir=Path(os.environ.get("PARLEY_AI_MODEL_CACHE_DIR", str(data_dir / "models"))),
    )


#: Webhook targets ``parley up`` allows although they are not public: this machine, so that a
#: developer receives webhooks on it. ``PARLEY_WEBHOOK_ALLOWED_NETWORKS`` replaces them.
_DEV_WEBHOOK_NETWORKS = ("127.0.0.0/8", "::1/128")


def _webhook_allowed_networks() -> tuple[str, ...]:
    """``PARLEY_WEBHOOK_ALLOWED_NETWORKS`` (comma-separated CIDRs; empty allows none) when set,
    else loopback."""
    from parley.server import parse_value

    raw = os.environ.get("PARLEY_WEBHOOK_ALLOWED_NETWORKS")
    if raw is None:
        return _DEV_WEBHOOK_NETWORKS
    return cast(tuple[str, ...], parse_value(tuple[str, ...], raw))  # as python -m control reads it


def _webhooks_line(networks: tuple[str, ...]) -> str:
    if not networks:
        return "  webhooks:    public targets only (PARLEY_WEBHOOK_ALLOWED_NETWORKS is empty)"
    kind = "loopback targets" if networks == _DEV_WEBHOOK_NETWORKS else "targets in these networks"
    return f"  webhooks:    {kind} allowed (PARLEY_WEBHOOK_ALLOWED_NETWORKS={','.join(networks)})"


async def _start(stack: contextlib.AsyncExitStack, server: Any, option: str, port: int) -> None:
    """Starts ``server`` on the stack (stopped in reverse order on the way out); a taken port
    is a clear error naming the option that chooses it."""
    try:
        await stack.enter_async_context(server)
    except (RuntimeError, OSError) as exc:  # grpc reports a port it cannot bind as RuntimeError
        raise _PortTaken(option, port) from exc


async def _shared_redis(stack: contextlib.AsyncExitStack, workers: int) -> str:
    """The Redis SFU workers share rooms through: ``PARLEY_REDIS_URL``, else a private one."""
    from parley.server import ConfigurationError

    from ._redis import PrivateRedis, RedisMissing

    if os.environ.get("PARLEY_REDIS_URL"):
        return os.environ["PARLEY_REDIS_URL"]
    try:
        redis = await stack.enter_async_context(PrivateRedis())
    except (RedisMissing, RuntimeError) as exc:
        raise ConfigurationError(f"--sfu-workers {workers} needs Redis: {exc}; or set PARLEY_REDIS_URL") from exc
    return redis.url


async def _start_turn(
    stack: contextlib.AsyncExitStack, data_dir: Path, host: str, port: int, tls: tuple[Path, Path] | None
) -> Coturn | str:
    """coturn beside the SFU, relaying for browsers behind firewalls that block UDP or direct
    paths (and TLS with ``tls``, a certificate and its key); where it is not installed or does
    not start, why not (Parley runs without it)."""
    import errno

    from sfu import Coturn, CoturnMissing

    certificate, private_key = tls or (None, None)
    try:
        turn = Coturn(
            secret=_secret(data_dir, "turn_secret"),
            host=host,
            port=port,
            certificate=certificate,
            private_key=private_key,
        )
        await stack.enter_async_context(turn)
    except CoturnMissing:
        return "not started: coturn is not installed (Debian: apt-get install coturn)"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise _PortTaken("--turn-port", port) from exc
        return f"not started: {exc}"
    except RuntimeError as exc:
        return f"not started: {exc}"
    return turn


def _egress_settings(data_dir: Path, control_target: str, api_key: str) -> Any:
    """The egress service on embedded defaults: recordings in the data folder, recorders on the
    local Ray. ``PARLEY_EGRESS_*`` variables still apply (a bucket, a Ray cluster)."""
    from egress import EgressSettings

    return EgressSettings.from_env(
        control_target=control_target,
        api_key=api_key,
        recordings_dir=Path(os.environ.get("PARLEY_EGRESS_RECORDINGS_DIR", str(data_dir / "recordings"))),
        spool_dir=Path(os.environ.get("PARLEY_EGRESS_SPOOL_DIR", str(data_dir / "spool"))),
    )


async def _serve(
    data_dir: Path,
    grpc_port: int,
    http_port: int,
    ai_port: int,
    sfu_port: int,
    sfu_workers: int,
    egress_port: int,
    turn_port: int,
    turn_tls: tuple[Path, Path] | None,
    host: str,
    with_ai: bool,
    with_recording: bool,
    with_turn: bool,
) -> None:
    from control import ControlServer, ControlSettings
    from gateway import GatewayServer, GatewaySettings
    from parley.server import stop_signals
    from sfu import SfuServer, SfuSettings, SfuWorkers, worker_count

    workers = worker_count(sfu_workers)
    if with_ai:
        from ai import AiServer
    if with_recording:
        from egress import EgressServer
    if with_ai or with_recording:
        from parley.server.ray_runtime import start_ray

    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, at start-up)
    recordings_dir = data_dir / "recordings"
    files_secret = _secret(data_dir, "files_secret")
    if with_recording and not egress_port:
        egress_port = _free_port(host)  # control must know the egress address before it starts
    if with_ai and not ai_port:
        ai_port = _free_port(host)  # control transcribes recordings through it: it must know where
    settings = ControlSettings(
        database_url=f"sqlite:///{data_dir / 'parley.db'}",
        token_secret=_secret(data_dir, "token_secret"),
        dev_login=True,
        webhook_allowed_networks=_webhook_allowed_networks(),
        egress_url=f"grpc://{host}:{egress_port}" if with_recording else "",
        ai_url=f"grpc://{host}:{ai_port}" if with_ai else "",
        recordings_dir=recordings_dir,
        files_secret=files_secret,
    )
    if with_ai or with_recording:
        typer.echo("starting a local Ray for the AI and egress services (a few seconds)...")
        # Before any gRPC server runs in this process: a local Ray's daemons, spawned from a
        # process whose gRPC core already runs, fail to come up.
        start_ray(address=os.environ.get("PARLEY_AI_RAY_ADDRESS", ""))
    async with contextlib.AsyncExitStack() as stack:
        stop = stack.enter_context(stop_signals())  # before the servers: a Ctrl-C in start-up stops them
        turn = await _start_turn(stack, data_dir, host, turn_port, turn_tls) if with_turn else "off (--no-turn)"
        sfu_settings = SfuSettings(
            token_secrets={settings.token_key_id: settings.token_secret}, grpc_address=f"{host}:{sfu_port}"
        )
        if not isinstance(turn, str):
            sfu_settings = dataclasses.replace(sfu_settings, turn_urls=turn.urls, turn_secret=turn.secret)
        node: SfuServer | None = None
        if workers > 1:  # nodes in worker processes, sharing rooms through the registry in Redis
            redis_url = await _shared_redis(stack, workers)
            settings = dataclasses.replace(settings, redis_url=redis_url)
            sfu_settings = dataclasses.replace(sfu_settings, workers=workers, redis_url=redis_url)
        else:  # one node in this process; control needs its URL, so it starts first
            redis_url = ""
            node = SfuServer(sfu_settings)
            await _start(stack, node, "--sfu-port", sfu_port)
            settings = dataclasses.replace(settings, sfu_url=f"grpc://{node.target}")
        server = ControlServer(settings, address=f"{host}:{grpc_port}")
        await _start(stack, server, "--grpc-port", grpc_port)
        # The SFU reports meetings once control is up, and stops before control does (the stack
        # unwinds in reverse), so that the end of the meetings open at Ctrl-C is recorded.
        report_key = await _service_key(server, data_dir, *_SFU_KEY)
        if node is not None:
            node.report_to(server.target, report_key)
            stack.push_async_callback(node.stop)
            sfu_targets = [node.target]
        else:
            sfu = SfuWorkers(dataclasses.replace(sfu_settings, control_target=server.target, report_api_key=report_key))
            await _start(stack, sfu, "--sfu-port", sfu_port)
            sfu_targets = sfu.targets
        ai: AiServer | None = None
        if with_ai:
            ai = AiServer(_ai_settings(data_dir, server.target), address=f"{host}:{ai_port}")
            await _start(stack, ai, "--ai-port", ai_port)
        if with_ai or with_recording:
            # control's own key: it starts egresses and has recordings transcribed with it
            server.use_service_key(await _service_key(server, data_dir, *_CONTROL_KEY))
        egress: EgressServer | None = None
        if with_recording:
            egress_key = await _service_key(server, data_dir, *_EGRESS_KEY)
            egress = EgressServer(
                _egress_settings(data_dir, server.target, egress_key), address=f"{host}:{egress_port}"
            )
            await _start(stack, egress, "--egress-port", egress_port)
        gateway_settings = GatewaySettings(
            control_target=server.target,
            ai_target=ai.target if ai else "",
            egress_target=egress.target if egress else "",
            sfu_target=node.target if node is not None else "",
            redis_url=redis_url,
            session_secret=_secret(data_dir, "session_secret"),
            files_secret=files_secret,
            recordings_dir=recordings_dir,
            dev_login=True,
            secure_cookies=False,
        )
        try:
            gateway = GatewayServer(gateway_settings, host=host, port=http_port)
        except OSError as exc:
            raise _PortTaken("--http-port", http_port) from exc
        await stack.enter_async_context(gateway)
        credentials, created = await _ensure_dev_key(
            server, data_dir, ai.target if ai else "", gateway.url, egress.target if egress else ""
        )
        _print_addresses(server, sfu_targets, turn, ai, egress, gateway, data_dir, credentials, created)
        await stop
        typer.echo("stopping")


def _print_addresses(
    server: ControlServer,
    sfu_targets: list[str],
    turn: Coturn | str,
    ai: AiServer | None,
    egress: EgressServer | None,
    gateway: GatewayServer,
    data_dir: Path,
    credentials: Credentials,
    created: bool,
) -> None:
    typer.echo(f"Parley control (gRPC) listening on {server.target}")
    if len(sfu_targets) == 1:
        typer.echo(f"Parley SFU (gRPC signaling; WebRTC media) listening on {sfu_targets[0]}")
    else:
        typer.echo(
            f"Parley SFU: {len(sfu_targets)} workers (gRPC signaling; WebRTC media) listening on "
            f"{', '.join(sfu_targets)}; rooms spread over them"
        )
    if isinstance(turn, str):
        typer.echo(f"TURN relay {turn}; browsers behind firewalls that block UDP cannot join")
    else:
        tls = f", TLS on {turn.tls_port}" if turn.certificate else ""
        typer.echo(
            f"TURN relay (coturn) on {turn.host}:{turn.port}, UDP and TCP{tls}; clients get credentials on joining"
        )
    if ai is not None:
        typer.echo(f"Parley AI (gRPC: transcription, summaries) listening on {ai.target}")
    if egress is not None:
        typer.echo(f"Parley egress (gRPC: recordings, to {data_dir / 'recordings'}) listening on {egress.target}")
    typer.echo(
        f"Parley REST API and web app on {gateway.url}  (API docs: {gateway.url}/api/docs, "
        f"dev login: {gateway.url}/auth/login)"
    )
    typer.echo(f"  metrics:     {gateway.url}/metrics  (Prometheus; every service of this process)")
    typer.echo(f"  data folder: {data_dir}  (SQLite database, secrets, credentials)")
    typer.echo("  dev login:   enabled (UserService.DevLogin, /auth/login); OIDC not configured")
    typer.echo(_webhooks_line(server.settings.webhook_allowed_networks))
    typer.echo(f"  {'new ' if created else ''}development API key (all scopes), saved for the CLI:")
    typer.echo(f"    PARLEY_URL={credentials.url}")
    typer.echo(f"    PARLEY_API_KEY={credentials.api_key}")
    typer.echo(f"    PARLEY_API_SECRET={credentials.api_secret}")
    if ai is not None:
        typer.echo(f"    PARLEY_AI_URL={credentials.ai_url}")
    typer.echo("  try: parley rooms create --name 'Weekly sync'   (Ctrl-C stops)")
    if ai is not None:
        typer.echo("       parley transcribe meeting.wav --summarize")
    if egress is not None:
        typer.echo("       parley recordings start ROOM   (in a meeting; then: parley recordings stop / download)")


#: The packages each part of ``parley up`` imports, and the extra that installs them.
_EXTRAS = {"server": ("control", "sfu", "gateway"), "ai": ("ai",), "egress": ("egress",)}


def _missing_extra(with_ai: bool, with_recording: bool = False) -> tuple[str, str] | None:
    """The extra to install and the package missing when a service cannot be imported here
    (the SDK alone installs none of their packages), else None."""
    for extra, modules in _EXTRAS.items():
        if (extra == "ai" and not with_ai) or (extra == "egress" and not with_recording):
            continue
        for module in modules:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as error:
                return extra, error.name or str(error)
    return None


def up(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where data lives; default $PARLEY_DATA_DIR or ~/.local/share/parley.")
    ] = None,
    grpc_port: Annotated[int, typer.Option(help="gRPC port of control (0: any free port).")] = 50051,
    http_port: Annotated[int, typer.Option(help="Port of the REST API and web app (0: any free port).")] = 8080,
    ai_port: Annotated[int, typer.Option(help="gRPC port of the AI service (0: any free port).")] = 50053,
    sfu_port: Annotated[int, typer.Option(help="gRPC signaling port of the SFU (0: any free port).")] = 7880,
    sfu_workers: Annotated[
        int,
        typer.Option(
            help="SFU worker processes, each forwarding on one core (0: one per core); over 1 they "
            "share rooms through a private Redis (redis-server), or PARLEY_REDIS_URL's, and worker i "
            "listens on --sfu-port + i."
        ),
    ] = 1,
    egress_port: Annotated[int, typer.Option(help="gRPC port of the egress service (0: any free port).")] = 50054,
    turn_port: Annotated[int, typer.Option(help="UDP and TCP port of the TURN relay (0: any free port).")] = 3478,
    ai: Annotated[bool, typer.Option(help="Run the AI service (transcription, summaries).")] = True,
    recording: Annotated[bool, typer.Option(help="Run the egress service (recordings).")] = True,
    turn: Annotated[bool, typer.Option(help="Run a TURN relay (coturn, when installed).")] = True,
    turn_certificate: Annotated[
        Path | None, typer.Option(help="PEM certificate for TLS relays (turns:), with --turn-private-key.")
    ] = None,
    turn_private_key: Annotated[Path | None, typer.Option(help="PEM private key of --turn-certificate.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    verbose: Annotated[bool, typer.Option(help="Debug logging.")] = False,
) -> None:
    """Run Parley on its embedded defaults: control (SQLite, dev login), the AI service (local
    Ray, Whisper tiny.en, a light summary model), the egress service (recordings in the data
    folder) and the REST gateway."""
    missing = _missing_extra(ai, recording)
    if missing is not None:
        extra, package = missing
        hints = {
            "ai": " (or run without the AI service: parley up --no-ai)",
            "egress": " (or: parley up --no-recording)",
        }
        hint = hints.get(extra, "")
        typer.echo(
            f"error: `parley up` runs Parley's services, whose packages are not installed here "
            f"(no {package!r}): pip install 'parley[{extra}]'{hint}",
            err=True,
        )
        raise typer.Exit(1)
    if (turn_certificate is None) != (turn_private_key is None):
        typer.echo("error: --turn-certificate and --turn-private-key go together", err=True)
        raise typer.Exit(1)
    from parley.server import ConfigurationError, configure_logging, configure_tracing

    configure_logging(logging.DEBUG if verbose else None)
    configure_tracing("parley")
    try:
        asyncio.run(
            _serve(
                (data_dir or default_data_dir()).expanduser(),
                grpc_port,
                http_port,
                ai_port,
                sfu_port,
                sfu_workers,
                egress_port,
                turn_port,
                (turn_certificate, turn_private_key) if turn_certificate and turn_private_key else None,
                host,
                ai,
                recording,
                turn,
            )
        )
    except (_PortTaken, ConfigurationError) as exc:  # a bad PARLEY_WEBHOOK_ALLOWED_NETWORKS, for one
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
