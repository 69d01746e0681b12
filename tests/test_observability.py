"""Observability: each service's ``/metrics`` parses as Prometheus text and moves when traffic
flows, and one REST call is one trace from the gateway into control."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from control import ControlServer, ControlSettings
from gateway import GatewayServer, GatewaySettings
from parley import Client, VideoGrants, create_join_token
from parley.room import Room
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from sfu import SfuServer, SfuSettings

from .conftest import TOKEN_SECRET


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, by name and labels (parsing proves the format)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_control_metrics_count_a_join(tmp_path: Path) -> None:
    settings = ControlSettings(database_url=f"sqlite:///{tmp_path / 'c.db'}", token_secret=TOKEN_SECRET, dev_login=True)
    join = {"service": "parley.control.v1.RoomService", "method": "JoinRoom", "code": "OK"}
    async with (
        ControlServer(settings, metrics_address="127.0.0.1:0") as server,
        Client(server.target) as anonymous,
        httpx.AsyncClient() as http,
    ):
        assert server.metrics is not None
        before = scrape((await http.get(server.metrics.url)).text)
        login = await anonymous.users.dev_login("metrics-owner")
        room = await anonymous.with_bearer(login.access_token).rooms.create(display_name="Metrics")
        await anonymous.rooms.join(room.slug, display_name="Guest")
        page = await http.get(server.metrics.url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    after = scrape(page.text)
    assert value(after, "parley_rpc_requests_total", **join) == value(before, "parley_rpc_requests_total", **join) + 1
    latency = {"service": join["service"], "method": "JoinRoom"}
    assert value(after, "parley_rpc_duration_seconds_count", **latency) >= 1


async def test_gateway_metrics_count_requests_by_route(gateway: GatewayServer) -> None:
    route = {"route": "POST /v1/users:devLogin", "status": "200"}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        before = scrape((await http.get("/metrics")).text)
        assert (await http.post("/v1/users:devLogin", json={"subject": "metrics-rest"})).status_code == 200
        assert (await http.get("/v1/rooms/no-such-room")).status_code in (401, 404)
        after = scrape((await http.get("/metrics")).text)
    assert (
        value(after, "parley_http_requests_total", **route) == value(before, "parley_http_requests_total", **route) + 1
    )
    assert value(after, "parley_http_request_duration_seconds_count", route="POST /v1/users:devLogin") >= 1


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans of this process, kept in memory (the provider is process-wide: set once)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


async def test_a_rest_call_is_one_trace_from_gateway_to_control(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    settings = ControlSettings(database_url=f"sqlite:///{tmp_path / 'c.db'}", token_secret=TOKEN_SECRET, dev_login=True)
    async with ControlServer(settings) as control:
        gateway_settings = GatewaySettings(
            control_target=control.target, session_secret="s" * 40, dev_login=True, secure_cookies=False
        )
        async with GatewayServer(gateway_settings) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
            spans.clear()
            caller_trace = "0af7651916cd43dd8448eb211c80319c"
            headers = {"traceparent": f"00-{caller_trace}-b7ad6b7169203331-01"}
            reply = await http.post("/v1/users:devLogin", json={"subject": "traced"}, headers=headers)
            assert reply.status_code == 200
    finished = spans.get_finished_spans()
    http_span = next(s for s in finished if s.name == "POST /v1/users:devLogin")
    rpc_span = next(s for s in finished if s.name == "parley.control.v1.UserService/DevLogin")
    assert http_span.context is not None and rpc_span.context is not None and rpc_span.parent is not None
    # The gateway continues the browser's trace, and control's span is the gateway span's child.
    assert format(http_span.context.trace_id, "032x") == caller_trace
    assert rpc_span.context.trace_id == http_span.context.trace_id
    assert rpc_span.parent.span_id == http_span.context.span_id
    assert rpc_span.attributes is not None and rpc_span.attributes["rpc.method"] == "DevLogin"


async def test_a_signal_stream_has_a_span_that_ends_with_the_call(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    # A streaming call's span is not made current (its generator may be closed from another
    # task, where the context could not be detached); it still starts and ends with the call,
    # whether the participant leaves or drops the call.
    settings = SfuSettings(token_secrets={"parley": TOKEN_SECRET}, grpc_address="127.0.0.1:0", empty_timeout=0.2)
    token, _ = create_join_token(
        key_id="parley", secret=TOKEN_SECRET, identity="bot", grants=VideoGrants(room="traced")
    )
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        async with SfuServer(settings) as sfu:
            async with await Room.connect(f"grpc://{sfu.target}", token):
                pass
            # A client that drops its call instead of leaving: grpc closes the handler's
            # generator from another task than the one that ran it.
            async with grpc.aio.insecure_channel(sfu.target) as channel:
                call = sig_grpc.SignalServiceStub(channel).Connect()
                await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=token)))
                await call.read()
                call.cancel()
            await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.name == "opentelemetry.context"]
    connects = [s for s in spans.get_finished_spans() if s.name.endswith("SignalService/Connect")]
    assert len(connects) == 2 and all(s.end_time and s.start_time and s.end_time > s.start_time for s in connects)
