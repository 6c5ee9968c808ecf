"""The server's access and configuration: the API key on every route (header, cookie, query), loopback-only
without one, `pixiu serve --help`, serve.yaml and flags, ServeConfig's checks. A fake engine answers."""

from __future__ import annotations

import re

import openai
import pytest
from fake_engine import FakeEngine
from fastapi.testclient import TestClient
from test_serve import USER, error_of

from pixiu import config
from pixiu.cli import main
from pixiu.config import ConfigError, ServeConfig
from pixiu.engine import quant
from pixiu.serve import api, launch


@pytest.fixture(scope="module")
def engines():
    return {"fake": FakeEngine("fake")}


@pytest.fixture
def keyed(engines, tmp_path):
    from pixiu.serve.feedback import open_store

    store = open_store(tmp_path / "fb.db")
    yield api.create_app(engines, api_key="s3cret", store=store)
    store.close()


def every_route(routes, prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every route, path parameters filled in. FastAPI >= 0.16x keeps an included router
    as one entry (its routes under `original_router`, its prefix in `include_context`)."""
    out = []
    for route in routes:
        if not hasattr(route, "path"):
            out += every_route(route.original_router.routes, prefix + route.include_context.prefix)
            continue
        path = prefix + route.path.replace("{model:path}", "fake").replace("{name}", "app.js")
        out += [(m, path) for m in sorted(getattr(route, "methods", None) or {"GET"}) if m != "HEAD"]
    return out


def test_wrong_or_missing_key_is_401_on_every_route(keyed):
    tc = TestClient(keyed)
    routes = every_route(keyed.routes)
    assert {
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/health"),
        ("GET", "/docs"),
    } <= set(routes)
    assert any(path.startswith("/ui") for _, path in routes)  # the web UI is mounted, and guarded too
    for method, path in [*routes, ("GET", "/no/such/route")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            res = tc.request(method, path, headers=headers, json={})
            assert res.status_code == 401, (method, path, headers, res.status_code)
    res = tc.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    assert error_of(res, 401)["code"] == "invalid_api_key" and res.headers["www-authenticate"] == "Bearer"


def test_right_key_passes_by_header_cookie_or_query(keyed):
    tc = TestClient(keyed)
    assert tc.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="s3cret", http_client=tc, max_retries=0)
    assert (
        client.chat.completions.create(model="fake", messages=USER, temperature=0).choices[0].message.content
    )
    browser = TestClient(keyed)
    assert browser.get("/health?key=wrong").status_code == 401
    res = browser.get("/health?key=s3cret")
    assert res.status_code == 200 and "HttpOnly" in res.headers["set-cookie"]
    assert browser.get("/v1/models").status_code == 200  # the cookie now logs the browser in
    assert TestClient(keyed, cookies={"pixiu_key": "s3cret"}).get("/ui/static/app.js").status_code == 200
    assert (
        TestClient(keyed).post("/v1/models?key=s3cret").status_code == 401
    )  # the query key is for GETs only


def test_no_key_means_loopback_only(monkeypatch, tmp_path):
    monkeypatch.delenv("PIXIU_API_KEY", raising=False)
    with pytest.raises(SystemExit) as e:
        launch.cli(["smollm2-135m", "--host", "0.0.0.0"])
    assert "refusing to listen on 0.0.0.0 without an API key" in str(e.value) and "--insecure" in str(e.value)
    started = []
    monkeypatch.setattr(launch, "load_engines", lambda *a, **k: {"fake": FakeEngine()})
    monkeypatch.setattr(
        "uvicorn.run", lambda app, host, port, **kw: started.append((host, app.state.api_key))
    )
    monkeypatch.setenv("PIXIU_HOME", str(tmp_path))  # the default feedback.db lands here
    launch.cli(["x", "--host", "0.0.0.0", "--insecure"])
    launch.cli(["x", "--host", "::1"])
    monkeypatch.setenv("PIXIU_API_KEY", "envkey")
    launch.cli(["x", "--host", "0.0.0.0"])
    assert started == [("0.0.0.0", None), ("::1", None), ("0.0.0.0", "envkey")]
    assert (tmp_path / "feedback.db").exists()


def test_serve_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, _, doc in config.describe(ServeConfig):
        flag = "MODEL" if name == "models" else f"--{name.replace('_', '-')}"
        assert flag in out and " ".join(doc.split()) in out, name
        assert name == "models" or f"--serve.{name}" in out


def test_serve_config_from_yaml_and_flags(tmp_path, monkeypatch):
    path = tmp_path / "serve.yaml"
    path.write_text("models: [a, b=dir]\nport: 9000\nmax_messages: 50\nmax_stop: 4\n")
    cfg = launch.parse(["--config", str(path), "--max-messages", "60", "--serve.max_stop=2", "--insecure"])
    got = (cfg.models, cfg.port, cfg.max_messages, cfg.max_stop, cfg.insecure)
    assert got == (["a", "b=dir"], 9000, 60, 2, True)
    again = launch.parse(["c", f"--config={path}", "--insecure=false"])
    assert again.models == ["c"] and not again.insecure  # MODEL replaces the file's
    for argv, why in [
        (["x", "--max-messages", "0"], "serve.max_messages must be >= 1"),
        (["x", "--dtype", "fp8"], "serve.dtype='fp8' is not one of"),
        ([], "name at least one MODEL"),
    ]:
        with pytest.raises(SystemExit, match=why):
            launch.parse(argv)
    started = []
    monkeypatch.setattr(launch, "load_engines", lambda *a, **k: {"fake": FakeEngine()})
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: started.append(app))
    launch.cli(["x", "--max-messages", "1", "--db", str(tmp_path / "f.db")])
    res = TestClient(started[0]).post("/v1/chat/completions", json={"model": "fake", "messages": USER * 2})
    assert res.status_code == 400 and res.json()["error"]["code"] == "max_messages"


def test_serve_config_is_validated():
    for bad in [{"port": 0}, {"max_body_bytes": 0}, {"max_stop": -1}, {"backend": "onnx"}]:
        with pytest.raises(ConfigError):
            ServeConfig(**bad)
    for q in quant.QUANTIZE:  # the config's choices are the engine's
        assert ServeConfig(quantize=q).quantize == q
    with pytest.raises(ConfigError, match=re.escape(str(list(quant.QUANTIZE)))):
        ServeConfig(quantize="int3")


def test_served_names():
    assert launch.parse_model("bot=runs/x/final") == ("bot", "runs/x/final")
    assert launch.parse_model("runs/a=b/final") == (None, "runs/a=b/final")
    assert launch.parse_model("smollm2-135m") == (None, "smollm2-135m")
