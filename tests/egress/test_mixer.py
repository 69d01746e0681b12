"""The audio mixer: sources land where their timestamps say, loud sums are limited, not wrapped."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from egress._mixer import AudioMixer, SourceResampler, to_samples

from .media import band_energy, peaks, tone

RATE = 48000


def _pull_all(mixer: AudioMixer, seconds: float, block: int = 960) -> np.ndarray:
    return np.concatenate([mixer.pull(block) for _ in range(int(seconds * RATE) // block)], axis=1)


def test_two_sources_at_their_positions() -> None:
    mixer = AudioMixer()
    # pushed in 20 ms packets; the second source starts half a second later, and arrives first
    for start in range(RATE // 2, RATE * 2, 960):
        mixer.push("bob", tone(1000, start, 960), start)
    for start in range(0, RATE * 2, 960):
        mixer.push("ada", tone(440, start, 960), start)
    mix = _pull_all(mixer, 2)
    assert mix.shape == (2, 2 * RATE) and mix.dtype == np.int16
    assert mixer.position == 2 * RATE
    first, second = mix[0, : RATE // 2], mix[0, RATE:]
    assert band_energy(first, 440) > 0.99  # bob had not started
    assert sorted(peaks(second)) == pytest.approx([440, 1000], abs=5)
    assert np.array_equal(second, (tone(440, RATE, RATE) + tone(1000, RATE, RATE))[0])


def test_missing_data_is_silence_and_late_data_is_dropped() -> None:
    mixer = AudioMixer()
    mixer.push("ada", tone(440, 0, 960), 0)
    assert np.abs(mixer.pull(960)).max() > 0
    assert not mixer.pull(960).any()  # nothing pushed for this block
    mixer.push("ada", tone(440, 0, 960), 0)  # too late: already mixed
    mixer.push("ada", tone(440, 48000, 960), 48000)  # early: waits for its turn
    assert not mixer.pull(960).any()
    while mixer.position < 48000:
        assert not mixer.pull(960).any()
    assert np.array_equal(mixer.pull(960), tone(440, 48000, 960))


def test_mono_is_spread_and_sources_can_leave() -> None:
    mixer = AudioMixer()
    mixer.push("ada", tone(440, 0, 960, channels=1), 0)
    mixer.push("bob", tone(1000, 0, 960), 0)
    mixer.remove("bob")
    mix = mixer.pull(960)
    assert np.array_equal(mix[0], mix[1]) and np.array_equal(mix[0], tone(440, 0, 960, channels=1)[0])
    assert mixer.sources == ["ada"]


def test_buffering_is_bounded_per_source() -> None:
    mixer = AudioMixer(max_buffer_seconds=1)
    for start in range(0, 3 * RATE, 960):  # three seconds ahead of the read position
        mixer.push("ada", tone(440, start, 960), start)
    assert not mixer.pull(RATE).any()  # the oldest two seconds were dropped
    assert not mixer.pull(RATE).any()
    assert np.array_equal(mixer.pull(RATE), tone(440, 2 * RATE, RATE))


def test_loud_sources_are_limited_not_wrapped_or_clipped() -> None:
    mixer = AudioMixer()
    for start in range(0, 2 * RATE, 960):
        mixer.push("ada", tone(440, start, 960, amplitude=30000), start)
        mixer.push("bob", tone(1000, start, 960, amplitude=30000), start)
    mix = _pull_all(mixer, 2)
    wide = mix.astype(np.int32)
    assert wide.max() <= 32767 and wide.min() >= -32768
    # no wraparound: the mix follows the sum's sign
    exact = (tone(440, 0, 2 * RATE, amplitude=30000).astype(np.int32) + tone(1000, 0, 2 * RATE, amplitude=30000))[0]
    loud = np.abs(exact) > 20000
    assert np.all(np.sign(wide[0][loud]) == np.sign(exact[loud]))
    # turned down, not squared off: both tones still hold nearly all the energy (a hard clip
    # at full scale spreads much more into harmonics)
    steady = mix[0, RATE // 2 :]
    limited = band_energy(steady, 440) + band_energy(steady, 1000)
    clipped = np.clip(exact[RATE // 2 :], -32768, 32767)
    assert limited > 0.995 > band_energy(clipped, 440) + band_energy(clipped, 1000)
    assert sorted(peaks(steady)) == pytest.approx([440, 1000], abs=5)
    # and once the loud passage is over, the gain comes back
    for start in range(2 * RATE, 4 * RATE, 960):
        mixer.push("ada", tone(440, start, 960), start)
    quiet = _pull_all(mixer, 2)
    assert np.abs(quiet[0, -RATE // 2 :].astype(np.int32) - tone(440, 4 * RATE - RATE // 2, RATE // 2)[0]).max() <= 100


@pytest.mark.parametrize(("rate", "layout", "sample_format"), [(48000, "stereo", "s16"), (16000, "mono", "fltp")])
def test_source_resampler_converts_any_frame(rate: int, layout: str, sample_format: str) -> None:
    resampler = SourceResampler(48000, 2)
    channels = 1 if layout == "mono" else 2
    chunks = []
    per_frame = rate // 50
    for index in range(50):
        wave = np.sin(2 * np.pi * 440 * np.arange(index * per_frame, (index + 1) * per_frame) / rate)
        if sample_format == "s16":
            data = np.repeat((wave * 8000).astype(np.int16)[None, :], channels, axis=0).T.reshape(1, -1)
        else:
            data = np.repeat((wave * 0.25).astype(np.float32)[None, :], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, index * per_frame, Fraction(1, rate)
        chunks.append(resampler(frame))
    samples = np.concatenate(chunks, axis=1)
    assert samples.dtype == np.int16 and samples.shape[0] == 2
    assert abs(samples.shape[1] - 48000) <= 480  # the resampler holds back a few samples
    assert abs(peaks(samples[0, 4800:-4800], count=1)[0] - 440) < 5
    single = to_samples(frame, 48000, 1)
    assert single.shape[0] == 1 and single.dtype == np.int16
