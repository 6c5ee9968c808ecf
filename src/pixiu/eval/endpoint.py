"""The judge's endpoint: a minimal, thread-safe OpenAI chat client that survives a flaky server.

Timeouts, connection errors, 408, 429 and 5xx are retried with exponential backoff (`JudgeUnavailable` once the
retries are spent); any other 4xx refuses just that request (`JudgeRejected`); 401 / 403 / 404 mean a wrong URL,
model or key and stop the run (`EvalError`). `first_token` reads a verdict from log-probabilities instead of
text, for judges too small to follow a reply format (pixiu serve, vLLM and OpenAI return `top_logprobs`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pixiu.eval.run import EvalError


class JudgeUnavailable(RuntimeError):
    """Timeouts, connection errors or 5xx outlasted the retries."""


class JudgeRejected(RuntimeError):
    """The endpoint refused this one request (400: too long for its context, say); other items may still pass."""


def chat_url(url: str) -> str:
    """The chat completions URL from a base URL: .../v1 -> .../v1/chat/completions; a bare host gets /v1 too."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


@dataclass
class JudgeClient:
    """A minimal OpenAI chat client on httpx (thread-safe: judge calls run in parallel)."""

    url: str  # base URL (http://127.0.0.1:8000/v1) or the full .../chat/completions URL
    model: str  # the judge's model id on that endpoint
    key: str | None = None  # sent as a Bearer token
    # Seconds per request. Generous: a CPU `pixiu serve` answering a batch of 16 long verdicts takes minutes, and a
    # retry after a timeout only adds work (the server finishes the abandoned request anyway).
    timeout: float = 600.0
    retries: int = 3  # extra attempts after a timeout, connection error, 408, 429 or 5xx
    backoff: float = 2.0  # seconds before the first retry, doubled for each next one
    max_tokens: int | None = (
        None  # the judge's reply budget; None: the endpoint's default (pixiu serve --max-tokens)
    )
    _http: object = field(default=None, repr=False)

    def __post_init__(self):
        import httpx

        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        self._http = httpx.Client(timeout=self.timeout, headers=headers, verify=_tls())

    def chat(self, messages: list[dict], temperature: float = 0.0, seed: int | None = None) -> str:
        """The judge's reply text. Raises JudgeUnavailable, JudgeRejected, or EvalError for a wrong URL/model/key."""
        body = {"model": self.model, "messages": messages, "temperature": temperature}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if seed is not None:
            body["seed"] = seed
        return self._post(body, lambda choice: choice["message"]["content"] or "")

    def first_token(self, messages: list[dict], top: int = 20) -> list[tuple[str, float]]:
        """(token text, log-probability) of the `top` likeliest first tokens of the judge's reply, best first
        (distinct tokens can share a text: pieces of a character all show as U+FFFD)."""
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": 1,
                "logprobs": True, "top_logprobs": top}  # fmt: skip
        first = lambda choice: choice["logprobs"]["content"][0]["top_logprobs"]  # noqa: E731
        return [(t["token"], t["logprob"]) for t in self._post(body, first)]

    def _post(self, body: dict, read: Callable[[dict], object]):
        """POST a chat request, retrying what may pass later; `read` takes what is wanted from choices[0]."""
        import httpx

        endpoint, last = chat_url(self.url), ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                r = self._http.post(endpoint, json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout:g} s"
                continue
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            status = r.status_code
            if status in (401, 403, 404):
                raise EvalError(f"judge {endpoint} (model {self.model!r}) answered HTTP {status}: {_why(r)}")
            if status in (408, 429) or status >= 500:
                last = f"HTTP {status}: {_why(r)}"
                continue
            if status >= 400:
                raise JudgeRejected(f"HTTP {status}: {_why(r)}")
            try:
                return read(r.json()["choices"][0])
            except (ValueError, KeyError, IndexError, TypeError):
                last = f"a response without what was asked for in choices[0]: {r.text[:200]!r}"
        raise JudgeUnavailable(f"judge {endpoint}: {last} ({self.retries + 1} attempts)")

    def models(self) -> list[str]:
        r = self._http.get(chat_url(self.url).removesuffix("/chat/completions") + "/models")
        r.raise_for_status()
        return [m["id"] for m in r.json()["data"]]


@functools.cache
def _tls():
    """One TLS context per process: building one (loading the CA bundle) costs ~0.3 s, paid per client otherwise."""
    import ssl

    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _why(r) -> str:
    try:
        return str(r.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return r.text[:300]
