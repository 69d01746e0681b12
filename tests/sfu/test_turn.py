"""TURN: the SFU hands each participant a time-limited credential for the relays, and a real
coturn (Debian's, started by the test) relays with it, over UDP and over TCP, until it expires.
The browser side (chromium allowed to use relays only) is in test_browser.py; TLS relays
(``turns:``) are tried here with a certificate the test makes and trusts."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import secrets
import shutil
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from parley.room import Room
from sfu import Coturn, SfuServer, SfuSettings, turn_credentials
from sfu._settings import ConfigurationError

from ..conftest import TOKEN_SECRET
from .conftest import KEY_ID, Mint

pytestmark = pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn missing: ./scripts/setup --test")


@pytest.fixture(scope="module")
async def turn() -> AsyncIterator[Coturn]:
    async with Coturn(secret=secrets.token_urlsafe(32)) as server:
        yield server


class _Echo(asyncio.DatagramProtocol):
    """A peer on loopback that sends back what it gets."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def _relay_round_trip(
    turn: Coturn, username: str, password: str, transport: str, tls: ssl.SSLContext | None = None
) -> bytes:
    """Allocates a relay with the credential and sends a datagram through it to an echo peer."""
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    port = turn.tls_port if tls else turn.port
    try:
        relay, inbox = await create_turn_endpoint(
            _Inbox, (turn.host, port), username, password, transport=transport, ssl=tls
        )
        try:
            relay.sendto(b"through the relay", echo.get_extra_info("sockname"))
            return await asyncio.wait_for(inbox.received.get(), 10)
        finally:
            relay.close()
    finally:
        echo.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_coturn_relays_with_a_fresh_credential(turn: Coturn, transport: str) -> None:
    username, password = turn_credentials(turn.secret, "PA_someone", ttl=60)
    assert await _relay_round_trip(turn, username, password, transport) == b"through the relay"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_coturn_refuses_an_expired_or_forged_credential(turn: Coturn, transport: str) -> None:
    expired = turn_credentials(turn.secret, "PA_someone", ttl=60, now=time.time() - 120)
    forged = turn_credentials("not-the-secret", "PA_someone", ttl=60)
    for username, password in (expired, forged):
        with pytest.raises(stun.TransactionFailed) as refused:
            await _relay_round_trip(turn, username, password, transport)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parley test relay")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_coturn_relays_over_tls(tmp_path: Path) -> None:
    """A ``turns:`` relay (for networks that let only TLS out): the client checks the relay's
    certificate, and relays with a fresh credential only."""
    certificate, private_key = _self_signed(tmp_path)
    secret = secrets.token_urlsafe(32)
    async with Coturn(secret=secret, certificate=certificate, private_key=private_key) as turn:
        assert turn.urls[-1] == f"turns:127.0.0.1:{turn.tls_port}?transport=tcp"
        trusting = ssl.create_default_context(cafile=str(certificate))
        username, password = turn_credentials(secret, "PA_someone", ttl=60)
        assert await _relay_round_trip(turn, username, password, "tcp", trusting) == b"through the relay"
        expired = turn_credentials(secret, "PA_someone", ttl=60, now=time.time() - 120)
        with pytest.raises(stun.TransactionFailed):
            await _relay_round_trip(turn, *expired, "tcp", trusting)
        with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust it
            await _relay_round_trip(turn, username, password, "tcp", ssl.create_default_context())


async def test_the_join_response_carries_a_working_relay_credential(turn: Coturn, token: Mint) -> None:
    settings = SfuSettings(
        token_secrets={KEY_ID: TOKEN_SECRET},
        grpc_address="127.0.0.1:0",
        ice_servers=(f"stun:{turn.host}:{turn.port}",),  # coturn answers STUN too
        turn_urls=turn.urls,
        turn_secret=turn.secret,
        turn_credential_ttl=3600,
    )
    async with SfuServer(settings) as sfu:
        room = await Room.connect(sfu.target, token("alice", f"turn-{uuid.uuid4().hex[:8]}"))
        try:
            servers = room.ice_servers
            assert [list(s.urls) for s in servers] == [[f"stun:{turn.host}:{turn.port}"], list(turn.urls)]
            relay = servers[1]
            assert relay.username is not None and isinstance(relay.credential, str)
            expiry, user = relay.username.split(":", 1)
            assert user == room.local.sid
            assert 3590 < int(expiry) - time.time() <= 3600
            for transport in ("udp", "tcp"):
                echoed = await _relay_round_trip(turn, relay.username, relay.credential, transport)
                assert echoed == b"through the relay"
        finally:
            await room.close()


def test_turn_settings_are_checked() -> None:
    secrets_ = {KEY_ID: TOKEN_SECRET}
    with pytest.raises(ConfigurationError, match="turn_secret"):
        SfuSettings(token_secrets=secrets_, turn_urls=("turn:relay.example.org:3478",))
    with pytest.raises(ConfigurationError, match="not a turn"):
        SfuSettings(token_secrets=secrets_, turn_urls=("stun:relay.example.org:3478",), turn_secret="s")
    with pytest.raises(ConfigurationError, match="positive"):
        SfuSettings(
            token_secrets=secrets_, turn_urls=("turn:relay.example.org:3478",), turn_secret="s", turn_credential_ttl=0
        )
    from_env = SfuSettings.from_env(
        {
            "PARLEY_TOKEN_SECRET": TOKEN_SECRET,
            "PARLEY_SFU_TURN_URLS": "turn:relay.example.org:3478?transport=udp,turns:relay.example.org:5349",
            "PARLEY_SFU_TURN_SECRET": "shared",
        }
    )
    assert from_env.turn_urls == ("turn:relay.example.org:3478?transport=udp", "turns:relay.example.org:5349")
    assert "shared" not in repr(from_env)
