"""The Engine interface every backend implements, and the request handle it returns.

A backend only implements `submit`: it tokenizes the prompt, checks the context window, and later calls
`Request.emit(Delta)` from its own thread. `generate` (n replies per prompt, seeds seed+i) and `stream` (text
pieces) are built on `submit` here, once for all backends. The server, the terminal chat and evaluation code
only see this interface.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from pixiu.chat.messages import Conversation

log = logging.getLogger(__name__)
FINISH_REASONS = ("stop", "length", "cancelled", "error")
Prompt = Conversation | str  # a conversation (rendered with the engine's template) or raw completion text


@dataclass
class Sampling:
    """How to pick each next token: the settings every generation path (server, rollouts, evaluation) takes."""

    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus: sample from the smallest set of tokens whose probability reaches top_p
    top_k: int = 0  # 0 = no limit; more than the vocabulary is no limit either
    repetition_penalty: float = 1.0  # 1 = none; >1 discourages tokens already in prompt or reply (CTRL)
    seed: int | None = None  # the same seed, prompt and settings give the same reply
    logprobs: int | None = None  # None: off; k: each sampled token's log-probability and the k most likely

    def __post_init__(self):
        checks = {
            "max_new_tokens must be >= 1": self.max_new_tokens >= 1,
            "temperature must be >= 0": self.temperature >= 0,
            "top_p must be in (0, 1]": 0 < self.top_p <= 1,
            "top_k must be >= 0": self.top_k >= 0,
            "repetition_penalty must be > 0": self.repetition_penalty > 0,
            "logprobs must be None or in 0..20": self.logprobs is None or 0 <= self.logprobs <= 20,
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"bad sampling settings: {'; '.join(bad)}")

    @property
    def plain(self) -> bool:
        """True when a sampled token comes from softmax(logits / temperature) itself: no top-k, top-p or
        penalty reshapes it (so its log-probability is the policy's, as PPO's ratio needs)."""
        return self.temperature > 0 and self.top_p >= 1 and self.top_k == 0 and self.repetition_penalty == 1


class ContextError(ValueError):
    """The prompt plus max_new_tokens does not fit the model's context window."""


class EngineError(RuntimeError):
    """Generation failed inside the engine (the cause is chained)."""


@dataclass
class TokenLogprob:
    """A sampled token's log-probability under the model (raw logits: before penalty, temperature, top-k/p)
    and the `Sampling.logprobs` most likely tokens at that step, best first."""

    token: int
    logprob: float
    top: list[tuple[int, float]]  # (token id, log-probability)


@dataclass
class Delta:
    text: str  # new text, never half a UTF-8 character, never part of a stop string
    token_ids: list[int] = field(default_factory=list)  # tokens sampled since the previous Delta
    finish_reason: str | None = None  # set on the last Delta only: one of FINISH_REASONS
    logprobs: list[TokenLogprob] | None = None  # one per token id, when the request asked for them


@dataclass
class Completion:
    text: str  # the whole reply, stop string excluded
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int  # sampled tokens, a stop token included
    logprobs: list[TokenLogprob] | None = None  # one per sampled token, when asked for


class Request:
    """A submitted prompt: iterate it for Deltas (blocking), or get them through `on_delta` on the engine thread."""

    def __init__(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        stop: list[str],
        on_delta: Callable[[Delta], None] | None = None,
        track_logps: bool = False,
    ):
        self.prompt_ids = prompt_ids
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0  # kept current by the backend, token by token
        self.sampling = sampling
        self.stop = stop  # the template's stop strings plus the caller's
        # when tracked: each sampled token's log-probability under the distribution it was drawn from (see
        # sampler.draw), appended by the sampler; the rollouts' log π_old
        self.sampled_logps: list[float] | None = [] if track_logps else None
        self.finish_reason: str | None = None
        self.error: BaseException | None = None
        self._on_delta = on_delta
        self._deltas: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._done = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop generating; the engine frees the batch slot at its next step and sends a 'cancelled' Delta."""
        self._cancelled.set()

    def emit(self, delta: Delta) -> None:
        """Called by the backend's thread. A failing `on_delta` (a client gone) cancels the request. `on_delta`
        runs first, so a reader who has iterated to the end knows every callback has run."""
        if self._done.is_set():
            return
        if delta.finish_reason:
            self.finish_reason = delta.finish_reason
        if self._on_delta is not None:
            try:
                self._on_delta(delta)
            except Exception:
                log.exception("on_delta failed; cancelling the request")
                self.cancel()
        self._deltas.put(delta)
        if delta.finish_reason:
            self._done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.emit(Delta("", [], "error"))

    def __iter__(self) -> Iterator[Delta]:
        while True:
            delta = self._deltas.get()
            yield delta
            if delta.finish_reason:
                if self.error is not None:
                    raise EngineError(str(self.error)) from self.error
                return

    def completion(self) -> Completion:
        """Wait for the end and return the whole reply."""
        deltas = list(self)
        text = "".join(d.text for d in deltas)
        logprobs = (
            [t for d in deltas for t in d.logprobs or []] if self.sampling.logprobs is not None else None
        )
        return Completion(
            text, self.finish_reason or "stop", self.prompt_tokens, self.completion_tokens, logprobs
        )


class Engine:
    """Generation over one model. Subclasses set the attributes and implement `submit` and `close`."""

    name: str  # the served model id
    context_len: int  # prompt + completion tokens the model can attend over
    template: object  # pixiu.chat.templates.Template
    tokenizer: object

    def submit(
        self,
        prompt: Prompt,
        sampling: Sampling,
        stop: list[str] | tuple[str, ...] = (),
        on_delta: Callable[[Delta], None] | None = None,
    ) -> Request:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def enqueue(self, prompt: Prompt, sampling: Sampling, stop, on_delta) -> Request:
        """`submit` for an engine whose worker thread takes requests from `_waiting` (a deque) under `_wake` (a
        Condition) until `_closed`: the request, checked against the context window, joins the line."""
        ids = self.prompt_ids(prompt)
        self.check_context(ids, sampling)
        request = Request(ids, sampling, self.stops(stop), on_delta)
        with self._wake:
            if self._closed:
                raise EngineError(f"engine {self.name!r} is closed")
            self._waiting.append(request)
            self._wake.notify()
        return request

    def generate(
        self, prompts: list[Prompt], sampling: Sampling, n: int = 1, stop: list[str] | tuple[str, ...] = ()
    ) -> list[Completion]:
        """n completions per prompt, prompt-major; reply i of a prompt uses seed + i so replies differ."""
        requests: list[Request] = []
        try:
            for prompt in prompts:
                for i in range(n):
                    seed = None if sampling.seed is None else sampling.seed + i
                    requests.append(self.submit(prompt, replace(sampling, seed=seed), stop))
        except BaseException:
            for r in requests:
                r.cancel()
            raise
        return [r.completion() for r in requests]

    def stream(
        self, prompt: Prompt, sampling: Sampling, stop: list[str] | tuple[str, ...] = ()
    ) -> Iterator[str]:
        """Text pieces as they come; closing the iterator early cancels the request."""
        request = self.submit(prompt, sampling, stop)
        try:
            for delta in request:
                if delta.text:
                    yield delta.text
        finally:
            request.cancel()

    # ---------------------------------------------------------------- helpers for backends

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, Conversation):
            return self.template.prompt_ids(prompt)
        if not isinstance(prompt, str):
            raise TypeError(f"a prompt is a Conversation or a str, not {type(prompt).__name__}")
        ids = list(self.tokenizer(prompt)["input_ids"])
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if not ids and bos is not None:
            ids = [bos]  # an empty completion prompt starts from BOS
        if not ids:
            raise ValueError("the prompt is empty")
        return ids

    def check_context(self, prompt_ids: list[int], sampling: Sampling) -> None:
        total = len(prompt_ids) + sampling.max_new_tokens
        if total > self.context_len:
            raise ContextError(
                f"the prompt has {len(prompt_ids)} tokens and max_new_tokens is {sampling.max_new_tokens}: "
                f"{total} tokens exceed the context window of {self.context_len} tokens of model {self.name!r}"
            )

    def stops(self, stop: list[str] | tuple[str, ...]) -> list[str]:
        """The template's stop strings plus the caller's, without duplicates or empty strings."""
        return [s for s in dict.fromkeys([*self.template.stop, *stop]) if s]

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
