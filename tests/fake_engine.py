"""A deterministic Engine for the server tests: no model, exact replies, the real request handle.

It implements `submit` as a backend does (pixiu.engine.base.Engine builds generate / stream on it): the reply
is "NAME says: TEXT" (TEXT: the last user turn, or the raw prompt), plus " #SEED" when sampling with a seed, one
word a token, emitted from a thread. It honours stop strings, max_new_tokens and the context window, and
records cancellations so tests can see a slot freed.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field

from pixiu.chat.messages import Conversation
from pixiu.engine import Delta, Engine, Request, Sampling


@dataclass
class FakeTemplate:
    stop: list[str] = field(default_factory=lambda: ["<|im_end|>"])

    def prompt_ids(self, conv: Conversation) -> list[int]:
        """Two tokens of role markers plus one a word per turn, and one for the generation prompt."""
        return [0] * (sum(2 + len(m.content.split()) for m in conv.messages) + 1)


class FakeEngine(Engine):
    """`delay`: seconds per token; `endless`: reply "la la la ..." until max_new_tokens or cancel;
    `fail_after`: emit that many tokens, then fail as a broken backend would."""

    def __init__(self, name: str = "fake", context_len: int = 64, delay: float = 0.0, endless: bool = False):
        self.name, self.context_len, self.template, self.tokenizer = name, context_len, FakeTemplate(), None
        self.delay, self.endless, self.fail_after = delay, endless, None
        self.requests: list[Request] = []
        self.cancelled: list[Request] = []  # requests whose generation stopped because of req.cancel()
        self.lock = threading.Lock()
        self.active = 0  # requests generating now: the "slots" in use

    def prompt_ids(self, prompt) -> list[int]:
        if isinstance(prompt, Conversation):
            return self.template.prompt_ids(prompt)
        return [0] * max(1, len(prompt.split()))

    def reply(self, prompt, sampling: Sampling) -> str:
        text = prompt.messages[-1].content if isinstance(prompt, Conversation) else prompt
        seed = f" #{sampling.seed}" if sampling.seed is not None and sampling.temperature > 0 else ""
        return f"{self.name} says: {text}{seed}"

    def submit(self, prompt, sampling: Sampling, stop=(), on_delta=None) -> Request:
        ids = self.prompt_ids(prompt)
        self.check_context(ids, sampling)
        req = Request(ids, sampling, self.stops(stop), on_delta)
        text = self.reply(prompt, sampling)
        cuts = [text.find(s) for s in req.stop if s in text]
        words = (
            itertools.repeat("la ")
            if self.endless
            else re.findall(r"\S+\s*", text[: min(cuts, default=None)])
        )
        self.requests.append(req)
        with self.lock:
            self.active += 1
        threading.Thread(target=self._run, args=(req, words), daemon=True).start()
        return req

    def _run(self, req: Request, words) -> None:
        try:
            for k, word in enumerate(words):
                if k == req.sampling.max_new_tokens:
                    return req.emit(Delta("", [], "length"))
                if self.fail_after is not None and k == self.fail_after:
                    return req.fail(RuntimeError("the fake backend broke"))
                time.sleep(self.delay)
                if req.cancelled:
                    self.cancelled.append(req)
                    return req.emit(Delta("", [], "cancelled"))
                req.completion_tokens += 1
                req.emit(Delta(word, [0]))
            req.emit(Delta("", [], "stop"))
        finally:
            with self.lock:
                self.active -= 1
