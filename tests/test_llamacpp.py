"""The llama.cpp backend on SmolLM2 (slow; skipped where llama-cpp-python is not installed: it has no wheel on
PyPI and compiles llama.cpp, so `make setup` leaves it out).

The GGUF is the embedded one dequantized to F32 (bench/generate.py's `f32_gguf`): exactly the weights the torch
backend loads, so both backends can be compared. (The embedded Q4_1 file itself crashed llama-cpp-python 0.3.36
built with GGML_NATIVE on an AMX Xeon, inside llama_decode; F32 ran.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import ContextError, Sampling, load_engine

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")


def conv(text: str) -> Conversation:
    return Conversation([Message("user", text)])


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from generate import f32_gguf

    from pixiu.model import io

    return f32_gguf(io.embedded_gguf("smollm2-135m"), tmp_path_factory.mktemp("gguf") / "smollm2-f32.gguf")


@pytest.fixture(scope="module")
def engine(f32_gguf):
    with load_engine(str(f32_gguf), backend="llamacpp") as eng:
        yield eng


def test_greedy_starts_like_the_torch_backend_on_the_same_weights(engine):
    """Same weights, same prompt ids, different arithmetic: the first tokens of a greedy reply agree."""
    question = conv("What is the capital of France?")
    with load_engine("smollm2-135m", backend="torch", dtype="fp32", max_batch=1) as torch_engine:
        assert torch_engine.prompt_ids(question) == engine.prompt_ids(question)
        expected = torch_engine.generate([question], Sampling(max_new_tokens=8))[0].text
    assert engine.generate([question], Sampling(max_new_tokens=8))[0].text == expected


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
