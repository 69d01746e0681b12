"""Known speech for the AI tests: a meeting of sentences spoken by espeak-ng (one file, or
three voices taking turns with the timeline of who spoke when), and word error rate."""

from __future__ import annotations

import random
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ai._types import SpeakerTurn

from .media import speak

MEETING = [
    "Good morning everyone and welcome to the weekly planning meeting.",
    "First we will review the budget for the new office near the station.",
    "The building needs new windows and a better heating system before winter.",
    "Maria has asked the suppliers for three offers and will share them on Friday.",
    "Next we need to decide who will lead the customer survey this spring.",
    "Thomas offered to write the questions and test them with a small group.",
    "The design team will present the new website to the board next month.",
    "Please send your comments on the draft before the end of the week.",
    "We also need volunteers for the open day at the library.",
    "Finally the travel policy has changed and every trip must be approved in advance.",
    "Thank you all for your time and see you at the same place next week.",
]


# A meeting that never says the same sentence twice: plain Whisper primes each window with the
# text of the ones before, so MEETING repeated lets it copy whole sentences from its own prompt
# (the bench found it: WER 6.7 % on MEETING x 8 against 9.6 % on these).
_PEOPLE = ("Maria", "Thomas", "Sophie", "Daniel", "Laura", "Peter", "Helen", "George", "Nina", "Oliver")
_THINGS = (
    *("the budget", "the new website", "the customer survey", "the travel policy", "the office move"),
    *("the quarterly report", "the hiring plan", "the training day", "the supplier contract", "the open day"),
    *("the marketing campaign", "the heating system", "the staff handbook", "the project schedule"),
    "the annual review",
)
_VERBS = ("review", "finish", "present", "update", "check", "share", "approve", "prepare", "discuss", "send")
_WHEN = (
    *("on Monday", "by Friday", "next week", "before the end of the month", "after the holidays"),
    *("this afternoon", "tomorrow morning", "in two weeks", "before the board meeting", "at the next meeting"),
)
_TEMPLATES = (
    "{p} will {v} {t} {w}.",
    "Can we {v} {t} {w} instead?",
    "I think {p} should {v} {t} {w}.",
    "We agreed that {p} and {q} will {v} {t} {w}.",
    "The main question about {t} is who can {v} it {w}.",
    "{p} said that {t} is almost ready, so we can {v} it {w}.",
    "Let us not {v} {t} until {p} has spoken to the team.",
    "If nobody objects, {p} will {v} {t} and report back {w}.",
    "The problem with {t} is that nobody had time to {v} it.",
    "{p} asked whether we could {v} {t} together with {q}.",
)


def varied_meeting(count: int, *, seed: int = 7) -> list[str]:
    """``count`` different meeting sentences (names, topics and dates that come back, as in
    a real meeting, in sentences that do not)."""
    rng = random.Random(seed)
    sentences: list[str] = []
    while len(sentences) < count:
        p, q = rng.sample(_PEOPLE, 2)
        template = rng.choice(_TEMPLATES)
        sentence = template.format(p=p, q=q, t=rng.choice(_THINGS), v=rng.choice(_VERBS), w=rng.choice(_WHEN))
        sentence = sentence[0].upper() + sentence[1:]
        if sentence not in sentences:
            sentences.append(sentence)
    return sentences


VOICES = {"Alice": "en-us+f3", "Bob": "en-gb", "Carol": "en-us+f5"}


def normalise(text: str) -> list[str]:
    """Lower case, no punctuation, digits spelled out (Whisper writes "3", espeak says three)."""
    text = re.sub(r"\d+", lambda m: _spell(int(m.group())), text.lower().replace("-", " "))
    return re.sub(r"[^a-z' ]+", " ", text).split()


_ONES = [
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spell(number: int) -> str:
    if number < 20:
        return _ONES[number]
    if number < 100:
        return _TENS[number // 10] + ("" if number % 10 == 0 else " " + _ONES[number % 10])
    if number < 1000:
        rest = number % 100
        return _ONES[number // 100] + " hundred" + ("" if rest == 0 else " " + _spell(rest))
    return str(number)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, over normalised words."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, other in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1] / max(len(ref), 1)


def _read(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16), wav.getframerate()


def _write(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype(np.int16).tobytes())


def meeting_wav(path: Path, sentences: list[str] = MEETING, *, pause: float = 1.0) -> Path:
    """All ``sentences`` in one voice with ``pause`` seconds of silence between them."""
    return three_voices(path, sentences, voices={"Alice": "en-us"}, pause=pause)[0]


@dataclass(frozen=True)
class Spoken:
    speaker: str
    text: str
    start: float
    end: float


def three_voices(
    path: Path, sentences: list[str], *, voices: dict[str, str] = VOICES, pause: float = 1.0
) -> tuple[Path, list[Spoken]]:
    """Sentences spoken in turn by ``voices`` into one WAV; returns it and who said what when."""
    pieces: list[np.ndarray] = []
    spoken: list[Spoken] = []
    rate = 0
    at = 0.0
    names = list(voices)
    for index, sentence in enumerate(sentences):
        speaker = names[index % len(names)]
        part = speak(sentence, path.with_suffix(f".{index}.wav"), voice=voices[speaker])
        samples, rate = _read(part)
        part.unlink()
        spoken.append(Spoken(speaker, sentence, at, at + len(samples) / rate))
        silence = np.zeros(int(pause * rate), dtype=np.int16)
        pieces += [samples, silence]
        at += (len(samples) + len(silence)) / rate
    _write(path, np.concatenate(pieces), rate)
    return path, spoken


def timeline(spoken: list[Spoken]) -> list[SpeakerTurn]:
    return [SpeakerTurn(speaker=s.speaker, start=s.start, end=s.end) for s in spoken]
