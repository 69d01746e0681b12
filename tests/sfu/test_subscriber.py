"""The subscriber connection's negotiation, without a signal stream: a ``Subscriber`` offers,
a plain aiortc peer connection answers (SDP only; no media flows)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from parley.control.v1 import resources_pb2 as control_res
from parley.server import FailedPrecondition, InvalidArgument
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig
from sfu._media import UpTrack
from sfu._publisher import PublishedTrack
from sfu._subscriber import Negotiation, Subscriber

_sids = itertools.count()


def _track(kind: int = res.TRACK_KIND_VIDEO) -> PublishedTrack:
    source = control_res.TRACK_SOURCE_CAMERA if kind == res.TRACK_KIND_VIDEO else control_res.TRACK_SOURCE_MICROPHONE
    n = next(_sids)
    return PublishedTrack(sid=f"TR_{n}", cid=f"c{n}", kind=kind, source=source, name="", muted=False)


def _state(subscriber: Subscriber) -> Negotiation:
    return subscriber.state  # read through a call: mypy would narrow the attribute between steps


@dataclass
class Harness:
    subscriber: Subscriber
    offers: asyncio.Queue[sig.SessionDescription] = field(default_factory=asyncio.Queue)
    overdue: asyncio.Event = field(default_factory=asyncio.Event)
    client: RTCPeerConnection = field(default_factory=RTCPeerConnection)

    def offer(self) -> sig.SessionDescription:
        """The one offer sent since the last call."""
        assert self.offers.qsize() == 1, self.offers.qsize()
        return self.offers.get_nowait()

    async def answer(self, offer: sig.SessionDescription) -> str:
        await self.client.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await self.client.setLocalDescription(await self.client.createAnswer())
        return self.client.localDescription.sdp

    def directions(self, offer: sig.SessionDescription) -> dict[str, str]:
        """Each section's mid and direction, as offered."""
        mids = [line.split(":", 1)[1] for line in offer.sdp.splitlines() if line.startswith("a=mid:")]
        directions = [line[2:] for line in offer.sdp.splitlines() if line in ("a=sendonly", "a=inactive", "a=sendrecv")]
        return dict(zip(mids, directions, strict=True))


def _harness(answer_timeout: float = 60.0) -> Harness:
    offers: asyncio.Queue[sig.SessionDescription] = asyncio.Queue()
    overdue = asyncio.Event()
    subscriber = Subscriber(
        RTCConfiguration(),
        answer_timeout=answer_timeout,
        send_offer=offers.put_nowait,
        on_answer_overdue=overdue.set,
        label="test",
    )
    return Harness(subscriber, offers, overdue)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = _harness()
    yield h
    h.subscriber.end()
    await h.subscriber.close()
    await h.client.close()


async def test_changes_made_while_an_offer_waits_go_out_together_once_it_is_answered(harness: Harness) -> None:
    subscriber = harness.subscriber
    assert _state(subscriber) is Negotiation.STABLE
    first = _track()
    subscriber.add(first)
    assert _state(subscriber) is Negotiation.OFFER_DUE
    await subscriber.negotiate()
    assert _state(subscriber) is Negotiation.AWAITING_ANSWER
    offer = harness.offer()
    assert dict(offer.track_sids) == {"0": first.sid}

    second, third = _track(), _track(res.TRACK_KIND_AUDIO)
    subscriber.add(second)
    subscriber.add(third)
    assert _state(subscriber) is Negotiation.AWAITING_ANSWER_THEN_OFFER
    await subscriber.negotiate()  # one offer at a time: nothing is sent
    assert harness.offers.empty()

    await subscriber.apply_answer(await harness.answer(offer))
    batched = harness.offer()  # the answer released one offer with both changes
    assert sorted(batched.track_sids.values()) == sorted([first.sid, second.sid, third.sid])
    assert _state(subscriber) is Negotiation.AWAITING_ANSWER

    await subscriber.apply_answer(await harness.answer(batched))
    assert _state(subscriber) is Negotiation.STABLE and harness.offers.empty()
    await subscriber.negotiate()  # nothing changed: nothing to offer
    assert harness.offers.empty()


async def test_answers_are_refused_without_a_waiting_offer_and_when_bad(harness: Harness) -> None:
    subscriber = harness.subscriber
    with pytest.raises(FailedPrecondition):
        await subscriber.apply_answer("v=0")
    subscriber.add(_track())
    with pytest.raises(FailedPrecondition):  # due, not yet offered
        await subscriber.apply_answer("v=0")
    await subscriber.negotiate()
    offer = harness.offer()
    with pytest.raises(InvalidArgument) as bad:
        await subscriber.apply_answer("v=0\r\nnonsense")
    assert bad.value.violations[0][0] == "answer.sdp"
    assert _state(subscriber) is Negotiation.AWAITING_ANSWER  # the offer still waits for a good answer
    await subscriber.apply_answer(await harness.answer(offer))
    assert _state(subscriber) is Negotiation.STABLE
    with pytest.raises(FailedPrecondition):  # answered already
        await subscriber.apply_answer(harness.client.localDescription.sdp)


async def test_an_unanswered_offer_is_reported_overdue() -> None:
    h = _harness(answer_timeout=0.05)
    try:
        h.subscriber.add(_track())
        await h.subscriber.negotiate()
        await asyncio.wait_for(h.overdue.wait(), 10)
        assert _state(h.subscriber) is Negotiation.AWAITING_ANSWER
    finally:
        h.subscriber.end()
        await h.subscriber.close()
        await h.client.close()


async def test_a_transceiver_is_reused_only_after_an_answer_saw_it_inactive(harness: Harness) -> None:
    subscriber = harness.subscriber
    old = _track()
    subscriber.add(old)
    await subscriber.negotiate()
    await subscriber.apply_answer(await harness.answer(harness.offer()))

    assert subscriber.remove(old.sid) and not subscriber.remove(old.sid)
    fresh = _track()
    subscriber.add(fresh)  # the old transceiver's inactivity is not answered yet: a new one
    await subscriber.negotiate()
    offer = harness.offer()
    assert harness.directions(offer) == {"0": "inactive", "1": "sendonly"}
    assert dict(offer.track_sids) == {"1": fresh.sid}
    await subscriber.apply_answer(await harness.answer(offer))

    later = _track()
    subscriber.add(later)  # now it is reused
    await subscriber.negotiate()
    offer = harness.offer()
    assert harness.directions(offer) == {"0": "sendonly", "1": "sendonly"}
    assert dict(offer.track_sids) == {"0": later.sid, "1": fresh.sid}
    await subscriber.apply_answer(await harness.answer(offer))


async def test_an_ended_subscriber_offers_nothing(harness: Harness) -> None:
    subscriber = harness.subscriber
    subscriber.add(_track())
    subscriber.end()
    subscriber.add(_track())
    await subscriber.negotiate()
    assert harness.offers.empty() and not subscriber.subscriptions


async def test_a_subscription_added_while_an_offer_waits_forwards_only_once_its_own_offer_is_answered(
    harness: Harness,
) -> None:
    # A DownTrack made for a transceiver the answered offer did not carry sent packets the
    # subscriber never received: an existing participant saw a newcomer's camera black for good.
    publisher = RTCPeerConnection()
    try:
        first, second = _track(), _track()
        for track in (first, second):
            receiver = publisher.addTransceiver("video", direction="recvonly").receiver
            track.up = UpTrack(receiver, "video")
        subscriber = harness.subscriber
        subscriber.add(first)
        await subscriber.negotiate()
        offer = harness.offer()
        subscriber.add(second)  # after the offer went out: not in it

        await subscriber.apply_answer(await harness.answer(offer))
        assert subscriber.subscriptions[first.sid].down is not None
        assert subscriber.subscriptions[second.sid].down is None
        assert second.up is not None and not second.up.down

        await subscriber.apply_answer(await harness.answer(harness.offer()))
        down = subscriber.subscriptions[second.sid].down
        assert down is not None and down.transceiver.mid is not None and down in second.up.down
    finally:
        await publisher.close()
