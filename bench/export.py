"""Export a model to GGUF at each quantization and measure what the round trip keeps.

    python bench/export.py [--model runs/quickstart/ppo/final] [--quants f16,q8_0,q4_0] [--prompts 20]

For each quantization: the file size, the largest logit difference against the source over the prompts, whether
greedy replies (32 tokens) are identical, and perplexity on held-out Alpaca answers (../shared/data/alpaca, the
last `--ppl_rows` rows; skipped when absent). Loading back goes through pixiu's own GGUF path (transformers'
dequantizing reader), as `pixiu chat model.gguf` would. Where llama-cpp-python is installed, the file is also
loaded by llama.cpp: its largest logit difference against the source (every prompt position) and its greedy
replies through pixiu's llama.cpp backend, which picks up the template the export recorded.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.config import ModelConfig
from pixiu.engine import Sampling, generate, load_engine
from pixiu.model import export, io

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca"
PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Translate 'good morning' to French.",
    "What is 12 plus 30?",
    "Write a haiku about the sea.",
    "Name an antonym of 'fast'.",
    "你好，介绍一下你自己",
    "How many minutes are in 3 hours?",
    "What is photosynthesis?",
    "List two primary colors.",
    "Summarize: The cat sat on the mat all day.",
    "Why is the sky blue?",
    "请用一句话解释什么是机器学习。",
    "What is the boiling point of water in Celsius?",
    "Suggest a name for a coffee shop.",
    "What is the opposite of 'cold'?",
    "Convert 2 kilometers to meters.",
    "Who wrote Romeo and Juliet?",
    "Give an example of a mammal.",
    "北京是哪个国家的首都？",
]


def heldout_answers(n: int) -> list[tuple[Conversation, str]]:
    files = sorted(ALPACA.glob("*.json")) if ALPACA.exists() else []
    if not files:
        return []
    rows = (
        [r for r in json.loads(files[0].read_text(encoding="utf-8")) if r.get("output")][-n:] if n > 0 else []
    )
    out = []
    for r in rows:
        q = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        out.append((Conversation([Message("user", q)]), r["output"]))
    return out


@torch.no_grad()
def perplexity(loaded, items) -> float:
    """exp(mean NLL of the answer tokens), the prompt rendered with the model's chat template."""
    nll, n = 0.0, 0
    for conv, answer in items:
        r = loaded.template.render(conv.add("assistant", answer), train_on="last")
        ids = torch.tensor([r.input_ids])
        logp = loaded.model(ids).logits[0, :-1].float().log_softmax(-1)
        mask = torch.tensor(r.loss_mask[1:], dtype=torch.bool)
        nll -= logp[torch.arange(len(mask)), ids[0, 1:]][mask].sum().item()
        n += int(mask.sum())
    return math.exp(nll / max(n, 1))


@torch.no_grad()
def max_logit_diff(a, b, convs) -> float:
    worst = 0.0
    for c in convs:
        ids = torch.tensor([a.template.prompt_ids(c)])
        worst = max(worst, (a.model(ids).logits - b.model(ids).logits).abs().max().item())
    return worst


@torch.no_grad()
def rounding_floor(src, convs) -> float:
    """Max logit diff of the source against itself with its (LoRA-merged) weight matrices rounded to f16 and
    computed in fp32: what an f16 file cannot do better than, whatever reads it."""
    model = copy.deepcopy(src.model)
    model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    for p in model.parameters():
        if p.dim() >= 2:
            p.copy_(p.half().float())
    return max_logit_diff(src, dataclasses.replace(src, model=model), convs)


@torch.no_grad()
def llamacpp(path: Path, src, convs, want: list[str]) -> str:
    """'max logit diff, identical replies' of the GGUF run by llama.cpp, or why it was not run."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return "not installed"
    threads = torch.get_num_threads()
    llm = Llama(
        str(path), n_ctx=1024, logits_all=True, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    worst = 0.0
    for c in convs:
        ids = src.template.prompt_ids(c)
        llm.reset()
        llm.eval(ids)
        got = torch.from_numpy(llm.scores[: len(ids)].copy())
        worst = max(worst, (got - src.model(torch.tensor([ids])).logits[0]).abs().max().item())
    llm.close()
    with load_engine(str(path), backend="llamacpp") as engine:
        replies = [r.text for r in engine.generate(convs, Sampling(32))]
    return f"{worst:.4f}, {sum(x == y for x, y in zip(replies, want))}/{len(convs)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--quants", default="f16,q8_0,q4_0")
    p.add_argument("--prompts", type=int, default=20)
    p.add_argument("--ppl_rows", type=int, default=100)
    a = p.parse_args()
    src = io.load(ModelConfig(a.model, dtype="fp32"))
    convs = [Conversation([Message("user", q)]) for q in PROMPTS[: a.prompts]]
    want = generate(src, convs, Sampling(32))
    items = heldout_answers(a.ppl_rows)
    print(
        f"model {a.model}; perplexity on the last {len(items)} Alpaca answers; threads {torch.get_num_threads()}"
    )
    print(
        "| GGUF | MiB | max logit diff | greedy replies identical (32 tok) | perplexity | export s "
        "| llama.cpp: max logit diff, identical replies |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    if items:
        print(f"| source ({a.model}) | - | - | - | {perplexity(src, items):.3f} | - | - |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PIXIU_CACHE"] = tmp  # a fresh conversion cache: the files are new
        for quant in a.quants.split(","):
            t0 = time.perf_counter()
            path = export.write_gguf(src, Path(tmp) / f"model-{quant}.gguf", quant)
            secs = time.perf_counter() - t0
            back = io.load(ModelConfig(str(path), dtype="fp32"))
            same = sum(x == y for x, y in zip(generate(back, convs, Sampling(32)), want))
            ppl = f"{perplexity(back, items):.3f}" if items else "n/a"
            diff = max_logit_diff(src, back, convs)
            size = path.stat().st_size / 2**20
            cpp = llamacpp(path, src, convs, want)
            print(
                f"| {quant} | {size:.1f} | {diff:.4f} | {same}/{len(convs)} | {ppl} | {secs:.1f} | {cpp} |",
                flush=True,
            )
            del back
            if quant == "f16":
                print(f"(f16 rounding floor: the source's weights rounded to f16, run in fp32: max logit diff "
                      f"{rounding_floor(src, convs):.4f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
