"""The teacher: an OpenAI-compatible endpoint (OpenAI, DeepSeek, vLLM, llama.cpp, `pixiu serve`) or a local engine.

Both answer `chat(messages)` and `complete(prompt)` with a `Reply`, and count tokens and cost in one `Usage`.
The HTTP teacher uses only the standard library (urllib + the caller's threads): a semaphore caps requests in
flight, a `Pacer` spaces them to a requests-per-minute budget, and 408 / 429 / 5xx / timeouts / broken bodies
are retried with exponential backoff, honouring Retry-After. distilabel's users lost long runs to unpaced 429s and
to failed batches silently filled with None; here a request either returns text or raises `TeacherError`.
"""

from __future__ import annotations

import email.utils
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

RETRIED = (408, 409, 425, 429)  # plus every 5xx
FATAL = (401, 403, 404)  # a wrong key, URL or model: every later request would fail the same way


T = TypeVar("T")


class TeacherError(RuntimeError):
    """One request failed for good (retries spent, or refused): the item is recorded as failed."""


class TeacherFatal(RuntimeError):
    """The teacher cannot answer anything (401/403/404): the run stops."""


@dataclass
class TeacherConfig:
    """Where the teacher is and how hard to push it."""

    url: str = "http://127.0.0.1:8000/v1"
    """Base URL of an OpenAI-compatible API (.../v1), or `engine:MODEL` for a local pixiu model via the engine."""
    model: str = "smollm2-135m"
    """Model id on that endpoint (for `engine:` the model path or alias is in `url`)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (read at start; unset: no key sent)."""
    concurrency: int = 8
    """Requests in flight at once."""
    rpm: float = 0.0
    """Requests per minute at most (0: no pacing)."""
    timeout: float = 600.0
    """Seconds per request before it counts as timed out (and is retried). Generous: a CPU `pixiu serve` with 16
    long requests in flight takes minutes per reply, and the server finishes an abandoned request anyway."""
    retries: int = 4
    """Extra attempts after a timeout, 408/429/5xx or an unreadable/empty reply."""
    backoff: float = 1.0
    """Seconds before the first retry, doubled each time (a Retry-After header overrides it)."""
    max_wait: float = 60.0
    """Longest single wait between attempts, whatever Retry-After asks."""
    price_in: float = 0.0
    """Price per 1M prompt tokens, for the cost column (your currency)."""
    price_out: float = 0.0
    """Price per 1M completion tokens."""

    def __post_init__(self):
        if self.concurrency < 1 or self.retries < 0 or self.rpm < 0 or self.timeout <= 0:
            raise ValueError("teacher: concurrency >= 1, retries >= 0, rpm >= 0 and timeout > 0 are required")


@dataclass
class Reply:
    text: str
    finish_reason: str  # "stop" or "length" (a reply cut by max_tokens)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[dict] | None = (
        None  # `score`: each prompt's legacy logprobs object (tokens, top_logprobs, ...)
    )


class Unusable(ValueError):
    """A 200 whose body cannot be used (empty text, missing fields): retried like a 5xx."""


@dataclass
class Usage:
    """Thread-safe run totals: what the progress bar and the run summary show."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    price_in: float = 0.0
    price_out: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reply: Reply) -> None:
        with self._lock:
            self.requests += 1
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens

    def bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        return (self.prompt_tokens * self.price_in + self.completion_tokens * self.price_out) / 1e6

    def summary(self) -> dict:
        keys = ("requests", "retries", "failures", "prompt_tokens", "completion_tokens")
        return {k: getattr(self, k) for k in keys} | {"cost": round(self.cost, 6)}


class Pacer:
    """Spaces request starts 60/rpm seconds apart across threads. `clock` and `sleep` are injectable for tests."""

    def __init__(self, rpm: float, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.gap = 60.0 / rpm if rpm else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = None
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.gap:
            return
        with self._lock:  # reserve a slot, then sleep outside the lock so other threads queue behind it
            now = self.clock()
            slot = now if self._next is None else max(now, self._next)
            self._next = slot + self.gap
        if slot > now:
            self.sleep(slot - now)


class Teacher:
    """The interface methods use. `chat` and `complete` raise TeacherError when a request fails for good."""

    name: str
    usage: Usage

    def chat(self, messages: list[dict], **sampling) -> Reply:
        raise NotImplementedError

    def complete(self, prompt: str, **sampling) -> Reply:
        raise NotImplementedError

    def close(self) -> None:
        pass


class HTTPTeacher(Teacher):
    def __init__(self, cfg: TeacherConfig, clock=time.monotonic, sleep=time.sleep):
        self.cfg, self.sleep = cfg, sleep
        self.name = f"{cfg.model}@{cfg.url}"
        self.key = os.environ.get(cfg.api_key_env) or None
        self.usage = Usage(price_in=cfg.price_in, price_out=cfg.price_out)
        self.pacer = Pacer(cfg.rpm, clock, sleep)
        self.slots = threading.Semaphore(cfg.concurrency)
        self.base = cfg.url.rstrip("/").removesuffix("/chat/completions")
        if not self.base.endswith("/v1"):
            self.base += "/v1"

    def chat(self, messages: list[dict], **sampling) -> Reply:
        body = {"model": self.cfg.model, "messages": messages, **_clean(sampling)}
        return self._post("/chat/completions", body, partial(_text_reply, lambda c: c["message"]["content"]))

    def complete(self, prompt: str, **sampling) -> Reply:
        body = {"model": self.cfg.model, "prompt": prompt, **_clean(sampling)}
        return self._post("/completions", body, partial(_text_reply, lambda c: c["text"]))

    def score(self, prompts: list[str], top_k: int) -> Reply:
        """The prompts' own tokens with their log-probs and top_k alternatives, sampling nothing: OpenAI's legacy
        echo + logprobs with max_tokens 0, tokens as "token_id:N" (vLLM's return_tokens_as_token_ids; `pixiu
        serve` has both). Reply.logprobs: one {tokens, token_logprobs, top_logprobs, ...} per prompt."""
        body = {"model": self.cfg.model, "prompt": prompts, "echo": True, "logprobs": top_k, "max_tokens": 0,
                "temperature": 0, "return_tokens_as_token_ids": True}  # fmt: skip
        return self._post("/completions", body, partial(_scores, len(prompts)))

    def served(self) -> list[str]:
        """GET /models: the ids of the models the endpoint serves."""
        return self._post("/models", None, lambda data: [m["id"] for m in data["data"]])

    def model_card(self) -> dict:
        """GET /models/{model}: the served model's card (pixiu serve adds its vocab_size)."""
        return self._post(f"/models/{self.cfg.model}", None, _card)

    def _post(self, path: str, body: dict | None, read: Callable[[dict], T]) -> T:
        """`read` turns the JSON reply into the result or raises (KeyError, Unusable, ...): then it is retried."""
        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                self.usage.bump("retries")
            with self.slots:
                self.pacer.wait()
                try:
                    reply, last, wait = self._attempt(path, body, read)
                except TeacherError:  # a 4xx that retrying cannot fix: this request fails now
                    self.usage.bump("failures")
                    raise
            if reply is not None:
                if isinstance(reply, Reply):
                    self.usage.add(reply)
                return reply
            if attempt < self.cfg.retries:
                self.sleep(
                    min(self.cfg.max_wait, wait if wait is not None else self.cfg.backoff * 2**attempt)
                )
        self.usage.bump("failures")
        raise TeacherError(f"{last} ({self.cfg.retries + 1} attempts)")

    def _attempt(self, path: str, body: dict | None, read) -> tuple[object | None, str, float | None]:
        """One request (a GET when there is no body): (result, "", None) or (None, why, seconds the server asked
        us to wait)."""
        headers = {"Content-Type": "application/json"} | (
            {"Authorization": f"Bearer {self.key}"} if self.key else {}
        )
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data, headers)
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            return None, *self._http_error(e)
        except TimeoutError:
            return None, f"timed out after {self.cfg.timeout:g} s", None
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            return None, f"{type(e).__name__}: {getattr(e, 'reason', e)}", None
        try:
            return read(json.loads(raw)), "", None
        except Unusable as e:
            return None, str(e), None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None, f"an unreadable reply: {raw[:120]!r}", None

    def _http_error(self, e: urllib.error.HTTPError) -> tuple[str, float | None]:
        why = f"HTTP {e.code}: {e.read()[:200]!r}"
        if e.code in FATAL:
            raise TeacherFatal(f"teacher {self.base} (model {self.cfg.model!r}) answered {why}")
        if e.code in RETRIED or e.code >= 500:
            return why, retry_after(e.headers.get("Retry-After"))
        raise TeacherError(why)  # any other 4xx refuses this request only; retrying would get the same answer


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _text_reply(text_of: Callable[[dict], str], data: dict) -> Reply:
    choice = data["choices"][0]
    text = text_of(choice)
    if not isinstance(text, str) or not text.strip():
        raise Unusable("an empty reply")  # never passed on: an empty row would teach silence
    return Reply(text, choice.get("finish_reason") or "stop", *_tokens(data))


def _scores(n: int, data: dict) -> Reply:
    """An echo-only completion of n prompts: each choice's logprobs, every one present."""
    choices = sorted(data["choices"], key=lambda c: c["index"])
    logprobs = [c["logprobs"] for c in choices]
    if len(logprobs) != n or not all(lp and lp.get("top_logprobs") for lp in logprobs):
        raise Unusable(f"a reply without the prompts' log-probs ({len(logprobs)} choices for {n} prompts)")
    return Reply(choices[0]["text"], "length", *_tokens(data), logprobs=logprobs)


def _card(data: dict) -> dict:
    if not isinstance(data, dict) or not data.get("id"):
        raise Unusable(f"a model card without an id: {str(data)[:120]}")
    return data


def _tokens(data: dict) -> tuple[int, int]:
    usage = data.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _clean(sampling: dict) -> dict:
    return {k: v for k, v in sampling.items() if v is not None}


class EngineTeacher(Teacher):
    """A local pixiu model through `pixiu.engine`: the same calls, no server (the engine batches the threads)."""

    def __init__(self, model: str, max_batch: int = 16):
        from pixiu.engine import load_engine

        self.engine = load_engine(model, max_batch=max_batch)
        self.name = f"engine:{model}"
        self.usage = Usage()

    def chat(self, messages: list[dict], **sampling) -> Reply:
        from pixiu.chat.messages import Conversation

        return self._run(Conversation.from_openai(messages), sampling)

    def complete(self, prompt: str, **sampling) -> Reply:
        return self._run(prompt, sampling)

    def _run(self, prompt, sampling: dict) -> Reply:
        from pixiu.engine import EngineError, Sampling

        s = Sampling(max_new_tokens=sampling.get("max_tokens") or 256, temperature=sampling.get("temperature") or 0.0,
                     top_p=sampling.get("top_p") or 1.0, seed=sampling.get("seed"),
                     repetition_penalty=sampling.get("repetition_penalty") or 1.0)  # fmt: skip
        try:
            done = self.engine.generate([prompt], s, stop=sampling.get("stop") or ())[0]
        except (EngineError, ValueError) as e:
            self.usage.bump("failures")
            raise TeacherError(f"engine: {e}") from e
        if not done.text.strip() or done.finish_reason == "error":
            self.usage.bump("failures")
            raise TeacherError("engine: an empty reply")
        reply = Reply(done.text, done.finish_reason, done.prompt_tokens, done.completion_tokens)
        self.usage.add(reply)
        return reply

    def close(self) -> None:
        self.engine.close()


def make_teacher(cfg: TeacherConfig) -> Teacher:
    """`engine:MODEL` -> a local engine; anything else is an endpoint's base URL."""
    if cfg.url.startswith("engine:"):
        return EngineTeacher(cfg.url.removeprefix("engine:"), max_batch=cfg.concurrency)
    return HTTPTeacher(cfg)
