"""Recording from the web app, in a real browser against a real Parley: ``parley up`` with its
egress service (recorders on a local Ray, recordings in the data folder), and headless Debian
chromium driven by ``recording_journey.mjs`` (playwright-core).

A host starts a meeting and a guest joins; the host starts a recording from the control bar and
both see that the meeting is recorded; the host stops it and both see it end; the room's
recordings page lists the recording once saved, and its download is the MP4 file. Screenshots of
the recorded meeting and of the recordings page (desktop and phone widths) go to
``.cache/web-screens/``. Its own ``parley up``: the journey in test_web_app.py runs without the
egress service, which a local Ray makes slow to start."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .parley_up import running_parley_up
from .test_web_app import ROOT, SCREENS, built_app  # noqa: F401 (the fixture)

JOURNEY = Path(__file__).resolve().parent / "recording_journey.mjs"


@pytest.fixture(scope="module")
def parley_up_recording(built_app: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """``parley up`` with the egress service (no AI service), its URL."""
    with running_parley_up(tmp_path_factory.mktemp("parley-up-recording"), recording=True) as url:
        yield url


def test_recording_from_the_meeting_shows_for_everyone_and_is_downloaded(parley_up_recording: str) -> None:
    assert shutil.which("chromium"), "Debian chromium is missing: run ./scripts/setup --test"
    assert (ROOT / "tests" / "browser" / "node_modules" / "playwright-core").exists(), "run ./scripts/setup --test"
    SCREENS.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["node", str(JOURNEY), parley_up_recording, str(SCREENS)], capture_output=True, text=True, timeout=540
    )
    steps: dict[str, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        step = json.loads(line)
        steps[step.pop("step")] = step
    assert done.returncode == 0 and "done" in steps, f"the journey stopped after {list(steps)}:\n{done.stderr[-4000:]}"

    # The recorder is hidden: it is in nobody's participant list, but everyone's room is recorded.
    assert steps["recording"]["host"] == {"recording": True, "others": 1}, steps["recording"]
    assert steps["recording"]["guest"] == {"recording": True, "others": 1}, steps["recording"]
    assert steps["stopped"] == {"host": False, "guest": False}
    assert steps["listed"]["count"] == 1 and "video" in steps["listed"]["tags"], steps["listed"]
    downloaded = steps["downloaded"]
    assert downloaded["failure"] is None and downloaded["box"] == "ftyp", downloaded
    assert downloaded["filename"].endswith(".mp4") and downloaded["bytes"] > 10_000, downloaded
    shots = {path.stem for path in SCREENS.glob("*.png")}
    assert {"meeting-recording-desktop", "meeting-recording-phone", "recordings-desktop", "recordings-phone"} <= shots
