"""The OpenAI wire format: request and response models for /v1/models, /v1/chat/completions, /v1/completions.

The only place the OpenAI schema lives. Requests validate here (bad values become 400s with the field named);
responses are built here so every route returns the exact OpenAI shape: ids, `created`, `object`, choices
and usage. Unknown request fields are ignored, as OpenAI-compatible servers commonly do, so clients that send
newer fields keep working; fields we cannot honour (JSON mode, echoed prompt log-probabilities with sampling) are
refused, not ignored. Tools are checked here and their calls parsed from replies in tools.py.
Reference: https://platform.openai.com/docs/api-reference/chat
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pixiu.chat.messages import Conversation, Message
from pixiu.serve.tools import check_tools, offered, tool_call_json

MAX_N = 16  # replies per prompt; OpenAI allows 128, but on a CPU server one request should not queue hundreds
MAX_CHOICES = 64  # prompts x n for one /v1/completions request
MAX_TOP = 20  # top log-probs per position: the engine's limit (Sampling.logprobs)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


# ---------------------------------------------------------------- errors


class ErrorBody(BaseModel):
    message: str
    type: str  # invalid_request_error | authentication_error | not_found_error | server_error
    param: str | None = None
    code: str | None = None  # e.g. context_length_exceeded, model_not_found, invalid_api_key


class ErrorResponse(BaseModel):
    error: ErrorBody


class APIError(Exception):
    """A failure the server answers in the shape above: HTTP `status`, and the body's message, param, code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


# ---------------------------------------------------------------- requests


SURROGATE = re.compile("[\ud800-\udfff]")
# the request fields that carry text, and those that take an integer
TEXT_FIELDS = ("model", "content", "name", "stop", "user", "prompt", "suffix")
INT_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_k", "top_logprobs", "logprobs")


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Named fields, not "*": validating a 2 MB request of 70,000 tiny messages (on the event loop) took
    # 0.32 s CPU with Python validators on every field, 0.18 s with them on these, 0.12 s with none.
    @field_validator(*TEXT_FIELDS, check_fields=False)
    @classmethod
    def _unicode(cls, v):
        """JSON may spell a lone UTF-16 surrogate ("\\ud800"); no tokenizer or UTF-8 encoder takes one, so
        it is the client's mistake (a 400 naming the field), not a failure deep in the engine."""
        for s in [v] if isinstance(v, str) else v if isinstance(v, list) else []:
            s = s.text if isinstance(s, TextPart) else s
            if isinstance(s, str) and SURROGATE.search(s):
                raise ValueError("the text holds a lone UTF-16 surrogate, which is not valid Unicode")
        return v

    @field_validator(*INT_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _no_bool_for_int(cls, v, info):
        """pydantic reads JSON true as 1 for an int field: `"max_tokens": true` is a client bug, so a 400."""
        kinds = getattr(cls.model_fields[info.field_name].annotation, "__args__", None) or (
            cls.model_fields[info.field_name].annotation,
        )
        if isinstance(v, bool) and int in kinds and bool not in kinds:
            raise ValueError("must be an integer, not a boolean")
        return v


class StreamOptions(_Request):
    include_usage: bool = False


class TextPart(BaseModel):  # its text is checked as part of the message's content (one error, one field)
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    # developer is OpenAI's newer name for system; tool results map onto pixiu's tool role
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict] | None = None  # an assistant turn that called tools (sent back by the client)
    tool_call_id: str | None = None  # a tool turn: the call it answers

    def internal(self) -> Message:
        """pixiu's roles: developer -> system; an assistant turn that only calls tools -> tool_call (the calls
        as JSON {name, arguments}, the form pixiu trains on)."""
        if self.role == "assistant" and self.tool_calls and not self.text():
            calls = [tool_call_json(c) for c in self.tool_calls]
            return Message(
                "tool_call", json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            )
        return Message({"developer": "system"}.get(self.role, self.role), self.text())

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class SamplingParams(_Request):
    """Fields shared by chat and text completions. top_k and repetition_penalty are extensions (as in vLLM)."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    # accepted for compatibility; the engine samples with repetition_penalty instead (see the issue)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        return [s for s in stops if s]  # an empty stop string would end every reply at once

    def stops(self) -> list[str]:
        return list(self.stop or [])

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _refuse(name: str, why: str):
    def check(cls, v):
        if v:
            raise ValueError(f"{name} is not supported by this server: {why}")
        return v

    return field_validator(name)(classmethod(check))


class ChatCompletionRequest(SamplingParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name for max_tokens
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP)
    tools: list[dict] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict | None = None
    response_format: dict | None = None

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[dict] | None) -> list[dict] | None:
        return check_tools(v) if v else None

    @model_validator(mode="after")
    def _choice(self) -> ChatCompletionRequest:
        c = self.tool_choice
        if isinstance(c, dict):
            name = (c.get("function") or {}).get("name") if c.get("type") == "function" else None
            if name not in {t["function"]["name"] for t in self.tools or []}:
                raise ValueError("tool_choice names a function that is not in tools")
        elif c in ("auto", "required") and not self.tools:
            raise ValueError(f"tool_choice {c!r} needs tools")
        return self

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, v: dict | None) -> dict | None:
        if v and v.get("type", "text") != "text":
            raise ValueError("only response_format {'type': 'text'} is supported")
        return v

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def conversation(self) -> Conversation:
        tools = [t["function"] for t in self.tools or []] if self.tool_choice != "none" else []
        return Conversation([m.internal() for m in self.messages], json.dumps(tools) if tools else "")

    def tool_names(self) -> set[str]:
        return offered(self.tools, self.tool_choice)


class CompletionRequest(SamplingParams):
    prompt: str | list[str] = Field(min_length=1)
    # OpenAI's default for text completions; 0 with echo: the prompt alone, scored when logprobs is set
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP)  # OpenAI allows 5; the engine's limit is 20
    suffix: str | None = None
    return_tokens_as_token_ids: bool = False  # vLLM's extension: tokens as "token_id:N", exact for any client

    _no_suffix = _refuse("suffix", "insertion (fill-in-the-middle) is not supported")

    @model_validator(mode="after")
    def _bounded(self) -> CompletionRequest:
        if len(self.prompts()) * self.n > MAX_CHOICES:
            raise ValueError(f"prompts x n is at most {MAX_CHOICES} per request")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens 0 asks for the prompt alone: it needs echo: true")
        if self.echo and self.logprobs is not None and self.max_tokens != 0:
            raise ValueError("echo with logprobs scores the prompt only here: set max_tokens to 0")
        if self.max_tokens == 0 and self.stream:
            raise ValueError("max_tokens 0 (the prompt scored) is not streamed: set stream to false")
        return self

    def scores_prompt(self) -> bool:
        """Echo-only (max_tokens 0): nothing is sampled; with logprobs, the prompt's own tokens are scored."""
        return self.max_tokens == 0

    def logprob_count(self) -> int | None:
        return self.logprobs

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def limit(self) -> int | None:
        return self.max_tokens


# ---------------------------------------------------------------- responses

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "pixiu"
    # pixiu's extension: rows of the output layer, so a distilling client can check the vocabularies match
    vocab_size: int | None = Field(None, exclude_if=lambda v: v is None)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TopLogprob(BaseModel):
    token: str  # the token's text on its own (a piece of a multi-byte character shows as U+FFFD)
    logprob: float
    bytes: list[int]  # the token's own bytes: a piece of a character included, so joined they give the text


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    """Chat completions: one entry per sampled token, the stop token included."""

    content: list[TokenLogprob]
    refusal: None = None

    @classmethod
    def of(cls, sampled: list, text: Callable[[int], str], raw: Callable[[int], bytes]) -> ChoiceLogprobs:
        """From engine TokenLogprobs; `text` and `raw` turn a token id into its text and its bytes."""

        def top(i: int, lp: float) -> TopLogprob:
            return TopLogprob(token=text(i), logprob=lp, bytes=list(raw(i)))

        return cls(content=[
            TokenLogprob(**top(t.token, t.logprob).model_dump(), top_logprobs=[top(i, lp) for i, lp in t.top])
            for t in sampled
        ])  # fmt: skip


class TextLogprobs(BaseModel):
    """Text completions (the legacy shape): parallel lists, one entry per sampled token, or per prompt token
    when the prompt is echoed and scored (its first token has no log-prob: null, as OpenAI's)."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]

    @classmethod
    def of(
        cls, sampled: list, raw: Callable[[int], bytes], offset: int = 0, as_ids: bool = False
    ) -> TextLogprobs:
        """From engine TokenLogprobs; `raw` turns a token id into its bytes; `offset`: where the first token's
        text starts in the choice's text. A token holding part of a character shows as `bytes:\\xNN…`, as
        OpenAI's does, and starts where that character starts in the text; with `as_ids` every token shows as
        `token_id:N` (vLLM's return_tokens_as_token_ids)."""
        name = _as_id if as_ids else lambda i: _shown(raw(i))
        pieces = [raw(t.token) for t in sampled]
        starts = [offset + len(b"".join(pieces[:i]).decode(errors="ignore")) for i in range(len(pieces))]
        tops = [{name(i): lp for i, lp in t.top} for t in sampled]
        return cls(
            tokens=[name(t.token) for t in sampled], token_logprobs=[t.logprob for t in sampled],
            top_logprobs=tops, text_offset=starts,
        )  # fmt: skip

    @classmethod
    def echoed(
        cls, first: int, scored: list, raw: Callable[[int], bytes], as_ids: bool = False
    ) -> TextLogprobs:
        """A scored prompt: its `first` token, then one engine TokenLogprob per later token."""
        out = cls.of([SimpleNamespace(token=first, logprob=0.0, top=[]), *scored], raw, 0, as_ids)
        out.token_logprobs[0] = out.top_logprobs[0] = None  # nothing precedes the first token
        return out


def _as_id(token: int) -> str:
    return f"token_id:{token}"


def _shown(piece: bytes) -> str:
    try:
        return piece.decode()
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in piece)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[dict] | None = Field(None, exclude_if=lambda v: v is None)


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class Source(BaseModel):
    """A retrieved passage the reply may cite as [index] (pixiu's extension, with `pixiu serve --rag`)."""

    index: int
    title: str
    source: str
    text: str


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str = "pixiu"
    sources: list[Source] | None = Field(None, exclude_if=lambda v: v is None)  # pixiu's: retrieval (--rag)


class DeltaMessage(BaseModel):
    # absent rather than null when unset, as OpenAI sends them
    role: Literal["assistant"] | None = Field(None, exclude_if=lambda v: v is None)
    content: str | None = Field(None, exclude_if=lambda v: v is None)
    tool_calls: list[dict] | None = Field(None, exclude_if=lambda v: v is None)  # each with its "index"


class ChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    sources: list[Source] | None = Field(None, exclude_if=lambda v: v is None)  # in the first chunk only
    system_fingerprint: str = "pixiu"


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None = None
    logprobs: TextLogprobs | None = None


class Completion(BaseModel):
    """A text completion, or (object "text_completion" too, as OpenAI does) one chunk of a streamed one."""

    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str = "pixiu"
