"""The SFU's Prometheus metrics (``parley_sfu_*``), read when scraped: the rooms, participants
and tracks of each node of this process, and media counters the forwarding path bumps as plain
integers (no lock, no label lookup per packet)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._reporter import REPORTS

if TYPE_CHECKING:
    from ._server import SfuServer


@dataclass
class MediaTotals:
    """Since this process started, over every node in it."""

    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    #: NACKs the SFU sent publishers for packets that did not arrive.
    nacks_sent: int = 0
    #: Keyframe requests (PLI) the SFU sent publishers.
    plis_sent: int = 0
    #: Packets publishers sent (by their sequence numbers) and packets that arrived, counted
    #: every connection-quality update; their difference is the inbound loss.
    inbound_expected: int = 0
    inbound_received: int = 0
    #: Congestion control: congestion signals from subscribers (a falling estimate, heavy loss),
    #: probes upward that held and that failed, NACKs left unanswered just after congestion.
    congestions: int = 0
    probes_held: int = 0
    probes_failed: int = 0
    nacks_ignored: int = 0


@dataclass
class ResumeTotals:
    """Session resumptions since this process started, over every node in it."""

    #: Sessions taken up again by a new signal stream.
    resumed: int = 0
    #: Resumes of a session that no longer exists (ended, or its grace period passed).
    not_found: int = 0
    #: Resumes refused: a wrong resume token, or a token of another participant.
    refused: int = 0
    #: Sessions whose grace period passed without a resume (they left).
    expired: int = 0


MEDIA = MediaTotals()
RESUMES = ResumeTotals()
_NODES: weakref.WeakSet[SfuServer] = weakref.WeakSet()


def watch(node: SfuServer) -> None:
    _NODES.add(node)


def unwatch(node: SfuServer) -> None:
    _NODES.discard(node)


class _SfuCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        rooms = GaugeMetricFamily("parley_sfu_rooms", "Rooms meeting on the node.", labels=["node"])
        participants = GaugeMetricFamily("parley_sfu_participants", "Participants in its rooms.", labels=["node"])
        published = GaugeMetricFamily("parley_sfu_published_tracks", "Tracks published on the node.", labels=["node"])
        subscribed = GaugeMetricFamily(
            "parley_sfu_subscribed_tracks", "Track subscriptions served by the node.", labels=["node"]
        )
        disconnected = GaugeMetricFamily(
            "parley_sfu_disconnected_participants",
            "Participants whose signal stream dropped, waiting for a resume.",
            labels=["node"],
        )
        congested = GaugeMetricFamily(
            "parley_sfu_congested_subscribers",
            "Subscribers whose bandwidth holds some video below the layer they want, or pauses it.",
            labels=["node", "state"],
        )
        pending = GaugeMetricFamily(
            "parley_sfu_report_pending", "Events waiting for control to acknowledge them.", labels=["node"]
        )
        for node in list(_NODES):
            sessions = [s for room in list(node.rooms.rooms.values()) for s in list(room.sessions.values())]
            label = [node.cluster.node_id]
            rooms.add_metric(label, len(node.rooms.rooms))
            participants.add_metric(label, len(sessions))
            published.add_metric(label, sum(len(s.published) for s in sessions))
            subscribed.add_metric(label, sum(len(s.subscriber.subscriptions) for s in sessions))
            disconnected.add_metric(label, sum(s.disconnected for s in sessions))
            pending.add_metric(label, node.reporter.pending)
            states = [s.subscriber.congested for s in sessions]
            congested.add_metric([*label, "lower_layer"], states.count(1))
            congested.add_metric([*label, "video_paused"], states.count(2))
        yield from (rooms, participants, published, subscribed, disconnected, congested, pending)
        resumes = CounterMetricFamily(
            "parley_sfu_resumes", "Resumes of dropped signal sessions, by outcome.", labels=["outcome"]
        )
        for outcome in ("resumed", "not_found", "refused", "expired"):
            resumes.add_metric([outcome], getattr(RESUMES, outcome))
        yield resumes
        yield CounterMetricFamily(
            "parley_sfu_report_dropped",
            "Events dropped before control took them (buffer full, or refused by control).",
            value=REPORTS.dropped,
        )
        yield CounterMetricFamily(
            "parley_sfu_forwarded_packets", "RTP packets forwarded to subscribers.", value=MEDIA.forwarded_packets
        )
        yield CounterMetricFamily(
            "parley_sfu_forwarded_bytes", "RTP payload bytes forwarded to subscribers.", value=MEDIA.forwarded_bytes
        )
        yield CounterMetricFamily("parley_sfu_nacks_sent", "NACKs sent to publishers.", value=MEDIA.nacks_sent)
        yield CounterMetricFamily("parley_sfu_plis_sent", "Keyframe requests to publishers.", value=MEDIA.plis_sent)
        yield CounterMetricFamily(
            "parley_sfu_inbound_packets_expected",
            "Packets publishers sent, by sequence number (inbound loss: 1 - received / expected).",
            value=MEDIA.inbound_expected,
        )
        yield CounterMetricFamily(
            "parley_sfu_inbound_packets_received", "Packets that arrived from publishers.", value=MEDIA.inbound_received
        )
        yield CounterMetricFamily(
            "parley_sfu_congestions",
            "Congestion signals from subscribers (a falling bandwidth estimate, or 10 % loss and more).",
            value=MEDIA.congestions,
        )
        probes = CounterMetricFamily(
            "parley_sfu_bandwidth_probes",
            "Ended probes for more of a subscriber's bandwidth, by outcome.",
            labels=["outcome"],
        )
        probes.add_metric(["held"], MEDIA.probes_held)
        probes.add_metric(["failed"], MEDIA.probes_failed)
        yield probes
        yield CounterMetricFamily(
            "parley_sfu_nacks_ignored",
            "Subscribers' NACKs left unanswered just after congestion (retransmissions would add to it).",
            value=MEDIA.nacks_ignored,
        )


REGISTRY.register(_SfuCollector())
