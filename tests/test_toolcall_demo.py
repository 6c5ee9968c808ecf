"""A model trained on ShareGPT function-call rows calls a tool through the server (issue 19).

Glaive rows (LLaMA-Factory's demo) -> the sharegpt parser (function_call -> tool_call turns) -> the chatml
template (Hermes `<tool_call>` blocks, trained on) -> LoRA SFT -> the served model -> the server's parser ->
`tool_calls` for the `openai` client, streamed and not. A handful of rows, cut after their first call, trained
until the model repeats them: this checks the path end to end, not generalisation (bench/toolcall.py measures
that on held-out rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from live_server import serving

from pixiu import config
from pixiu.engine import load_engine
from pixiu.serve import api
from pixiu.train import sft

GLAIVE = Path(__file__).parents[2] / "shared" / "data" / "llamafactory_demo" / "glaive_toolcall_en_demo.json"
ROWS = 4  # rows that open with a user turn and a call
CHARS = (
    480  # tools + user turn + call: ~150 tokens, so no row is cut at max_len 192 (a cut call teaches nothing)
)


def first_calls(n: int) -> list[dict]:
    """The first n short glaive rows that open with [user, function_call], cut after the call."""
    rows = json.loads(GLAIVE.read_text(encoding="utf-8"))
    out = []
    for row in rows:
        turns = row["conversations"][:2]
        short = len(row["tools"]) + sum(len(t["value"]) for t in turns) < CHARS
        if [t["from"] for t in turns] == ["human", "function_call"] and short and len(out) < n:
            out.append({"conversations": turns, "tools": row["tools"]})
    return out


@pytest.mark.slow
@pytest.mark.skipif(not GLAIVE.is_file(), reason="shared data not present")
def test_glaive_trained_model_calls_a_tool_through_the_server(tmp_path):
    rows = first_calls(ROWS)
    data = tmp_path / "calls.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    cfg = config.load(
        "recipes/toolcall.yaml",
        [f"--data.path={data}", "--data.eval_size=0", "--data.max_len=192", f"--train.output_dir={tmp_path}/run",
         "--train.max_steps=8", "--train.batch_size=4", "--train.lr=3e-3", "--train.save_every=0"],
    )  # fmt: skip
    final = sft.run(cfg)
    row = rows[0]
    call = json.loads(row["conversations"][1]["value"])
    tools = [{"type": "function", "function": f} for f in json.loads(row["tools"])]
    ask = [{"role": "user", "content": row["conversations"][0]["value"]}]
    engine = load_engine(str(final), backend="torch", dtype="fp32", name="tuned")
    with serving(api.create_app({"tuned": engine})) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        kw = dict(model="tuned", messages=ask, tools=tools, temperature=0, max_tokens=64)
        choice = client.chat.completions.create(**kw).choices[0]
        assert choice.finish_reason == "tool_calls", choice.message.content
        got = choice.message.tool_calls[0].function
        assert got.name == call["name"] and json.loads(got.arguments) == call["arguments"]
        chunks = list(client.chat.completions.create(**kw, stream=True))
        deltas = [d for c in chunks for ch in c.choices for d in ch.delta.tool_calls or []]
        assert [(d.function.name, json.loads(d.function.arguments)) for d in deltas] == [
            (call["name"], call["arguments"])
        ]
        assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]
