"""``GET /v1/files/{token}``: recordings kept in a local folder, downloaded with the link control
hands out (``GetRecordingDownloadLink``), as an S3 presigned URL serves those kept in S3.

The gateway holds no rules: control decided who may download when it signed the token, and
the gateway only checks the signature and expiry (``parley.verify_file_token``) before
streaming the file. Ranges are served (resuming a download, seeking in a player).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import quote

import grpc
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from parley import verify_file_token

from ._observability import set_route
from ._settings import GatewaySettings
from ._transcode import status_body

FILES_PATH = "/v1/files/{token}"


def _error(status: int, code: grpc.StatusCode, text: str) -> JSONResponse:
    return JSONResponse(status_body(code, text), status_code=status)


def _local_file(folder: Path, relative: str) -> Path | None:
    """The file at ``relative`` inside ``folder``, or None when there is none (or when a link
    would lead out of the folder)."""
    root = folder.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def content_disposition(filename: str) -> str:
    """``attachment`` with the name twice (RFC 6266): plain ASCII for old clients, and UTF-8
    (``filename*``) for those that read it."""
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=utf-8''{quote(filename, safe='')}"


def files_route(settings: GatewaySettings) -> Route:
    """The download route of the recordings folder (``recordings_dir``); 503 without one."""

    async def download(request: Request) -> Response:
        set_route(request, f"{request.method} {FILES_PATH}")
        if not settings.files_secret or settings.recordings_dir is None:
            return _error(503, grpc.StatusCode.UNAVAILABLE, "this gateway serves no recordings folder")
        try:
            claims = verify_file_token(settings.files_secret, request.path_params["token"])
        except ValueError as error:
            return _error(403, grpc.StatusCode.PERMISSION_DENIED, str(error))
        path = await asyncio.to_thread(_local_file, settings.recordings_dir, claims.path)
        if path is None:
            return _error(404, grpc.StatusCode.NOT_FOUND, "the file is not there (any more)")
        return FileResponse(
            path,
            media_type=claims.content_type or "application/octet-stream",
            headers={"content-disposition": content_disposition(claims.filename or path.name)},
        )

    return Route(FILES_PATH, download, methods=["GET", "HEAD"])
