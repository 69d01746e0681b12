"""How fast the web app gets a person into a meeting, against the legacy ``meet.html`` page, side
by side in one run, and what JavaScript the app makes browsers download.

Builds the app (``vite build`` into gateway/static/app, as ``./scripts/setup`` does), starts
``parley up`` (control, the SFU and the gateway on embedded defaults, without the AI and egress
services) in a process of its own, creates a PUBLIC room through the REST API, and runs
``bench/web_bench.mjs`` in headless Debian chromium with a fake camera and microphone
(playwright-core from tests/browser): a meet.html page publishes camera and microphone in the
room, then ``--joins`` joins of the app and of meet.html, alternating, each in a fresh browser
context that leaves before the next (one warm-up join of each is not counted).

Measured: from the click on "Join now" on the app's pre-join (its preview already running) to the
first frame of the publisher's video rendered (``requestVideoFrameCallback`` on the remote tile's
``<video>``); for meet.html, which has no pre-join and joins as it loads, from the start of the
navigation to the same frame. Prints p50 / p95 of each, the app's JavaScript gzipped (every
``assets/*.js`` of the build, level 9) beside meet.html's (the SDK bundle
gateway/static/parley-sdk.js and the page), the ratios app / legacy, and the issue's goals.

    python -m bench.web_bench [--joins 20]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.web.parley_up import running_parley_up

ROOT = Path(__file__).resolve().parents[1]
APP_BUILD = ROOT / "gateway" / "static" / "app"
LEGACY_PAGE = ROOT / "gateway" / "static" / "meet.html"
LEGACY_SDK = ROOT / "gateway" / "static" / "parley-sdk.js"
BROWSER_SCRIPT = Path(__file__).resolve().with_name("web_bench.mjs")
#: The issue's goals.
FIRST_FRAME_GOAL_MS = 1000
JS_GOAL_BYTES = 300 * 1024
QUANTILES = (("p50", 0.5), ("p95", 0.95))


def _check_tools() -> None:
    missing = [
        what
        for what, ok in (
            ("Debian chromium", shutil.which("chromium") is not None or "CHROMIUM" in os.environ),
            ("node", shutil.which("node") is not None),
            (
                "playwright-core (tests/browser)",
                (ROOT / "tests" / "browser" / "node_modules" / "playwright-core").is_dir(),
            ),
            ("the web app's packages (web/node_modules)", (ROOT / "web" / "node_modules").is_dir()),
            ("the SDK bundle meet.html loads (gateway/static/parley-sdk.js)", LEGACY_SDK.is_file()),
        )
        if not ok
    ]
    if missing:
        sys.exit(f"missing: {', '.join(missing)}; run ./scripts/setup --test")


def _build_app() -> None:
    done = subprocess.run(
        ["npx", "vite", "build", "--logLevel", "warn"], cwd=ROOT / "web", capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"vite build failed:\n{done.stdout}\n{done.stderr}")


def _gzipped(*paths: Path) -> int:
    return sum(len(gzip.compress(path.read_bytes(), 9)) for path in paths)


def _legacy_inline_script() -> Path:
    """meet.html's own script (the page's <script> text) in a file, to be sized like the others."""
    match = re.search(r"<script[^>]*>(.*?)</script>", LEGACY_PAGE.read_text(), re.S)
    assert match, "meet.html has no inline script"
    path = Path(tempfile.mkstemp(suffix=".js")[1])
    path.write_text(match.group(1))
    return path


@contextmanager
def _parley_up() -> Iterator[str]:
    """``parley up`` on free ports in a temporary data folder; its base URL while it runs."""
    with tempfile.TemporaryDirectory(prefix="parley-web-bench-") as data_dir:
        try:
            with running_parley_up(Path(data_dir)) as url:
                yield url
        except RuntimeError as error:
            sys.exit(str(error))


def _room_and_publisher(url: str) -> tuple[str, str]:
    """A PUBLIC room created by a dev-login user, and a join token for the page that publishes."""
    with httpx.Client(base_url=url, timeout=10) as http:
        login = http.post("/v1/users:devLogin", json={"subject": "bench-host"})
        login.raise_for_status()
        owner = {"authorization": f"Bearer {login.json()['accessToken']}"}
        room = http.post(
            "/v1/rooms", json={"displayName": "web bench", "accessLevel": "ACCESS_LEVEL_PUBLIC"}, headers=owner
        )
        room.raise_for_status()
        slug: str = room.json()["slug"]
        grant = http.post(f"/v1/rooms/{slug}:join", json={"displayName": "Publisher"}, headers=owner)
        grant.raise_for_status()
        token: str = grant.json()["grant"]["token"]
        return slug, token


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=20, help="measured joins of each page")
    args = parser.parse_args()
    if args.joins < 1:
        parser.error("--joins must be at least 1")
    _check_tools()
    print("building the app", file=sys.stderr)
    _build_app()
    app_scripts = sorted((APP_BUILD / "assets").glob("*.js"))
    app_js = _gzipped(*app_scripts)
    inline = _legacy_inline_script()
    try:
        legacy_js = _gzipped(LEGACY_SDK, inline)
    finally:
        inline.unlink()

    times: dict[str, list[float]] = {"app": [], "legacy": []}
    with _parley_up() as url:
        slug, publisher_token = _room_and_publisher(url)
        print(f"room {slug}: {args.joins} joins of each page", file=sys.stderr)
        command = ["node", str(BROWSER_SCRIPT), url, slug, publisher_token, str(args.joins)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as browser:
            assert browser.stdout is not None
            for line in browser.stdout:
                join = json.loads(line)
                if join["others"] != 1:
                    # Another joiner's video could have been the frame measured.
                    browser.kill()
                    sys.exit(f"a {join['page']} join saw {join['others']} others in the room, not the publisher alone")
                times[join["page"]].append(join["ms"])
                print(f"  {join['page']:<7}{join['ms']:8.0f} ms", file=sys.stderr)
        if browser.returncode != 0:
            sys.exit(
                f"the browser script failed (exit {browser.returncode}) after {sum(map(len, times.values()))} joins"
            )

    app, legacy = times["app"], times["legacy"]
    print(
        f"\nFirst remote video frame after joining, {args.joins} joins of each on loopback (headless chromium, "
        f"fake camera, one publisher in the room; {os.cpu_count()} CPUs shared by Parley and the browser)\n"
    )
    print("| | web app (click Join → frame) | meet.html (navigation → frame) | app / legacy |")
    print("|---|---:|---:|---:|")
    rows = [(f"first remote frame {name}", _percentile(app, q), _percentile(legacy, q)) for name, q in QUANTILES]
    rows.append(("first remote frame, mean", statistics.fmean(app), statistics.fmean(legacy)))
    for row, a, b in rows:
        print(f"| {row} | {a:.0f} ms | {b:.0f} ms | {a / b:.2f} |")
    app_size = f"{app_js / 1024:.1f} KB ({len(app_scripts)} files)"
    legacy_size = f"{legacy_js / 1024:.1f} KB (SDK bundle + page)"
    print(f"| JavaScript, gzipped | {app_size} | {legacy_size} | {app_js / legacy_js:.2f} |")
    p95 = _percentile(app, 0.95)
    print(
        f"\nGoals: first remote frame under {FIRST_FRAME_GOAL_MS} ms: app p95 {p95:.0f} ms "
        f"({'met' if p95 < FIRST_FRAME_GOAL_MS else 'NOT met'}); script under {JS_GOAL_BYTES // 1024} KB gzipped: "
        f"{app_js / 1024:.1f} KB ({'met' if app_js < JS_GOAL_BYTES else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
