"""pixiu's generation engine against HF `generate` and llama.cpp on this CPU: decode speed, throughput, RSS.

Same weights and precision on every side (fp32 by default), same threads, greedy decoding, the same chat
prompts (Alpaca instructions in the model's chat template), the same max_new_tokens; a reply ends at the
template's stop token on every side.

- single-stream decode tokens/s: one request at a time, tokens after the first over the time from the first
  to the last streamed piece (prefill excluded). pixiu engine vs `model.generate` (timed with a streamer)
  vs llama.cpp (llama-cpp-python through pixiu's llamacpp backend, on a GGUF of the same weights: pass an
  F32 GGUF with --gguf for matched precision). Also shown as GB/s of weights read per second and as a share
  of --ceiling-gbs (this machine's memory bandwidth).
- aggregate tokens/s with C concurrent requests (C in --concurrency): all C submitted at once to the engine
  (max_batch C) vs HF batched `generate` (left padding, one call) vs a one-at-a-time loop of HF `generate`
  (a server that serves one request at a time). Tokens are the reply tokens up to the stop token, over the
  wall time from submission to the last reply (prefill included).
- greedy check: every pixiu reply, single and concurrent, token for token against HF `generate` on that
  prompt alone.
- int8 weights (`pixiu serve --quantize int8`): the pixiu sides again with int8 linear layers, plus what it
  costs: mean NLL per reply token of --quality-rows held-out Alpaca answers in fp32 and in int8. Not matched
  precision: the row says so, and its greedy check against fp32 HF shows where the replies part.
- peak RSS: each side runs in a fresh subprocess and reports its own ru_maxrss.

Run from the repository root; it writes bench/results/generate.md and generate.jsonl (--out names them):
    python bench/generate.py --write-f32-gguf /tmp/smollm2-135m-f32.gguf     # once, see below
    python bench/generate.py --threads 2 --model qwen2.5-0.5b-random --out generate_qwen   # the larger model
    python bench/generate.py --threads 1 --gguf /tmp/smollm2-135m-f32.gguf,smollm2-135m
    python bench/generate.py --max-new-tokens 8 --concurrency 2 --single 1 --results /tmp/gen  # smoke
--model qwen2.5-0.5b-random is Qwen2.5-0.5B's shape (24 layers, hidden 896, 14 query and 2 key-value heads, MLP
4864, vocabulary 151,936, tied embeddings; 494M parameters) with seeded random weights and SmolLM2's tokenizer,
written once under the system temp dir: the hub is out of reach here, and decode speed depends on the shape,
not the values. Its greedy replies are gibberish that never reaches a stop token, so every reply runs to
max_new_tokens; ids past SmolLM2's 49,152 decode to nothing.
--gguf takes a comma-separated list, one llama.cpp row each ('smollm2-135m' is the embedded Q4_1 file).
--write-f32-gguf dequantizes the embedded GGUF into an F32 GGUF: exactly the weights the torch sides load
(pixiu dequantizes that same file), at their precision. llama-cpp-python may live elsewhere: --llamacpp-site
DIR (a site-packages holding llama_cpp) is searched after this interpreter's own packages on that side only,
or --llamacpp-python PATH runs that side in another interpreter (it must be able to import pixiu too).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_data.json"
FALLBACK = [
    "Explain how a bicycle works.",
    "Write a short story about a lighthouse keeper.",
    "Give three tips for staying healthy.",
    "Describe the water cycle.",
]


RANDOM_QWEN = "qwen2.5-0.5b-random"


def random_qwen(root: Path) -> Path:
    """A Qwen2.5-0.5B-shaped model with seeded random weights and SmolLM2's tokenizer (see the docstring)."""
    out = root / RANDOM_QWEN
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from pixiu.model import io

    shape = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=True)  # fmt: skip
    tok = io.load_tokenizer(io.resolve("smollm2-135m"))
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**shape, **ids), dtype=torch.float32)
    tmp = out.with_suffix(".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def questions(n: int) -> list[str]:
    """The first n Alpaca instructions that need no input (a fixed list when the data is absent)."""
    if ALPACA.is_file():
        rows = [r["instruction"] for r in json.loads(ALPACA.read_text()) if not r["input"]]
    else:
        rows = FALLBACK
    return [rows[i % len(rows)] for i in range(n)]


def conversations(n: int):
    from pixiu.chat.messages import Conversation, Message

    return [Conversation([Message("user", q)]) for q in questions(n)]


# ---------------------------------------------------------------- sides (each runs in its own process)


def load_hf(args):
    from pixiu.config import ModelConfig
    from pixiu.engine.text import stop_token_ids
    from pixiu.model import io

    loaded = io.load(ModelConfig(args.model, dtype=args.dtype))
    loaded.model.eval()
    return loaded, sorted(stop_token_ids(loaded.tokenizer, loaded.template.stop))


def until_stop(ids: list[int], stops: list[int]) -> list[int]:
    end = next((i + 1 for i, t in enumerate(ids) if t in stops), len(ids))
    return ids[:end]


def weight_bytes(model) -> int:
    """Bytes of weights read per decoded token: parameters and int8 buffers (tied weights counted once), less an
    untied input embedding, of which a step reads one row."""
    tensors = [*model.parameters(), *model.buffers()]
    total = sum(t.numel() * t.element_size() for t in tensors)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings()
    return total - (0 if getattr(head, "weight", None) is emb else emb.numel() * emb.element_size())


def timed_requests(engine, convs, sampling) -> list[dict]:
    """Submit every conversation at once; per request: ids and the time of each streamed piece."""
    records = [{"ids": [], "stamps": [], "first": 0} for _ in convs]

    def hook(record):
        def on_delta(delta):
            if not record["stamps"]:
                record["first"] = len(delta.token_ids)
            record["ids"] += delta.token_ids
            record["stamps"].append(time.perf_counter())

        return on_delta

    t0 = time.perf_counter()
    requests = [engine.submit(c, sampling, on_delta=hook(r)) for c, r in zip(convs, records)]
    for request in requests:
        request.completion()
    for r in records:
        r["t0"] = t0
    return records


def decode_rate(records: list[dict]) -> float:
    """Tokens after the first piece over the time from the first to the last piece, summed over requests."""
    tokens = sum(len(r["ids"]) - r["first"] for r in records)
    seconds = sum(r["stamps"][-1] - r["stamps"][0] for r in records)
    return tokens / seconds if seconds else float("nan")


def side_pixiu_single(args, quantize: str = "none") -> dict:
    from pixiu.engine import Sampling, load_engine

    with load_engine(args.model, backend="torch", dtype=args.dtype, max_batch=1, quantize=quantize) as engine:
        sampling = Sampling(max_new_tokens=args.max_new_tokens)
        engine.generate(conversations(1), Sampling(max_new_tokens=4))  # warm-up
        cpu = time.process_time()
        records = [timed_requests(engine, [c], sampling)[0] for c in conversations(args.single)]
        cpu = time.process_time() - cpu
        return {
            "tok_s": decode_rate(records),
            "cpu_tok_s": sum(len(r["ids"]) for r in records) / cpu,
            "ids": [r["ids"] for r in records],
            "bytes": weight_bytes(engine.model),
        }


def side_int8_quality(args) -> dict:
    """Mean NLL per reply token of --quality-rows Alpaca answers (those after the generation prompts' rows), the
    same model in fp32 and with int8 weights (`pixiu eval --tasks perplexity`'s scorer): the cost of quantization
    in the unit a perplexity shows."""
    from pixiu.chat.messages import Conversation, Message
    from pixiu.engine.quant import quantize
    from pixiu.eval.scores import nll

    loaded, _ = load_hf(args)
    rows = [r for r in json.loads(ALPACA.read_text()) if not r["input"]] if ALPACA.is_file() else []
    rows = rows[1000 : 1000 + args.quality_rows]
    convs = [
        Conversation([Message("user", r["instruction"]), Message("assistant", r["output"])]) for r in rows
    ]
    rendered = [loaded.template.render(c) for c in convs]
    before = nll(loaded, rendered)
    quantize(loaded.model, "int8")
    after = nll(loaded, rendered)
    return {"nll_fp32": before[0] / before[1], "nll_int8": after[0] / after[1], "rows": len(rows)}


def side_llamacpp_single(args) -> dict:
    from pixiu.engine import Sampling, load_engine

    with load_engine(args.gguf, backend="llamacpp") as engine:  # the child gets one file of the list
        sampling = Sampling(max_new_tokens=args.max_new_tokens)
        engine.generate(conversations(1), Sampling(max_new_tokens=4))
        cpu = time.process_time()
        records = [timed_requests(engine, [c], sampling)[0] for c in conversations(args.single)]
        cpu = time.process_time() - cpu
        from pixiu.engine.llamacpp import gguf_path

        path = gguf_path(args.gguf)
        # weights read per token: the file less its metadata, roughly (Q4_1 blocks are read as stored)
        return {
            "tok_s": decode_rate(records),
            "cpu_tok_s": sum(len(r["ids"]) for r in records) / cpu,
            "ids": [r["ids"] for r in records],
            "gguf": str(path),
            "bytes": path.stat().st_size,
        }


def side_hf_single(args) -> dict:
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Stamps(BaseStreamer):
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())  # the first put is the prompt

        def end(self):
            pass

    loaded, stops = load_hf(args)
    tokens, seconds, cpu, ids = 0, 0.0, 0.0, []
    for k, conv in enumerate([conversations(1)[0], *conversations(args.single)]):  # the first is a warm-up
        prompt = loaded.template.prompt_ids(conv)
        cpu0 = time.process_time()
        streamer = Stamps()
        with torch.inference_mode():
            out = loaded.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=loaded.tokenizer.pad_token_id,
                streamer=streamer,
            )
        ids.append(out[0, len(prompt) :].tolist())
        if k:  # the warm-up is not timed
            tokens += len(ids[-1]) - 1
            seconds += streamer.times[-1] - streamer.times[1]
            cpu += time.process_time() - cpu0
    return {"tok_s": tokens / seconds, "cpu_tok_s": sum(map(len, ids[1:])) / cpu, "ids": ids[1:]}


def side_pixiu_batch(args, quantize: str = "none") -> dict:
    from pixiu.engine import Sampling, load_engine

    c = args.concurrency
    with load_engine(args.model, backend="torch", dtype=args.dtype, max_batch=c, quantize=quantize) as engine:
        engine.generate(conversations(1), Sampling(max_new_tokens=4))
        cpu = time.process_time()
        records = timed_requests(engine, conversations(c), Sampling(max_new_tokens=args.max_new_tokens))
        cpu = time.process_time() - cpu
    wall = max(r["stamps"][-1] for r in records) - records[0]["t0"]
    latency = [r["stamps"][-1] - r["t0"] for r in records]
    first = [r["stamps"][0] - r["t0"] for r in records]
    tokens = sum(len(r["ids"]) for r in records)
    return {
        "tok_s": tokens / wall,
        "cpu_tok_s": tokens / cpu,
        "ids": [r["ids"] for r in records],
        "latency_p50": statistics.median(latency),
        "first_piece_p50": statistics.median(first),
    }


def side_hf_batched(args) -> dict:
    import torch

    loaded, stops = load_hf(args)
    hf_warm_up(loaded, stops)
    prompts = [loaded.template.prompt_ids(c) for c in conversations(args.concurrency)]
    width, pad = max(map(len, prompts)), loaded.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    t0, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=args.max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=pad,
        )
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    replies = [until_stop(row, stops) for row in out[:, width:].tolist()]
    tokens = sum(map(len, replies))
    return {"tok_s": tokens / wall, "cpu_tok_s": tokens / cpu, "ids": replies}


def side_hf_loop(args) -> dict:
    import torch

    loaded, stops = load_hf(args)
    hf_warm_up(loaded, stops)
    t0, cpu, replies = time.perf_counter(), time.process_time(), []
    for conv in conversations(args.concurrency):
        prompt = loaded.template.prompt_ids(conv)
        with torch.inference_mode():
            out = loaded.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
        replies.append(out[0, len(prompt) :].tolist())
    wall, cpu, tokens = time.perf_counter() - t0, time.process_time() - cpu, sum(map(len, replies))
    return {"tok_s": tokens / wall, "cpu_tok_s": tokens / cpu, "ids": replies}


def hf_warm_up(loaded, stops) -> None:
    """The same 4-token warm-up the engine sides get, so no side pays first-call costs in its timing."""
    import torch

    prompt = loaded.template.prompt_ids(conversations(1)[0])
    with torch.inference_mode():
        loaded.model.generate(
            torch.tensor([prompt]),
            max_new_tokens=4,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )


SIDES = {
    "pixiu-single": side_pixiu_single,
    "hf-single": side_hf_single,
    "llamacpp-single": side_llamacpp_single,
    "pixiu-batch": side_pixiu_batch,
    "pixiu-int8-single": lambda args: side_pixiu_single(args, "int8"),
    "pixiu-int8-batch": lambda args: side_pixiu_batch(args, "int8"),
    "int8-quality": side_int8_quality,
    "hf-batched": side_hf_batched,
    "hf-loop": side_hf_loop,
}


def child(args) -> None:
    if args.llamacpp_site:  # after our own packages: only what this interpreter lacks comes from there
        sys.path.append(args.llamacpp_site)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = SIDES[args.side](args)
    result.update(
        side=args.side,
        concurrency=args.concurrency,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        process_s=time.perf_counter() - t0,
    )
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------- parent: run sides, compare, report


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def f32_gguf(src: Path, out: Path) -> Path:
    """`src` (any quantization) with every tensor dequantized to F32, metadata copied (file type set to F32):
    the values pixiu's torch sides load from `src`, for llama.cpp at the same precision."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(out, arch)
    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name in (
            gguf.Keys.General.ARCHITECTURE,
            gguf.Keys.General.FILE_TYPE,
        ):
            continue  # written by GGUFWriter itself, or changed below
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in reader.tensors:
        writer.add_tensor(
            t.name, np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def run_side(args, side: str, concurrency: int = 1) -> dict:
    python = args.llamacpp_python if side.startswith("llamacpp") else sys.executable
    cmd = [python, __file__, "--side", side, "--concurrency", str(concurrency)]
    names = ("model", "dtype", "threads", "max_new_tokens", "single", "gguf", "llamacpp_site", "quality_rows")
    for name in names:
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    print(f"running {side} (concurrency {concurrency}) ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def llamacpp_version(args) -> str:
    code = "import sys; sys.path.append(sys.argv[1]); import llama_cpp; print(llama_cpp.__version__)"
    proc = subprocess.run(
        [args.llamacpp_python, "-c", code, args.llamacpp_site], capture_output=True, text=True
    )
    return f", llama-cpp-python {proc.stdout.strip()}" if proc.returncode == 0 else ""


def same(a: list[list[int]], b: list[list[int]]) -> str:
    return f"{sum(x == y for x, y in zip(a, b))}/{len(a)}"


def report(args, single: dict, batches: dict[int, dict]) -> str:
    import torch
    import transformers

    ps, hs = single["pixiu-single"], single["hf-single"]
    llama = {k: v for k, v in single.items() if k.startswith("llamacpp")}
    lines = [
        "# pixiu engine vs HF generate vs llama.cpp (CPU)",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"transformers {transformers.__version__}{args.llamacpp_version}; {args.threads} thread(s) on every side; "
        f"load average {args.load_start:.1f} at start, {args.load_end:.1f} at end (a shared machine).",
        "",
        f"Model {args.model_name}, {args.dtype}, {ps['bytes'] / 2**20:.0f} MiB of weights; greedy, max_new_tokens "
        f"{args.max_new_tokens}; {args.single} single-stream prompts; llama.cpp on "
        f"{', '.join(args.ggufs) or '(not run: no --gguf)'}.",
        "",
        f"Command: `python bench/generate.py {' '.join(args.argv)}`",
        "",
        "## Single-stream decode",
        "",
        "| side | decode tok/s | weights GB/s | % of ceiling | vs HF | tok per CPU-s | peak RSS MiB | "
        "greedy = HF alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("pixiu engine", ps),
        ("pixiu engine, int8 weights", single["pixiu-int8-single"]),
        ("HF generate", hs),
    ]
    rows += [(f"llama.cpp {Path(r['gguf']).name}", r) for r in llama.values()]
    for label, r in rows:
        bw = r.get("bytes", ps["bytes"]) / 1e9 * r["tok_s"]  # llama.cpp: bytes of its own file's weights
        lines.append(
            f"| {label} | {r['tok_s']:.1f} | {bw:.1f} | {100 * bw / args.ceiling_gbs:.0f}% | "
            f"{r['tok_s'] / hs['tok_s']:.2f}x | {r['cpu_tok_s']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{same(r['ids'], hs['ids'])} |"
        )
    qual = single["int8-quality"]
    lines.append(
        f"\nint8 weights (`--quantize int8`: per-row absmax int8, see src/pixiu/engine/quant.py), the price: mean NLL "
        f"per reply token of {qual['rows']} held-out Alpaca answers {qual['nll_fp32']:.4f} in fp32, "
        f"{qual['nll_int8']:.4f} int8 (perplexity {math.exp(qual['nll_fp32']):.3f} -> {math.exp(qual['nll_int8']):.3f})."
    )
    for r in llama.values():
        lines.append(
            f"\npixiu / llama.cpp ({Path(r['gguf']).name}) single-stream: {ps['tok_s'] / r['tok_s']:.2f}x"
        )
    lines += [
        "",
        "## Aggregate throughput, C concurrent requests",
        "",
        "| C | pixiu tok/s | pixiu int8 tok/s | HF batched tok/s | one-at-a-time tok/s | vs HF batched | "
        "int8 vs HF batched | vs one-at-a-time | pixiu p50 latency s | pixiu p50 first piece s | pixiu RSS MiB | "
        "HF batched RSS MiB | pixiu greedy = HF alone | int8 greedy = HF alone | HF batched = HF alone |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, b in batches.items():
        p, q, h, loop = b["pixiu-batch"], b["pixiu-int8-batch"], b["hf-batched"], b["hf-loop"]
        lines.append(
            f"| {c} | {p['tok_s']:.1f} | {q['tok_s']:.1f} | {h['tok_s']:.1f} | {loop['tok_s']:.1f} | "
            f"{p['tok_s'] / h['tok_s']:.2f}x | {q['tok_s'] / h['tok_s']:.2f}x | {p['tok_s'] / loop['tok_s']:.2f}x | "
            f"{p['latency_p50']:.1f} | {p['first_piece_p50']:.2f} | {p['peak_rss_mib']:.0f} | "
            f"{h['peak_rss_mib']:.0f} | {same(p['ids'], loop['ids'])} | {same(q['ids'], loop['ids'])} | "
            f"{same(h['ids'], loop['ids'])} |"
        )
    lines += [
        "",
        "The same work per CPU-second (user + system time of the side's process, prefill included): on a shared "
        "machine wall-clock rates move with the other load, CPU time much less.",
        "",
        "| C | pixiu tok per CPU-s | pixiu int8 | HF batched | one-at-a-time | vs HF batched | int8 vs HF batched |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, b in batches.items():
        p, q, h, loop = (
            b[k]["cpu_tok_s"] for k in ("pixiu-batch", "pixiu-int8-batch", "hf-batched", "hf-loop")
        )
        lines.append(f"| {c} | {p:.1f} | {q:.1f} | {h:.1f} | {loop:.1f} | {p / h:.2f}x | {q / h:.2f}x |")
    lines += [
        "",
        "Each side runs alone in its own process, one after another; on a shared machine the other load changes "
        "between them, so read differences of 10-20% between sides as noise unless both tables agree.",
        "",
        f"Raw results (token ids left out; they are in {args.out}.jsonl):",
        "",
        "```json",
        *(json.dumps({k: v for k, v in r.items() if k != "ids"}) for r in raw_rows(single, batches)),
        "```",
    ]
    return "\n".join(lines) + "\n"


def raw_rows(single: dict, batches: dict[int, dict]) -> list[dict]:
    return [*single.values(), *(r for b in batches.values() for r in b.values())]


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--single", type=int, default=3, help="prompts timed one at a time")
    p.add_argument("--concurrency", default="8,32", help="comma-separated C values")
    p.add_argument(
        "--gguf", default="", help="comma-separated GGUFs of the same weights, one llama.cpp row each"
    )
    p.add_argument("--llamacpp-python", default=sys.executable, help="interpreter with llama-cpp-python")
    p.add_argument("--llamacpp-site", default="", help="site-packages dir holding llama_cpp (searched last)")
    p.add_argument("--write-f32-gguf", default="", help="write the model's F32 GGUF here and exit")
    p.add_argument("--quality-rows", type=int, default=64, help="Alpaca answers scored fp32 vs int8")
    p.add_argument("--ceiling-gbs", type=float, default=45.0, help="memory bandwidth of this machine, GB/s")
    p.add_argument("--results", default=str(RESULTS), help="the folder OUT.md and OUT.jsonl go to")
    p.add_argument("--out", default="generate", help="the name of the result files")
    p.add_argument("--side", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        args.concurrency = int(args.concurrency)
        return child(args)
    if args.write_f32_gguf:
        from pixiu.model import io

        print(f32_gguf(io.embedded_gguf(args.model), Path(args.write_f32_gguf)))
        return None
    args.model_name = args.model
    if args.model == RANDOM_QWEN:
        import tempfile

        args.model = str(random_qwen(Path(tempfile.gettempdir())))
    args.argv, args.load_start = argv, os.getloadavg()[0]
    args.ggufs = [g for g in args.gguf.split(",") if g]
    args.llamacpp_version = llamacpp_version(args) if args.ggufs else ""
    single = {
        s: run_side(args, s) for s in ("pixiu-single", "pixiu-int8-single", "hf-single", "int8-quality")
    }
    for i, gguf in enumerate(args.ggufs):
        single[f"llamacpp-single-{i}"] = run_side(
            argparse.Namespace(**{**vars(args), "gguf": gguf}), "llamacpp-single"
        )
    batches = {
        c: {s: run_side(args, s, c) for s in ("pixiu-batch", "pixiu-int8-batch", "hf-batched", "hf-loop")}
        for c in map(int, args.concurrency.split(","))
    }
    args.load_end = os.getloadavg()[0]
    text = report(args, single, batches)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.out}.md").write_text(text)
    keep = "model dtype threads max_new_tokens single concurrency ggufs load_start load_end".split()
    setup = {"side": "setup", **{k: getattr(args, k) for k in keep}}
    (out / f"{args.out}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [setup, *raw_rows(single, batches)])
    )
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
