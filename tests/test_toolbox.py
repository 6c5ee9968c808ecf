"""`pixiu chat --tools/--rag`: the calculator, the tool loop and retrieval in the terminal."""

from __future__ import annotations

import io

import pytest
from fake_engine import FakeEngine

from pixiu.rag import Index, chunk_text
from pixiu.serve import toolbox
from pixiu.serve.terminal import Chat, run, toolkit


def test_calculator_is_arithmetic_only():
    calc = toolbox.calculate
    assert calc("12 * (3 + 4) / 2") == 42.0 and calc("-2 ** 3") == -8 and calc("7 // 2 % 3") == 0
    for bad in ["__import__('os')", "x + 1", "9 ** 9 ** 9", "1 / 0", "(", "True + 1"]:
        with pytest.raises(ValueError):
            calc(bad)


class Scripted(FakeEngine):
    """Replies from a list, one per request; records the conversations."""

    def __init__(self, replies):
        super().__init__("s", context_len=4096)
        self.replies, self.seen = list(replies), []

    def reply(self, prompt, sampling):
        self.seen.append(prompt)
        return self.replies.pop(0)


def test_chat_runs_a_tool_call_and_asks_again():
    engine = Scripted(['{"name": "calculator", "arguments": {"expression": "6 * 7"}}', "It is 42."])
    out = io.StringIO()
    chat = Chat(engine, out, tools={"calculator": toolbox.calculator()})
    run(chat, ["what is 6 times 7?"])
    assert '[calculator({"expression": "6 * 7"}) -> 42]' in out.getvalue()
    assert [(m.role, m.content) for m in chat.history] == [
        ("user", "what is 6 times 7?"),
        ("tool_call", '{"name": "calculator", "arguments": {"expression": "6 * 7"}}'),
        ("tool", "42"),
        ("assistant", "It is 42."),
    ]
    second = engine.seen[1]  # the model saw the tools, its call and the result
    assert '"name": "calculator"' in second.tools and second.messages[-1].content == "42"


def test_a_failing_tool_answers_with_its_error():
    engine = Scripted(['{"name": "calculator", "arguments": {"expression": "1/0"}}', "Sorry."])
    chat = Chat(engine, io.StringIO(), tools={"calculator": toolbox.calculator()})
    run(chat, ["divide"])
    assert chat.history[2].content.startswith("error: ")


def test_chat_with_rag_cites_passages_and_lists_sources(tmp_path):
    statute = "# 刑法\n\n第二百六十四条 盗窃公私财物，数额较大的，处三年以下有期徒刑。\n"
    Index.build(chunk_text(statute, "刑法.md")).save(tmp_path / "idx")
    engine = Scripted(["依照第二百六十四条 [1]。"])
    out = io.StringIO()
    chat = Chat(engine, out, **toolkit("", str(tmp_path / "idx")))
    run(chat, ["盗窃怎么判？"])
    assert engine.seen[0].messages[-1].content.startswith("参考资料：\n\n[1] 刑法 > 第二百六十四条")
    assert "  [1] 刑法.md: 刑法 > 第二百六十四条" in out.getvalue()
    with pytest.raises(SystemExit, match="search needs --rag"):
        toolkit("search", "")
