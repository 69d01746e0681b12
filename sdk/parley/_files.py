"""Download tokens for files in a local recordings folder: control signs one when a caller may
download a recording (``GetRecordingDownloadLink``), and the gateway, which holds no rules,
only checks it before streaming the file — as an S3 presigned URL works for files in S3.

A token is a JWT (HS256) signed with the installation's files secret (``PARLEY_FILES_SECRET``),
naming a path relative to the recordings folder, and expires quickly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import jwt

_ALGORITHM = "HS256"
_AUDIENCE = "parley-files"


@dataclass(frozen=True, kw_only=True)
class FileClaims:
    """What a valid token allows: reading ``path`` (relative, no ``..``) under the folder."""

    path: str
    filename: str
    content_type: str


def _check_path(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(part in ("..", ".") for part in parts):
        raise ValueError(f"not a relative path inside the folder: {path!r}")
    return path


def sign_file_token(secret: str, *, path: str, filename: str, content_type: str, ttl: float) -> str:
    """A token letting its holder download ``path`` for ``ttl`` seconds."""
    claims = {
        "aud": _AUDIENCE,
        "exp": int(time.time() + ttl),
        "path": _check_path(path),
        "filename": filename,
        "content_type": content_type,
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify_file_token(secret: str, token: str) -> FileClaims:
    """The claims of a valid, unexpired token; ``ValueError`` for any other."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], audience=_AUDIENCE)
    except jwt.PyJWTError as error:
        raise ValueError(f"invalid download token: {error}") from None
    try:
        return FileClaims(
            path=_check_path(str(claims["path"])),
            filename=str(claims["filename"]),
            content_type=str(claims["content_type"]),
        )
    except KeyError as error:
        raise ValueError(f"invalid download token: no {error.args[0]!r} claim") from None
