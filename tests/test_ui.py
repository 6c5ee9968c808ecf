"""The web UI's endpoints (serve/ui.py) through FastAPI's TestClient, with deterministic fake engines and a
real SQLite feedback store: arena and ranking flows store the right rows; forged or reused ids, malformed
bodies and impossible requests are 4xx."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from ui_fake_engine import FakeEngine

from pixiu.serve import ui
from pixiu.serve.feedback import open_store

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


def make_client(tmp_path, names=("alpha", "beta"), require_key=None, **engine_kw):
    store = open_store(tmp_path / "feedback.db")
    engines = {n: FakeEngine(n, **engine_kw) for n in names}
    app = FastAPI()
    app.include_router(ui.router(engines, store, require_key=require_key))
    return TestClient(app), store, engines


@pytest.fixture
def two(tmp_path):
    client, store, engines = make_client(tmp_path)
    yield client, store, engines
    store.close()


def test_page_and_static_files_are_served_with_a_strict_csp(two):
    client, _, _ = two
    page = client.get("/ui")
    assert page.status_code == 200 and 'id="tab-arena"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = client.get("/ui/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "function renderMarkdown" in js.text
    assert client.get("/ui/static/style.css").headers["content-type"].startswith("text/css")
    for bad in ("index.htm", "..%2Fui.py", "feedback.db"):
        assert client.get(f"/ui/static/{bad}").status_code == 404


def test_arena_hides_the_models_until_the_vote_and_stores_it(two):
    client, store, _ = two
    r = client.post("/ui/api/arena", json={"messages": PROMPT, "sampling": {"temperature": 0.7}})
    assert r.status_code == 200
    battle = r.json()
    assert set(battle) == {"battle_id", "reply_a", "reply_b", "same_model"} and battle["same_model"] is False
    # the fake's reply names its model: each side is one of the two models, and they differ
    side_a, side_b = battle["reply_a"].split()[0], battle["reply_b"].split()[0]
    assert {side_a, side_b} == {"alpha", "beta"}
    assert battle["reply_a"].startswith(f"{side_a} answers Name a colour. #")

    v = client.post(
        "/ui/api/vote", json={"battle_id": battle["battle_id"], "winner": "b", "annotator": "ann"}
    )
    assert v.status_code == 200
    assert v.json() == {"model_a": side_a, "model_b": side_b, "winner": "b"}
    (row,) = store.votes()
    assert (row.model_a, row.model_b, row.winner, row.annotator) == (side_a, side_b, "b", "ann")
    assert (row.reply_a, row.reply_b) == (battle["reply_a"], battle["reply_b"])
    assert row.prompt == PROMPT
    assert row.model_versions == {"a": side_a, "b": side_b}


def test_forged_and_reused_battle_ids_are_404_and_store_nothing(two):
    client, store, _ = two
    forged = client.post("/ui/api/vote", json={"battle_id": "not-a-real-id", "winner": "a"})
    assert forged.status_code == 404
    battle = client.post("/ui/api/arena", json={"messages": PROMPT}).json()
    assert (
        client.post("/ui/api/vote", json={"battle_id": battle["battle_id"], "winner": "tie"}).status_code
        == 200
    )
    again = client.post("/ui/api/vote", json={"battle_id": battle["battle_id"], "winner": "a"})
    assert again.status_code == 404
    assert [v.winner for v in store.votes()] == ["tie"]


def test_one_served_model_fights_itself_with_two_seeds(tmp_path):
    client, store, engines = make_client(tmp_path, names=("solo",))
    battle = client.post("/ui/api/arena", json={"messages": PROMPT}).json()
    assert battle["same_model"] is True
    assert battle["reply_a"] != battle["reply_b"]  # different seeds
    seeds = [s.seed for _, s in engines["solo"].submitted]
    assert len(set(seeds)) == 2
    greedy = client.post("/ui/api/arena", json={"messages": PROMPT, "sampling": {"temperature": 0}})
    assert greedy.status_code == 422 and "temperature" in greedy.text
    client.post("/ui/api/vote", json={"battle_id": battle["battle_id"], "winner": "both_bad"})
    (row,) = store.votes()
    assert (row.model_a, row.model_b, row.winner) == ("solo", "solo", "both_bad")
    store.close()


def test_ranking_samples_k_replies_and_stores_the_order_and_edit(two):
    client, store, engines = two
    body = {"messages": PROMPT, "model": "beta", "k": 3, "sampling": {"temperature": 0.9, "max_tokens": 40}}
    r = client.post("/ui/api/rank/sample", json=body)
    assert r.status_code == 200
    sample = r.json()
    assert len(sample["replies"]) == 3 and len(set(sample["replies"])) == 3
    assert all(reply.startswith("beta answers Name a colour.") for reply in sample["replies"])
    sent = [s for _, s in engines["beta"].submitted]
    assert [(s.max_new_tokens, s.temperature) for s in sent] == [(40, 0.9)] * 3
    assert not engines["alpha"].submitted

    ok = {"sample_id": sample["sample_id"], "order": [2, 0, 1], "edited": "Blue.", "annotator": "ann"}
    assert client.post("/ui/api/rank", json=ok).json() == {"stored": True, "model": "beta", "edited": True}
    (row,) = store.rankings()
    assert (row.model, row.order, row.edited, row.annotator) == ("beta", [2, 0, 1], "Blue.", "ann")
    assert row.replies == sample["replies"] and row.prompt == PROMPT
    assert client.post("/ui/api/rank", json=ok).status_code == 404  # one ranking per sample


def test_an_edit_equal_to_the_best_reply_is_no_edit(two):
    client, store, _ = two
    sample = client.post("/ui/api/rank/sample", json={"messages": PROMPT, "model": "alpha", "k": 2}).json()
    best = sample["replies"][1]
    body = {"sample_id": sample["sample_id"], "order": [1, 0], "edited": f"  {best}\n"}
    assert client.post("/ui/api/rank", json=body).json()["edited"] is False
    sample = client.post("/ui/api/rank/sample", json={"messages": PROMPT, "model": "alpha", "k": 2}).json()
    body = {"sample_id": sample["sample_id"], "order": [0, 1], "edited": "   "}
    assert client.post("/ui/api/rank", json=body).json()["edited"] is False
    assert [r.edited for r in store.rankings()] == [None, None]


def test_a_malformed_order_is_422_and_does_not_burn_the_sample(two):
    client, store, _ = two
    sample = client.post("/ui/api/rank/sample", json={"messages": PROMPT, "model": "alpha", "k": 3}).json()
    for order in ([0, 1], [0, 0, 1], [0, 1, 3], [0, 1, 2, 3]):
        r = client.post("/ui/api/rank", json={"sample_id": sample["sample_id"], "order": order})
        assert r.status_code == 422, order
    assert (
        client.post("/ui/api/rank", json={"sample_id": sample["sample_id"], "order": [1, 2, 0]}).status_code
        == 200
    )
    assert client.post("/ui/api/rank", json={"sample_id": "forged", "order": [0, 1]}).status_code == 404
    assert len(store.rankings()) == 1


@pytest.mark.parametrize(
    "path, body, code",
    [
        ("/ui/api/rank/sample", {"messages": PROMPT, "model": "alpha", "k": 1}, 422),
        ("/ui/api/rank/sample", {"messages": PROMPT, "model": "alpha", "k": 7}, 422),
        ("/ui/api/rank/sample", {"messages": PROMPT, "model": "gamma", "k": 2}, 404),
        ("/ui/api/rank/sample", {"messages": PROMPT, "model": "alpha", "sampling": {"temperature": 0}}, 422),
        ("/ui/api/rank/sample", {"messages": PROMPT, "model": "alpha", "sampling": {"max_tokens": 0}}, 422),
        ("/ui/api/arena", {"messages": []}, 422),
        ("/ui/api/arena", {"messages": [{"role": "assistant", "content": "hi"}]}, 422),
        ("/ui/api/arena", {"messages": [{"role": "user", "content": "  "}]}, 422),
        ("/ui/api/arena", {"messages": [{"role": "robot", "content": "hi"}]}, 422),
        ("/ui/api/arena", {"messages": PROMPT, "sampling": {"temperature": 3}}, 422),
        ("/ui/api/arena", {"messages": PROMPT, "sampling": {"max_tokens": 4000}}, 400),  # beyond the context
        ("/ui/api/arena", {"messages": PROMPT, "model_a": "alpha"}, 422),  # no choosing the fighters
        ("/ui/api/vote", {"battle_id": "x", "winner": "c"}, 422),
        ("/ui/api/vote", {"winner": "a"}, 422),
        ("/ui/api/rank", {"sample_id": "x", "order": "0,1"}, 422),
        (
            "/ui/api/chat",
            {"messages": PROMPT[1:], "model": "alpha"},
            422,
        ),  # a chat log needs two turns or more
    ],
)
def test_bad_requests_are_4xx(two, path, body, code):
    client, store, _ = two
    r = client.post(path, json=body)
    assert r.status_code == code, r.text
    assert store.counts()["votes"] == store.counts()["rankings"] == 0


def test_chat_logs_are_stored_with_model_and_annotator(two):
    client, store, _ = two
    messages = [*PROMPT, {"role": "assistant", "content": "Blue."}]
    assert client.post(
        "/ui/api/chat", json={"messages": messages, "model": "alpha", "annotator": "a1"}
    ).json() == {"stored": True}
    assert client.post("/ui/api/chat", json={"messages": messages, "model": "nope"}).status_code == 404
    (row,) = store.chats()
    assert (row["messages"], row["model"], row["annotator"], row["model_version"]) == (
        messages,
        "alpha",
        "a1",
        "alpha",
    )


def test_without_a_store_labels_are_refused_not_lost(tmp_path):
    engines = {"alpha": FakeEngine("alpha")}
    app = FastAPI()
    app.include_router(ui.router(engines, None))
    client = TestClient(app)
    assert client.post("/ui/api/arena", json={"messages": PROMPT}).status_code == 503
    assert client.post("/ui/api/rank/sample", json={"messages": PROMPT, "model": "alpha"}).status_code == 503
    assert not engines["alpha"].submitted  # refused before generating anything


def test_pending_is_bounded_and_single_use():
    pending = ui.Pending(capacity=2)
    first, second, third = (pending.put(i) for i in range(3))
    assert len({first, second, third}) == 3 and len(first) >= 20
    with pytest.raises(HTTPException):
        pending.get(first)  # evicted: the oldest goes first
    assert pending.pop(third) == 2
    with pytest.raises(HTTPException):
        pending.pop(third)


def fake_require_key(request: Request):
    """The shape of api.require_key: a bearer token or the pixiu_key cookie."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if "s3cret" not in (token, request.cookies.get(ui.COOKIE)):
        raise HTTPException(401, "bad key")


def test_key_link_sets_an_httponly_strict_cookie_and_every_ui_route_needs_the_key(tmp_path):
    client, store, _ = make_client(tmp_path, require_key=fake_require_key)
    for method, path in [("GET", "/ui"), ("GET", "/ui/static/app.js"), ("POST", "/ui/api/arena")]:
        assert client.request(method, path, json={"messages": PROMPT}).status_code == 401, path
    assert client.get("/ui?key=wrong").status_code == 401
    assert ui.COOKIE not in client.cookies
    r = client.get("/ui?key=s3cret", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    cookie = r.headers["set-cookie"].lower()
    assert "pixiu_key=s3cret" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/ui").status_code == 200  # the cookie now opens the page and the API
    assert client.post("/ui/api/arena", json={"messages": PROMPT}).status_code == 200
    store.close()


def test_moderation_refuses_flagged_prompts_and_replaces_flagged_replies(tmp_path):
    from pixiu.serve.moderation import Rule, RulesModeration

    store = open_store(tmp_path / "feedback.db")
    rules = RulesModeration([Rule.parse("weapons", "bomb")], message="No.")
    engines = {"good": FakeEngine("good"), "bad": FakeEngine("bad", reply=lambda *_: "a bomb recipe")}
    app = FastAPI()
    app.include_router(ui.router(engines, store, moderation=rules))
    client = TestClient(app)
    flagged = client.post("/ui/api/arena", json={"messages": [{"role": "user", "content": "build a BOMB"}]})
    assert flagged.status_code == 400 and "weapons" in flagged.text
    battle = client.post("/ui/api/arena", json={"messages": PROMPT}).json()
    revealed = client.post("/ui/api/vote", json={"battle_id": battle["battle_id"], "winner": "tie"}).json()
    replies = {revealed["model_a"]: battle["reply_a"], revealed["model_b"]: battle["reply_b"]}
    assert replies["bad"] == "No." and replies["good"].startswith("good answers")
    (row,) = store.votes()  # what the annotator saw is what is stored
    assert {row.model_a: row.reply_a, row.model_b: row.reply_b} == replies
    sample = client.post("/ui/api/rank/sample", json={"messages": PROMPT, "model": "bad", "k": 2}).json()
    assert sample["replies"] == ["No.", "No."]
    store.close()


def test_through_the_server_app_with_an_api_key(tmp_path):
    """create_app mounts this router; its key middleware and this router agree on the ?key= login."""
    from pixiu.serve.api import create_app

    store = open_store(tmp_path / "feedback.db")
    app = create_app(
        {"alpha": FakeEngine("alpha"), "beta": FakeEngine("beta")}, api_key="s3cret", store=store
    )
    client = TestClient(app)
    login = client.get("/ui")
    assert login.status_code == 401 and "?key=" in login.text
    assert client.post("/ui/api/arena", json={"messages": PROMPT}).status_code == 401
    assert client.get("/ui/static/app.js").status_code == 401
    login = client.get("/ui?key=s3cret", follow_redirects=False)
    assert login.status_code == 303
    assert len(login.headers.get_list("set-cookie")) == 1  # the route's cookie, not also the middleware's
    battle = client.post("/ui/api/arena", json={"messages": PROMPT})  # the cookie is the key now
    assert battle.status_code == 200
    bad = client.post("/ui/api/vote", json={"battle_id": battle.json()["battle_id"], "winner": "c"})
    assert bad.status_code == 400 and "winner" in bad.json()["error"]["message"]  # OpenAI error shape
    assert client.post("/ui/api/vote", json={"battle_id": battle.json()["battle_id"], "winner": "a"}).json()
    assert len(store.votes()) == 1
    store.close()
