"""Simulcast without a browser: which layer a subscriber gets, the VP8 descriptor the SFU
reads and rewrites, the SDP lines that make a browser send its layers, and dynacast (which
layers the publisher is told to send)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from sfu._dynacast import Dynacast, needed_layers
from sfu._layers import Layer, Preference, choose
from sfu._sdp import answer_simulcast, offered_layers
from sfu._vp8 import Renumbering, keyframe_size, parse

NOW = 100.0
LAYERS = [
    Layer(ssrc=3, rid="f", width=1280, height=720, last_seen=NOW),
    Layer(ssrc=1, rid="q", width=320, height=180, last_seen=NOW),
    Layer(ssrc=2, rid="h", width=640, height=360, last_seen=NOW),
]


@pytest.mark.parametrize(
    ("preference", "ssrc"),
    [
        (Preference(), 3),  # no size: the best
        (Preference(width=320, height=180), 1),
        (Preference(width=400, height=225), 1),  # 320x180 is 80 % of it: good enough
        (Preference(width=420, height=236), 2),  # 320x180 is less than 80 %: the next up
        (Preference(width=640, height=360), 2),
        (Preference(width=3840, height=2160), 3),  # bigger than any: the biggest
        (Preference(width=1280, height=720, max_layers=1), 1),  # capped at LOW
        (Preference(width=1280, height=720, max_layers=2), 2),  # capped at MEDIUM
        (Preference(width=100, height=720), 3),  # a tall narrow view needs the height
    ],
)
def test_the_smallest_layer_that_fills_the_view_is_chosen(preference: Preference, ssrc: int) -> None:
    chosen = choose(LAYERS, preference, NOW)
    assert chosen is not None and chosen.ssrc == ssrc


def test_stopped_and_unsized_layers_are_not_chosen() -> None:
    stopped = [Layer(ssrc=3, rid="f", width=1280, height=720, last_seen=NOW - 5), *LAYERS[1:]]
    chosen = choose(stopped, Preference(width=1280, height=720), NOW)
    assert chosen is not None and chosen.ssrc == 2  # the top layer stopped: the best still sent
    unsized = [Layer(ssrc=9, rid="x", last_seen=NOW), *LAYERS]
    chosen = choose(unsized, Preference(), NOW)
    assert chosen is not None and chosen.ssrc == 3
    only_unsized = [Layer(ssrc=9, rid="x", last_seen=NOW)]
    chosen = choose(only_unsized, Preference(width=320, height=180), NOW)
    assert chosen is not None and chosen.ssrc == 9  # sizes unknown yet: whatever is sent
    assert choose([], Preference(), NOW) is None


def _vp8_packet(picture_id: int, tl0: int, *, keyframe: bool, width: int = 640, height: int = 360) -> bytes:
    """A VP8 RTP payload: descriptor with X, I (15-bit picture id), L, T; then a frame tag."""
    descriptor = bytes([0x90, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0, 0x20])
    if not keyframe:
        return descriptor + b"\x01\x00\x00"
    header = b"\x00\x00\x00\x9d\x01\x2a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return descriptor + header


def test_the_descriptor_is_read_and_a_keyframe_tells_its_size() -> None:
    payload = _vp8_packet(1234, 7, keyframe=True, width=1280, height=720)
    descriptor = parse(payload)
    assert descriptor is not None and descriptor.keyframe_start
    assert (descriptor.picture_id, descriptor.picture_id_bits, descriptor.tl0picidx) == (1234, 15, 7)
    assert keyframe_size(payload, descriptor) == (1280, 720)
    delta = parse(_vp8_packet(1235, 7, keyframe=False))
    assert delta is not None and not delta.keyframe_start
    assert parse(b"") is None and parse(b"\x90") is None and parse(b"\x90\x80\x80") is None
    short = parse(b"\x10\x00")  # no extensions: no picture id
    assert short is not None and short.keyframe_start and short.picture_id == -1


def test_picture_ids_run_on_across_a_layer_switch() -> None:
    numbering = Renumbering()
    out = []
    first_run = [_vp8_packet(100 + i, 10 + i, keyframe=i == 0) for i in range(3)]
    second_run = [_vp8_packet(32767 - 1 + i & 0x7FFF, 255, keyframe=i == 0) for i in range(3)]  # wraps
    for run in (first_run, second_run):
        for index, payload in enumerate(run):
            descriptor = parse(payload)
            assert descriptor is not None
            if index == 0:
                numbering.start_run(descriptor)
            rewritten = parse(numbering.apply(payload, descriptor))
            assert rewritten is not None
            out.append((rewritten.picture_id, rewritten.tl0picidx))
    assert [p for p, _ in out] == [100, 101, 102, 103, 104, 105]
    assert [t for _, t in out] == [10, 11, 12, 13, 13, 13]
    # The first run is sent as it came: no copy of its payloads.
    payload = _vp8_packet(500, 1, keyframe=True)
    fresh = Renumbering()
    descriptor = parse(payload)
    assert descriptor is not None
    fresh.start_run(descriptor)
    assert fresh.apply(payload, descriptor) is payload


OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=sendonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=mid:1",
        "a=sendonly",
        "a=rid:q send",
        "a=rid:h send max-width=640",
        "a=rid:f send",
        "a=rid:x send",
        "a=simulcast:send q;h,x;~f",
        "",
    ]
)


def test_the_answer_receives_the_layers_the_offer_sends() -> None:
    video = OFFER.split("m=video")[1]
    assert offered_layers(video) == ["q", "h", "f"]  # first alternatives, paused ones too
    assert offered_layers(OFFER.split("m=video")[0]) == []
    answer = OFFER.replace("sendonly", "recvonly").replace("a=rid:", "a=x-rid:").replace("a=simulcast", "a=x-sim")
    answered = answer_simulcast(OFFER, answer)
    audio, video_answer = answered.split("m=video")
    assert "a=rid" not in audio
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n" in video_answer
    assert answered.endswith("\r\n")
    inactive = answer.replace("a=recvonly\r\na=x-rid:q", "a=inactive\r\na=x-rid:q")
    assert "a=simulcast:recv" not in answer_simulcast(OFFER, inactive)
    no_simulcast = OFFER.replace("a=simulcast:send q;h,x;~f\r\n", "")
    assert answer_simulcast(no_simulcast, answer) == answer


@dataclass
class _Viewer:
    preference: Preference = field(default_factory=Preference)
    paused: bool = False


def test_the_layers_needed_are_those_the_viewers_would_choose() -> None:
    small, big = _Viewer(Preference(width=320, height=180)), _Viewer()
    assert needed_layers(LAYERS, [small]) == {"q"}
    assert needed_layers(LAYERS, [small, big]) == {"q", "f"}
    assert needed_layers(LAYERS, [_Viewer(Preference(width=640, height=360))]) == {"q", "h"}
    assert needed_layers(LAYERS, [_Viewer(paused=True)]) == {"q"}  # the bottom layer is always sent
    stopped = [Layer(ssrc=3, rid="f", width=1280, height=720, last_seen=0.0), *LAYERS[1:]]
    assert needed_layers(stopped, [big]) == {"q", "f"}  # a paused layer someone wants: resume it
    assert needed_layers([*LAYERS, Layer(ssrc=4, rid="x")], [small]) == {"q", "h", "f", "x"}  # sizes unknown
    # The top layer the offer names never came (the publisher's bandwidth estimate): paused,
    # it could never be asked for, so nothing is paused yet.
    assert needed_layers(LAYERS[1:], [small], offered=["q", "h", "f"]) == {"q", "h", "f"}
    assert needed_layers(LAYERS, [small], offered=["q", "h", "f"]) == {"q"}


async def test_dynacast_resumes_at_once_and_pauses_after_a_while() -> None:
    viewers = [_Viewer()]
    told: list[list[str]] = []
    dynacast = Dynacast(lambda: LAYERS, lambda: viewers, told.append, pause_after=0.2)
    dynacast.update()
    await asyncio.sleep(0.1)
    assert told == []  # the middle layer is not needed, but only for a while yet
    await asyncio.sleep(0.2)
    assert told == [["f", "q"]]

    viewers[0].preference = Preference(width=320, height=180)
    dynacast.update()
    await asyncio.sleep(0.1)
    viewers[0].preference = Preference()  # resized back within the delay: nothing changes
    dynacast.update()
    await asyncio.sleep(0.2)
    assert told == [["f", "q"]]

    viewers[0].preference = Preference(width=320, height=180)
    dynacast.update()
    await asyncio.sleep(0.1)
    assert told == [["f", "q"]]
    await asyncio.sleep(0.2)
    assert told == [["f", "q"], ["q"]]

    viewers.append(_Viewer(Preference(width=640, height=360)))
    dynacast.update()
    assert told == [["f", "q"], ["q"], ["h", "q"]]  # at once
    dynacast.close()
