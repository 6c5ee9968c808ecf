"""The web UI: a small page of our own (serve/web/, no build step, works offline) and the two labelling tasks
behind it.

Chat talks to the OpenAI routes of api.py directly. The arena (two anonymous replies, one vote) and ranking (the
InstructGPT labelling task: k sampled replies of one model, ordered best first) generate here and keep what they
generated in memory under a random id, so the vote or ranking that comes back names replies the server produced;
a client cannot forge a reply or a model name. Models stay hidden until the vote is in.

Generation is async (jobs.Job, as the OpenAI routes): a waiting arena or ranking costs a coroutine, not one
of the threadpool's 40 threads, so slow replies cannot starve votes and static files; a client that leaves
cancels its engine requests, which frees their batch slots.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pixiu.chat.messages import Conversation
from pixiu.engine import Sampling
from pixiu.serve.jobs import Job

WEB = Path(__file__).parent / "web"
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}  # a whitelist: no path ever reaches disk
COOKIE = "pixiu_key"
# Defence in depth: the page escapes model output itself; this also forbids inline script and event handlers.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_PENDING = 1024  # battles / sample sets awaiting a vote; the oldest are dropped first


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UIMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=32_000)


class UISampling(Strict):
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=4096)


class ArenaRequest(Strict):
    messages: list[UIMessage] = Field(min_length=1, max_length=64)
    sampling: UISampling = UISampling()


class VoteRequest(Strict):
    battle_id: str = Field(max_length=64)
    winner: Literal["a", "b", "tie", "both_bad"]
    annotator: str = Field("", max_length=100)


class RankSampleRequest(Strict):
    messages: list[UIMessage] = Field(min_length=1, max_length=64)
    model: str = Field(max_length=200)
    k: int = Field(4, ge=2, le=6)
    sampling: UISampling = UISampling()


class RankRequest(Strict):
    sample_id: str = Field(max_length=64)
    order: list[int] = Field(min_length=2, max_length=6)  # indices into the sampled replies, best first
    edited: str | None = Field(None, max_length=32_000)  # a corrected version of the best reply
    annotator: str = Field("", max_length=100)


class ChatLogRequest(Strict):
    messages: list[UIMessage] = Field(min_length=2, max_length=256)
    model: str = Field(max_length=200)
    annotator: str = Field("", max_length=100)


@dataclass
class Battle:
    messages: list[dict]  # the prompt, OpenAI format
    model_a: str
    model_b: str
    reply_a: str
    reply_b: str


@dataclass
class SampleSet:
    messages: list[dict]
    model: str
    replies: list[str]  # (k,)


class Pending:
    """A bounded, thread-safe map from an unguessable id to what the server generated; each id is used once."""

    def __init__(self, capacity: int = MAX_PENDING):
        self.capacity, self.items, self.lock = capacity, OrderedDict(), threading.Lock()

    def put(self, item: Any) -> str:
        key = secrets.token_urlsafe(16)
        with self.lock:
            self.items[key] = item
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        return key

    def get(self, key: str) -> Any:
        with self.lock:
            item = self.items.get(key)
        if item is None:
            raise HTTPException(404, "unknown, expired or already used id")
        return item

    def pop(self, key: str) -> Any:
        with self.lock:
            item = self.items.pop(key, None)
        if item is None:
            raise HTTPException(404, "unknown, expired or already used id")
        return item


def to_sampling(s: UISampling, seed: int) -> Sampling:
    return Sampling(max_new_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=seed)


async def generate(jobs: list[tuple[Any, list[dict], Sampling]]) -> list[str]:
    """One reply per (engine, messages, sampling) job. All are submitted before any is read, so the engine
    batches them (two arena models answer at once, k ranking samples share a batch). Cancelling this
    coroutine cancels the engine requests still running (Job.pieces' finally). Rendering and tokenizing a
    long chat takes a while: it runs in a worker thread, so the event loop keeps serving other clients."""
    job = Job()
    try:
        await asyncio.to_thread(submit_all, job, jobs)
    except (ValueError, jinja2.TemplateError) as e:  # ContextError, bad sampling, an unrenderable chat: 400
        job.cancel_all()
        raise HTTPException(400, str(e)) from e
    except BaseException:
        job.cancel_all()
        raise
    texts = [""] * len(jobs)
    async for piece in job.pieces():
        if piece.finish_reason == "error":
            raise HTTPException(500, job.error(piece.index))
        texts[piece.index] += piece.text
    return texts


def submit_all(job: Job, jobs: list[tuple[Any, list[dict], Sampling]]) -> None:
    for engine, messages, sampling in jobs:
        job.submit(engine, Conversation.from_openai(messages), sampling, list(engine.template.stop))


async def until_gone(request: Request) -> None:
    """Return once the client has disconnected: after the body, the server's receive() only answers with
    http.disconnect (the pause guards against a server that hands back anything else at once)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.1)


async def unless_gone(request: Request, work):
    """Await `work`; if the client disconnects first, cancel it (so its engine requests stop) and answer 499."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(until_gone(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise HTTPException(499, "the client closed the request")
    return task.result()


def version(engine) -> str:
    """What the feedback store records as the model version: the engine's own, else its served name."""
    return str(getattr(engine, "version", None) or engine.name)


def page() -> Response:
    return FileResponse(WEB / "index.html", media_type="text/html", headers=HEADERS)


LOGIN = """<!doctype html><meta charset="utf-8"><title>pixiu: key needed</title>
<p style="font-family:system-ui;margin:3em">This server needs an API key. Open <code>/ui?key=YOUR_KEY</code> once;
the key is then kept in a cookie.</p>"""


async def accepts(require_key, request: Request, key: str | None) -> bool:
    """Whether require_key lets this request in, with `key` as its bearer token when given (?key=K)."""
    if key is not None:
        headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"authorization", b"cookie")]
        request = Request(
            {**request.scope, "headers": [*headers, (b"authorization", f"Bearer {key}".encode())]}
        )
    try:
        result = require_key(request)
        if inspect.isawaitable(result):
            await result
    except HTTPException:
        return False
    return True


def login_or_page(require_key):
    """GET /ui. `?key=K` (a link the operator hands out) turns a correct key into an HttpOnly SameSite=Strict
    cookie and redirects, so the key leaves the address bar; api.require_key accepts that cookie."""

    async def ui(request: Request, key: str | None = None) -> Response:
        if require_key is None:
            return page()
        if not await accepts(require_key, request, key):
            return HTMLResponse(LOGIN, 401, headers=HEADERS)
        if key is None:
            return page()
        redirect = RedirectResponse("/ui", 303, headers=HEADERS)
        redirect.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/")
        return redirect

    return ui


def router(engines: dict, store, moderation=None, require_key=None) -> APIRouter:
    """The page at /ui, its static files and the arena / ranking / chat-log endpoints under /ui/api."""
    guard = [Depends(require_key)] if require_key else []
    r = APIRouter(tags=["ui"])
    r.add_api_route("/ui", login_or_page(require_key), methods=["GET"], include_in_schema=False)
    r.add_api_route("/ui/static/{name}", static, methods=["GET"], dependencies=guard, include_in_schema=False)
    api = APIRouter(prefix="/ui/api", dependencies=guard)
    tasks = Tasks(engines, store, moderation)
    api.add_api_route("/arena", tasks.arena, methods=["POST"])
    api.add_api_route("/vote", tasks.vote, methods=["POST"])
    api.add_api_route("/rank/sample", tasks.rank_sample, methods=["POST"])
    api.add_api_route("/rank", tasks.rank, methods=["POST"])
    api.add_api_route("/chat", tasks.save_chat, methods=["POST"])
    r.include_router(api)
    return r


def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(WEB / name, media_type=STATIC[name], headers=HEADERS)


class Tasks:
    """The labelling endpoints: generate, park what was generated under a random id, store the label."""

    def __init__(self, engines: dict, store, moderation=None):
        if not engines:
            raise ValueError("the web UI needs at least one served model")
        self.engines, self.store, self.moderation = engines, store, moderation
        self.battles, self.samples = Pending(), Pending()
        self.rng = secrets.SystemRandom()

    async def prompt(self, messages: list[UIMessage]) -> list[dict]:
        if messages[-1].role != "user" or not messages[-1].content.strip():
            raise HTTPException(422, "the last message must be a non-empty user turn")
        if self.moderation is not None:  # the same input check as the OpenAI routes, off the event loop
            text = "\n".join(m.content for m in messages if m.role == "user")
            verdict = await asyncio.to_thread(self.moderation.check, text)
            if verdict.flagged:
                raise HTTPException(400, f"the input was flagged by moderation: {verdict.reason}")
        return [m.model_dump() for m in messages]

    async def answer(self, request: Request, jobs: list[tuple[Any, list[dict], Sampling]]) -> list[str]:
        """generate(jobs), with each flagged reply replaced by the moderator's refusal: what the annotator sees
        and labels is exactly what gets stored."""
        replies = await unless_gone(request, generate(jobs))
        if self.moderation is None:
            return replies
        refusal = getattr(self.moderation, "message", "Sorry, I can't help with that.")
        flags = [await asyncio.to_thread(self.moderation.check, r, m) for r, (_, m, _) in zip(replies, jobs)]
        return [refusal if f.flagged else r for r, f in zip(replies, flags)]

    def stored(self):
        if self.store is None:
            raise HTTPException(503, "this server runs without a feedback store, so labels cannot be kept")
        return self.store

    def seeds(self, n: int) -> list[int]:
        return self.rng.sample(range(2**31), n)  # distinct, so two samples of one model differ

    async def arena(self, body: ArenaRequest, request: Request) -> dict:
        """Two different served models (random, random sides) answer; with one model, two seeds of it."""
        self.stored()  # before generating: a vote that cannot be kept is not worth the compute
        messages, names = await self.prompt(body.messages), list(self.engines)
        same = len(names) == 1
        if same and body.sampling.temperature == 0:
            raise HTTPException(422, "one model is served: its two samples need temperature > 0 to differ")
        a, b = (names[0], names[0]) if same else self.rng.sample(names, 2)
        seed_a, seed_b = self.seeds(2)
        jobs = [(self.engines[a], messages, to_sampling(body.sampling, seed_a))]
        jobs.append((self.engines[b], messages, to_sampling(body.sampling, seed_b)))
        reply_a, reply_b = await self.answer(request, jobs)
        battle_id = self.battles.put(Battle(messages, a, b, reply_a, reply_b))
        return {"battle_id": battle_id, "reply_a": reply_a, "reply_b": reply_b, "same_model": same}

    def vote(self, body: VoteRequest) -> dict:
        battle: Battle = self.battles.pop(body.battle_id)  # popped first: a battle takes exactly one vote
        versions = {"a": version(self.engines[battle.model_a]), "b": version(self.engines[battle.model_b])}
        self.stored().add_vote(
            battle.messages, battle.model_a, battle.reply_a, battle.model_b, battle.reply_b,
            body.winner, body.annotator, versions,
        )  # fmt: skip
        return {"model_a": battle.model_a, "model_b": battle.model_b, "winner": body.winner}

    async def rank_sample(self, body: RankSampleRequest, request: Request) -> dict:
        """k replies of one model to one prompt, each with its own seed."""
        if body.model not in self.engines:
            raise HTTPException(404, f"unknown model {body.model!r}; served: {sorted(self.engines)}")
        if body.sampling.temperature == 0:
            raise HTTPException(422, "ranking needs temperature > 0, or all k replies are the same")
        self.stored()
        messages, engine = await self.prompt(body.messages), self.engines[body.model]
        jobs = [(engine, messages, to_sampling(body.sampling, s)) for s in self.seeds(body.k)]
        replies = await self.answer(request, jobs)
        sample_id = self.samples.put(SampleSet(messages, body.model, replies))
        return {"sample_id": sample_id, "replies": replies}

    def rank(self, body: RankRequest) -> dict:
        sample: SampleSet = self.samples.get(body.sample_id)
        if sorted(body.order) != list(range(len(sample.replies))):
            raise HTTPException(422, f"order must list each of the {len(sample.replies)} replies once")
        self.samples.pop(body.sample_id)  # after validation, so a malformed order does not burn the sample
        best = sample.replies[body.order[0]]
        edited = body.edited if body.edited and body.edited.strip() not in ("", best.strip()) else None
        self.stored().add_ranking(
            sample.messages, sample.model, sample.replies, body.order, edited, body.annotator,
            version(self.engines[sample.model]),
        )  # fmt: skip
        return {"stored": True, "model": sample.model, "edited": edited is not None}

    def save_chat(self, body: ChatLogRequest) -> dict:
        """Keep a whole chat as a conversation row (SFT data after review)."""
        if body.model not in self.engines:
            raise HTTPException(404, f"unknown model {body.model!r}; served: {sorted(self.engines)}")
        messages = [m.model_dump() for m in body.messages]
        self.stored().add_chat(messages, body.model, body.annotator, version(self.engines[body.model]))
        return {"stored": True}
