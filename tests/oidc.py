"""A real OpenID Connect provider for tests: node-oidc-provider run from tests/oidc_provider.

Usage (a session fixture in conftest would wrap the context manager)::

    with OidcProvider.start(redirect_uris=["http://127.0.0.1:8443/callback"]) as idp:
        token = idp.client_credentials_token("https://gateway.parley.test/api")
        tokens = idp.authorization_code_tokens("alice", resource="https://gateway.parley.test/api")

The server generates fresh RS256 keys per run and publishes them at ``idp.jwks_uri``. What it
offers (client, accounts, short-lived tokens) is described at the top of ``server.mjs``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
CLIENT_ID = "parley-test"
CLIENT_SECRET = "parley-test-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"
# Every account logs in with this password (server.mjs reads it from OIDC_TEST_PASSWORD).
USER_PASSWORD = "parley-test-password"
READY_PREFIX = "oidc-provider listening on "
# Scopes that resource servers (JWT access-token audiences) accept; see getResourceServerInfo.
RESOURCE_SCOPES = "api:read api:write"

_START_ATTEMPTS = 3


class OidcProviderError(RuntimeError):
    """The test provider could not be set up, started, or did not answer as expected."""


def ensure_node_modules() -> None:
    """Install the provider's npm dependencies from the lock file if they are not there yet.

    node_modules is not committed, so a fresh clone (or CI) installs it on first use. ``npm ci``
    installs exactly what package-lock.json pins and never rewrites it.
    """
    if shutil.which("node") is None:
        raise OidcProviderError("`node` is not on PATH: the OIDC test provider (tests/oidc_provider) needs Node.js 20+")
    if (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise OidcProviderError("`npm` is not on PATH: it is needed once to install tests/oidc_provider/node_modules")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=PROVIDER_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise OidcProviderError(
            f"`npm ci` in {PROVIDER_DIR} failed with exit code {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )


def _free_port() -> int:
    # The issuer URL has to be known before the server starts (it is baked into tokens), so the
    # port is picked here. Another process could grab it before node binds it; start() retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


class _OutputCollector:
    """Drains the server's merged stdout/stderr on a thread so the pipe can never fill and block
    node, keeps it for error messages, and signals when the ready line shows up."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oidc-provider-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Reading ends at EOF, i.e. when node exits and the pipe closes.
        for line in self._stream:
            with self._lock:
                self._lines.append(line)
            if line.startswith(READY_PREFIX):
                self.ready.set()

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass(frozen=True)
class OidcProvider:
    """A running test provider (from ``start``) and the confidential client registered on it."""

    issuer: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    redirect_uris: tuple[str, ...] = (DEFAULT_REDIRECT_URI,)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        # node-oidc-provider's default route; a test checks it against the discovery document.
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    def discovery(self) -> dict[str, Any]:
        with httpx.Client(timeout=10) as client:
            response = client.get(self.discovery_url)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

    def jwks(self) -> dict[str, Any]:
        with httpx.Client(timeout=10) as client:
            response = client.get(self.jwks_uri)
            response.raise_for_status()
            keys: dict[str, Any] = response.json()
            return keys

    def client_credentials_token(self, resource: str, *, scope: str | None = None) -> str:
        """A JWT access token for ``resource`` (its ``aud``), issued to ``parley-test`` itself.

        A resource whose path ends with ``/short-lived`` yields a token that expires after 1 s.
        ``scope`` may name any of ``api:read api:write``; without it the token has no scope claim.
        """
        data = {"grant_type": "client_credentials", "resource": resource}
        if scope is not None:
            data["scope"] = scope
        with httpx.Client(timeout=10) as client:
            response = client.post(self.token_endpoint, data=data, auth=(self.client_id, self.client_secret))
        return str(self._token_response(response)["access_token"])

    def authorization_code_tokens(
        self,
        username: str,
        *,
        password: str = USER_PASSWORD,
        scope: str = "openid email profile",
        resource: str | None = None,
        redirect_uri: str | None = None,
    ) -> dict[str, Any]:
        """Sign ``username`` in through the authorization-code + PKCE flow, as a browser would,
        and return the token endpoint's JSON (``id_token``, ``access_token``, ...).

        With ``resource``, the access token is a JWT for that audience (add ``api:read`` and/or
        ``api:write`` to ``scope`` to get them in its ``scope`` claim). Add ``offline_access`` to
        ``scope`` for a refresh token; the prompt=consent the spec requires for it is sent here.
        The redirect URI is never fetched: the code is read from the ``Location`` header.
        """
        redirect_uri = redirect_uri or self.redirect_uris[0]
        verifier, challenge = _pkce_pair()
        state = secrets.token_urlsafe(16)
        params = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if "offline_access" in scope.split():
            params["prompt"] = "consent"
        if resource is not None:
            params["resource"] = resource

        # One client for the whole flow: it carries the provider's interaction/session cookies.
        with httpx.Client(timeout=10, follow_redirects=False) as client:
            # 1. /auth answers 303 to /interaction/<uid> and sets the interaction cookie.
            response = client.get(self.authorization_endpoint, params=params)
            interaction_url = self._redirect_target(response)
            # 2. Post the login form; 303 back to /auth/<uid> (resume).
            response = client.post(interaction_url, data={"prompt": "login", "login": username, "password": password})
            if response.status_code == 401:
                raise OidcProviderError(f"login as {username!r} was rejected (wrong password?)")
            resume_url = self._redirect_target(response)
            # 3. Resume: 303 to redirect_uri?code=...&state=...&iss=...
            response = client.get(resume_url)
            callback = self._redirect_target(response)
            query = parse_qs(urlsplit(callback).query)
            if "error" in query:
                raise OidcProviderError(f"authorization failed: {query}")
            if query.get("state") != [state]:
                raise OidcProviderError(f"state mismatch in callback {callback}")
            # 4. Redeem the code with the PKCE verifier.
            data = {
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
            if resource is not None:
                data["resource"] = resource
            response = client.post(self.token_endpoint, data=data, auth=(self.client_id, self.client_secret))
        return self._token_response(response)

    @staticmethod
    def _redirect_target(response: httpx.Response) -> str:
        location: str | None = response.headers.get("location")
        if response.status_code not in (302, 303) or location is None:
            raise OidcProviderError(
                f"expected a redirect from {response.request.url}, got {response.status_code}: {response.text[:500]}"
            )
        return urljoin(str(response.request.url), location)

    @staticmethod
    def _token_response(response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            raise OidcProviderError(f"token endpoint answered {response.status_code}: {response.text[:500]}")
        body: dict[str, Any] = response.json()
        return body

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        *,
        redirect_uris: Sequence[str] = (DEFAULT_REDIRECT_URI,),
        startup_timeout: float = 30.0,
    ) -> Iterator[OidcProvider]:
        """Run ``node server.mjs`` on a free loopback port until the ``with`` block ends."""
        ensure_node_modules()
        uris = tuple(redirect_uris)
        if not uris or any("," in uri for uri in uris):
            raise ValueError("redirect_uris must be non-empty and must not contain commas")
        env = {
            **os.environ,
            "OIDC_REDIRECT_URIS": ",".join(uris),
            "OIDC_TEST_PASSWORD": USER_PASSWORD,
        }
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            with _ServerProcess(port, env) as server:
                if server.wait_ready(startup_timeout):
                    yield cls(issuer=f"http://127.0.0.1:{port}", redirect_uris=uris)
                    return
                output = server.output()
                # Lost the race for the port: try another one.
                if "EADDRINUSE" in output and attempt < _START_ATTEMPTS:
                    continue
                returncode = server.returncode()
                why = (
                    f"exited with code {returncode}"
                    if returncode is not None
                    else f"did not report ready within {startup_timeout:.0f}s"
                )
                raise OidcProviderError(f"OIDC test provider (node server.mjs) {why}. Its output:\n{output}")
        raise AssertionError("unreachable")


class _ServerProcess:
    """The node process: started on enter, terminated (then killed) and reaped on exit, with its
    pipe closed, so no ResourceWarning escapes into the test session."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self._port = port
        self._env = env

    def __enter__(self) -> _ServerProcess:
        self._process = subprocess.Popen(
            ["node", "server.mjs", "--port", str(self._port)],
            cwd=PROVIDER_DIR,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdout is not None
        self._collector = _OutputCollector(self._process.stdout)
        return self

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._collector.ready.wait(0.1):
                return True
            if self._process.poll() is not None:
                # Exited early: let the reader take the last lines before anyone reads them.
                self._collector.join(5)
                return self._collector.ready.is_set()
        return False

    def output(self) -> str:
        return self._collector.text()

    def returncode(self) -> int | None:
        return self._process.poll()

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._collector.join(5)
        assert process.stdout is not None
        process.stdout.close()
