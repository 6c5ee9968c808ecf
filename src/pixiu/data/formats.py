"""Rows -> typed records: one parse function per format in `FORMATS`, picked by name or by `detect`.

A parser takes (row, source) and returns a record, or a list of records (one oasst tree holds many rankings).
Every error starts with the row's source and names the format and what it expected, so a bad row is found at a
glance however deep in a 50,000-row file it sits.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable

from pixiu.chat.messages import ROLES, TARGET_ROLES, Conversation, Message
from pixiu.data.records import Labelled, PreferencePair, Prompt, Ranking, Record, Text
from pixiu.data.sources import DataError

Parser = Callable[[dict, str], "Record | list[Record]"]
FORMATS: dict[str, Parser] = {}
# The columns that identify each format, for `detect`.
KEYS: dict[str, tuple[str, ...]] = {}
# A default column map per format: other published layouts of the same data.
ALIASES: dict[str, dict[str, str]] = {}


class Invalid(Exception):
    """Why a row is bad. Parsers raise it bare; `register` turns it into a DataError naming source and format."""


def register(
    name: str, keys: tuple[str, ...], aliases: dict[str, str] | None = None, auto: bool = True
) -> Callable[[Parser], Parser]:
    def add(fn: Parser) -> Parser:
        @functools.wraps(fn)
        def parse(row: dict, source: str):
            try:
                return fn(_aliased(row, aliases or {}), source)
            except Invalid as e:
                raise DataError(f"{source}: {name} row: {e}") from None
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                # A value of an unexpected type deep inside a row: still point at the row.
                raise DataError(f"{source}: {name} row: {type(e).__name__}: {e}") from e

        FORMATS[name], ALIASES[name] = parse, aliases or {}
        if auto:  # a format read only when named (kto) stays out of `detect`
            KEYS[name] = keys
        return parse

    return add


def detect(row: dict, source: str = "") -> str:
    """The format whose identifying columns are all in `row`. The most specific match wins ({prompt, chosen,
    rejected} is pairs, not prompts); ties go to the format registered first (messages before prompts)."""
    found = [name for name, keys in KEYS.items() if set(keys) <= set(_aliased(row, ALIASES[name]))]
    if not found:
        known = "; ".join(f"{name}: {', '.join(keys)}" for name, keys in KEYS.items())
        raise DataError(
            f"{source + ': ' if source else ''}cannot tell the format from the columns {sorted(row)}. "
            f"Formats and the columns that identify them: {known}. Name the format, or rename columns."
        )
    return max(found, key=lambda name: len(KEYS[name]))


def parse(fmt: str, row: dict, source: str) -> list[Record]:
    """Parse one row with a named format; always a list, so one-record and many-record formats read alike."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    out = FORMATS[fmt](row, source)
    return out if isinstance(out, list) else [out]


def rename(row: dict, columns: dict[str, str]) -> dict:
    """Apply a user's column map ({old: new}); a renamed column wins over an existing one of the same name."""
    if not columns:
        return row
    kept = {k: v for k, v in row.items() if k not in columns}
    return kept | {new: row[old] for old, new in columns.items() if old in row}


def _aliased(row: dict, aliases: dict[str, str]) -> dict:
    extra = {new: row[old] for old, new in aliases.items() if old in row and new not in row}
    return row | extra if extra else row


# ---------------------------------------------------------------- checks shared by the formats


def _need(row: dict, *fields: str) -> None:
    null = [f for f in fields if f in row and row[f] is None]
    if null:  # present but null (JSON null, an empty parquet cell): "missing" would contradict the field list
        raise Invalid(
            f"{', '.join(null)} {'is' if len(null) == 1 else 'are'} null (expected fields {', '.join(fields)})"
        )
    missing = [f for f in fields if f not in row]
    if missing:
        has = ", ".join(map(str, row)) or "no fields"
        raise Invalid(f"expected fields {', '.join(fields)}; missing {', '.join(missing)}; it has {has}")


def _str(value, what: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be text, got {type(value).__name__}")
    return value


def _message(role: str, content) -> Message:
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    return Message(role, _str(content, f"{role} content"))


def _conversation(messages: list[Message], source: str, tools: str = "") -> Conversation:
    """A training conversation: at least one reply to learn from, and no empty reply (it would teach silence)."""
    if not any(m.role in TARGET_ROLES for m in messages):
        raise Invalid("no assistant turn to learn from")
    for i, m in enumerate(messages, 1):
        if m.role in TARGET_ROLES and not m.content.strip():
            raise Invalid(f"empty {m.role} reply (turn {i})")
    return Conversation(messages, tools, source)


def _context(messages: list[Message], source: str, tools: str = "") -> Conversation:
    """A prompt the model answers (pairs, rankings, prompts): it ends with a non-empty user or tool turn."""
    if not messages or messages[-1].role not in ("user", "tool") or not messages[-1].content.strip():
        raise Invalid("the prompt must end with a non-empty user turn")
    return Conversation(messages, tools, source)


def _tools(value) -> str:
    """Tool schemas as JSON text, whether the row stores them as a JSON string (glaive) or as a list."""
    if value in (None, "", []):
        return ""
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    try:
        json.loads(value)
    except json.JSONDecodeError as e:
        raise Invalid(f"tools is not valid JSON: {e.msg}") from None
    return value


def _openai(messages) -> list[Message]:
    """OpenAI messages. An assistant turn that only calls tools becomes a tool_call turn holding the calls."""
    if not isinstance(messages, list):
        raise Invalid(f"messages must be a list of {{role, content}}, got {type(messages).__name__}")
    out = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise Invalid(f"each message needs role and content, got {str(m)[:80]}")
        content = m.get("content")
        if m.get("tool_calls") and not content:
            out.append(Message("tool_call", json.dumps(m["tool_calls"], ensure_ascii=False)))
            continue
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        out.append(_message(m["role"], content))
    return out


def _prompt(value, source: str) -> Conversation:
    return _context([Message("user", value)] if isinstance(value, str) else _openai(value), source)


def _reply(value, what: str) -> str:
    """A reply as text, or as messages ending with the reply (UltraFeedback stores prompt + reply that way)."""
    if not isinstance(value, list):
        return _str(value, what)
    messages = _openai(value)
    if not messages or messages[-1].role not in TARGET_ROLES:
        raise Invalid(f"{what} messages must end with an assistant turn")
    return messages[-1].content


def _pair(prompt: Conversation, chosen: str, rejected: str, source: str, margin=0.0) -> PreferencePair:
    _nonempty({"chosen": chosen, "rejected": rejected})
    if chosen.strip() == rejected.strip():
        raise Invalid("chosen and rejected are the same text, so the pair prefers nothing")
    return PreferencePair(prompt, chosen, rejected, source, _margin(margin))


def _margin(value) -> float:
    """A pair's optional `margin` (TRL's column): a finite number, not negative (chosen is the better reply)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise Invalid(f"margin must be a finite number >= 0, got {value!r}")
    return float(value)


def _ranking(prompt: Conversation, replies: list[str], source: str) -> Ranking:
    _nonempty({f"response {i}": r for i, r in enumerate(replies, 1)})
    if len({r.strip() for r in replies}) < len(replies):
        raise Invalid("the same reply appears twice in one ranking")
    return Ranking(prompt, replies, source)


def _nonempty(replies: dict[str, str]) -> None:
    for what, text in replies.items():
        if not text.strip():
            raise Invalid(f"empty {what} reply")


# ---------------------------------------------------------------- formats (ties in `detect` go to the first)

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "tool_call", "observation": "tool"}  # fmt: skip
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


@register("oasst", keys=("message_tree_id", "prompt"))
def oasst(row: dict, source: str) -> list[Ranking]:
    """An OpenAssistant message tree -> one Ranking per prompter turn with >= 2 ranked replies.

    Unranked (and deleted) replies cannot be ordered, so they drop out of that ranking. All rankings of a tree
    share the tree's source, which keeps a whole tree on one side of the eval split.
    """
    _need(row, "prompt")
    if not isinstance(row["prompt"], dict):
        raise Invalid("prompt must be the root message {text, role, replies}")
    out: list[Ranking] = []
    _walk_tree(row["prompt"], [], source, out)
    return out


def _walk_tree(node: dict, context: list[Message], source: str, out: list[Ranking]) -> None:
    if node.get("role") not in OASST_ROLES:
        raise Invalid(f"unknown role {node.get('role')!r}; valid roles: {', '.join(OASST_ROLES)}")
    role = OASST_ROLES[node["role"]]
    here = [*context, _message(role, node.get("text"))]
    replies = node.get("replies") or []
    ranked = [r for r in replies if r.get("rank") is not None and not r.get("deleted")]
    if role == "user" and len(ranked) >= 2:
        texts = [_str(r.get("text"), "reply text") for r in sorted(ranked, key=lambda r: r["rank"])]
        out.append(_ranking(_context(here, source), texts, source))
    for reply in replies:
        _walk_tree(reply, here, source, out)


def _sharegpt_turn(turn) -> Message:
    if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
        raise Invalid(f"each turn needs from and value, got {str(turn)[:80]}")
    if turn["from"] not in SHAREGPT_ROLES:
        raise Invalid(f"unknown role {turn['from']!r}; valid roles: {', '.join(SHAREGPT_ROLES)}")
    return _message(SHAREGPT_ROLES[turn["from"]], turn["value"])


def _sharegpt_messages(row: dict) -> list[Message]:
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise Invalid(f"conversations must be a list of {{from, value}}, got {type(turns).__name__}")
    system = [_message("system", row["system"])] if row.get("system") else []
    return system + [_sharegpt_turn(t) for t in turns]


@register("sharegpt_pairs", keys=("conversations", "chosen", "rejected"))
def sharegpt_pairs(row: dict, source: str) -> PreferencePair:
    """LLaMA-Factory's preference layout: the context in `conversations`, one {from, value} reply each."""
    _need(row, "conversations", "chosen", "rejected")
    prompt = _context(_sharegpt_messages(row), source, _tools(row.get("tools")))
    chosen, rejected = _sharegpt_turn(row["chosen"]), _sharegpt_turn(row["rejected"])
    if chosen.role not in TARGET_ROLES or rejected.role not in TARGET_ROLES:
        raise Invalid("chosen and rejected must be assistant (gpt) turns")
    return _pair(prompt, chosen.content, rejected.content, source, row.get("margin"))


@register("sharegpt", keys=("conversations",))
def sharegpt(row: dict, source: str) -> Conversation:
    _need(row, "conversations")
    return _conversation(_sharegpt_messages(row), source, _tools(row.get("tools")))


@register("messages", keys=("messages",))
def messages(row: dict, source: str) -> Conversation:
    """OpenAI chat rows. A KTO `label` (good/bad reply) is ignored: SFT reads only the conversation."""
    _need(row, "messages")
    return _conversation(_openai(row["messages"]), source, _tools(row.get("tools")))


@register("kto", keys=("messages", "label"), auto=False)
def kto(row: dict, source: str) -> Labelled:
    """KTO feedback (LLaMA-Factory's kto layout): messages ending with the assistant reply, `label` true for a good
    reply, false for a bad one. `detect` reads these rows as `messages` (SFT); `pixiu train kto` names this format."""
    _need(row, "messages", "label")
    if not isinstance(row["label"], bool):
        raise Invalid(f"label must be true or false, got {row['label']!r}")
    turns = _openai(row["messages"])
    if not turns or turns[-1].role != "assistant":
        raise Invalid("messages must end with the assistant reply that the label judges")
    _nonempty({"labelled": turns[-1].content})
    prompt = _context(turns[:-1], source, _tools(row.get("tools")))
    return Labelled(prompt, turns[-1].content, row["label"], source)


# Stack Exchange paired (lvwerra/stack-exchange-paired): response_j is the answer voted higher than response_k.
STACK_EXCHANGE = {"question": "prompt", "response_j": "chosen", "response_k": "rejected"}


@register("pairs", keys=("prompt", "chosen", "rejected"), aliases=STACK_EXCHANGE)
def pairs(row: dict, source: str) -> PreferencePair:
    _need(row, "prompt", "chosen", "rejected")
    chosen, rejected = _reply(row["chosen"], "chosen"), _reply(row["rejected"], "rejected")
    return _pair(_prompt(row["prompt"], source), chosen, rejected, source, row.get("margin"))


@register("rankings", keys=("prompt", "responses"))
def rankings(row: dict, source: str) -> Ranking:
    _need(row, "prompt", "responses")
    responses = row["responses"]
    if not isinstance(responses, list) or len(responses) < 2:
        raise Invalid("responses must be a list of at least two replies, best first")
    texts = [_reply(r, "response") for r in responses]
    return _ranking(_prompt(row["prompt"], source), texts, source)


@register("alpaca", keys=("instruction", "output"))
def alpaca(row: dict, source: str) -> Conversation:
    """instruction (+ "\\n\\n" + input) -> output, after an optional system turn and [user, assistant] history."""
    _need(row, "instruction", "output")
    messages = [_message("system", row["system"])] if row.get("system") else []
    for turn in row.get("history") or []:
        if not isinstance(turn, (list, tuple)) or len(turn) != 2:
            raise Invalid("history must be a list of [user, assistant] pairs")
        messages += [_message("user", turn[0]), _message("assistant", turn[1])]
    parts = [_str(row["instruction"], "instruction"), _str(row.get("input") or "", "input")]
    user = "\n\n".join(p for p in parts if p)
    if not user.strip():
        raise Invalid("empty instruction and input")
    return _conversation([*messages, Message("user", user), _message("assistant", row["output"])], source)


@register("prompts", keys=("prompt",))
def prompts(row: dict, source: str) -> Prompt:
    _need(row, "prompt")
    answer = row.get("answer")  # a reference answer, as text: numbers too ("105", 8.5); "even|odd": not odd
    if answer is not None and not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
        raise Invalid(f"answer must be text or a number, got {type(answer).__name__}")
    return Prompt(_prompt(row["prompt"], source), source, "" if answer is None else str(answer).strip())


@register("text", keys=("text",))
def text(row: dict, source: str) -> Text:
    _need(row, "text")
    if not _str(row["text"], "text").strip():
        raise Invalid("empty text")
    return Text(row["text"], source)
