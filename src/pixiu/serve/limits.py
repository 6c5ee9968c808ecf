"""Request limits (`ServeConfig.max_*`): a request over one is answered at once with a 400 or 413 that names the
limit in `code`, before the work it would cause.

The body size is checked before the JSON is parsed (Content-Length, and the bytes of a streamed body as they
arrive), message count and stop strings right after validation, prompt tokens after the one render the request
gets. Without them a single request of 10,000 messages kept the event loop busy for minutes (issue 14).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from pixiu.config import ServeConfig
from pixiu.serve.protocol import APIError, ChatCompletionRequest, ErrorBody, ErrorResponse, SamplingParams


def check_request(body: SamplingParams, cfg: ServeConfig) -> None:
    """Raise a 400 naming the limit the request exceeds: messages, stop strings, stop string length."""
    if isinstance(body, ChatCompletionRequest) and len(body.messages) > cfg.max_messages:
        raise over(400, f"{len(body.messages)} messages", "messages", "max_messages", cfg.max_messages)
    stops = body.stops()
    if len(stops) > cfg.max_stop:
        raise over(400, f"{len(stops)} stop strings", "stop", "max_stop", cfg.max_stop)
    longest = max(map(len, stops), default=0)
    if longest > cfg.max_stop_length:
        what = f"a stop string of {longest} characters"
        raise over(400, what, "stop", "max_stop_length", cfg.max_stop_length)


def check_prompt(tokens: int, cfg: ServeConfig, param: str) -> None:
    if cfg.max_prompt_tokens and tokens > cfg.max_prompt_tokens:
        raise over(400, f"a prompt of {tokens} tokens", param, "max_prompt_tokens", cfg.max_prompt_tokens)


def over(status: int, what: str, param: str | None, limit: str, value: int) -> APIError:
    return APIError(status, f"{what} is over this server's limit {limit}={value}", param, limit)


class BodyLimit:
    """ASGI middleware: an HTTP request body over `max_bytes` gets a 413 before anything parses it.

    A declared Content-Length over the limit is refused without reading; a body that arrives in chunks is
    read up to the limit (so at most `max_bytes` are ever held) and then refused. The app sees the body it
    would have seen, replayed in one piece."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"").strip()
        if declared and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self.refuse(scope, receive, send, int(declared) if declared.isdigit() else None)
        chunks, size, message = [], 0, {"type": "http.request", "body": b"", "more_body": True}
        while message.get("more_body") and message["type"] == "http.request":
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self.refuse(scope, receive, send, None)
            chunks.append(chunk)
        if message["type"] != "http.request":  # the client left while sending: let the app see that
            return await self.app(scope, replay(message, receive), send)
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await self.app(scope, replay(whole, receive), send)

    async def refuse(self, scope, receive, send, declared: int | None) -> None:
        what = f"a body of {declared} bytes" if declared is not None else "the request body"
        err = over(413, what, None, "max_body_bytes", self.max_bytes)
        body = ErrorResponse(
            error=ErrorBody(message=err.message, type="invalid_request_error", code=err.code)
        )
        # Connection: close, since the rest of an unread body would otherwise be taken for the next request
        res = JSONResponse(body.model_dump(), status_code=413, headers={"Connection": "close"})
        await res(scope, receive, send)


def replay(first: dict, receive):
    """A `receive` that returns `first` once, then defers to the real one (e.g. to see a disconnect)."""
    pending = [first]

    async def receiving():
        return pending.pop() if pending else await receive()

    return receiving
