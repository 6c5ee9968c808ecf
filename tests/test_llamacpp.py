"""The llama.cpp backend on the embedded SmolLM2 GGUF (slow; skipped where llama-cpp-python is not installed:
it has no wheel on PyPI and compiles llama.cpp, so `make setup` leaves it out)."""

from __future__ import annotations

import pytest

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import ContextError, Sampling, load_engine

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")


def conv(text: str) -> Conversation:
    return Conversation([Message("user", text)])


@pytest.fixture(scope="module")
def engine():
    with load_engine("smollm2-135m", backend="llamacpp") as eng:
        yield eng


def test_answers_streams_and_stops_at_the_template_stop(engine):
    """Greedy: a sensible answer, the same text streamed and whole, ended by <|im_end|> (finish 'stop')."""
    whole = engine.generate([conv("What is the capital of France?")], Sampling(max_new_tokens=32))[0]
    assert "Paris" in whole.text and whole.finish_reason == "stop"
    assert "<|im_end|>" not in whole.text
    streamed = "".join(engine.stream(conv("What is the capital of France?"), Sampling(max_new_tokens=32)))
    assert streamed == whole.text


def test_seeded_sampling_repeats_and_n_replies_differ(engine):
    sampling = Sampling(max_new_tokens=16, temperature=1.0, seed=7)
    first = engine.generate([conv("Tell me a story.")], sampling, n=2)
    again = engine.generate([conv("Tell me a story.")], sampling, n=2)
    assert [c.text for c in first] == [c.text for c in again]  # seed + i per reply
    assert first[0].text != first[1].text


def test_length_limit_and_context_check(engine):
    out = engine.generate([conv("Count from one to one hundred.")], Sampling(max_new_tokens=5))[0]
    assert out.finish_reason == "length" and out.completion_tokens == 5
    with pytest.raises(ContextError):
        engine.submit(conv("hi " * 10), Sampling(max_new_tokens=engine.context_len))
