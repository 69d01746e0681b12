"""Accuracy of Parley's chunked pipeline (VAD chunks on Ray speech actors) against plain
faster-whisper on the same audio and model, and priming with names. The speech is held back:
sentences no other test speaks, by voices the other tests do not use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ai import SpeechPool, SpeechPoolOptions, decode_audio, plan_chunks, resolve_model, start_ray

from .conftest import MODEL_CACHE
from .media import speak
from .speech import three_voices, word_error_rate

HELD_BACK = [
    "Let us start with the quarterly figures from the sales department.",
    "Revenue grew by a small amount although costs rose faster than expected.",
    "The warehouse in the north will close for repairs during the summer holidays.",
    "Our engineers found a problem with the battery that drains too quickly.",
    "A fix should be ready before the next release at the end of October.",
    "Customers have asked for a simpler way to change their passwords.",
    "The support team answered twice as many calls as last year.",
    "We should hire two more people to help with the evening shifts.",
    "The marketing campaign on the radio brought fewer visitors than we hoped.",
    "Next time we will try short videos and a newsletter instead.",
    "The printer on the third floor has been broken for a week.",
    "Someone from facilities promised to replace it by Tuesday morning.",
    "Please remember to book the meeting room if you invite guests.",
    "The board wants a written report on the new pricing plan.",
    "I will collect your notes and send a draft to everyone tomorrow.",
    "Does anyone have questions before we move on to the last topic?",
]

#: Three meetings of three voices each (about 74 s, three 30 s chunks).
CASTS = [
    {"Alice": "en-us+f3", "Bob": "en-gb", "Carol": "en-us+f5"},
    {"Dan": "en-gb+m3", "Eve": "en-us+f2", "Fay": "en-gb-x-rp+f4"},
    {"Gus": "en-us+m2", "Hal": "en-gb-scotland", "Ivy": "en-us+f4"},
]


@pytest.fixture(scope="module")
def pool(ray_address: str) -> Iterator[SpeechPool]:
    start_ray(address=ray_address)
    # The service's default shape: one actor transcribing two chunks at once.
    speech = SpeechPool(resolve_model("tiny.en", cache_dir=MODEL_CACHE), SpeechPoolOptions(actors=1, concurrency=2))
    speech.start()
    yield speech
    speech.stop()


async def _pipeline(pool: SpeechPool, audio: np.ndarray, prompt: str = "") -> str:
    results = await pool.transcribe(audio, plan_chunks(audio), prompt=prompt)
    return " ".join(s.text for r in results for s in r.segments)


def _plain(audio: np.ndarray) -> str:
    """faster-whisper used directly, as its README shows, with Parley's model and beam."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(resolve_model("tiny.en", cache_dir=MODEL_CACHE)), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(audio, language="en", beam_size=5, vad_filter=False)
    return " ".join(s.text for s in segments)


async def test_the_pipeline_is_no_less_accurate_than_plain_faster_whisper(pool: SpeechPool, tmp_path: Path) -> None:
    reference = " ".join(HELD_BACK)
    plain, pipeline = [], []
    for index, cast in enumerate(CASTS):
        path, _ = three_voices(tmp_path / f"meeting-{index}.wav", HELD_BACK, voices=cast)
        audio = decode_audio(path)
        plain.append(word_error_rate(reference, _plain(audio)))
        pipeline.append(word_error_rate(reference, await _pipeline(pool, audio)))
    # Summed over the casts: one cast's few words either way are noise, all three are not.
    assert sum(pipeline) <= sum(plain), (pipeline, plain)
    assert max(pipeline) < 0.15, pipeline


@pytest.mark.parametrize(("name", "misheard"), [("Siobhan", "Shimon"), ("Joaquin", "Joe Quinn")])
async def test_a_name_in_the_prompt_is_spelled_right(
    pool: SpeechPool, tmp_path: Path, name: str, misheard: str
) -> None:
    sentence = f"Thank you {name}, please send the figures to {name} after the call."
    audio = decode_audio(speak(sentence, tmp_path / "name.wav", voice="en-us"))
    unprimed = await _pipeline(pool, audio)
    assert name not in unprimed and misheard in unprimed, unprimed
    primed = await _pipeline(pool, audio, prompt=f"Weekly call with {name} and Maria. Room: Sales review")
    assert primed.count(name) == 2, primed
    assert word_error_rate(sentence, primed) == 0, primed
