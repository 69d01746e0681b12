"""Property-based tests of the REST API from its own OpenAPI document (schemathesis) against a
live gateway + control + PostgreSQL: no 5xx, and every response matches the document."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import psycopg
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from gateway import load_descriptor_set, routes_for
from gateway._app import backend_of, parley_services
from gateway._openapi import openapi_document

from .conftest import PG_ADMIN_URL


@dataclass(frozen=True)
class Stack:
    url: str
    headers: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """control (fresh PostgreSQL database) and the gateway, each in its own process."""
    database = f"parley_fuzz_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    grpc_target, http_port = f"127.0.0.1:{_free_port()}", _free_port()
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}",
        "PARLEY_TOKEN_SECRET": secrets.token_urlsafe(40),
        "PARLEY_DEV_LOGIN": "1",
        "PARLEY_GRPC_ADDRESS": grpc_target,
        "PARLEY_CONTROL_TARGET": grpc_target,
        "PARLEY_SESSION_SECRET": secrets.token_urlsafe(40),
        "PARLEY_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        "PARLEY_SECURE_COOKIES": "0",
    }
    url = f"http://127.0.0.1:{http_port}"
    processes = [
        subprocess.Popen([sys.executable, "-m", module], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for module in ("control", "gateway")
    ]
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    login = http.post("/v1/users:devLogin", json={"subject": "fuzzer"})
                    if login.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "gateway + control did not come up"
                time.sleep(0.2)
            headers = {"authorization": f"Bearer {login.json()['accessToken']}"}
            http.post("/v1/rooms", json={"displayName": "seed", "slug": "abc-defg-hij"}, headers=headers)
        yield Stack(url, headers)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _operations() -> dict[str, schemathesis.APIOperation[Any, Any, Any, Any]]:
    # The same document the gateway serves at /api/openapi.json (test_openapi checks that).
    # Control's routes only: this stack has no AI service (whose routes then answer 503 by design);
    # tests/ai/test_gateway_ai.py drives those against a live one.
    descriptor_set = load_descriptor_set()
    routes = [r for r in routes_for(parley_services(descriptor_set)) if backend_of(r) == "control"]
    document = openapi_document(descriptor_set, routes)
    loaded = schemathesis.openapi.from_dict(document)
    # An operation schemathesis cannot read is an Err without .ok(): collection fails loudly.
    operations = [result.ok() for result in loaded.get_all_operations()]  # type: ignore[union-attr]
    return {op.label: op for op in operations}


OPERATIONS = _operations()


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_conforms_to_its_document(label: str, stack: Stack) -> None:
    operation = OPERATIONS[label]

    # schemathesis' pytest plugin does not run on pytest 9 yet; drive hypothesis directly.
    @hypothesis.settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        case.call_and_validate(
            base_url=stack.url,
            headers=stack.headers,
            timeout=10,
            checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        )

    check()
