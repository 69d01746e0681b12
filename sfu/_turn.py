"""TURN relays, for clients behind firewalls that block UDP or any direct path to the SFU:
time-limited credentials handed out in the join response, and a coturn process beside the
SFU for ``parley up`` and the tests.

The credentials follow the TURN REST API's shared-secret scheme (coturn's
``use-auth-secret``): ``username = "<expiry, unix seconds>:<participant sid>"`` and
``credential = base64(HMAC-SHA1(secret, username))``. coturn recomputes the credential from
the same secret and refuses it once the expiry has passed, so the SFU never has to call
coturn, and a leaked credential is worth nothing after its lifetime. The lifetime must cover
a whole meeting: a relay's allocation is refreshed with the same credential every few
minutes (a resume or a rejoin gets a new one)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import shutil
import socket
import tempfile
import time
from pathlib import Path

from parley.sfu.v1 import signal_service_pb2 as sig

from ._settings import SfuSettings

__all__ = ["Coturn", "CoturnMissing", "client_ice_servers", "turn_credentials"]

log = logging.getLogger(__name__)


def turn_credentials(secret: str, user: str, *, ttl: float, now: float | None = None) -> tuple[str, str]:
    """A TURN user name and password that coturn (``--use-auth-secret``) accepts for ``ttl``
    seconds from ``now``."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def client_ice_servers(settings: SfuSettings, user: str) -> list[sig.IceServer]:
    """The ICE servers a participant gets on joining: the STUN servers, and the TURN relays
    with a credential of its own."""
    servers = [sig.IceServer(urls=[url]) for url in settings.ice_servers]
    if settings.turn_urls:
        username, credential = turn_credentials(settings.turn_secret, user, ttl=settings.turn_credential_ttl)
        servers.append(sig.IceServer(urls=list(settings.turn_urls), username=username, credential=credential))
    return servers


class CoturnMissing(Exception):
    """coturn's ``turnserver`` is not installed."""


class Coturn:
    """A coturn ``turnserver`` relaying UDP and TCP on one port of ``host`` (and TLS on another
    when given a certificate), with credentials
    made from ``secret`` (``turn_credentials``)::

        async with Coturn(secret=secret) as turn:
            settings = SfuSettings(..., turn_urls=turn.urls, turn_secret=secret)

    On a loopback ``host`` it also relays to loopback peers (the SFU on the same machine),
    which coturn refuses by default: on a shared host a relay to 127.0.0.1 would reach its
    private services."""

    def __init__(
        self,
        *,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        realm: str = "parley",
        certificate: Path | None = None,
        private_key: Path | None = None,
        tls_port: int = 0,
    ) -> None:
        """``certificate`` and ``private_key`` (PEM files): relay over TLS too, on
        ``tls_port`` (0: any free port), for networks that let only HTTPS-like traffic out."""
        executable = shutil.which("turnserver")
        if executable is None:
            raise CoturnMissing("coturn is not installed (Debian: apt-get install coturn)")
        if (certificate is None) != (private_key is None):
            raise ValueError("a TLS relay needs both certificate and private_key")
        self.executable = executable
        self.secret, self.host, self.port, self.realm = secret, host, port, realm
        self.certificate, self.private_key, self.tls_port = certificate, private_key, tls_port
        self._process: asyncio.subprocess.Process | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        """URLs for clients: ``turn:`` over UDP, and over TCP for networks that block UDP, and
        ``turns:`` (TLS) when the relay has a certificate. A relay listening on every address
        is advertised at this machine's name."""
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        urls = (f"turn:{host}:{self.port}?transport=udp", f"turn:{host}:{self.port}?transport=tcp")
        return (*urls, f"turns:{host}:{self.tls_port}?transport=tcp") if self.certificate else urls

    @property
    def log_path(self) -> Path:
        assert self._folder is not None, "coturn is not running"
        return Path(self._folder.name) / "turnserver.log"

    async def start(self) -> None:
        # coturn keeps running when it cannot bind its port: check first, or the test for
        # "listening" would find whatever holds the port.
        self.port = _free_port(self.host, self.port)
        if self.certificate:
            self.tls_port = _free_port(self.host, self.tls_port)
        self._folder = tempfile.TemporaryDirectory(prefix="parley-coturn-")
        folder = Path(self._folder.name)
        # The options go in a file only this user can read: a command line would show the
        # shared secret to every user of the machine (ps).
        options = [
            *("no-cli", "no-dtls", "fingerprint", "no-multicast-peers", "simple-log"),
            f"listening-ip={self.host}",
            f"listening-port={self.port}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            f"log-file={folder / 'turnserver.log'}",
            f"pidfile={folder / 'turnserver.pid'}",
        ]
        if self.certificate:
            options += [f"tls-listening-port={self.tls_port}", f"cert={self.certificate}", f"pkey={self.private_key}"]
        else:
            options.append("no-tls")
        if _is_loopback(self.host):
            options += [f"relay-ip={self.host}", "allow-loopback-peers"]
        config = folder / "turnserver.conf"
        config.touch(mode=0o600)
        config.write_text("\n".join(options) + "\n")
        self._process = await asyncio.create_subprocess_exec(
            self.executable, "-c", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await self._until_listening()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "coturn relaying on %s:%d (UDP and TCP)%s",
            self.host,
            self.port,
            f", TLS on {self.tls_port}" if self.certificate else "",
        )

    async def _until_listening(self, within: float = 10.0) -> None:
        assert self._process is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise RuntimeError(f"coturn exited at start ({self._process.returncode}): {self._log_tail()}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise TimeoutError(f"coturn did not listen on {self.host}:{self.port} within {within:g} s")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "no log"

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    async def __aenter__(self) -> Coturn:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _free_port(host: str, port: int = 0) -> int:
    """``port``, or any port if 0, free for both TCP and UDP on ``host`` (coturn listens on
    both); OSError if ``port`` is taken."""
    for _ in range(1 if port else 50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, port))
            chosen = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, chosen))
                except OSError:
                    if port:
                        raise
                    continue
                return chosen
    raise OSError(f"no port free for both TCP and UDP on {host}")
