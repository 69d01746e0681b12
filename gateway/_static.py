"""The static side of the gateway: the web app (``web/``, built by ``./scripts/setup`` into
``static/app``) and the pages beside it (``meet.html``, the SDK bundle).

A path that names a file is served from the app's build, else from ``static/``; any other GET
of a page (no file extension: ``/r/abc-defg-hij``) gets the app's ``index.html``, whose router
shows it (deep links). Without a build, pages get ``static/index.html``, which says how to build
the app, so the gateway runs (API, docs, meet.html) either way."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

#: The build folder under the static folder (``vite build``'s ``outDir``).
APP_DIR = "app"
#: Vite names the files under ``assets/`` by their content: they never change.
_IMMUTABLE = "public, max-age=31536000, immutable"


class WebApp:
    """ASGI app serving the web app with its SPA fallback, then the other static files."""

    def __init__(self, static_dir: Path) -> None:
        self.static_dir = static_dir
        self.app_dir = static_dir / APP_DIR
        self.others = StaticFiles(directory=static_dir, html=True)

    @property
    def built(self) -> bool:
        return (self.app_dir / "index.html").is_file()

    def _index(self) -> Response:
        page = self.app_dir / "index.html" if self.built else self.static_dir / "index.html"
        # The page names the current assets: it is checked again on every visit.
        return FileResponse(page, headers={"cache-control": "no-cache"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["method"] in ("GET", "HEAD") and self.built and path != "/":
            found = self._app_file(path)
            if found is not None:
                cache = _IMMUTABLE if path.startswith("/assets/") else "no-cache"
                await FileResponse(found, headers={"cache-control": cache})(scope, receive, send)
                return
        if path == "/" or path == "/index.html":
            await self._index()(scope, receive, send)
            return
        try:
            await self.others(scope, receive, send)
        except HTTPException as error:
            last = path.rsplit("/", 1)[-1]
            if error.status_code != 404 or scope["method"] not in ("GET", "HEAD") or "." in last:
                raise
            await self._index()(scope, receive, send)

    def _app_file(self, path: str) -> Path | None:
        """The build's file at ``path``, never outside the build folder."""
        root = self.app_dir.resolve()
        candidate = (root / path.lstrip("/")).resolve()
        if candidate != root and root in candidate.parents and candidate.is_file():
            return candidate
        return None
