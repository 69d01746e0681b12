"""The writers: what they produce decodes with PyAV, streams without seeking, and a file cut
short still plays."""

from __future__ import annotations

import contextlib
import io
from fractions import Fraction

import av
import numpy as np
import pytest
from av.container import InputContainer

from egress._compositor import Compositor, Layout, Tile
from egress._writer import MediaWriter, PassthroughWriter

from .media import MemorySink, band_energy, peaks, tone

FPS = 30


def _frame(index: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    """A moving gradient (something for the encoder to do)."""
    y = (np.add.outer(np.arange(height), np.arange(width) + 4 * index) % 256).astype(np.uint8)
    chroma = np.full((height // 2, width), 128, np.uint8)
    return av.VideoFrame.from_ndarray(np.concatenate([y, chroma]), format="yuv420p")


def _write_mp4(sink: MemorySink, seconds: int) -> MediaWriter:
    """Composited frames (a moving picture beside a camera that is off) and a tone."""
    writer = MediaWriter.mp4(sink, 320, 240, FPS, 500_000)
    compositor = Compositor(320, 240, Layout.GRID)
    per_frame = 48000 // FPS
    for index in range(seconds * FPS):
        tiles = [Tile("ada", "Ada", _frame(index)), Tile("bob", "Bob", None)]
        writer.write_video(compositor.compose(tiles, "ada"), index)
        writer.write_audio(tone(440, index * per_frame, per_frame), index * per_frame)
    writer.close()
    return writer


def _open(data: bytes | bytearray) -> InputContainer:
    return av.open(io.BytesIO(bytes(data)), mode="r")


def _decoded_audio(data: bytes) -> np.ndarray:
    with _open(data) as container:
        return np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])


def test_mp4_decodes_as_h264_and_aac_of_the_right_length() -> None:
    sink = MemorySink()
    writer = _write_mp4(sink, 3)
    assert writer.duration == pytest.approx(3.0)
    with _open(sink.data) as container:
        assert container.format.name.startswith("mov")
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)
        assert container.duration is not None and abs(container.duration / 1e6 - 3.0) < 0.1
        frames = list(container.decode(video=0))
    assert len(frames) == 3 * FPS
    times = [frame.time or 0.0 for frame in frames]
    assert times[0] == 0 and np.allclose(np.diff(times[1:]), 1 / FPS, atol=1e-4)
    # The AAC encoder's priming (1024 samples) delays the audio; the muxer delays the video as
    # much (the first frame lasts longer), so they stay in sync.
    assert times[-1] == pytest.approx((3 * FPS - 1) / FPS + 1024 / 48000, abs=1e-3)
    assert [index for index, frame in enumerate(frames) if frame.key_frame] == [0, 2 * FPS]
    samples = _decoded_audio(bytes(sink.data))
    assert abs(len(samples) / 48000 - 3.0) < 0.1
    assert abs(peaks(samples[4800:-4800], count=1)[0] - 440) < 5


def test_mp4_is_fragmented_and_a_truncated_file_still_plays() -> None:
    sink = MemorySink()
    _write_mp4(sink, 6)
    data = bytes(sink.data)
    assert data[4:8] == b"ftyp"
    assert data.count(b"moof") >= 3  # a fragment per keyframe, every two seconds
    cut = data[: len(data) * 6 // 10]
    decoded = 0
    # Decoding stops with an error at the cut, after the complete fragments.
    with contextlib.suppress(av.error.InvalidDataError), _open(cut) as container:
        for _ in container.decode(video=0):
            decoded += 1
    assert decoded >= 2 * FPS


def test_ogg_opus_decodes_with_the_tone() -> None:
    sink = MemorySink()
    writer = MediaWriter.ogg(sink)
    for start in range(0, 2 * 48000, 1000):  # chunks that are not the encoder's frame size
        writer.write_audio(tone(1000, start, 1000), start)
    writer.close()
    assert writer.duration == pytest.approx(2.0)
    data = bytes(sink.data)
    assert data.startswith(b"OggS") and data.count(b"OggS") >= 3  # pages every second at least
    with _open(data) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    samples = _decoded_audio(data)
    assert abs(len(samples) / 48000 - 2.0) < 0.1
    assert band_energy(samples[4800:-4800], 1000) > 0.95


def test_audio_gaps_become_silence() -> None:
    sink = MemorySink()
    writer = MediaWriter.ogg(sink, channels=1)
    writer.write_audio(tone(1000, 0, 48000, channels=1), 0)
    writer.write_audio(tone(1000, 96000, 48000, channels=1), 96000)  # one second missing
    writer.close()
    assert writer.duration == pytest.approx(3.0)
    samples = _decoded_audio(bytes(sink.data))
    assert np.abs(samples[int(1.2 * 48000) : int(1.8 * 48000)]).max() < 0.01
    assert np.abs(samples[int(2.2 * 48000) : int(2.8 * 48000)]).max() > 0.1


def _encoded_vp8(count: int) -> list[tuple[bytes, int, bool]]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, FPS)
    encoder.framerate = Fraction(FPS)
    packets: list[tuple[bytes, int, bool]] = []
    for index in range(count):
        frame = _frame(index)
        frame.pts = index
        packets += [(bytes(p), p.pts or 0, p.is_keyframe) for p in encoder.encode(frame)]
    packets += [(bytes(p), p.pts or 0, p.is_keyframe) for p in encoder.encode(None)]
    return [(data, 1234 + pts * (90000 // FPS), key) for data, pts, key in packets]


def test_passthrough_webm_keeps_vp8_payloads() -> None:
    packets = _encoded_vp8(45)
    sink = MemorySink()
    writer = PassthroughWriter.webm(sink, 320, 240)
    for data, pts, key in packets:
        writer.write(data, pts, key)
    writer.close()
    assert writer.duration == pytest.approx(44 / FPS)
    with _open(sink.data) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp8" and stream.codec_context.width == 320
        muxed = [bytes(p) for p in container.demux(video=0) if p.size]
    assert muxed == [data for data, _, _ in packets]
    with _open(sink.data) as container:
        assert len(list(container.decode(video=0))) == 45


def test_passthrough_ogg_keeps_opus_payloads() -> None:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = Fraction(1, 48000)
    packets: list[tuple[bytes, int]] = []
    for start in range(0, 48000, 960):
        frame = av.AudioFrame.from_ndarray(tone(1000, start, 960), format="s16p", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
        packets += [(bytes(p), int(p.pts or 0)) for p in encoder.encode(frame)]
    sink = MemorySink()
    writer = PassthroughWriter.ogg(sink)
    for data, pts in packets:
        writer.write(data, 90_000 + pts, True)  # an RTP clock that does not start at zero
    writer.close()
    with _open(sink.data) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
        muxed = [bytes(p) for p in container.demux(audio=0) if p.size]
    assert muxed == [data for data, _ in packets]
    samples = _decoded_audio(bytes(sink.data))
    assert band_energy(samples[4800:-4800], 1000) > 0.95


def test_passthrough_ogg_fills_gaps_with_silence_so_time_runs_on() -> None:
    """A sender that goes quiet for a second (muted: its RTP clock runs on) leaves a second of
    silence in the file, so what it says afterwards stays where it was said."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = Fraction(1, 48000)
    packets: list[tuple[bytes, int]] = []
    for start in range(0, 3 * 48000, 960):
        frame = av.AudioFrame.from_ndarray(tone(1000, start, 960), format="s16p", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
        packets += [(bytes(p), int(p.pts or 0)) for p in encoder.encode(frame)]
    sent = [(data, pts) for data, pts in packets if not 48000 <= pts < 2 * 48000]  # second 2 never sent
    sink = MemorySink()
    writer = PassthroughWriter.ogg(sink, fill_gaps=True)
    for data, pts in sent:
        writer.write(data, 5_000 + pts, True)
    writer.close()
    samples = _decoded_audio(bytes(sink.data))
    assert abs(len(samples) - 3 * 48000) < 2 * 960
    second = 48000
    assert band_energy(samples[4800 : second - 4800], 1000) > 0.95
    assert np.abs(samples[second + 4800 : 2 * second - 4800]).max() < 1e-3
    assert band_energy(samples[2 * second + 4800 : -4800], 1000) > 0.95
