"""Congestion control: how much a subscriber's downlink carries, and what of it each track gets.

**Estimate.** The subscriber's own receive-side estimate (REMB, from GCC's delay-based
estimator, which Chrome and aiortc both run on the abs-send-time of what the SFU sends) and the
loss its receiver reports tell of congestion; neither tells of headroom: a receive-side estimate
never exceeds about 1.5 × what arrives. So ``Bandwidth`` keeps no limit until congestion shows
(a REMB that falls by ``REMB_DROP`` or more, or ``LOSS_CONGESTED`` of the packets lost), then
holds the limit the signal gives (the estimate, or the rate sent less half the loss) and raises
it only as the estimate rises or a probe succeeds.

**Allocation** (``allocate``, LiveKit's order): audio first, then every video track at its
lowest layer, by priority (screen share, then the active speakers' cameras, then the others),
then upgrades one layer at a time in the same order; a video track whose lowest layer does not
fit is paused, not left to lose packets.

**Probing.** While a track gets less than it wants, every ``PROBE_BACKOFF`` seconds (doubling
after each failure, up to ``PROBE_BACKOFF_MAX``) the SFU pads the subscriber's downlink toward
what the next upgrade needs, at most ``PROBE_GROWTH`` times the limit (RTP padding on a video
track's RTX stream, which the receiver's estimator counts and its decoder never sees), for
``PROBE_TIME`` seconds. Congestion meanwhile stops the padding at once and keeps the limit; a
probe without loss whose estimate rose with the padding holds: the limit rises to what was
padded to, and the upgrade comes once the limit covers it. Padding probes the link without a
layer switch's keyframe, and ends the moment the link says no::

    unlimited ──congestion──► limited ──deficit, backoff passed──► probing (padding) ──no congestion──► limited (higher)
                                 ▲                                         │
                                 └──────────congestion (backoff ×2)────────┘
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from ._metrics import MEDIA

#: A receive-side estimate this much below the last one from the same streams: overuse.
REMB_DROP = 0.1
#: This share of packets lost (in a receiver report): congestion.
LOSS_CONGESTED = 0.1
#: A probe pads up to at most this many times the limit: an upgrade that needs more waits for
#: several probes to hold (a probe far past what the link carries overflows it before the
#: subscriber's feedback can stop it).
PROBE_GROWTH = 3.0
#: A probe holds only if the subscriber's estimate rose this much meanwhile (it grows about
#: 8 % a second while it sees no overuse, up to 1.5× what arrives) and it lost under
#: ``LOSS_NONE`` of the packets.
PROBE_RISE = 0.05
LOSS_NONE = 0.02
#: Receiver reports a probe waits for before it may hold (their loss covers its padding).
PROBE_REPORTS = 2
#: Seconds a probe lasts: long enough for two receiver reports.
PROBE_TIME = 2.0
#: Seconds between a congestion or a failed probe and the next probe, doubling per failure: a
#: probe that fails costs a second or so of loss, which this keeps to a few per cent.
PROBE_BACKOFF = 2.0
PROBE_BACKOFF_MAX = 16.0
#: Seconds from a successful probe to the next.
PROBE_AGAIN = 1.0
#: A probe asks this much more than the upgrade costs (layer rates vary with the scene).
PROBE_MARGIN = 1.1
#: Seconds after congestion during which lost packets are not retransmitted: on a full link
#: retransmissions add to what overflows it, and the losses feed more NACKs (a keyframe, asked
#: for by the subscriber's decoder, mends the picture instead).
NO_RETRANSMISSION_AFTER_CONGESTION = 1.0

#: Track priorities: what gets bandwidth first.
PRIORITY_SCREEN = 3
PRIORITY_SPEAKER = 2
PRIORITY_CAMERA = 1


@dataclass(frozen=True, slots=True)
class Demand:
    """What one subscribed track could use: ``costs[i]`` is the rate (bits per second) of its
    layer ``i`` from the bottom, up to the one the subscriber wants (one entry for a track
    without simulcast)."""

    key: Hashable
    costs: Sequence[float]
    audio: bool = False
    priority: int = PRIORITY_CAMERA


def allocate(budget: float | None, demands: Sequence[Demand]) -> dict[Hashable, int]:
    """The layers each track may get, counted from the bottom (0: paused; audio always gets
    its one), within ``budget`` bits per second (None: no limit, every track what it wants)."""
    if budget is None:
        return {d.key: len(d.costs) for d in demands}
    allowed = {d.key: len(d.costs) for d in demands if d.audio}
    remaining = budget - sum(d.costs[0] for d in demands if d.audio)
    video = sorted((d for d in demands if not d.audio and d.costs), key=lambda d: -d.priority)
    for d in video:
        fits = d.costs[0] <= remaining
        allowed[d.key] = int(fits)
        remaining -= d.costs[0] if fits else 0
    for d in video:
        while 0 < allowed[d.key] < len(d.costs):
            step = d.costs[allowed[d.key]] - d.costs[allowed[d.key] - 1]
            if step > remaining:
                break
            remaining -= step
            allowed[d.key] += 1
    return allowed


def next_step(allowed: Mapping[Hashable, int], demands: Sequence[Demand]) -> float | None:
    """What the first upgrade the allocation misses costs, in priority order (None: every track
    gets what it wants)."""
    for d in sorted((d for d in demands if not d.audio), key=lambda d: -d.priority):
        have = allowed.get(d.key, 0)
        if have < len(d.costs):
            return d.costs[have] - (d.costs[have - 1] if have else 0.0)
    return None


def used(allowed: Mapping[Hashable, int], demands: Sequence[Demand]) -> float:
    """The rate an allocation sends."""
    return sum(d.costs[allowed[d.key] - 1] for d in demands if allowed.get(d.key, 0) > 0)


class Bandwidth:
    """One subscriber's downlink: its feedback comes in (``remb``, ``loss``), and every tick
    ``update`` turns it and the rate sent into the limit to allocate within (None: none)."""

    def __init__(self) -> None:
        self.limit: float | None = None
        #: The latest receive-side estimate per set of streams it covers (Chrome sends one for
        #: the whole connection, aiortc one per track): the estimate is their sum.
        self._rembs: dict[frozenset[int], float] = {}
        self._remb_fell = False
        self._worst_loss = 0.0
        self.probing_until: float | None = None
        #: What a probe pads to (the limit if it holds), and the padding it needs (bits per
        #: second, 0 when not probing).
        self._probe_goal = 0.0
        self.padding = 0.0
        self._estimate_at_probe: float | None = None
        self._probe_loss = 0.0
        #: Receiver reports so far, and when the probe began.
        self._reports = 0
        self._reports_at_probe = 0
        #: A probe that held is on probation for a while: congestion then (its losses reported
        #: late) takes the limit back to where the probe started.
        self._limit_before_probe: float | None = None
        self._on_probation_until = 0.0
        self._backoff = PROBE_BACKOFF
        self._next_probe = 0.0
        #: Counted for metrics: congestion events, probes, probes that held.
        self.congestions = 0
        self.probes = 0
        self.probes_held = 0
        #: ``time.perf_counter()`` of the last congestion signal.
        self.congested_at = -NO_RETRANSMISSION_AFTER_CONGESTION
        #: Called when a probe meets congestion: the allocation falls back at once, not on the
        #: next tick (each tick of overflow costs packets).
        self.on_probe_failed: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        limit = "none" if self.limit is None else f"{self.limit / 1000:.0f} kb/s"
        estimate = "none" if self.estimate is None else f"{self.estimate / 1000:.0f} kb/s"
        return (
            f"Bandwidth(limit {limit}, estimate {estimate}, {self.congestions} congestions, "
            f"{self.probes_held}/{self.probes} probes held{', probing' if self.probing_until else ''})"
        )

    @property
    def estimate(self) -> float | None:
        return sum(self._rembs.values()) if self._rembs else None

    def remb(self, bitrate: float, ssrcs: Sequence[int]) -> None:
        key = frozenset(ssrcs)
        last = self._rembs.get(key)
        overlapping = [k for k in self._rembs if k != key and k & key]
        if overlapping:  # streams now reported together (a track's padding on its RTX stream
            # joins its estimate): the last estimate of their sum is what this one follows
            last = sum(self._rembs.pop(k) for k in overlapping) + (last or 0.0)
        self._rembs[key] = float(bitrate)
        if last is not None and bitrate < (1 - REMB_DROP) * last:
            self._remb_fell = True
            self._congested()

    def loss(self, fraction: float) -> None:
        """A receiver report's share of packets lost since the last one."""
        self._worst_loss = max(self._worst_loss, fraction)
        self._reports += 1
        if fraction >= LOSS_CONGESTED:
            self._congested()

    def _congested(self) -> None:
        self.congested_at = time.perf_counter()
        if self.probing_until is not None:
            self.on_probe_failed()

    def retransmits(self) -> bool:
        """Whether lost packets are retransmitted now (not just after congestion)."""
        return time.perf_counter() - self.congested_at > NO_RETRANSMISSION_AFTER_CONGESTION

    def forget(self, ssrc: int) -> None:
        """A stream ended: its estimates no longer count."""
        for key in [k for k in self._rembs if ssrc in k]:
            del self._rembs[key]

    def _probe_failed(self) -> None:
        MEDIA.probes_failed += 1
        self._backoff = min(self._backoff * 2, PROBE_BACKOFF_MAX)

    def update(self, now: float, sent: float, step: float | None, in_use: float) -> float | None:
        """The limit for this tick. ``sent``: bits per second sent to the subscriber since the
        last tick; ``step``: what the next upgrade it lacks costs (None: it lacks none);
        ``in_use``: what the current allocation sends."""
        loss, self._worst_loss = self._worst_loss, 0.0
        fell, self._remb_fell = self._remb_fell, False
        estimate = self.estimate
        signals = []
        if fell and estimate is not None:
            signals.append(estimate)
        if loss >= LOSS_CONGESTED and sent > 0:
            signals.append(sent * (1 - loss / 2))
        if signals:
            self.congestions += 1
            MEDIA.congestions += 1
            ceiling = min(signals)
            if self.probing_until is not None:
                # The probe failed: its padding was the excess, not the media.
                self._probe_failed()
                ceiling = self.limit if self.limit is not None else ceiling
            elif now < self._on_probation_until and self._limit_before_probe is not None:
                self._probe_failed()  # it held too soon: its losses came late
                ceiling = min(ceiling, self._limit_before_probe)
            self.probing_until = None
            self.padding = 0.0
            self.limit = ceiling if self.limit is None else min(self.limit, ceiling)
            self._next_probe = now + self._backoff
            return self.limit
        if self.limit is None:
            return None
        if self.probing_until is not None:
            self._probe_loss = max(self._probe_loss, loss)
            reported = self._reports - self._reports_at_probe
            if now < self.probing_until or (reported < PROBE_REPORTS and now < self.probing_until + PROBE_TIME):
                return self.limit  # (a probe waits for its reports, up to twice its time)
            self.probing_until = None
            self.padding = 0.0
            # It held if nothing was lost and the subscriber's estimate rose with the padding
            # (no overuse seen): a link that only just overflows shows no congestion in a
            # probe's time, but its estimate stalls.
            start = self._estimate_at_probe
            rose = estimate is None or start is None or estimate >= start * (1 + PROBE_RISE)
            if rose and self._probe_loss < LOSS_NONE and reported >= PROBE_REPORTS:
                self._limit_before_probe = self.limit
                self._on_probation_until = now + PROBE_TIME
                self.limit = max(self.limit, self._probe_goal)
                self.probes_held += 1
                MEDIA.probes_held += 1
                self._backoff = PROBE_BACKOFF
                self._next_probe = now + PROBE_AGAIN
            else:
                self._probe_failed()
                self._next_probe = now + self._backoff
        if estimate is not None and estimate > self.limit:
            self.limit = estimate  # the subscriber says it takes more
        if step is not None and now >= self._next_probe:
            self.probes += 1
            self._probe_goal = min((in_use + step) * PROBE_MARGIN, self.limit * PROBE_GROWTH)
            self.padding = max(0.0, self._probe_goal - sent)
            self.probing_until = now + PROBE_TIME
            self._estimate_at_probe = estimate
            self._probe_loss = 0.0
            self._reports_at_probe = self._reports
        return self.limit
