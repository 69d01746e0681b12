"""Media helpers of the recorder's tests: a sink in memory, tones and their spectra."""

from __future__ import annotations

import numpy as np

from egress._sink import SinkResult


class MemorySink:
    """A sink that keeps the bytes in memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def bytes_written(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return len(self.data)

    def flush(self) -> None:
        pass

    def close(self) -> SinkResult:
        return SinkResult("memory:", "memory", len(self.data))

    def abort(self) -> None:
        pass


def tone(
    frequency: float, start: int, count: int, *, amplitude: float = 8000, rate: int = 48000, channels: int = 2
) -> np.ndarray:
    """A sine tone as int16 (channels, count), its phase following the timeline from ``start``."""
    wave = amplitude * np.sin(2 * np.pi * frequency * np.arange(start, start + count) / rate)
    return np.repeat(np.round(wave).astype(np.int16)[None, :], channels, axis=0)


def peaks(signal: np.ndarray, *, rate: int = 48000, count: int = 2) -> list[float]:
    """The ``count`` strongest frequencies (Hz) of a mono signal, strongest first, one per lobe."""
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64) * np.hanning(len(signal))))
    frequencies = np.fft.rfftfreq(len(signal), 1 / rate)
    found: list[float] = []
    for index in np.argsort(spectrum)[::-1]:
        frequency = float(frequencies[index])
        if all(abs(frequency - other) > 50 for other in found):
            found.append(frequency)
        if len(found) == count:
            break
    return found


def band_energy(signal: np.ndarray, frequency: float, *, rate: int = 48000, width: float = 20) -> float:
    """The share of a signal's spectral energy within ``width`` Hz of ``frequency``."""
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64) * np.hanning(len(signal)))) ** 2
    frequencies = np.fft.rfftfreq(len(signal), 1 / rate)
    return float(spectrum[np.abs(frequencies - frequency) <= width].sum() / spectrum.sum())
