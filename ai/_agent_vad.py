"""Voice activity on a live audio track: the metadata agent's ears.

Silero VAD (the ONNX model faster-whisper ships) reads 512-sample windows (32 ms at 16 kHz)
and carries an LSTM state from one window to the next. Offline, faster-whisper runs a whole
file in one call; here each track keeps its own state (``h``, ``c`` and the last 64 samples of
context) between calls, so a stream fed in pieces gets exactly the probabilities one offline
pass over the same audio would (``tests/ai/test_agent.py`` checks it). Re-running the model
over overlapping short windows would cost more and forget the context at every cut.

Windows are run a few at a time (``BATCH``): one call per 128 ms of audio costs about half of
one call per window, and times come from sample positions, so batching delays nothing that is
recorded. One ONNX session (one thread) serves every track. Per minute of one track's audio,
resampling and VAD cost about 0.75 CPU seconds (the model about 0.4 of it) on the machines the
tests run on; receiving and decoding the Opus track in aiortc costs about three more.

``SpeechDetector`` turns probabilities into speech start / end with the hysteresis of
faster-whisper's offline ``get_speech_timestamps``: speech begins above ``threshold``, ends
after ``min_silence`` below ``neg_threshold``, and bursts shorter than ``min_speech`` are
noise. ``TrackVad`` puts the pieces together for one track: decoded frames in, resampled to
16 kHz mono, placed on the agent's clock, events out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000
#: Samples per Silero window, and the context each window is given from the one before.
WINDOW = 512
CONTEXT = 64
#: Windows per model call.
BATCH = 4
#: A frame further than this from where the previous one ended starts a new run of audio
#: (packets lost, the track muted): the gap is fed as silence, at most ``MAX_GAP_FILL``.
GAP = 0.2
MAX_GAP_FILL = 1.0

SpeechChange = tuple[Literal["speech_start", "speech_end"], float]


@dataclass(frozen=True, kw_only=True)
class VadOptions:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    #: Seconds above ``threshold`` before a burst counts as speech.
    min_speech: float = 0.25
    #: Seconds below ``neg_threshold`` that end speech (pauses between sentences are shorter).
    min_silence: float = 0.6


DEFAULT_VAD = VadOptions()


class SileroStream:
    """Silero over an endless stream: call it with consecutive windows, get their speech
    probabilities; the model's state stays here between calls."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session: Any = get_vad_model().session  # one per process, shared by every stream
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def __call__(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``windows``: float32 (n, WINDOW) of consecutive audio → n probabilities."""
        before = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        probabilities, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([before, windows], axis=1), "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probabilities, np.float32).reshape(-1)


class SpeechDetector:
    """Speech probabilities of consecutive windows → speech start / end times."""

    def __init__(self, options: VadOptions = DEFAULT_VAD) -> None:
        self.options = options
        self.speaking = False
        self._burst_start: float | None = None  # above threshold, not yet long enough
        self._silence_start: float | None = None  # speaking, below neg_threshold since

    def update(self, probability: float, time: float, step: float) -> Iterator[SpeechChange]:
        """The window starting at ``time`` and lasting ``step`` seconds had ``probability``."""
        o = self.options
        if not self.speaking:
            if probability >= o.threshold and self._burst_start is None:
                self._burst_start = time
            elif probability < o.neg_threshold:
                self._burst_start = None
            if self._burst_start is not None and time + step - self._burst_start >= o.min_speech:
                self.speaking, self._silence_start = True, None
                yield "speech_start", self._burst_start
        elif probability >= o.threshold:
            self._silence_start = None
        elif probability < o.neg_threshold:
            if self._silence_start is None:
                self._silence_start = time
            if time + step - self._silence_start >= o.min_silence:
                yield from self.close(time + step)

    def close(self, time: float) -> Iterator[SpeechChange]:
        """Ends speech under way at ``time`` (or where the silence began), forgets a burst."""
        if self.speaking:
            yield "speech_end", self._silence_start if self._silence_start is not None else time
        self.speaking, self._burst_start, self._silence_start = False, None, None


class TrackVad:
    """One audio track: frames in, speech start / end out, times on the caller's clock."""

    def __init__(self, options: VadOptions = DEFAULT_VAD) -> None:
        self.detector = SpeechDetector(options)
        self._model = SileroStream()
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._pending = np.zeros(0, np.float32)
        self._pending_time: float | None = None  # the time of _pending[0]

    @property
    def speaking(self) -> bool:
        return self.detector.speaking

    @property
    def position(self) -> float | None:
        """Where the audio heard so far ends."""
        if self._pending_time is None:
            return None
        return self._pending_time + len(self._pending) / SAMPLE_RATE

    def push_frame(self, frame: av.AudioFrame, time: float) -> list[SpeechChange]:
        """A decoded frame (any rate and layout) whose first sample belongs at ``time``."""
        samples = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if not samples:
            return []
        return self.push(np.concatenate(samples).astype(np.float32, copy=False), time)

    def push(self, samples: npt.NDArray[np.float32], time: float) -> list[SpeechChange]:
        """16 kHz mono float32 samples whose first belongs at ``time``."""
        changes: list[SpeechChange] = []
        end = self.position
        if end is None:
            self._pending_time = time
        elif time - end > GAP:  # a gap: silence, then the new run of audio
            fill = np.zeros(round(min(time - end, MAX_GAP_FILL) * SAMPLE_RATE), np.float32)
            self._pending = np.concatenate([self._pending, fill])
            changes += self._run(whole_batches=False)
            self._pending, self._pending_time = np.zeros(0, np.float32), time
        elif time - end < -GAP:  # the sender's clock jumped back: keep the audio, move the clock
            self._pending_time = time - len(self._pending) / SAMPLE_RATE
        self._pending = np.concatenate([self._pending, samples])
        changes += self._run(whole_batches=True)
        return changes

    def close(self, time: float) -> list[SpeechChange]:
        """Runs what is buffered, then ends speech under way at ``time`` (the track stopped)."""
        changes = self._run(whole_batches=False)
        return changes + list(self.detector.close(time))

    def _run(self, *, whole_batches: bool) -> list[SpeechChange]:
        unit = WINDOW * BATCH if whole_batches else WINDOW
        count = len(self._pending) // unit * unit
        if not count or self._pending_time is None:
            return []
        windows = self._pending[:count].reshape(-1, WINDOW)
        start, step = self._pending_time, WINDOW / SAMPLE_RATE
        self._pending, self._pending_time = self._pending[count:], start + count / SAMPLE_RATE
        changes: list[SpeechChange] = []
        for index, probability in enumerate(self._model(windows)):
            changes += self.detector.update(float(probability), start + index * step, step)
        return changes
