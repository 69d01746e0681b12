"""Congestion control's rules, on made-up feedback (fast; the throttled subscriber on a real
rate-limited link is in test_throttled.py)."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from sfu._congestion import (
    PRIORITY_CAMERA,
    PRIORITY_SCREEN,
    PRIORITY_SPEAKER,
    PROBE_BACKOFF,
    PROBE_GROWTH,
    PROBE_MARGIN,
    PROBE_TIME,
    Bandwidth,
    Demand,
    allocate,
    next_step,
    used,
)

AUDIO = Demand("mic", [40_000], audio=True)
CAMERA = Demand("camera", [150_000, 500_000, 1_500_000], priority=PRIORITY_CAMERA)
SPEAKER = Demand("speaker", [150_000, 500_000, 1_500_000], priority=PRIORITY_SPEAKER)
SCREEN = Demand("screen", [800_000], priority=PRIORITY_SCREEN)


def test_without_a_limit_every_track_gets_what_it_wants() -> None:
    assert allocate(None, [AUDIO, CAMERA, SCREEN]) == {"mic": 1, "camera": 3, "screen": 1}


def test_audio_first_then_every_video_at_its_lowest_then_upgrades_by_priority() -> None:
    demands = [CAMERA, AUDIO, SPEAKER]
    # 40k audio + 2 × 150k lowest layers, and 350k for the speaker's step to 500k.
    assert allocate(40_000 + 300_000 + 350_000, demands) == {"mic": 1, "camera": 1, "speaker": 2}
    # A little less: neither upgrade fits, both stay on their lowest layer.
    assert allocate(40_000 + 300_000 + 349_000, demands) == {"mic": 1, "camera": 1, "speaker": 1}


def test_video_that_does_not_fit_is_paused_the_lowest_priority_first() -> None:
    demands = [AUDIO, CAMERA, SCREEN]
    assert allocate(900_000, demands) == {"mic": 1, "screen": 1, "camera": 0}
    assert allocate(30_000, demands) == {"mic": 1, "screen": 0, "camera": 0}


def test_the_next_step_is_the_first_missing_upgrade_in_priority_order() -> None:
    demands = [AUDIO, CAMERA, SPEAKER]
    allowed: dict[Hashable, int] = {"mic": 1, "camera": 1, "speaker": 1}
    assert next_step(allowed, demands) == 350_000  # the speaker's, before the camera's
    assert used(allowed, demands) == 340_000
    assert next_step({"mic": 1, "camera": 0, "speaker": 3}, demands) == 150_000  # resume the camera
    assert next_step({"mic": 1, "camera": 3, "speaker": 3}, demands) is None


def test_no_limit_until_congestion_shows() -> None:
    bandwidth = Bandwidth()
    bandwidth.remb(300_000, [1])
    bandwidth.remb(320_000, [1])  # a rising estimate says nothing of a limit
    bandwidth.loss(0.05)  # nor does a little loss
    assert bandwidth.update(1.0, sent=1_000_000, step=None, in_use=1_000_000) is None


def test_a_falling_estimate_sets_the_limit() -> None:
    bandwidth = Bandwidth()
    bandwidth.remb(1_000_000, [1])
    bandwidth.remb(400_000, [1])
    assert bandwidth.update(1.0, sent=900_000, step=None, in_use=900_000) == 400_000
    assert bandwidth.congestions == 1


def test_heavy_loss_sets_the_limit_from_the_rate_sent() -> None:
    bandwidth = Bandwidth()
    bandwidth.loss(0.4)
    assert bandwidth.update(1.0, sent=1_000_000, step=None, in_use=1_000_000) == pytest.approx(800_000)


def test_estimates_of_each_track_add_up_and_one_for_all_replaces_them() -> None:
    bandwidth = Bandwidth()
    bandwidth.remb(200_000, [1])  # aiortc: one estimate per track
    bandwidth.remb(300_000, [2])
    assert bandwidth.estimate == 500_000
    bandwidth.remb(440_000, [1, 2])  # Chrome: one for the whole connection (a fall, from 500k)
    assert bandwidth.estimate == 440_000
    assert bandwidth.update(1.0, sent=500_000, step=None, in_use=500_000) == 440_000
    bandwidth.forget(2)
    assert bandwidth.estimate is None
    bandwidth.remb(300_000, [1])
    bandwidth.remb(200_000, [1, 3])  # padding on RTX stream 3 joins track 1's estimate
    assert bandwidth.update(2.0, sent=500_000, step=None, in_use=500_000) == 200_000


def _congested(bandwidth: Bandwidth, now: float, limit: float) -> None:
    bandwidth.remb(limit * 2, [7])
    bandwidth.remb(limit, [7])
    assert bandwidth.update(now, sent=limit, step=None, in_use=limit) == limit


def _reports(bandwidth: Bandwidth, count: int = 2) -> None:
    for _ in range(count):
        bandwidth.loss(0.0)


def test_a_probe_pads_toward_the_next_upgrade_and_the_limit_follows_if_it_holds() -> None:
    bandwidth = Bandwidth()
    _congested(bandwidth, 0.0, 200_000)
    # Before the backoff passes: no probe.
    assert bandwidth.update(PROBE_BACKOFF / 2, sent=190_000, step=350_000, in_use=190_000) == 200_000
    assert bandwidth.padding == 0
    # The probe pads what the upgrade needs beyond what is sent; the limit waits for its outcome.
    goal = (190_000 + 350_000) * PROBE_MARGIN
    assert bandwidth.update(PROBE_BACKOFF, sent=190_000, step=350_000, in_use=190_000) == 200_000
    assert bandwidth.padding == pytest.approx(goal - 190_000)
    # Its time passed, but without two receiver reports it waits (up to twice its time).
    end = PROBE_BACKOFF + PROBE_TIME
    bandwidth.remb(230_000, [7])  # the estimate rose with the padding
    _reports(bandwidth, 1)
    assert bandwidth.update(end, sent=190_000, step=350_000, in_use=190_000) == 200_000
    assert bandwidth.padding > 0
    _reports(bandwidth, 1)
    assert bandwidth.update(end + 0.5, sent=190_000, step=350_000, in_use=190_000) == pytest.approx(goal)
    assert bandwidth.padding == 0 and bandwidth.probes_held == 1
    assert allocate(goal, [Demand("camera", [190_000, 540_000])]) == {"camera": 2}


def test_a_probe_that_held_falls_back_when_its_losses_come_late() -> None:
    bandwidth = Bandwidth()
    _congested(bandwidth, 0.0, 200_000)
    bandwidth.update(PROBE_BACKOFF, sent=190_000, step=350_000, in_use=190_000)
    bandwidth.remb(230_000, [7])
    _reports(bandwidth)
    end = PROBE_BACKOFF + PROBE_TIME
    assert bandwidth.update(end, sent=190_000, step=350_000, in_use=190_000) == pytest.approx(594_000)
    bandwidth.loss(0.3)
    assert bandwidth.update(end + 1, sent=540_000, step=None, in_use=540_000) == 200_000


def test_a_probe_pads_at_most_growth_times_the_limit() -> None:
    bandwidth = Bandwidth()
    _congested(bandwidth, 0.0, 200_000)
    bandwidth.update(PROBE_BACKOFF, sent=190_000, step=5_000_000, in_use=190_000)
    assert bandwidth.padding == pytest.approx(200_000 * PROBE_GROWTH - 190_000)


def test_a_probe_that_meets_congestion_stops_at_once_and_the_next_waits_longer() -> None:
    bandwidth = Bandwidth()
    failed: list[bool] = []
    bandwidth.on_probe_failed = lambda: failed.append(True)
    _congested(bandwidth, 0.0, 200_000)
    bandwidth.update(PROBE_BACKOFF, sent=190_000, step=350_000, in_use=190_000)
    assert bandwidth.padding > 0
    bandwidth.loss(0.3)
    assert failed == [True]  # told at once, not at the next tick
    now = PROBE_BACKOFF + 1
    assert bandwidth.update(now, sent=190_000, step=350_000, in_use=190_000) == 200_000  # the padding was the excess
    assert bandwidth.padding == 0 and not bandwidth.retransmits()
    # The next probe waits twice as long.
    bandwidth.update(now + PROBE_BACKOFF * 1.5, sent=190_000, step=350_000, in_use=190_000)
    assert bandwidth.padding == 0
    bandwidth.update(now + PROBE_BACKOFF * 2, sent=190_000, step=350_000, in_use=190_000)
    assert bandwidth.padding > 0


def test_a_rising_estimate_lifts_the_limit_without_a_probe() -> None:
    bandwidth = Bandwidth()
    _congested(bandwidth, 0.0, 200_000)
    bandwidth.remb(260_000, [7])
    assert bandwidth.update(0.5, sent=200_000, step=None, in_use=200_000) == 260_000
