"""Tool calls: the OpenAI `tools` a request offers, and the calls parsed back out of a model's reply.

The tools reach the model through its chat template (Conversation.tools; a template with no tool syntax of its
own gets them in the system turn, as pixiu trains tool use). A reply is a call when, after the wrappers the
named templates use (Hermes/Qwen `<tool_call>...</tool_call>`, Mistral `[TOOL_CALLS]`, Llama 3
`<|python_tag|>`, a ```json fence) are taken off, it is JSON: one object or a list of objects, each with the
`name` of an offered tool and its `arguments` (or Llama's `parameters`). Anything else is a plain text reply:
a model that writes malformed JSON gets its words back with finish_reason "stop", never an error.
"""

from __future__ import annotations

import json
import re
import uuid

WRAPPERS = re.compile(r"</?tool_call>|\[TOOL_CALLS\]|<\|python_tag\|>|```(?:json)?")
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names


def check_tools(tools: list[dict]) -> list[dict]:
    """Each tool is {"type": "function", "function": {"name", "description"?, "parameters"?}}; else ValueError."""
    seen = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(tool.get("function"), dict)
        ):
            raise ValueError(f'{where}: a tool is {{"type": "function", "function": {{"name": ..., ...}}}}')
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"{where}.function.name must be 1-64 letters, digits, '_' or '-', got {name!r}")
        if name in seen:
            raise ValueError(f"{where}.function.name {name!r} is offered twice")
        seen.add(name)
        params = fn.get("parameters", {"type": "object"})
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise ValueError(
                f"{where}.function.parameters must be a JSON Schema object ({{'type': 'object', ...}})"
            )
        if "description" in fn and not isinstance(fn["description"], str):
            raise ValueError(f"{where}.function.description must be a string")
    return tools


def parse_calls(text: str, names: set[str]) -> list[dict] | None:
    """OpenAI `tool_calls` from a reply, or None when it is not (wholly) a call of an offered tool."""
    body = WRAPPERS.sub("\n", text).strip()
    if not body or body[0] not in "[{":
        return None
    items = []
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(body):  # one or more JSON values, e.g. several <tool_call> blocks
        try:
            value, end = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            return None
        items += value if isinstance(value, list) else [value]
        pos = end
        while pos < len(body) and body[pos] in " \t\r\n,":
            pos += 1
    calls = []
    for item in items:
        if not isinstance(item, dict) or item.get("name") not in names:
            return None
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": item["name"], "arguments": json.dumps(args, ensure_ascii=False)},
            }
        )
    return calls or None


def offered(tools: list[dict] | None, choice) -> set[str]:
    """Names the reply may call under `tool_choice`: none -> nothing; a named function -> that one."""
    if not tools or choice == "none":
        return set()
    if isinstance(choice, dict):
        return {choice["function"]["name"]}
    return {t["function"]["name"] for t in tools}


def tool_call_json(call: dict) -> dict:
    """An OpenAI tool call sent back in a conversation -> {name, arguments} (arguments as an object)."""
    fn = call.get("function") or {}
    args = fn.get("arguments") or "{}"
    try:
        args = json.loads(args) if isinstance(args, str) else args
    except json.JSONDecodeError as e:
        raise ValueError(f"a tool call's arguments are not JSON: {e.msg}") from None
    return {"name": fn.get("name", ""), "arguments": args}
