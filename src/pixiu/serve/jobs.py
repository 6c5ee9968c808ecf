"""The bridge from engine threads to asyncio: one HTTP request's replies as an async stream of pieces.

The engine calls `on_delta` from its own thread; `loop.call_soon_threadsafe` hands each delta to an
`asyncio.Queue`, so a waiting stream costs a coroutine, not a thread (64 concurrent streams need no pool).
Whatever ends a job early (client gone, moderation, an error) cancels its unfinished engine requests in a
`finally`, which frees their batch slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Piece:
    index: int  # the choice this text belongs to
    text: str
    finish_reason: str | None = (
        None  # "stop" | "length" | "content_filter" | "error" on a choice's last piece
    )
    logprobs: list = field(
        default_factory=list
    )  # engine TokenLogprobs of the tokens behind this piece, if asked


class Job:
    """The engine requests behind one API request, one per choice, feeding one queue of (index, Delta)."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.reqs: list = []
        self.open: set[int] = set()
        # cancel_all ran: a choice submitted after it (by a worker thread still rendering) stops at once
        self.closed = False

    def submit(self, engine, prompt, sampling, stop: list[str]) -> None:
        """Start one choice; raises the engine's ContextError before anything is queued."""
        i = len(self.reqs)
        self.reqs.append(engine.submit(prompt, sampling, stop=stop, on_delta=lambda d: self._put(i, d)))
        self.open.add(i)
        if self.closed:
            self.cancel(i)

    def _put(self, i: int, delta) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (i, delta))
        except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
            pass

    def cancel(self, i: int) -> None:
        if i in self.open:
            self.open.discard(i)
            self.reqs[i].cancel()

    def cancel_all(self) -> None:
        self.closed = True
        for i in list(self.open):
            self.cancel(i)

    async def pieces(self) -> AsyncIterator[Piece]:
        """Every delta of every choice in arrival order, until all choices finish.

        Closing the iterator early (the client disconnected) cancels the choices still running."""
        try:
            while self.open:
                i, d = await self.queue.get()
                if i not in self.open:  # a late delta of a choice cancelled here
                    continue
                if d.finish_reason:
                    self.open.discard(i)
                yield Piece(
                    i, d.text, d.finish_reason and FINISH.get(d.finish_reason, "stop"), d.logprobs or []
                )
        finally:
            self.cancel_all()

    def prompt_tokens(self, per_prompt: int) -> int:
        """Prompt tokens counted once per distinct prompt (the n choices of one prompt share it)."""
        return sum(r.prompt_tokens for r in self.reqs[::per_prompt])

    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.reqs)

    def error(self, i: int) -> str:
        return f"generation failed: {getattr(self.reqs[i], 'error', None) or 'unknown engine error'}"


# engine finish reasons -> OpenAI's; "cancelled" only reaches a client if the engine shuts down under it;
# "error" is ours: the route turns it into an error response or event
FINISH = {"stop": "stop", "length": "length", "cancelled": "stop", "error": "error"}


async def moderate(
    job: Job, pieces: AsyncIterator[Piece], moderation, window: int | None, context: list[dict] | None
) -> AsyncIterator[Piece]:
    """Output moderation: each choice's text is held back until `moderation.check` has passed it.

    Checks run on all of a choice's text so far, every `window` characters (None: only when the choice ends,
    for non-streamed replies). A flagged choice is cancelled and its held text replaced by the refusal with
    finish_reason "content_filter"; text already released had passed the check. `context` is the
    conversation the replies answer (OpenAI messages), for a moderator that judges a reply in context."""
    held: dict[int, Piece] = {}
    passed: dict[int, str] = {}
    try:
        async for p in pieces:
            if p.finish_reason == "error":  # nothing to judge: the route reports the failure
                yield p
                continue
            h = held.setdefault(p.index, Piece(p.index, ""))
            h.text, h.logprobs, h.finish_reason = h.text + p.text, h.logprobs + p.logprobs, p.finish_reason
            if not p.finish_reason and (window is None or len(h.text) < window):
                continue
            text = passed.get(p.index, "") + h.text
            # a classifier check may take a while: off the event loop
            verdict = await asyncio.to_thread(moderation.check, text, context)
            if verdict.flagged:
                job.cancel(p.index)
                yield Piece(p.index, moderation.message, "content_filter")
            else:
                yield h
                passed[p.index] = text
            del held[p.index]
    finally:  # closing this generator does not close `pieces` at once, so free the slots here
        job.cancel_all()


def pieces(
    job: Job, moderation, window: int | None, context: list[dict] | None = None
) -> AsyncIterator[Piece]:
    if moderation is None:
        return job.pieces()
    return moderate(job, job.pieces(), moderation, window, context)
