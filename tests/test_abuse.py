"""Hostile and unlucky requests (issue 14): each is answered at once with a 4xx in OpenAI's shape that names what
is wrong (the limit, the field), and the server keeps answering everyone else meanwhile.

The engine is the fake one (exact, no model) with, where rendering matters, the real Jinja chat template of the
test tokenizer (SmolLM2's), so a long conversation costs what it costs in `pixiu serve`."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fake_engine import FakeEngine, FakeTemplate
from fastapi.testclient import TestClient
from live_server import serving

from pixiu.chat.templates import get_template
from pixiu.config import ServeConfig
from pixiu.serve import api
from pixiu.serve.auth import RedactKeys

USER = [{"role": "user", "content": "hello there"}]  # 5 prompt tokens with the fake template
CHAT = {"model": "fake", "messages": USER, "max_tokens": 3}


def turns(n: int) -> list[dict]:
    """n messages alternating user / assistant, ending on a user turn when n is odd."""
    return [{"role": ("user", "assistant")[i % 2], "content": f"message number {i}"} for i in range(n)]


def jinja_engine(tokenizer) -> FakeEngine:
    """The fake engine rendering conversations with the real SmolLM2 Jinja template, with room for long ones."""
    engine = FakeEngine("fake", context_len=1_000_000)
    engine.template = get_template("default", tokenizer)
    return engine


def error_of(res, status: int) -> dict:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]


def poll_health(url: str, busy) -> list[float]:
    """/health latencies (seconds) measured one after another while `busy()` is true."""
    latencies = []
    with httpx.Client(timeout=10) as http:
        while busy() or not latencies:
            t0 = time.perf_counter()
            assert http.get(f"{url}/health").status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)
    return latencies


def post(url: str, path: str, body: dict) -> httpx.Response:
    with httpx.Client(timeout=30) as http:
        return http.post(f"{url}{path}", json=body)


# ---------------------------------------------------------------- one request must not stall the rest


def test_health_answers_while_hostile_requests_are_rejected(tokenizer):
    """Issue 14 point 1: a 10,000-message request froze /health for over 13 minutes; with it, 16 stop strings
    of 100 KB. Both are refused with the limit named, at once, and /health stays under a second meanwhile."""
    hostile = {
        "max_messages": {"model": "fake", "messages": turns(10_001), "max_tokens": 3},
        "max_stop_length": {**CHAT, "stop": ["x" * 100_000] * 16},
    }
    t0 = time.perf_counter()
    with serving(api.create_app({"fake": jinja_engine(tokenizer)})) as url, ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(post, url, "/v1/chat/completions", b) for k, b in hostile.items()}
        latencies = poll_health(url, lambda: not all(f.done() for f in futures.values()))
        results = {k: f.result() for k, f in futures.items()}
    assert time.perf_counter() - t0 < 10
    for limit, res in results.items():
        err = error_of(res, 400)
        assert err["code"] == limit and limit in err["message"]
    assert max(latencies) < 1.0, latencies


def test_rendering_runs_off_the_event_loop():
    """A prompt that takes long to render (a huge one, a slow template) must not hold up other clients: the
    render runs in a worker thread while /health keeps answering."""

    class SlowTemplate(FakeTemplate):
        def prompt_ids(self, conv):
            time.sleep(1.5)
            return super().prompt_ids(conv)

    engine = FakeEngine("fake")
    engine.template = SlowTemplate()
    with serving(api.create_app({"fake": engine})) as url, ThreadPoolExecutor(1) as pool:
        reply = pool.submit(post, url, "/v1/chat/completions", CHAT)
        time.sleep(0.2)  # the request is rendering now
        latencies = poll_health(url, lambda: not reply.done())
        res = reply.result()
    assert res.status_code == 200 and res.json()["choices"][0]["message"]["content"] == "fake says: hello "
    assert max(latencies) < 0.5 and len(latencies) > 5, latencies


def test_the_web_ui_renders_off_the_event_loop_too(tmp_path):
    """The arena renders both models' prompts (up to 64 messages of 32,000 characters) before it replies."""
    from pixiu.feedback.store import open_store

    class SlowTemplate(FakeTemplate):
        def prompt_ids(self, conv):
            time.sleep(1.0)
            return super().prompt_ids(conv)

    engines = {name: FakeEngine(name) for name in ("a", "b")}
    for engine in engines.values():
        engine.template = SlowTemplate()
    store = open_store(tmp_path / "feedback.db")
    body = {"messages": USER, "sampling": {"max_tokens": 3}}
    with serving(api.create_app(engines, store=store)) as url, ThreadPoolExecutor(1) as pool:
        battle = pool.submit(post, url, "/ui/api/arena", body)
        time.sleep(0.2)
        latencies = poll_health(url, lambda: not battle.done())
        res = battle.result()
    store.close()
    replies = sorted(res.json()[k] for k in ("reply_a", "reply_b"))
    assert res.status_code == 200 and replies == ["a says: hello ", "b says: hello "], res.json()
    assert max(latencies) < 0.5 and len(latencies) > 5, latencies


def test_a_request_renders_its_prompt_once(tokenizer, monkeypatch):
    """n choices and no max_tokens used to render the conversation n + 1 times (the length check, then each
    submission); now the Jinja template runs once per request."""
    engine = jinja_engine(tokenizer)
    calls = []
    real = tokenizer.apply_chat_template
    monkeypatch.setattr(tokenizer, "apply_chat_template", lambda *a, **k: calls.append(1) or real(*a, **k))
    body = {"model": "fake", "messages": turns(41), "n": 4, "temperature": 0.5}
    res = TestClient(api.create_app({"fake": engine})).post("/v1/chat/completions", json=body)
    assert res.status_code == 200 and len(res.json()["choices"]) == 4
    assert len(calls) == 1


# ---------------------------------------------------------------- limits: a 400 or 413 naming the limit


@pytest.fixture
def strict():
    cfg = ServeConfig(max_messages=4, max_body_bytes=2000, max_stop=2, max_stop_length=5, max_prompt_tokens=8)
    return TestClient(api.create_app({"fake": FakeEngine("fake")}, config=cfg))


@pytest.mark.parametrize(
    "path, body, status, param, limit",
    [
        ("/v1/chat/completions", {**CHAT, "messages": turns(5)}, 400, "messages", "max_messages=4"),
        ("/v1/chat/completions", {**CHAT, "stop": ["a", "b", "c"]}, 400, "stop", "max_stop=2"),
        ("/v1/completions", {**CHAT, "prompt": "x", "stop": "abcdef"}, 400, "stop", "max_stop_length=5"),
        ("/v1/chat/completions", {**CHAT, "messages": turns(3)}, 400, "messages", "max_prompt_tokens=8"),
        ("/v1/completions", {**CHAT, "prompt": "a b c d e f g h i"}, 400, "prompt", "max_prompt_tokens=8"),
        ("/v1/chat/completions", {**CHAT, "user": "x" * 3000}, 413, None, "max_body_bytes=2000"),
    ],
)
def test_over_a_limit_is_4xx_naming_it(strict, path, body, status, param, limit):
    err = error_of(strict.post(path, json=body), status)
    assert err["param"] == param and err["code"] == limit.split("=")[0] and limit in err["message"]


def test_within_the_limits_is_served(strict):
    res = strict.post("/v1/chat/completions", json={**CHAT, "stop": ["abcde", "zz"]})
    assert res.status_code == 200 and res.json()["choices"][0]["message"]["content"] == "fake says: hello "
    assert strict.post("/v1/completions", json={**CHAT, "prompt": "a b c d e"}).status_code == 200


def test_a_streamed_body_is_cut_at_the_limit(strict):
    """No Content-Length (chunked upload): the bytes are counted as they arrive, and refused past the limit."""

    def chunks():
        for _ in range(100):
            yield b" " * 100
        yield json.dumps(CHAT).encode()

    headers = {"content-type": "application/json"}
    err = error_of(strict.post("/v1/chat/completions", content=chunks(), headers=headers), 413)
    assert err["code"] == "max_body_bytes"
    small = strict.post("/v1/chat/completions", content=iter([json.dumps(CHAT).encode()]), headers=headers)
    assert small.status_code == 200


def test_an_endless_upload_is_answered_before_it_ends():
    """A client that keeps sending (chunked, no length) gets its 413 once the limit is passed, not never."""
    app = api.create_app({"fake": FakeEngine("fake")}, config=ServeConfig(max_body_bytes=2000))
    with serving(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunk = b"400\r\n" + b" " * 1024 + b"\r\n"  # 1,024 bytes (400 in hex)
            sock.sendall(head.encode() + chunk + chunk)
            # no last chunk is sent: a server waiting for it would time out here; this one answers and closes
            answer = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
    assert answer.startswith("HTTP/1.1 413") and '"code":"max_body_bytes"' in answer


def test_a_false_content_length_is_refused(strict):
    res = strict.post(
        "/v1/chat/completions", content=b"{}", headers={"content-length": "99999999999", "content-type": "x"}
    )
    assert error_of(res, 413)["code"] == "max_body_bytes"


# ---------------------------------------------------------------- a lone surrogate is the client's mistake


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/chat/completions", '{"model": "fake", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
         "messages.0.content"),
        ("/v1/chat/completions", '{"model": "fake", "messages": [{"role": "user", "content": '
         '[{"type": "text", "text": "hi \\udfff"}]}]}', "messages.0.content"),
        ("/v1/completions", '{"model": "fake", "prompt": "hi \\ud800"}', "prompt"),
        ("/v1/completions", '{"model": "fake", "prompt": ["ok", "hi \\ud800"]}', "prompt"),
        ("/v1/chat/completions", '{"model": "fake", "messages": [{"role": "user", "content": "hi"}], '
         '"stop": "\\ud800"}', "stop"),
    ],
)  # fmt: skip
def test_lone_surrogate_is_400_naming_the_field(path, body, param):
    """Issue 14 point 3: "hi \\ud800" (valid JSON, not valid Unicode) was a 500 (TypeError in the tokenizer)."""
    tc = TestClient(api.create_app({"fake": FakeEngine("fake")}), raise_server_exceptions=False)
    err = error_of(tc.post(path, content=body, headers={"content-type": "application/json"}), 400)
    assert err["param"] == param and "surrogate" in err["message"]


def test_the_connection_serves_the_next_request_after_a_surrogate():
    """The 500 also dropped the keep-alive connection, so a client's next pooled request was reset."""
    bad = '{"model": "fake", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    with serving(api.create_app({"fake": FakeEngine("fake")})) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        conn.request("POST", "/v1/chat/completions", bad, {"Content-Type": "application/json"})
        first = conn.getresponse()
        assert first.status == 400 and b"surrogate" in first.read() and not first.will_close
        sock = conn.sock
        conn.request("POST", "/v1/chat/completions", json.dumps(CHAT), {"Content-Type": "application/json"})
        second = conn.getresponse()
        assert second.status == 200 and json.loads(second.read())["choices"][0]["finish_reason"] == "length"
        assert conn.sock is sock  # the same connection answered both
        conn.close()


# ---------------------------------------------------------------- the API key stays out of the logs


def test_the_access_log_does_not_carry_the_key():
    """Issue 14 point 7: uvicorn logged `"GET /ui?key=KEY HTTP/1.1" 200`."""
    records: list[logging.LogRecord] = []
    capture = logging.Handler(logging.INFO)
    capture.emit = records.append
    access = logging.getLogger("uvicorn.access")
    access.addHandler(capture)
    app = api.create_app({"fake": FakeEngine("fake")}, api_key="s3cret-key")
    try:
        with serving(app, log_config=None, log_level="info") as url, httpx.Client() as http:
            assert http.get(f"{url}/health?key=s3cret-key").status_code == 200
            assert http.get(f"{url}/v1/models?x=1&key=s3cret-key&y=2").status_code == 200
            assert http.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret-key"}).is_success
            for _ in range(100):  # uvicorn writes the line after the response has gone out
                if len(records) >= 3:
                    break
                time.sleep(0.02)
    finally:
        access.removeHandler(capture)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 3 and not any("s3cret" in line for line in lines), lines
    assert "/health?key=*** " in lines[0] and "/v1/models?x=1&key=***&y=2 " in lines[1]


def test_the_filter_masks_a_bearer_credential():
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "auth %s", ("Bearer s3cret",), None)
    assert RedactKeys().filter(record) and record.getMessage() == "auth Bearer ***"
    record = logging.LogRecord("x", logging.INFO, "", 0, "Authorization: Basic dTpw", None, None)
    assert RedactKeys().filter(record) and record.getMessage() == "Authorization: Basic ***"
    record = logging.LogRecord("x", logging.INFO, "", 0, "monkey=banana&key=k1", None, None)
    RedactKeys().filter(record)
    assert record.getMessage() == "monkey=banana&key=***"
