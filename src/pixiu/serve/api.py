"""The OpenAI-compatible HTTP API (FastAPI), with the web UI on the same app; `pixiu serve` runs it (launch.py).

Routes are thin: validate with `protocol`, check the request against `ServeConfig`'s limits (limits.py), pick
the engine by the request's `model`, submit one engine request per choice (rendering in a worker thread, so
one long prompt never holds up the event loop), and shape what comes back (jobs.py bridges the engine thread
to asyncio). Every error, ours or the framework's, leaves in OpenAI's shape {"error": {message, type, param,
code}}, and the client's mistakes are 4xx, never 500. With an API key set, every route needs it (auth.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import replace
from functools import partial

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from pixiu.chat.messages import Conversation, Message
from pixiu.config import ServeConfig
from pixiu.engine import ContextError, EngineError, Sampling
from pixiu.engine.text import token_bytes
from pixiu.rag import Index, cite_prompt
from pixiu.serve import protocol as p
from pixiu.serve import score
from pixiu.serve.auth import KeyCheck, redact_logs, require_key
from pixiu.serve.jobs import Job, Piece, pieces
from pixiu.serve.limits import BodyLimit, check_prompt, check_request
from pixiu.serve.protocol import APIError
from pixiu.serve.tools import parse_calls

__all__ = ["APIError", "create_app", "require_key"]

ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
ERROR_CODES = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed"}
RESPONSES = {s: {"model": p.ErrorResponse} for s in (400, 401, 404, 413)}
STREAMED = {200: {"content": {"text/event-stream": {}}}}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = p.ErrorResponse(error=p.ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    """Map every failure onto the OpenAI error shape; a client's mistake is a 4xx with the reason."""

    def validation(_, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        where = [".".join(str(x) for x in e.get("loc", ())[1:]) for e in errs]  # drop the leading "body"
        message = "; ".join(
            f"{w}: {e.get('msg', '')}" if w else e.get("msg", "") for w, e in zip(where, errs)
        )
        return error(400, message or "invalid request", param=where[0] if where and where[0] else None)

    def http(_, exc: HTTPException) -> JSONResponse:
        res = error(exc.status_code, str(exc.detail), code=ERROR_CODES.get(exc.status_code))
        res.headers.update(exc.headers or {})
        return res

    handlers = {
        APIError: lambda _, e: error(e.status, e.message, e.param, e.code),
        RequestValidationError: validation,
        HTTPException: http,
        EngineError: lambda _, e: error(500, f"generation failed: {e}", code="engine_error"),
        Exception: lambda _, e: error(500, f"internal error: {type(e).__name__}"),
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)


def create_app(
    engines: dict, api_key: str | None = None, store=None, moderation=None, config: ServeConfig | None = None
) -> FastAPI:
    """The app serving `engines` (served name -> Engine) under `config`'s limits; its max_tokens caps a reply
    whose request sets no limit.

    The web UI (pixiu.serve.ui) is mounted when a feedback `store` is given."""
    config = config or ServeConfig()
    app = FastAPI(title="pixiu", summary="OpenAI-compatible API over pixiu engines")
    app.state.api_key = api_key or None
    add_error_handlers(app)
    redact_logs()
    routes = Routes(engines, moderation, config)
    app.add_api_route("/health", routes.health, methods=["GET"])
    app.add_api_route("/v1/models", routes.models, methods=["GET"], response_model=p.ModelList)
    app.add_api_route(
        "/v1/models/{model:path}",
        routes.model,
        methods=["GET"],
        response_model=p.ModelCard,
        responses=RESPONSES,
    )
    for path, fn, shape in [
        ("/v1/chat/completions", routes.chat, p.ChatCompletion),
        ("/v1/completions", routes.complete, p.Completion),
    ]:
        app.add_api_route(
            path, fn, methods=["POST"], response_model=shape, responses={**RESPONSES, **STREAMED}
        )
    if store is not None and importlib.util.find_spec("pixiu.serve.ui"):
        from pixiu.serve import ui

        app.include_router(ui.router(engines, store, moderation, require_key=require_key))
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if app.state.api_key:  # added last, so it runs first: no key, no body read
        app.add_middleware(KeyCheck, key=app.state.api_key, open_paths=("/ui",))
    return app


class Routes:
    """The OpenAI routes over `engines`; each submits one engine request per choice and shapes the replies."""

    def __init__(self, engines: dict, moderation, config: ServeConfig):
        if not engines:
            raise ValueError("serve at least one model")
        self.engines, self.moderation, self.config = engines, moderation, config
        self.cards = {
            name: p.ModelCard(id=name, vocab_size=getattr(e, "vocab", None)) for name, e in engines.items()
        }
        self.index = Index.load(config.rag) if config.rag else None  # retrieval for chat (--rag)

    async def health(self) -> dict:
        return {"status": "ok", "models": list(self.engines)}

    async def models(self) -> p.ModelList:
        return p.ModelList(data=list(self.cards.values()))

    async def model(self, model: str) -> p.ModelCard:
        self.engine(model)
        return self.cards[model]

    def engine(self, name: str):
        if name not in self.engines:
            served = sorted(self.engines)
            raise APIError(
                404, f"the model {name!r} does not exist; served: {served}", "model", "model_not_found"
            )
        return self.engines[name]

    async def chat(self, body: p.ChatCompletionRequest, request: Request):
        engine = self.engine(body.model)
        check_request(body, self.config)
        conv = body.conversation()
        await self.check_input([m.content for m in conv.messages if m.role == "user"], "messages")
        conv, sources = await self.retrieve(conv)
        job = await self.start(engine, [conv], body, "messages")
        out = Shape(job, body, engine.tokenizer, context=conv.to_openai())
        if body.stream:
            roles = [
                p.ChunkChoice(index=i, delta=p.DeltaMessage(role="assistant", content=""))
                for i in range(body.n)
            ]
            return sse(self.stream(out, out.chat_events, [out.chunk(roles, sources=sources)]))
        choices = []
        for i, c in enumerate(await self.collect(out, request)):
            msg, finish = message(c.text, c.finish_reason, body.tool_names())
            choices.append(
                p.ChatChoice(index=i, message=msg, finish_reason=finish, logprobs=out.chat_logprobs(c))
            )
        return p.ChatCompletion(model=body.model, choices=choices, usage=out.usage(), sources=sources)

    async def retrieve(self, conv: Conversation) -> tuple[Conversation, list[p.Source] | None]:
        """With --rag: the last user turn becomes the question with the top passages, numbered for citation."""
        last = conv.messages[-1] if conv.messages else None
        if self.index is None or last is None or last.role != "user":
            return conv, None
        hits = await asyncio.to_thread(self.index.search, last.content, self.config.rag_k)
        sources = [
            p.Source(index=h.rank, title=h.chunk.title, source=h.chunk.source, text=h.chunk.text)
            for h in hits
        ]
        cited = Conversation(
            [*conv.messages[:-1], Message("user", cite_prompt(last.content, hits))], conv.tools
        )
        return cited, sources

    async def complete(self, body: p.CompletionRequest, request: Request):
        engine = self.engine(body.model)
        check_request(body, self.config)
        prompts = body.prompts()
        await self.check_input(prompts, "prompt")
        if body.scores_prompt():
            return await score.echo(engine, body, self.config)  # max_tokens 0: nothing sampled
        job = await self.start(engine, prompts, body, "prompt")
        out = Shape(job, body, engine.tokenizer, context=None)
        echo = [prompt for prompt in prompts for _ in range(body.n)] if body.echo else []
        if body.stream:
            first = [out.chunk([p.CompletionChoice(index=i, text=e)]) for i, e in enumerate(echo)]
            return sse(self.stream(out, out.text_events, first))
        choices = [
            p.CompletionChoice(index=i, text=(echo[i] if echo else "") + c.text, finish_reason=c.finish_reason,
                               logprobs=out.text_logprobs(c))
            for i, c in enumerate(await self.collect(out, request))
        ]  # fmt: skip
        return p.Completion(model=body.model, choices=choices, usage=out.usage())

    async def start(self, engine, prompts: list, body: p.SamplingParams, param: str) -> Job:
        """Submit n choices per prompt (choice index = prompt index * n + j); seed + j makes them differ.

        Rendering and tokenizing take time linear in the prompt, which can be megabytes: they run in a worker
        thread, so the event loop keeps answering other clients. What submission rejects is the client's
        input: a prompt beyond the context window or a limit, a conversation the chat template cannot render
        (TemplateError is a ValueError; Jinja's own is not)."""
        job = Job()
        try:
            await asyncio.to_thread(self.submit, job, engine, prompts, body, param)
        except ContextError as e:
            job.cancel_all()  # choices already submitted must not keep their slots
            raise APIError(400, str(e), param, "context_length_exceeded") from e
        except (ValueError, jinja2.TemplateError) as e:
            job.cancel_all()
            raise APIError(400, f"{param}: {e}", param) from e
        except BaseException:
            job.cancel_all()
            raise
        return job

    def submit(self, job: Job, engine, prompts: list, body: p.SamplingParams, param: str) -> None:
        """In a worker thread. Each prompt is rendered once: the engine's template remembers the render this
        length check made, for the n submissions after it."""
        for prompt in prompts:
            tokens = len(engine.prompt_ids(prompt))
            check_prompt(tokens, self.config, param)
            limit = body.limit() or max(1, min(self.config.max_tokens, engine.context_len - tokens))
            base = sampling(body, limit)
            for j in range(body.n):
                seed = None if base.seed is None else (base.seed + j) % 2**63
                job.submit(engine, prompt, replace(base, seed=seed), body.stops())

    async def check_input(self, texts: list[str], param: str) -> None:
        if self.moderation is None:
            return
        verdict = await asyncio.to_thread(self.moderation.check, "\n".join(texts))
        if verdict.flagged:
            raise APIError(
                400, f"the input was flagged by moderation: {verdict.reason}", param, "content_filter"
            )

    async def collect(self, out: Shape, request: Request) -> list[Piece]:
        """A whole reply per choice (one Piece each), for a non-streamed response. A client that hangs up while
        it waits frees the batch slots at once (uvicorn does not cancel a handler whose client left)."""
        whole = [Piece(i, "", "stop") for i in range(len(out.job.reqs))]
        watcher = asyncio.create_task(cancel_on_disconnect(request, out.job))
        try:
            async for piece in pieces(out.job, self.moderation, None, out.context):
                if piece.finish_reason == "error":
                    raise APIError(500, out.job.error(piece.index), code="engine_error")
                c = whole[piece.index]
                c.text, c.logprobs = c.text + piece.text, c.logprobs + piece.logprobs
                c.finish_reason = piece.finish_reason or c.finish_reason
        finally:
            watcher.cancel()
        return whole

    async def stream(self, out: Shape, events, first: list[str]):
        """SSE events: `first`, then one per piece, a usage event when asked, then [DONE].

        An engine failure mid-stream becomes an error event (the status line has already gone out)."""
        try:
            for event in first:
                yield event
            async for piece in pieces(out.job, self.moderation, WINDOW, out.context):
                if piece.finish_reason == "error":
                    body = p.ErrorResponse(
                        error=p.ErrorBody(message=out.job.error(piece.index), type="server_error")
                    )
                    yield f"data: {body.model_dump_json()}\n\n"
                    break
                for event in events(piece):
                    yield event
            else:
                if out.body.include_usage():
                    yield out.chunk([], out.usage())
            yield "data: [DONE]\n\n"
        finally:  # the client disconnected, or we are done: either way no slot stays taken
            out.job.cancel_all()


WINDOW = 64  # streamed characters per output-moderation check (only when moderation is on)
DISCONNECT_POLL = 0.25  # seconds between checks that the client of a non-streamed request is still there


async def cancel_on_disconnect(request: Request, job: Job) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL)
    job.cancel_all()


class Shape:
    """Builds one request's chunks (same id and `created` throughout) and its usage."""

    def __init__(self, job: Job, body: p.SamplingParams, tokenizer, context: list[dict] | None):
        self.job, self.body, self.tokenizer, self.context = job, body, tokenizer, context
        self.id = p.new_id("chatcmpl" if isinstance(body, p.ChatCompletionRequest) else "cmpl")
        self.created = p.now()
        self.offsets: dict[int, int] = {}  # characters of each choice streamed so far (text_offset)
        self.held: dict[int, Piece] = {}  # with tools offered: each choice's text until it ends

    def token_text(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def chat_logprobs(self, piece: Piece) -> p.ChoiceLogprobs | None:
        if not self.body.logprobs:
            return None
        return p.ChoiceLogprobs.of(piece.logprobs, self.token_text, partial(token_bytes, self.tokenizer))

    def text_logprobs(self, piece: Piece) -> p.TextLogprobs | None:
        if self.body.logprobs is None:
            return None
        offset = self.offsets.get(piece.index, 0)
        self.offsets[piece.index] = offset + len(piece.text)
        raw, as_ids = partial(token_bytes, self.tokenizer), self.body.return_tokens_as_token_ids
        return p.TextLogprobs.of(piece.logprobs, raw, offset, as_ids)

    def chunk(self, choices: list, usage: p.Usage | None = None, sources: list | None = None) -> str:
        kind = p.ChatCompletionChunk if isinstance(self.body, p.ChatCompletionRequest) else p.Completion
        extra = {"sources": sources} if sources else {}
        obj = kind(
            id=self.id, created=self.created, model=self.body.model, choices=choices, usage=usage, **extra
        )
        return f"data: {obj.model_dump_json()}\n\n"

    def chat_events(self, piece: Piece) -> list[str]:
        """Text and the finish reason go in separate chunks, as OpenAI sends them. When tools are offered a
        choice's text is held back until it ends: then it goes out as one tool_calls delta or as text."""
        names = self.body.tool_names()
        if names:
            held = self.held.setdefault(piece.index, Piece(piece.index, "", None))
            held.text, held.logprobs = held.text + piece.text, held.logprobs + piece.logprobs
            if not piece.finish_reason:
                return []
            msg, finish = message(held.text, piece.finish_reason, names)
            if msg.tool_calls:
                calls = [{"index": k, **c} for k, c in enumerate(msg.tool_calls)]
                delta = p.ChunkChoice(index=piece.index, delta=p.DeltaMessage(tool_calls=calls))
                done = p.ChunkChoice(index=piece.index, delta=p.DeltaMessage(), finish_reason=finish)
                return [self.chunk([delta]), self.chunk([done])]
            piece = Piece(piece.index, held.text, piece.finish_reason, held.logprobs)
        out = []
        if piece.text or piece.logprobs:
            delta = p.DeltaMessage(content=piece.text)
            out.append(
                self.chunk(
                    [p.ChunkChoice(index=piece.index, delta=delta, logprobs=self.chat_logprobs(piece))]
                )
            )
        if piece.finish_reason:
            done = p.ChunkChoice(index=piece.index, delta=p.DeltaMessage(), finish_reason=piece.finish_reason)
            out.append(self.chunk([done]))
        return out

    def text_events(self, piece: Piece) -> list[str]:
        if not (piece.text or piece.finish_reason or piece.logprobs):
            return []
        choice = p.CompletionChoice(
            index=piece.index,
            text=piece.text,
            finish_reason=piece.finish_reason,
            logprobs=self.text_logprobs(piece),
        )
        return [self.chunk([choice])]

    def usage(self) -> p.Usage:
        return p.Usage.of(self.job.prompt_tokens(per_prompt=self.body.n), self.job.completion_tokens())


def sampling(body: p.SamplingParams, max_new_tokens: int) -> Sampling:
    return Sampling(
        max_new_tokens=max_new_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        repetition_penalty=body.repetition_penalty,
        seed=body.seed,
        logprobs=body.logprob_count(),
    )


def message(text: str, finish: str, tools: set[str] = frozenset()) -> tuple[p.AssistantMessage, str]:
    """The reply as OpenAI's assistant message and its finish reason: a call of an offered tool becomes
    tool_calls with finish_reason 'tool_calls' (a reply cut by the token limit stays text)."""
    calls = parse_calls(text, tools) if tools and finish == "stop" else None
    if calls:
        return p.AssistantMessage(content=None, tool_calls=calls), "tool_calls"
    return p.AssistantMessage(content=text, refusal=text if finish == "content_filter" else None), finish


def sse(events) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
