"""The web UI in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): chat streams, an arena
vote and a ranking land in SQLite, and a reply carrying <script> / <img onerror> shows as text, never runs.

A real uvicorn server runs in a thread with fake engines (deterministic, word-by-word streaming replies).
Screenshots go to the test's tmp dir and to /work/notes/shots/ when that exists, to be looked at.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from ui_fake_engine import XSS, FakeEngine

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path("/work/notes/shots")
KEY = "browser-key"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


class Server:
    """create_app under uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, engines: dict, db: Path, config=None):
        import uvicorn

        from pixiu.serve.api import create_app
        from pixiu.serve.feedback import open_store

        self.store = open_store(db)
        app = create_app(engines, api_key=KEY, store=self.store, config=config)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    """A logged-in page on the server: /ui?key=K sets the cookie and redirects to /ui."""
    pages = []

    def open_ui(server: Server, bypass_csp: bool = False):
        page = browser.new_page(viewport={"width": 1280, "height": 860}, bypass_csp=bypass_csp)
        page.on("pageerror", lambda e: pages.append(e))  # an uncaught JS error fails the test below
        page.goto(f"{server.url}/ui?key={KEY}")
        assert page.url == f"{server.url}/ui"
        expect(page.locator("#model option").first).to_be_attached()
        return page

    yield open_ui
    assert not pages, f"JavaScript errors on the page: {pages}"


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if SHOTS.parent.exists():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


def count_updates(page, selector: str) -> None:
    """Count DOM changes of the last element matching `selector` (a streamed reply changes many times)."""
    page.evaluate(
        """sel => { window.__updates = 0; const el = [...document.querySelectorAll(sel)].pop();
        new MutationObserver(() => window.__updates++).observe(el, {childList: true, subtree: true}); }""",
        selector,
    )


def chat(page, text: str, n: int) -> str:
    """Send `text`, wait for the n-th assistant reply to finish streaming, return its text."""
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg.assistant")).to_have_count(n)
    count_updates(page, ".msg.assistant .md")
    page.wait_for_selector(".msg.assistant .md.streaming", state="detached", timeout=20_000)
    return page.locator(".msg.assistant .md").nth(n - 1).inner_text()


def test_chat_arena_and_ranking_end_in_sqlite(open_page, tmp_path):
    engines = {name: FakeEngine(name, delay=0.05) for name in ("alpha", "beta")}
    with Server(engines, tmp_path / "feedback.db") as server:
        page = open_page(server)
        page.fill("#annotator", "tester")
        page.select_option("#model", "alpha")
        page.fill("#system", "Be brief.")

        first = chat(page, "Hello there", 1)
        assert first.startswith("alpha answers Hello there #")
        assert page.evaluate("window.__updates") >= 3  # the reply grew piece by piece: it streamed
        chat(page, "And again", 2)
        conv = engines["alpha"].submitted[-1][0]  # multi-turn: the history and the system prompt went along
        assert [m.role for m in conv.messages] == ["system", "user", "assistant", "user"]
        assert conv.messages[2].content == first
        page.click("#chat-save")
        page.wait_for_selector("#chat-status.ok")
        shot(page, tmp_path, "ui-chat")

        page.click(".tab[data-tab=arena]")
        page.fill("#arena-input", "Which is larger, 7 or 9?")
        page.click("#arena-go")
        page.wait_for_selector(".vote[data-winner=a]:not([disabled])")
        reply_a = page.inner_text("#arena-a")
        assert page.inner_text("#arena-model-a") == ""  # anonymous until the vote
        shot(page, tmp_path, "ui-arena-before-vote")
        page.click(".vote[data-winner=a]")
        page.wait_for_selector("#arena-status.ok")
        model_a = page.inner_text("#arena-model-a").removeprefix("· ")
        assert model_a in engines and reply_a.startswith(f"{model_a} answers")
        shot(page, tmp_path, "ui-arena-voted")

        page.click(".tab[data-tab=rank]")
        page.select_option("#model", "beta")
        page.select_option("#rank-k", "3")
        page.fill("#rank-input", "Write a haiku about rain.")
        page.click("#rank-go")
        expect(page.locator("#rank-list > li")).to_have_count(3)
        replies = [page.locator(f"#rank-list > li[data-reply='{i}'] .md").inner_text() for i in range(3)]
        page.locator("#rank-list > li").nth(2).locator("select").select_option("0")  # C becomes the best
        page.locator("#rank-list > li").nth(2).drag_to(
            page.locator("#rank-list > li").nth(1)
        )  # then B above A
        order = [
            int(x)
            for x in page.eval_on_selector_all("#rank-list > li", "els => els.map(e => e.dataset.reply)")
        ]
        assert order == [2, 1, 0]
        page.check("#rank-edit-on")
        assert page.input_value("#rank-edit") == replies[2]  # the best reply, ready to edit
        page.fill("#rank-edit", "Rain on the roof, soft.")
        shot(page, tmp_path, "ui-ranking")
        page.click("#rank-submit")
        page.wait_for_selector("#rank-status.ok")
        shot(page, tmp_path, "ui-ranking-submitted")

        (vote,) = server.store.votes()
        assert (vote.winner, vote.annotator, vote.model_a, vote.reply_a) == ("a", "tester", model_a, reply_a)
        assert {vote.model_a, vote.model_b} == {"alpha", "beta"}
        assert vote.prompt == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Which is larger, 7 or 9?"},
        ]
        (ranking,) = server.store.rankings()
        assert (ranking.model, ranking.order, ranking.annotator) == ("beta", [2, 1, 0], "tester")
        assert ranking.replies == replies and ranking.edited == "Rain on the roof, soft."
        (saved,) = server.store.chats()
        assert saved["model"] == "alpha" and [m["role"] for m in saved["messages"]] == [
            "system", "user", "assistant", "user", "assistant",
        ]  # fmt: skip


@pytest.mark.parametrize("csp", ["enforced", "bypassed"])
def test_html_in_replies_is_shown_as_text_and_never_runs(open_page, tmp_path, csp):
    """Bypassing the page's Content-Security-Policy shows the escaping alone stops the payload."""
    engines = {"evil": FakeEngine("evil", reply=lambda *_: XSS, delay=0.01)}
    with Server(engines, tmp_path / "feedback.db") as server:
        page = open_page(server, bypass_csp=csp == "bypassed")
        text = chat(page, "Say something nasty", 1)
        assert "<script>window.__pwned=1</script>" in text
        assert '<img src=x onerror="window.__pwned=1">' in text
        reply = page.locator(".msg.assistant .md")
        assert reply.locator("script, img").count() == 0
        assert reply.locator("strong").inner_text() == "bold"  # markdown still renders
        assert reply.locator("code").inner_text() == "<b>code</b>"
        shot(page, tmp_path, f"ui-xss-chat-csp-{csp}")

        page.click(".tab[data-tab=arena]")
        page.fill("#arena-input", "again")
        page.click("#arena-go")
        page.wait_for_selector(".vote[data-winner=a]:not([disabled])")
        assert "<script>" in page.inner_text("#arena-a") and "<script>" in page.inner_text("#arena-b")
        page.click(".tab[data-tab=rank]")
        page.fill("#rank-input", "and again")
        page.click("#rank-go")
        expect(page.locator("#rank-list > li")).to_have_count(4)
        page.wait_for_timeout(300)  # give an injected handler the chance to fire
        assert page.locator("main script, main img").count() == 0
        assert page.evaluate("typeof window.__pwned") == "undefined"
        shot(page, tmp_path, f"ui-xss-ranking-csp-{csp}")


RENDER_CASES = [
    ("a *b* **c** `d*e*`", "<p>a <em>b</em> <strong>c</strong> <code>d*e*</code></p>"),
    ("x\ny\n\nz", "<p>x<br>y</p><p>z</p>"),
    ("- one\n- two\n1. first", "<ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>"),
    ("```py\n<b>&amp;</b>\n```", "<pre><code>&lt;b&gt;&amp;amp;&lt;/b&gt;</code></pre>"),
    ("# Title", "<h4>Title</h4>"),
    ("a \"q\" 'x' snake_case_name", "<p>a &quot;q&quot; &#39;x&#39; snake_case_name</p>"),
    (
        '<a href="javascript:alert(1)">x</a>',
        "<p>&lt;a href=&quot;javascript:alert(1)&quot;&gt;x&lt;/a&gt;</p>",
    ),
]


MARKDOWN_REPLY = """Here is a **short** answer with `inline code` and *emphasis*.

Steps:
1. Install it
2. Run `pixiu serve smollm2-135m`

- a point
- another point

```python
def add(a, b):
    return a + b  # <not a tag>
```
Done."""


def test_the_markdown_renderer_escapes_first(open_page, tmp_path):
    with Server({"m": FakeEngine("m", reply=lambda *_: MARKDOWN_REPLY)}, tmp_path / "feedback.db") as server:
        page = open_page(server)
        for source, html in RENDER_CASES:
            assert page.evaluate("renderMarkdown", source) == html, source
        chat(page, "Show me some markdown", 1)
        reply = page.locator(".msg.assistant .md")
        assert reply.locator("ol li").count() == 2 and reply.locator("ul li").count() == 2
        assert "return a + b  # <not a tag>" in reply.locator("pre code").inner_text()
        shot(page, tmp_path, "ui-markdown")
        # ranking replies that hold lists of their own: only the cards are ranked and locked after submitting
        page.click(".tab[data-tab=rank]")
        page.fill("#rank-input", "Show me some markdown")
        page.click("#rank-go")
        expect(page.locator("#rank-list > li")).to_have_count(4)
        assert page.locator("#rank-list li").count() == 4 + 4 * 4  # each card's reply has 2 + 2 list items
        page.click("#rank-submit")
        page.wait_for_selector("#rank-status.ok")
        assert all(s.is_disabled() for s in page.locator("#rank-list .rank-select").all())
        assert len(server.store.rankings()) == 1
        page.emulate_media(color_scheme="dark")
        shot(page, tmp_path, "ui-markdown-dark")


def test_the_tiny_model_answers_through_the_real_engine(open_page, tmp_path, tiny_model_dir):
    """The same flows on the torch engine (a random 2-layer model): its replies are noise, but every reply is
    streamed, shown and stored as the engine produced it."""
    from pixiu.engine import load_engine

    engines = {
        name: load_engine(str(tiny_model_dir), name=name, max_batch=4) for name in ("tiny-a", "tiny-b")
    }
    try:
        with Server(engines, tmp_path / "feedback.db") as server:
            page = open_page(server)
            page.fill("#max_tokens", "12")
            chat(page, "Hello world", 1)
            assert page.inner_text("#chat-status") == ""  # no error
            page.click(".tab[data-tab=arena]")
            page.fill("#arena-input", "What is two plus two?")
            page.click("#arena-go")
            page.click(".vote[data-winner=tie]")
            page.wait_for_selector("#arena-status.ok")
            page.click(".tab[data-tab=rank]")
            page.fill("#rank-input", "Please help me.")
            page.click("#rank-go")
            expect(page.locator("#rank-list > li")).to_have_count(4)
            page.click("#rank-submit")
            page.wait_for_selector("#rank-status.ok")
            shot(page, tmp_path, "ui-tiny-ranking")
            (vote,) = server.store.votes()
            assert {vote.model_a, vote.model_b} == {"tiny-a", "tiny-b"} and vote.winner == "tie"
            (ranking,) = server.store.rankings()
            assert ranking.order == [0, 1, 2, 3] and len(ranking.replies) == 4
    finally:
        for engine in engines.values():
            engine.close()


def test_chat_shows_the_retrieved_sources_it_may_cite(open_page, tmp_path):
    """pixiu serve --rag: the passages come with the stream's first chunk and show, numbered, under the reply."""
    from fake_engine import FakeEngine

    from pixiu.config import ServeConfig
    from pixiu.rag import Index, chunk_text

    statute = "# 刑法\n\n第二百六十四条 盗窃公私财物，数额较大的，处三年以下有期徒刑。\n\n第二百六十六条 诈骗公私财物，数额较大的，处三年以下有期徒刑。\n"
    Index.build(chunk_text(statute, "刑法.md")).save(tmp_path / "idx")
    config = ServeConfig(rag=str(tmp_path / "idx"), rag_k=2)
    with Server(
        {"fake": FakeEngine("fake", context_len=4096, delay=0.02)}, tmp_path / "fb.db", config
    ) as server:
        page = open_page(server)
        page.fill("#annotator", "tester")
        reply = chat(page, "盗窃手机怎么判？", 1)
        assert "[1] 刑法 > 第二百六十四条" in reply  # the fake engine echoes the cited prompt it was given
        items = page.locator(".msg.assistant .sources li")
        expect(items).to_have_count(2)
        assert items.first.inner_text().startswith("[1] 刑法 > 第二百六十四条\n第二百六十四条 盗窃公私财物")
        shot(page, tmp_path, "rag-sources")
