"""The real engine behind the OpenAI-compatible routes: the tiny Llama and the embedded SmolLM2 through the
official `openai` client, replies and log-probs equal to the engine's own."""

from __future__ import annotations

import openai
import pytest
from live_server import serving
from test_serve import USER

from pixiu.engine.text import token_bytes
from pixiu.serve import api
from pixiu.serve.protocol import TextLogprobs


def test_tiny_model_through_the_openai_client(tiny_model_dir):
    from pixiu.chat.messages import Conversation
    from pixiu.engine import Sampling, load_engine

    engine = load_engine(str(tiny_model_dir), name="tiny", max_batch=4)
    try:
        with serving(api.create_app({"tiny": engine})) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            want = engine.generate([Conversation.from_openai(USER)], Sampling(8, temperature=0))[0]
            r = client.chat.completions.create(model="tiny", messages=USER, max_tokens=8, temperature=0)
            assert (
                r.choices[0].message.content == want.text and r.choices[0].finish_reason == want.finish_reason
            )
            assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (
                want.prompt_tokens,
                want.completion_tokens,
            )
            stream = client.chat.completions.create(
                model="tiny", messages=USER, max_tokens=8, temperature=0, stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == want.text
            with pytest.raises(openai.BadRequestError) as e:
                client.chat.completions.create(model="tiny", messages=USER, max_tokens=engine.context_len)
            assert e.value.code == "context_length_exceeded"
    finally:
        engine.close()


def test_logprobs_through_the_openai_client(tiny_model_dir):
    """Chat (streamed and not) and text completions report each sampled token's log-probability and top-k:
    the engine's numbers, in OpenAI's two shapes; what cannot be honoured is a 400."""
    from pixiu.chat.messages import Conversation
    from pixiu.engine import Sampling, load_engine

    engine = load_engine(str(tiny_model_dir), name="tiny", max_batch=4)
    try:
        with serving(api.create_app({"tiny": engine})) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            want = engine.generate([Conversation.from_openai(USER)], Sampling(6, logprobs=2))[0]
            text = [engine.tokenizer.decode([t.token]) for t in want.logprobs]
            r = client.chat.completions.create(
                model="tiny", messages=USER, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2
            )
            got = r.choices[0].logprobs.content
            assert [t.token for t in got] == text and len(got) == want.completion_tokens
            assert [t.logprob for t in got] == pytest.approx([t.logprob for t in want.logprobs], abs=1e-6)
            assert [len(t.top_logprobs) for t in got] == [2] * len(got)
            assert got[0].top_logprobs[0].token == text[0]
            assert [t.bytes for t in got] == [
                list(token_bytes(engine.tokenizer, t.token)) for t in want.logprobs
            ]
            stream = client.chat.completions.create(
                model="tiny", messages=USER, max_tokens=6, temperature=0, logprobs=True, stream=True
            )
            streamed = [
                t
                for c in stream
                if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content
            ]
            assert [t.token for t in streamed] == text and all(t.top_logprobs == [] for t in streamed)
            plain = client.chat.completions.create(model="tiny", messages=USER, max_tokens=2, temperature=0)
            assert plain.choices[0].logprobs is None
            c = client.completions.create(
                model="tiny", prompt="The quick brown", max_tokens=4, temperature=0, logprobs=1
            )
            lp = c.choices[0].logprobs
            sampled = engine.generate(["The quick brown"], Sampling(4, logprobs=1))[0].logprobs
            raw = [token_bytes(engine.tokenizer, t.token) for t in sampled]
            assert lp.tokens == TextLogprobs.of(sampled, lambda i: token_bytes(engine.tokenizer, i)).tokens
            assert b"".join(raw).decode() == c.choices[0].text  # every token there, split characters whole
            assert len(lp.top_logprobs[0]) == 1
            with pytest.raises(openai.BadRequestError, match="echo"):
                client.completions.create(model="tiny", prompt="x", max_tokens=2, logprobs=1, echo=True)
    finally:
        engine.close()


@pytest.mark.slow
def test_smollm2_through_the_openai_client():
    from pixiu.engine import load_engine

    engine = load_engine("smollm2-135m", max_batch=4)
    try:
        with serving(api.create_app({engine.name: engine})) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            q = [{"role": "user", "content": "What is the capital of France?"}]
            r = client.chat.completions.create(model="smollm2-135m", messages=q, max_tokens=24, temperature=0)
            assert "Paris" in r.choices[0].message.content
            stream = client.chat.completions.create(
                model="smollm2-135m", messages=q, max_tokens=24, temperature=0, stream=True
            )
            assert (
                "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                == r.choices[0].message.content
            )
    finally:
        engine.close()
