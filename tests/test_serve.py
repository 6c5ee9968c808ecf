"""The OpenAI-compatible server: the official `openai` client against a real uvicorn server, TestClient for
errors and auth. A deterministic fake engine (tests/fake_engine.py) makes every reply exact; the tiny Llama and
the embedded SmolLM2 check the real engine behind the same routes."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from fake_engine import FakeEngine
from fastapi.testclient import TestClient
from live_server import serving

from pixiu.serve import api, launch
from pixiu.serve.moderation import Rule, RulesModeration

USER = [
    {"role": "user", "content": "hello there"}
]  # 2 + 2 words + 1 = 5 prompt tokens with the fake template


@pytest.fixture(scope="module")
def engines():
    return {"fake": FakeEngine("fake"), "other": FakeEngine("other")}


@pytest.fixture(scope="module")
def url(engines):
    with serving(api.create_app(engines)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_models_are_listed_and_retrieved(client):
    assert [m.id for m in client.models.list().data] == ["fake", "other"]
    assert client.models.retrieve("other").id == "other"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("nope")
    assert e.value.code == "model_not_found"


def test_chat_not_streamed(client):
    r = client.chat.completions.create(model="fake", messages=USER, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "fake"
    assert r.created > 1_700_000_000
    assert [(c.index, c.message.role, c.message.content, c.finish_reason) for c in r.choices] == [
        (0, "assistant", "fake says: hello there", "stop")
    ]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 4, 9)
    other = client.chat.completions.create(model="other", messages=USER, temperature=0)
    assert other.choices[0].message.content == "other says: hello there"  # the model is chosen by name


def test_chat_streamed_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="fake", messages=USER, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake says: hello there"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 5


def test_n_choices_use_seed_plus_index(client):
    r = client.chat.completions.create(model="fake", messages=USER, n=3, seed=7, temperature=0.5)
    assert [c.message.content for c in r.choices] == [f"fake says: hello there #{s}" for s in (7, 8, 9)]
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 15)  # the prompt is counted once
    chunks = list(
        client.chat.completions.create(model="fake", messages=USER, n=3, seed=7, temperature=0.5, stream=True)
    )
    by_index = {
        i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
        for i in range(3)
    }
    assert by_index == {i: c.message.content for i, c in enumerate(r.choices)}


@pytest.mark.parametrize("stop", [" there", [" nothing", " there"]])
def test_stop_string_or_list(client, stop):
    r = client.chat.completions.create(model="fake", messages=USER, temperature=0, stop=stop)
    assert r.choices[0].message.content == "fake says: hello"
    assert r.choices[0].finish_reason == "stop"


def test_max_tokens_and_max_completion_tokens(client):
    for kw in ({"max_tokens": 2}, {"max_completion_tokens": 2}):
        r = client.chat.completions.create(model="fake", messages=USER, temperature=0, **kw)
        assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("fake says: ", "length")
        assert r.usage.completion_tokens == 2


def test_sampling_fields_reach_the_engine(client, engines):
    client.chat.completions.create(
        model="fake",
        messages=USER,
        temperature=0.3,
        top_p=0.9,
        seed=5,
        max_tokens=9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        extra_body={"top_k": 4, "repetition_penalty": 1.1},
    )
    s = engines["fake"].requests[-1].sampling
    assert (s.temperature, s.top_p, s.seed, s.max_new_tokens, s.top_k, s.repetition_penalty) == (
        0.3,
        0.9,
        5,
        9,
        4,
        1.1,
    )
    client.chat.completions.create(model="fake", messages=USER)  # no limit: the context window bounds it
    assert engines["fake"].requests[-1].sampling.max_new_tokens == 64 - 5


def test_completions(client):
    r = client.completions.create(model="fake", prompt="one two", max_tokens=10, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert [(c.index, c.text, c.finish_reason) for c in r.choices] == [(0, "fake says: one two", "stop")]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (2, 4)
    r = client.completions.create(
        model="fake", prompt=["a", "b c"], n=2, seed=1, temperature=1, max_tokens=10
    )
    assert [c.text for c in r.choices] == [
        "fake says: a #1",
        "fake says: a #2",
        "fake says: b c #1",
        "fake says: b c #2",
    ]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (1 + 2, 4 + 4 + 5 + 5)
    r = client.completions.create(model="fake", prompt="x", max_tokens=10, temperature=0, echo=True)
    assert r.choices[0].text == "xfake says: x"
    default = client.completions.create(model="fake", prompt="w " * 20, temperature=0)
    assert (
        default.choices[0].finish_reason == "length" and default.usage.completion_tokens == 16
    )  # OpenAI's default


def test_completions_streamed(client):
    stream = client.completions.create(
        model="fake",
        prompt=["a", "b"],
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts = {
        i: "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i) for i in (0, 1)
    }
    assert texts == {0: "fake says: a", 1: "fake says: b"}
    assert chunks[-1].usage.total_tokens == 2 + 6


def test_openai_errors(client):
    long = [{"role": "user", "content": "word " * 70}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="fake", messages=long, max_tokens=4)
    assert e.value.code == "context_length_exceeded" and "context window" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="fake", prompt="w " * 70)
    assert e.value.code == "context_length_exceeded" and e.value.param == "prompt"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4", messages=USER)
    assert e.value.code == "model_not_found" and "fake" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="fake", messages=USER, temperature=3)
    assert e.value.param == "temperature" and "less than or equal to 2" in e.value.message


@pytest.fixture(scope="module")
def tc(engines):
    return TestClient(api.create_app(engines))


def error_of(res, status: int) -> dict:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "fake", "messages": USER, "n": 0}, "n"),
        ({"model": "fake", "messages": USER, "n": 17}, "n"),
        ({"model": "fake", "messages": USER, "top_p": 0}, "top_p"),
        ({"model": "fake", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "fake", "messages": []}, "messages"),
        ({"model": "fake", "messages": "hi"}, "messages"),
        ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "fake", "messages": USER, "temperature": "hot"}, "temperature"),
        ({"model": "fake", "messages": USER, "stop": 5}, "stop.str"),
        ({"model": "fake", "messages": USER, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"model": "fake", "messages": USER, "tools": [{"type": "function"}]}, "tools"),
        ({"model": 3, "messages": USER}, "model"),
        ({"messages": USER}, "model"),
    ],
)
def test_bad_parameters_are_400(tc, body, param):
    err = error_of(tc.post("/v1/chat/completions", json=body), 400)
    assert err["type"] == "invalid_request_error" and err["param"] == param


def test_malformed_requests_are_4xx_in_openai_shape(tc):
    err = error_of(
        tc.post(
            "/v1/chat/completions",
            content=b'{"model": "fake", "messa',
            headers={"content-type": "application/json"},
        ),
        400,
    )
    assert "JSON" in err["message"]
    error_of(tc.post("/v1/completions", json={"model": "fake", "prompt": ["a"] * 65}), 400)
    error_of(tc.post("/v1/completions", json={"model": "fake", "prompt": [1, 2]}), 400)
    assert error_of(tc.get("/v1/nothing"), 404)["type"] == "not_found_error"
    error_of(tc.get("/v1/chat/completions"), 405)
    assert tc.get("/health").json() == {"status": "ok", "models": ["fake", "other"]}


def test_template_rejection_is_400(tc, engines):
    class Picky:
        stop: list = []

        def prompt_ids(self, conv):
            import jinja2

            raise jinja2.TemplateError("Conversation roles must alternate user/assistant")

    picky = FakeEngine("picky")
    picky.template = Picky()
    res = TestClient(api.create_app({"picky": picky})).post(
        "/v1/chat/completions", json={"model": "picky", "messages": USER}
    )
    assert "must alternate" in error_of(res, 400)["message"]


def test_engine_failure_is_reported_not_hung():
    broken = FakeEngine("broken")
    broken.fail_after = 1
    tc = TestClient(api.create_app({"broken": broken}), raise_server_exceptions=False)
    body = {"model": "broken", "messages": USER, "temperature": 0}
    assert error_of(tc.post("/v1/chat/completions", json=body), 500)["code"] == "engine_error"
    events = tc.post("/v1/chat/completions", json={**body, "stream": True}).text.split("\n\n")
    assert '"the fake backend broke"' not in events[-3] and "generation failed" in events[-3]
    assert events[-2] == "data: [DONE]"


# ---------------------------------------------------------------- disconnects and concurrency


def test_client_disconnect_mid_stream_frees_the_slot():
    slow = FakeEngine("slow", context_len=10_000, delay=0.02, endless=True)
    with serving(api.create_app({"slow": slow})) as url:
        body = {"model": "slow", "messages": USER, "max_tokens": 5000, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=10) as res:
            lines = res.iter_lines()
            assert next(lines).startswith("data: ")
            while "la" not in next(lines):  # generation is under way
                pass
        for _ in range(300):  # the server notices the closed socket, cancels, the engine frees the slot
            if slow.cancelled and slow.active == 0:
                break
            time.sleep(0.01)
        assert slow.cancelled == slow.requests and slow.active == 0
        assert slow.requests[0].completion_tokens < 5000


def test_client_that_leaves_a_non_streamed_request_frees_the_slot():
    """No stream to break: the server polls the connection, and cancels the choices when the client is gone."""
    slow = FakeEngine("slow", context_len=10_000, delay=0.02, endless=True)
    with serving(api.create_app({"slow": slow})) as url:
        body = {"model": "slow", "messages": USER, "max_tokens": 5000, "n": 2}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=0.5)
        for _ in range(500):  # polled every 0.25 s: a busy machine may take a few polls
            if len(slow.cancelled) == 2 and slow.active == 0:
                break
            time.sleep(0.01)
        assert set(map(id, slow.cancelled)) == set(map(id, slow.requests)) and len(slow.requests) == 2
        assert all(r.completion_tokens < 500 for r in slow.requests)


def test_64_concurrent_streams():
    engine = FakeEngine("fake", delay=0.005)
    with serving(api.create_app({"fake": engine})) as url:

        async def one(http: httpx.AsyncClient, i: int) -> str:
            body = {
                "model": "fake",
                "messages": [{"role": "user", "content": f"n{i}"}],
                "stream": True,
                "temperature": 0,
            }
            async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as res:
                events = [line async for line in res.aiter_lines() if line]
            assert events[-1] == "data: [DONE]"
            return "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])

        async def main():
            async with httpx.AsyncClient(timeout=30) as http:
                return await asyncio.gather(*(one(http, i) for i in range(64)))

        assert asyncio.run(main()) == [f"fake says: n{i}" for i in range(64)]
        assert engine.active == 0


def test_arena_client_gone_cancels_generation(tmp_path):
    """The web UI's arena generates in a coroutine; a client that leaves cancels both replies at once."""
    from pixiu.serve.feedback import open_store

    slow = FakeEngine("slow", context_len=10_000, delay=0.02, endless=True)
    store = open_store(tmp_path / "fb.db")
    try:
        with serving(api.create_app({"slow": slow}, store=store)) as url:
            body = {"messages": USER, "sampling": {"max_tokens": 4000}}
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/ui/api/arena", json=body, timeout=0.5)
            for _ in range(500):
                if len(slow.cancelled) == 2 and slow.active == 0:
                    break
                time.sleep(0.01)
            # both replies are cancelled, in whichever order the two coroutines notice the disconnect
            assert len(slow.requests) == 2 and set(map(id, slow.cancelled)) == set(map(id, slow.requests))
            assert slow.active == 0
            assert all(r.completion_tokens < 4000 for r in slow.requests)
    finally:
        store.close()


def test_load_engines_sets_the_weights_version(tiny_model_dir):
    from pixiu.serve.feedback import model_version

    engines = launch.load_engines([f"tiny={tiny_model_dir}"], backend="torch", dtype="fp32", max_batch=2)
    try:
        assert list(engines) == ["tiny"]
        assert engines["tiny"].version == model_version(str(tiny_model_dir))
        assert engines["tiny"].version.startswith(f"{tiny_model_dir.name}@")
    finally:
        engines["tiny"].close()


# ---------------------------------------------------------------- moderation


def test_moderation_refuses_input_and_filters_output():
    rules = RulesModeration([Rule.parse("test", "forbidden")])
    engine = FakeEngine("fake", context_len=500)
    tc = TestClient(api.create_app({"fake": engine}, moderation=rules))
    err = error_of(
        tc.post(
            "/v1/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "a forbidden word"}]},
        ),
        400,
    )
    assert err["code"] == "content_filter" and err["param"] == "messages" and not engine.requests
    engine.reply = lambda prompt, sampling: "fine words then forbidden ones"
    r = tc.post("/v1/chat/completions", json={"model": "fake", "messages": USER}).json()
    assert r["choices"][0]["finish_reason"] == "content_filter"
    assert r["choices"][0]["message"]["content"] == rules.message == r["choices"][0]["message"]["refusal"]
    events = tc.post("/v1/chat/completions", json={"model": "fake", "messages": USER, "stream": True}).text
    deltas = [json.loads(e[6:]) for e in events.split("\n\n") if e.startswith("data: {")]
    text = "".join(d["choices"][0]["delta"].get("content", "") for d in deltas)
    assert "forbidden" not in text and text.endswith(rules.message)
    assert deltas[-1]["choices"][0]["finish_reason"] == "content_filter"
    engine.reply = lambda prompt, sampling: "all fine"
    assert (
        tc.post("/v1/completions", json={"model": "fake", "prompt": "hi"}).json()["choices"][0]["text"]
        == "all fine"
    )
