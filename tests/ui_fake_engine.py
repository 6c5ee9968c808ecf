"""A deterministic stand-in Engine for the web UI tests: no model, exact replies, the real request handle.

It implements only `submit`, as a backend does (pixiu.engine.base.Engine builds generate/stream on it), and
emits its reply word by word from a thread, so the OpenAI routes can stream from it like from a real engine.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from pixiu.engine.base import Delta, Engine, Request

XSS = 'Hi <script>window.__pwned=1</script> and <img src=x onerror="window.__pwned=1"> **bold** `<b>code</b>`'


@dataclass
class FakeTemplate:
    stop: list[str] = field(default_factory=lambda: ["<|im_end|>"])

    def prompt_ids(self, conv) -> list[int]:
        """One token per word of every turn, plus four per turn for the role markers."""
        return [0] * sum(4 + len(m.content.split()) for m in conv.messages)


def echo(name: str, text: str, seed: int | None) -> str:
    return f"{name} answers {text} #{seed or 0}"  # the whole seed: distinct seeds, distinct replies


class FakeEngine(Engine):
    """reply(name, last user text, seed) -> the reply text; `delay` seconds between streamed words."""

    def __init__(self, name: str = "fake", reply=echo, context_len: int = 2048, delay: float = 0.0):
        self.name, self.context_len, self.template, self.tokenizer = name, context_len, FakeTemplate(), None
        self.reply, self.delay = reply, delay
        self.submitted: list = []  # (prompt, sampling) per request, for asserting what the server asked for

    def submit(self, prompt, sampling, stop=(), on_delta=None) -> Request:
        if not hasattr(prompt, "messages"):
            raise TypeError("the fake engine only takes conversations")
        ids = self.template.prompt_ids(prompt)
        self.check_context(ids, sampling)
        self.submitted.append((prompt, sampling))
        req = Request(ids, sampling, self.stops(stop), on_delta)
        words = re.findall(r"\S+\s*", self.reply(self.name, prompt.messages[-1].content, sampling.seed))
        threading.Thread(target=self._run, args=(req, words[: sampling.max_new_tokens]), daemon=True).start()
        return req

    def _run(self, req: Request, words: list[str]) -> None:
        for word in words:
            if req.cancelled:
                return req.emit(Delta("", [], "cancelled"))
            time.sleep(self.delay)
            req.completion_tokens += 1
            req.emit(Delta(word, [0]))
        req.emit(Delta("", [], "stop"))
