"""Tool calling through the OpenAI API: tools rendered by the chat template, calls parsed back from replies,
tool_calls in responses (streamed too), bad schemas and unparsable output as 4xx or plain text, never 5xx."""

from __future__ import annotations

import json

import openai
import pytest
from fake_engine import FakeEngine
from fastapi.testclient import TestClient
from live_server import serving

from pixiu.chat.messages import Conversation, Message
from pixiu.chat.templates import get_template
from pixiu.serve import api
from pixiu.serve.protocol import ChatCompletionRequest
from pixiu.serve.tools import parse_calls

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "weather in Paris?"}]


class Scripted(FakeEngine):
    """Replies with `script` (whatever the prompt) and remembers the conversations it was given."""

    def __init__(self, script: str):
        super().__init__("tooly", context_len=4096)
        self.script, self.seen = script, []

    def reply(self, prompt, sampling):
        self.seen.append(prompt)
        return self.script


def client_for(engine):
    return serving(api.create_app({"tooly": engine}))


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',  # Hermes / Qwen
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]',  # Mistral
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',  # Llama 3
        '```json\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}\n```',  # fenced, string args
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',  # plain JSON (pixiu's own tool_call turns)
    ],
)
def test_parse_calls_of_each_template_family(text):
    calls = parse_calls(text, {"get_weather"})
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")


def test_parse_calls_keeps_text_replies_text():
    names = {"get_weather"}
    assert parse_calls("It is sunny in Paris.", names) is None
    assert parse_calls('{"name": "get_weather", "arguments": {"city": "Par', names) is None  # cut JSON
    assert parse_calls('{"name": "launch_rockets", "arguments": {}}', names) is None  # not offered
    assert parse_calls('{"name": "get_weather", "arguments": [1]}', names) is None
    two = '<tool_call>{"name": "get_weather", "arguments": {"city": "A"}}</tool_call>\n' * 2
    assert len(parse_calls(two, names)) == 2


def test_openai_client_gets_tool_calls_not_streamed_and_streamed():
    engine = Scripted('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    with client_for(engine) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="tooly", messages=ASK, tools=[WEATHER])
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
            "city": "Paris"
        }
        # the tools reached the engine with the conversation
        assert json.loads(engine.seen[-1].tools) == [WEATHER["function"]]
        chunks = list(
            client.chat.completions.create(model="tooly", messages=ASK, tools=[WEATHER], stream=True)
        )
        deltas = [tc for c in chunks for ch in c.choices for tc in ch.delta.tool_calls or []]
        assert [(d.index, d.function.name) for d in deltas] == [(0, "get_weather")]
        assert json.loads(deltas[0].function.arguments) == {"city": "Paris"}
        assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]
        assert not any(ch.delta.content for c in chunks for ch in c.choices)
        # the call and its result go back to the model: tool_call and tool turns
        history = [
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"},
        ]
        client.chat.completions.create(model="tooly", messages=history, tools=[WEATHER])
        roles = [(m.role, m.content) for m in engine.seen[-1].messages]
        assert roles[1] == ("tool_call", '{"name": "get_weather", "arguments": {"city": "Paris"}}')
        assert roles[2] == ("tool", "18 C, sunny")


def test_unparsable_output_is_a_plain_text_reply():
    engine = Scripted('{"name": "get_weather", "arguments": {"city": ')
    with client_for(engine) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="tooly", messages=ASK, tools=[WEATHER])
        assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
        assert r.choices[0].message.content.startswith('{"name": "get_weather"')
        chunks = list(
            client.chat.completions.create(model="tooly", messages=ASK, tools=[WEATHER], stream=True)
        )
        text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
        assert text.startswith('{"name": "get_weather"')


def test_tool_choice_none_sends_no_tools_and_parses_nothing():
    engine = Scripted('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    tc = TestClient(api.create_app({"tooly": engine}))
    r = tc.post("/v1/chat/completions", json={"model": "tooly", "messages": ASK, "tools": [WEATHER],
                                              "tool_choice": "none"})  # fmt: skip
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "stop"
    assert engine.seen[-1].tools == ""


@pytest.mark.parametrize(
    "tools,choice,needle",
    [
        ([{"type": "function"}], None, "a tool is"),
        ([{"type": "function", "function": {"name": "bad name!"}}], None, "function.name"),
        ([WEATHER, WEATHER], None, "offered twice"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
            None,
            "JSON Schema",
        ),
        ([WEATHER], {"type": "function", "function": {"name": "other"}}, "not in tools"),
        (None, "required", "needs tools"),
    ],
)
def test_bad_tool_schemas_are_400s_naming_the_problem(tools, choice, needle):
    tc = TestClient(api.create_app({"tooly": Scripted("hi")}), raise_server_exceptions=False)
    body = {"model": "tooly", "messages": ASK, **({"tools": tools} if tools else {})}
    if choice:
        body["tool_choice"] = choice
    r = tc.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and needle in r.json()["error"]["message"]


def test_templates_render_the_tools(tokenizer):
    """SmolLM2's template has no tool syntax: the tools go in the system turn, as pixiu trains tool use; a
    template that takes `tools` gets them through apply_chat_template."""
    req = ChatCompletionRequest(model="m", messages=ASK, tools=[WEATHER])
    conv = req.conversation()
    text, _ = get_template("default", tokenizer).text(conv, True)
    assert text.startswith("<|im_start|>system\nYou may call these tools; reply with a JSON call:\n[{")
    assert '"name": "get_weather"' in text and text.endswith("<|im_start|>assistant\n")
    jinja = "{% for t in tools %}TOOL {{ t.name }}\n{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}"
    text, _ = get_template("default", tokenizer, jinja=jinja).text(conv, True)
    assert text == "TOOL get_weather\nweather in Paris?"
    plain = Conversation([Message("user", "hi")])
    assert "tools" not in get_template("default", tokenizer).text(plain, True)[0]
