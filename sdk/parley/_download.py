"""Downloading a recording's file from its download link (``client.recordings.download_link``),
for ``parley recordings download``.

A link is an S3 presigned URL, or a path on the gateway (``/v1/files/...``) for recordings
kept in a local folder: that one is resolved against the gateway's URL. httpx is imported only
here, when a download runs: ``pip install parley`` alone does not bring it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ._errors import ParleyError

#: Where ``parley up`` serves the gateway unless told otherwise.
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080"
CHUNK = 1 << 16


def resolve_link(url: str, gateway_url: str) -> str:
    """An absolute URL: ``url`` itself, or a gateway path appended to ``gateway_url`` (keeping
    any path prefix the gateway is served under)."""
    if "://" in url:
        return url
    if not url.startswith("/"):
        raise ParleyError(f"not a download link: {url!r}")
    return (gateway_url or DEFAULT_GATEWAY_URL).rstrip("/") + url


def _reason(body: bytes) -> str:
    """The gateway's Status message, or the start of whatever else answered (S3's XML)."""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:200]


def download(url: str, target: Path, *, on_progress: Callable[[int, int | None], None] | None = None) -> int:
    """Streams ``url`` into ``target`` and returns its size; ``on_progress(received, total)``
    after each chunk (``total`` None when the server does not say). The file appears whole or
    not at all: it is written beside ``target`` first, then renamed."""
    try:
        import httpx
    except ModuleNotFoundError:
        raise ParleyError("downloading needs httpx: pip install httpx") from None
    partial = target.with_name(f".{target.name}.part")
    received = 0
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0)) as response:
            if response.status_code != 200:
                raise ParleyError(f"download failed: HTTP {response.status_code}: {_reason(response.read())}")
            length = response.headers.get("content-length", "")
            # A compressed answer's length is not the file's.
            encoded = response.headers.get("content-encoding", "identity") != "identity"
            total = int(length) if length.isdigit() and not encoded else None
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if on_progress is not None:
                        on_progress(received, total)
        if total is not None and received != total:
            raise ParleyError(f"download cut short: {received} of {total} bytes")
        os.replace(partial, target)
    except httpx.HTTPError as error:
        raise ParleyError(f"download failed: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return received
