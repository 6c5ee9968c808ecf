"""Tool calling through `pixiu serve`: SmolLM2-135M before and after LoRA SFT on glaive function-call data.

    python bench/toolcall.py [--recipe recipes/toolcall.yaml] [--n 0] [--max-tokens 96] [--threads 1]

1. Trains `recipes/toolcall.yaml` (LoRA SFT of the embedded smollm2-135m on LLaMA-Factory's
   glaive_toolcall_en_demo.json), or reuses its final model when it exists (a killed run resumes).
2. Held-out prompts: the 60 rows the recipe's `data.eval_size` holds out (pixiu's deterministic split: a hash of
   each row's file position, so these rows are never trained on). A row whose conversation calls a tool gives one
   prompt: its turns up to the first function_call, the row's `tools` offered in the request, and the called
   function's name and arguments as the reference. Rows without a call give "should reply in text" prompts.
3. Starts `pixiu serve base=smollm2-135m tuned=RUN/final --template chatml` on a loopback port (both models in
   the same template, the one the recipe trains) and sends every prompt with the official `openai` client,
   greedy, once non-streaming and once streaming.

Counted per model and mode, on the tool-calling prompts: replies with a parsed `tool_calls`, calls whose
arguments are a JSON object, calls of the right function, finish_reason "tool_calls", and arguments equal to the
reference; on the text prompts (non-streaming only): replies that call a tool anyway. Writes bench/results/toolcall.md and
toolcall.jsonl (every reply).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
from serve_load import Server, free_port  # bench/serve_load.py: `pixiu serve` in a subprocess

from pixiu.chat.messages import Conversation
from pixiu.config import load
from pixiu.data.loader import load_data
from pixiu.data.sources import read_rows

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("base", "tuned")


def held_out_prompts(recipe: str) -> tuple[list[dict], list[dict]]:
    """(tool-calling prompts, text prompts) from the rows the recipe holds out, in file order."""
    cfg = load(recipe)
    split = load_data(cfg.data, Conversation)
    rows = {source: i for i, (source, _) in enumerate(read_rows(cfg.data.path))}
    calls, texts = [], []
    for conv in sorted(split.eval, key=lambda c: rows[c.source]):
        item = {
            "row": rows[conv.source],
            "tools": [{"type": "function", "function": f} for f in _tools(conv)],
        }
        msgs = conv.messages
        first = next(i for i, m in enumerate(msgs) if m.role in ("assistant", "tool_call"))
        at = next((i for i, m in enumerate(msgs) if m.role == "tool_call"), None)
        if at is not None:
            ref = json.loads(msgs[at].content)
            calls.append(
                {**item, "messages": _openai(msgs[:at]), "name": ref["name"], "args": ref["arguments"]}
            )
        elif item["tools"]:  # the first reply is text although tools are offered
            texts.append({**item, "messages": _openai(msgs[:first])})
    return calls, texts


def _tools(conv: Conversation) -> list[dict]:
    return json.loads(conv.tools) if conv.tools else []


def _openai(msgs) -> list[dict]:
    """pixiu messages before the first call: system, user and assistant text turns."""
    return [{"role": m.role, "content": m.content} for m in msgs]


def ask(client: openai.OpenAI, model: str, item: dict, stream: bool, max_tokens: int) -> dict:
    """One request -> {text, calls [(name, arguments text)], finish}; streamed deltas are joined."""
    kw = dict(
        model=model, messages=item["messages"], tools=item["tools"], temperature=0, max_tokens=max_tokens
    )
    if not stream:
        choice = client.chat.completions.create(**kw).choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return {"text": choice.message.content or "", "calls": calls, "finish": choice.finish_reason}
    text, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(**kw, stream=True):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            for d in ch.delta.tool_calls or []:
                name, args = calls.get(d.index, ("", ""))
                calls[d.index] = (name + (d.function.name or ""), args + (d.function.arguments or ""))
            finish = ch.finish_reason or finish
    return {"text": text, "calls": [calls[k] for k in sorted(calls)], "finish": finish}


def score(item: dict, reply: dict) -> dict:
    """The counts one reply adds to its model's row of the table."""
    calls = reply["calls"]
    args = [_json_object(a) for _, a in calls]
    return {
        "parsed": bool(calls),
        "json_args": bool(calls) and all(a is not None for a in args),
        "right_name": bool(calls) and calls[0][0] == item.get("name"),
        "finish_tool_calls": reply["finish"] == "tool_calls",
        "right_args": bool(calls) and args[0] == item.get("args"),
    }


def _json_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def train(recipe: str, threads: int) -> str:
    """The recipe's final model, training (or resuming) it first when it is missing."""
    out = Path(load(recipe).train.output_dir)
    if (out / "final").exists():
        return str(out / "final")
    resume = ["--train.resume=true"] if any(out.glob("checkpoint*")) else []
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PIXIU_THREADS=str(threads))
    cmd = [sys.executable, "-m", "pixiu.cli", "train", "sft", "--config", recipe, *resume]
    subprocess.run(cmd, check=True, env=env)
    return str(out / "final")


def trained(model: str) -> dict:
    """The run's own summary: wall seconds, steps and the held-out loss before and after."""
    summary = json.loads((Path(model).parent / "summary.json").read_text())
    return {
        "train_s": summary["seconds"], "steps": summary["last"]["step"],
        "eval_first": summary["first"]["eval_loss"], "eval_last": summary["last"]["eval_loss"],
    }  # fmt: skip


class TwoModels(Server):
    """`pixiu serve base=smollm2-135m tuned=TUNED` on a free loopback port (serve_load's Server, two models)."""

    def __init__(self, tuned: str, workdir: Path, threads: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "pixiu.cli", "serve", "base=smollm2-135m", f"tuned={tuned}"]
        cmd += ["--port", str(self.port), "--db", str(workdir / "feedback.db"), "--template", "chatml"]
        cmd += ["--backend", "torch", "--dtype", "fp32", "--max-batch", "1"]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
        self.log = workdir / "serve.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def measure(url: str, calls: list[dict], texts: list[dict], max_tokens: int) -> list[dict]:
    """Every prompt to both models, non-streaming then streaming -> one row per reply."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=900)
    out = []
    for model in MODELS:
        for kind, items, modes in (("call", calls, (False, True)), ("text", texts, (False,))):
            for stream in modes:  # the text prompts only ask whether a model calls anyway: once is enough
                for item in items:
                    t0 = time.perf_counter()
                    reply = ask(client, model, item, stream, max_tokens)
                    row = {"model": model, "kind": kind, "stream": stream, "row": item["row"]}
                    row |= {**reply, **score(item, reply), "seconds": round(time.perf_counter() - t0, 2)}
                    out.append(row)
                    print(json.dumps(row, ensure_ascii=False)[:300], flush=True)
    return out


# ---------------------------------------------------------------- the report

COLUMNS = ("parsed", "json_args", "right_name", "finish_tool_calls", "right_args")


def table(rows: list[dict]) -> list[str]:
    head = (
        "| model | mode | prompts | parsed tool_calls | JSON arguments | right function | finish tool_calls "
    )
    lines = [head + "| arguments = reference |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model in MODELS:
        for stream in (False, True):
            got = [r for r in rows if r["model"] == model and r["kind"] == "call" and r["stream"] == stream]
            counts = " | ".join(str(sum(r[c] for r in got)) for c in COLUMNS)
            mode = "stream" if stream else "no stream"
            lines.append(f"| {model} | {mode} | {len(got)} | {counts} |")
    return lines


def misses(rows: list[dict], model: str) -> str:
    """Why the non-streamed tool-calling replies that gave no tool_calls did not."""
    missed = [
        r for r in rows if r["model"] == model and r["kind"] == "call" and not r["stream"] and not r["parsed"]
    ]
    tried = [r for r in missed if r["text"].lstrip().startswith(("<tool_call>", "{"))]
    cut = sum(r["finish"] == "length" for r in tried)
    return (
        f"{model}: {len(missed)} = {len(missed) - len(tried)} text replies + {cut} calls cut at max_tokens + "
        f"{len(tried) - cut} calls that are not valid JSON"
    )


def report(args, rows: list[dict], info: dict) -> str:
    texts = {m: [r for r in rows if r["model"] == m and r["kind"] == "text"] for m in MODELS}
    tools_text = ", ".join(f"{m} {sum(r['parsed'] for r in t)} of {len(t)}" for m, t in texts.items())
    same = sum(
        a["text"] == b["text"] and a["calls"] == [tuple(c) for c in b["calls"]]
        for a in rows
        for b in rows
        if a["kind"] == b["kind"] == "call" and a["model"] == b["model"] and a["row"] == b["row"]
        and not a["stream"] and b["stream"]
    )  # fmt: skip
    lines = [
        "# Tool calling through `pixiu serve`: SmolLM2-135M before and after glaive SFT (CPU)",
        "",
        f"Recipe `{args.recipe}` (LoRA SFT of smollm2-135m on glaive_toolcall_en_demo.json; 240 rows trained, "
        f"60 held out by pixiu's deterministic hash split). Held-out rows with a tool call: {info['calls']} "
        f"(rows {info['call_rows']}); held-out rows whose first reply is text: {info['texts']}.",
        f"Served: `pixiu serve base=smollm2-135m tuned={info['model']} --template chatml --backend torch`; "
        f"the `openai` client (v{openai.__version__}), temperature 0, max_tokens {args.max_tokens}.",
        f"Command: `{' '.join(['python bench/toolcall.py', *sys.argv[1:]])}`",
        f"Training: {info['steps']} steps in {info['train_s']:.0f} s wall (with the held-out loss at the start "
        f"and end), held-out loss {info['eval_first']:.3f} -> {info['eval_last']:.3f}. Requests: {info['ask_s']:.0f} s wall; "
        f"load average (1 min) at start {info['load_start']:.1f}, at end {info['load_end']:.1f}.",
        "",
        *table(rows),
        "",
        f"Text prompts (the reference reply is text although tools are offered) answered with a tool call: "
        f"{tools_text}.",
        f"Streamed replies identical to the non-streamed ones (same text and calls): {same} of "
        f"{sum(r['kind'] == 'call' and r['stream'] for r in rows)}.",
        f"Tool-calling prompts without tool_calls (non-streamed): {misses(rows, 'base')}; {misses(rows, 'tuned')}.",
        "",
        "Every reply is in toolcall.jsonl.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="recipes/toolcall.yaml")
    p.add_argument("--n", type=int, default=0, help="at most this many prompts of each kind (0: all)")
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the trainer and the server")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    load_start = os.getloadavg()[0]
    model = train(args.recipe, args.threads)
    calls, texts = held_out_prompts(args.recipe)
    if args.n:
        calls, texts = calls[: args.n], texts[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        server = TwoModels(model, Path(tmp), args.threads)
        try:
            server.wait(900)
            t0 = time.perf_counter()
            rows = measure(server.url, calls, texts, args.max_tokens)
            ask_s = time.perf_counter() - t0
        finally:
            server.stop()
    info = {
        **trained(model), "model": model, "ask_s": ask_s, "calls": len(calls), "texts": len(texts),
        "call_rows": ", ".join(str(c["row"]) for c in calls),
        "load_start": load_start, "load_end": os.getloadavg()[0],
    }  # fmt: skip
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toolcall.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (out / "toolcall.md").write_text(report(args, rows, info))
    print((out / "toolcall.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
