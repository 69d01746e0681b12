"""The web app (``web/``) in a real browser against a real Parley: ``parley up`` (control, the
SFU and the gateway on embedded defaults, dev login) started by the test, and headless Debian
chromium with a fake camera, microphone and screen driven by ``journey.mjs`` (playwright-core).

A host logs in, starts a meeting and makes the room TRUSTED; a guest at phone width opens the
link, passes pre-join, waits in the lobby and is admitted; both decode each other's video (not
black) and receive audio energy; the guest's signal socket is closed as a network drop would:
the app shows that it reconnects, the session is resumed, the host sees no leave and video
flows both ways again; chat goes both ways; a hand is raised and a reaction sent; the
guest's screen share reaches the host as a tile; two more users make a 4-person meeting; the
host mutes, then removes the guest; a restricted room's lobby denies a stranger. axe-core finds
no serious or critical WCAG 2 A / AA violation on the home, pre-join, lobby and meeting screens. Screenshots of
every screen at desktop and phone widths are written to ``.cache/web-screens/`` on every run.

Also: the type check and vitest unit tests of the app, and its JavaScript budget."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .parley_up import running_parley_up

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
BUILD = ROOT / "gateway" / "static" / "app"
SCREENS = ROOT / ".cache" / "web-screens"
JOURNEY = Path(__file__).resolve().parent / "journey.mjs"
#: The issue's budget for the app's JavaScript, gzipped.
JS_BUDGET_BYTES = 300 * 1024


def _run(*cmd: str, cwd: Path, within: float = 300) -> str:
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=within, env=env)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built_app() -> Path:
    """The app built from this checkout (``vite build`` into gateway/static/app, as setup does)."""
    assert (WEB / "node_modules").exists(), "web/node_modules is missing: run ./scripts/setup"
    _run("npx", "vite", "build", "--logLevel", "warn", cwd=WEB)
    assert (BUILD / "index.html").is_file()
    return BUILD


@pytest.fixture(scope="module")
def parley_up(built_app: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``parley up`` without the AI and egress services, its URL."""
    with running_parley_up(tmp_path_factory.mktemp("parley-up")) as url:
        yield url


def test_the_app_type_checks_and_its_unit_tests_pass() -> None:
    assert (WEB / "node_modules").exists(), "web/node_modules is missing: run ./scripts/setup"
    _run("npx", "tsc", "--noEmit", "-p", ".", cwd=WEB)
    _run("npx", "vitest", "run", cwd=WEB)


def test_the_app_javascript_fits_the_budget(built_app: Path) -> None:
    scripts = list((built_app / "assets").glob("*.js"))
    assert scripts
    size = sum(len(gzip.compress(path.read_bytes(), 9)) for path in scripts)
    assert size < JS_BUDGET_BYTES, f"the app's JavaScript is {size} bytes gzipped"


def test_the_gateway_serves_the_app_and_its_deep_links(parley_up: str) -> None:
    home = httpx.get(parley_up + "/")
    assert home.status_code == 200 and '<div id="root">' in home.text
    deep = httpx.get(parley_up + "/r/abc-defg-hij")
    assert deep.status_code == 200 and deep.text == home.text
    assert httpx.get(parley_up + "/meet.html").status_code == 200
    assert httpx.get(parley_up + "/api/docs").status_code == 200
    assert httpx.get(parley_up + "/v1/rooms/nope").headers["content-type"].startswith("application/json")
    assert httpx.get(parley_up + "/missing.js").status_code == 404


def test_the_meeting_journey_in_a_browser(parley_up: str) -> None:
    assert shutil.which("chromium"), "Debian chromium is missing: run ./scripts/setup --test"
    assert (ROOT / "tests" / "browser" / "node_modules" / "playwright-core").exists(), "run ./scripts/setup --test"
    shutil.rmtree(SCREENS, ignore_errors=True)
    SCREENS.mkdir(parents=True)
    done = subprocess.run(["node", str(JOURNEY), parley_up, str(SCREENS)], capture_output=True, text=True, timeout=540)
    steps: dict[str, dict[str, Any]] = {}
    accessibility: dict[str, list[dict[str, Any]]] = {}
    for line in done.stdout.splitlines():
        step = json.loads(line)
        name = step.pop("step")
        if name == "axe":
            accessibility[step["screen"]] = step["violations"]
        else:
            steps[name] = step
    assert done.returncode == 0 and "done" in steps, f"the journey stopped after {list(steps)}:\n{done.stderr[-4000:]}"

    assert len(steps["admitted"]["guestIdentity"]) > 0
    for seen in (steps["video"]["hostSeesGuest"], steps["video"]["guestSeesHost"], steps["screen"]["hostSeesScreen"]):
        assert seen["framesDecoded"] > 0 and seen["width"] > 0, seen
        assert seen["meanLuma"] > 10, f"the video is black: {seen}"  # chromium's fake camera is bright green
    assert steps["audio"]["hostHears"] > 0 and steps["audio"]["guestHears"] > 0, steps["audio"]
    drop = steps["drop"]
    assert drop["states"][:2] == ["reconnecting", "connected"], drop
    assert drop["banner"] == "Connection lost: reconnecting…", drop
    assert drop["resumed"] and drop["sid"] == drop["sidBefore"], drop
    assert drop["hostSawGuest"] == [] and drop["hostHasGuest"], drop  # no leave, no second join
    for frames in (drop["hostSeesGuestFrames"], drop["guestSeesHostFrames"]):
        assert frames["after"] >= frames["before"] + 10, drop
    for name in ("chat", "hand", "reaction", "four", "muted", "removed", "denied"):
        assert name in steps
    # Simulcast: the phone's small tiles get each camera's 320x180 layer (the desktop's bigger
    # tiles a bigger one while the browsers send it: see bench/ and tests/sfu/test_simulcast.py).
    assert steps["four"]["guestWidths"] == [320, 320, 320], steps["four"]
    print(f"4-person meeting, remote camera widths: {steps['four']}")
    assert set(accessibility) == {"home", "prejoin", "lobby", "meeting with chat"}
    serious = {screen: found for screen, found in accessibility.items() if found}
    assert not serious, f"axe-core finds serious or critical violations: {serious}"
    shots = {path.stem for path in SCREENS.glob("*.png")}
    assert {"home-desktop", "home-phone", "prejoin-desktop", "prejoin-phone", "lobby-phone", "lobby-desktop"} <= shots
    assert {"meeting-desktop", "meeting-phone", "meeting-4-desktop", "chat-desktop", "chat-phone"} <= shots
