"""Where the SDK and CLI find Parley: explicit arguments, else ``PARLEY_URL`` /
``PARLEY_API_KEY`` / ``PARLEY_API_SECRET`` / ``PARLEY_AI_URL`` / ``PARLEY_EGRESS_URL`` /
``PARLEY_GATEWAY_URL``, else the credentials ``parley up`` saved in its
data folder, else a clear error."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from ._errors import ParleyError

CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """How to reach and authenticate to a Parley control plane."""

    #: gRPC target, ``host:port``.
    url: str
    api_key: str = ""
    api_secret: str = ""
    #: The AI service's gRPC target (transcriptions, summaries); empty when there is none.
    ai_url: str = ""
    #: The egress service's gRPC target (``client.egress``); empty when there is none.
    egress_url: str = ""
    #: The REST gateway's base URL (``http://host:port``), against which the CLI resolves
    #: relative download links; empty when unknown.
    gateway_url: str = ""

    @property
    def bearer(self) -> str:
        return f"{self.api_key}.{self.api_secret}" if self.api_key else ""


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$PARLEY_DATA_DIR``, else ``$XDG_DATA_HOME/parley``, else ``~/.local/share/parley``."""
    env = os.environ if env is None else env
    if env.get("PARLEY_DATA_DIR"):
        return Path(env["PARLEY_DATA_DIR"])
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return base / "parley"


def save_credentials(data_dir: Path, credentials: Credentials) -> Path:
    """Writes the credentials file, readable by its owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CREDENTIALS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(asdict(credentials), indent=2))
    tmp.replace(path)
    return path


def load_credentials(
    *,
    url: str | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
    ai_url: str | None = None,
    egress_url: str | None = None,
    gateway_url: str | None = None,
    data_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    """Resolves credentials, each value from the first source that has it."""
    env = os.environ if env is None else env
    saved: dict[str, str] = {}
    path = (data_dir or default_data_dir(env)) / CREDENTIALS_FILE
    if path.exists():
        saved = json.loads(path.read_text())

    def pick(explicit: str | None, var: str, key: str) -> str:
        return explicit or env.get(var) or saved.get(key, "")

    resolved = Credentials(
        url=pick(url, "PARLEY_URL", "url"),
        api_key=pick(api_key, "PARLEY_API_KEY", "api_key"),
        api_secret=pick(api_secret, "PARLEY_API_SECRET", "api_secret"),
        ai_url=pick(ai_url, "PARLEY_AI_URL", "ai_url"),
        egress_url=pick(egress_url, "PARLEY_EGRESS_URL", "egress_url"),
        gateway_url=pick(gateway_url, "PARLEY_GATEWAY_URL", "gateway_url"),
    )
    if not resolved.url:
        raise ParleyError(f"no Parley server: pass --url, set PARLEY_URL, or run `parley up` (looked in {path})")
    if bool(resolved.api_key) != bool(resolved.api_secret):
        raise ParleyError("an API key needs its secret: set both PARLEY_API_KEY and PARLEY_API_SECRET")
    return resolved
