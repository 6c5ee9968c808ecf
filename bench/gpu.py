"""pixiu on one CUDA GPU, side by side with Hugging Face transformers: the engine half of issue 16's bench (the
training half is bench/gpu_train.py, run after it when present).

Models: seeded random bf16 weights of the SmolLM2-1.7B shape (24 layers, hidden 2048, 32 heads, MLP 8192;
1.71B parameters) and the SmolLM2-135M shape, built here with SmolLM2's tokenizer (speed depends on the shape,
not the values; the hub is out of reach on the GPU machine). `--tokenizer DIR` holds the tokenizer files and
config.json of pixiu's converted embedded model (bench/gpu_prepare.sh copies them into .gpu/tokenizer); without
it, this machine's converted embedded model is used.

Measured on the 1.7B shape, bf16, greedy, the same raw-text prompts on every side, 128 new tokens (HF with
min_new_tokens=128; the engine stops only at a stop token, which random weights do not reach in practice: its
tokens are counted, not assumed). tokens/s = generated tokens / wall time from submission to the last token,
prefill included, after a warm-up that captures the engine's CUDA graphs and compiles HF's static cache:
- 1 stream: the engine (`load_engine`: its default device and decode, i.e. the GPU and CUDA graphs) vs HF
  `generate` with `cache_implementation="static"` (transformers then compiles the forward: the fastest plain-HF
  path a GPU user would pick); also the engine with decode='eager' and HF's dynamic cache, for reference;
- 32 streams: the engine (continuous batching, all submitted at once) vs HF batched `generate` (left padding,
  dynamic cache);
- 64 concurrent streams through serve's job layer (serve/jobs.py: one asyncio Job per request, as `pixiu serve`
  runs them, without HTTP): completed streams and aggregate tokens/s.
Peak GiB: torch.cuda.max_memory_allocated over each side (weights, KV cache, activations; no allocator slack).

    python bench/gpu.py --tokenizer .gpu/tokenizer --out bench/results/gpu.md   # on a CUDA machine (< 8 min)
    python bench/gpu.py --cpu-smoke --out /tmp/gpu-smoke.md                     # every step, tiny shape, CPU
Without CUDA (and without --cpu-smoke) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a plain checkout: pixiu need not be installed
sys.path.insert(0, str(ROOT / "bench"))

SHAPES = {  # overrides of SmolLM2-135M's config.json (the tokenizer dir's)
    "m135": {},
    "m17": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
}
GOALS = {"1 stream": 1.3, "32 streams": 4.0}  # issue 16: x HF static cache, x HF batched dynamic cache
PROMPTS = [f"Write a short note about topic number {i} and why it matters." for i in range(64)]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--tokenizer", default="", help="tokenizer files + config.json (default: the embedded model's)"
    )
    p.add_argument("--out", default="", help="write the markdown table here (and a .json beside it)")
    p.add_argument("--max-new", type=int, default=128, help="new tokens per reply")
    p.add_argument("--models", default="", help="build the models here (default: a temp dir)")
    p.add_argument("--skip-train", action="store_true", help="do not run bench/gpu_train.py")
    p.add_argument("--cpu-smoke", action="store_true", help="every measurement on a tiny shape on the CPU")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print(
            "bench/gpu.py: no CUDA GPU here, nothing measured (--cpu-smoke runs every step on a tiny shape)"
        )
        return 0
    t0 = time.perf_counter()
    smoke = args.cpu_smoke
    device = "cpu" if smoke else "cuda"
    root = Path(args.models or tempfile.mkdtemp(prefix="pixiu-gpu-"))
    names = ["tiny"] if smoke else ["m17", "m135"]
    make_models(tokenizer_dir(args.tokenizer), root, names, device)
    big = root / names[0]
    new = 8 if smoke else args.max_new
    rows = []
    for part in (engine_rows, hf_rows):  # the table is rewritten after each part: a later failure keeps it
        rows += guarded(part, big, new, device, smoke)
        free()
        text = table(rows, args, smoke, time.perf_counter() - t0)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
            Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(text, flush=True)
    failed = guarded(train_half, args, root)
    print(f"bench/gpu.py done in {time.perf_counter() - t0:.0f} s")
    return 1 if failed or any("error" in r for r in rows) else 0


def guarded(part, *args) -> list[dict]:
    """Run one part of the bench; a failure becomes an error row (with its traceback printed), not the end."""
    try:
        return part(*args) or []
    except Exception as e:  # noqa: BLE001 - one GPU run must report as much as it can
        traceback.print_exc()
        return [{"case": part.__name__, "side": "(failed)", "error": f"{type(e).__name__}: {e}"}]


def tokenizer_dir(given: str) -> Path:
    if given:
        return Path(given)
    from pixiu.model import io

    return Path(io.resolve("smollm2-135m"))  # the converted embedded model (tokenizer + config.json)


def make_models(tok: Path, root: Path, names: list[str], device: str) -> None:
    """Seeded random bf16 weights of each shape with the tokenizer beside them (from ../shared/gpu/make_models.py)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    base = json.loads((tok / "config.json").read_text())
    for name in names:
        out = root / name
        if (out / "config.json").exists():
            continue
        torch.manual_seed(0)
        cfg = AutoConfig.for_model(**{**base, **SHAPES[name]})
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(out)
        for f in tok.iterdir():
            if f.is_file() and f.name != "config.json" and not f.name.endswith((".safetensors", ".bin")):
                (out / f.name).write_bytes(f.read_bytes())
        print(
            f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters -> {out}", flush=True
        )
        del model
        free()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def timed(fn):
    """-> (fn's result, seconds, peak GiB allocated during it or None on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return out, time.perf_counter() - start, peak


def row(name: str, side: str, tokens: int, seconds: float, peak, **extra) -> dict:
    r = {"case": name, "side": side, "tokens": tokens, "seconds": round(seconds, 3)}
    r |= {"tok_s": round(tokens / seconds, 1), "peak_gib": None if peak is None else round(peak, 2), **extra}
    print(json.dumps(r), flush=True)
    return r


def engine_rows(path: Path, new: int, device: str, smoke: bool) -> list[dict]:
    """pixiu's engine as `load_engine` sets it up (device 'auto', decode 'auto'), one engine per case with as
    many batch slots as the case has streams (so each peak shows that case's KV cache), sharing the weights;
    then decode='eager' for reference."""
    from pixiu.engine import Sampling, load_engine
    from pixiu.engine.torch_engine import TorchEngine
    from pixiu.model.io import Loaded

    s = Sampling(max_new_tokens=new)
    with load_engine(str(path), dtype="fp32" if smoke else "bf16", max_batch=1, name="m") as eng:
        mode = f"device {eng.device}, decode {'eager' if eng.fast is None else 'graphs'}"
        loaded = Loaded(eng.model, eng.tokenizer, eng.template, str(path), eng.model.dtype)
        eng.generate(PROMPTS[:1], s)  # warm-up: captures the graphs of the timed runs
        outs, t, peak = timed(lambda: [eng.generate([p], s)[0] for p in PROMPTS[:3]])
        rows = [row("1 stream", f"pixiu engine ({mode})", sum(o.completion_tokens for o in outs), t, peak)]
        fast_ids = [i for d in eng.submit(PROMPTS[0], s) for i in d.token_ids]
        graphs = sorted(eng.fast.graphs) if eng.fast is not None and eng.fast.use_graphs else []
    del eng
    free()
    with TorchEngine(loaded, "m", max_batch=32) as eng:
        for _ in range(2):  # warm-up: captures the graphs of the timed run (admission may split the batch)
            eng.generate(PROMPTS[:32], s)
        outs, t, peak = timed(lambda: eng.generate(PROMPTS[:32], s))
        tokens = sum(o.completion_tokens for o in outs)
        rows.append(row("32 streams", f"pixiu engine ({mode})", tokens, t, peak))
    del eng
    free()
    with TorchEngine(loaded, "m", max_batch=64) as eng:
        asyncio.run(job_streams(eng, PROMPTS[:64], Sampling(max_new_tokens=min(new, 16))))  # warm-up
        (done, tokens), t, peak = timed(lambda: asyncio.run(job_streams(eng, PROMPTS[:64], s)))
        rows.append(row("64 streams", f"pixiu serve job layer ({mode})", tokens, t, peak, completed=done))
    del eng
    free()
    with TorchEngine(loaded, "m", max_batch=1, decode="eager") as eng:
        eng.generate(PROMPTS[:1], Sampling(max_new_tokens=4))
        eager_ids, t, peak = timed(lambda: [i for d in eng.submit(PROMPTS[0], s) for i in d.token_ids])
        same = next((k for k, (a, b) in enumerate(zip(fast_ids, eager_ids)) if a != b), len(eager_ids))
        extra = {"graphs (1 stream)": [list(g) for g in graphs], "same_greedy_tokens_as_fast": same}
        rows.append(row("1 stream", "pixiu engine (decode eager)", len(eager_ids), t, peak, **extra))
    return rows


async def job_streams(engine, prompts: list[str], sampling) -> tuple[int, int]:
    """Every prompt as its own serve Job (engine thread -> asyncio queue), all at once -> (completed, tokens)."""
    from pixiu.serve.jobs import Job, pieces

    async def one(prompt: str) -> tuple[bool, int]:
        job = Job()
        job.submit(engine, prompt, sampling, stop=[])
        finish = None
        async for piece in pieces(job, None, None):
            finish = piece.finish_reason or finish
        return finish in ("stop", "length"), job.completion_tokens()

    results = await asyncio.gather(*(one(p) for p in prompts))
    return sum(ok for ok, _ in results), sum(n for _, n in results)


def hf_rows(path: Path, new: int, device: str, smoke: bool) -> list[dict]:
    """transformers' own generate on the same weights: static cache (compiled) and dynamic cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.float32 if smoke else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False)

    def gen(prompts: list[str], **more) -> int:
        tok.padding_side = "left"
        batch = tok(prompts, return_tensors="pt", padding=True).to(device)
        out = model.generate(**batch, **{**kw, **more})
        return (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]

    rows = []
    try:
        for _ in range(2):  # warm-up: the static cache compiles the forward here
            gen(PROMPTS[:1], cache_implementation="static")
        n, t, peak = timed(lambda: sum(gen([p], cache_implementation="static") for p in PROMPTS[:3]))
        rows.append(row("1 stream", "HF generate, static cache", n, t, peak))
    except Exception as e:  # noqa: BLE001 - a failure here is a finding to report, not a reason to stop
        rows.append(
            {"case": "1 stream", "side": "HF generate, static cache", "error": f"{type(e).__name__}: {e}"}
        )
        print(rows[-1], flush=True)
    gen(PROMPTS[:1], max_new_tokens=4, min_new_tokens=4)
    n, t, peak = timed(lambda: gen(PROMPTS[:1]))
    rows.append(row("1 stream", "HF generate, dynamic cache", n, t, peak))
    gen(PROMPTS[:32], max_new_tokens=4, min_new_tokens=4)
    n, t, peak = timed(lambda: gen(PROMPTS[:32]))
    rows.append(row("32 streams", "HF batched generate, dynamic cache", n, t, peak))
    return rows  # the model goes with this frame: main frees the memory


def table(rows: list[dict], args, smoke: bool, seconds: float) -> str:
    """Markdown: one line per side, the engine's ratio against the case's peer and the goal."""
    import transformers

    gpu = (
        torch.cuda.get_device_name() if torch.cuda.is_available() and not smoke else "CPU (smoke: tiny shape)"
    )
    peers = {"1 stream": "HF generate, static cache", "32 streams": "HF batched generate, dynamic cache"}
    lines = [
        f"## bench/gpu.py: engine vs HF generate ({gpu}; torch {torch.__version__}, "
        f"transformers {transformers.__version__})",
        "",
        f"{'tiny' if smoke else 'SmolLM2-1.7B'} shape, {'fp32' if smoke else 'bf16'}, greedy, "
        f"{8 if smoke else args.max_new} new tokens, random weights; {seconds:.0f} s for this half.",
        "",
        "| case | side | tokens | tok/s | x peer | goal | peak GiB | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['side']} | | | | | | {r['error'][:200]} |")
            continue
        peer = next((p for p in rows if p["side"] == peers.get(r["case"]) and "tok_s" in p), None)
        ratio = f"{r['tok_s'] / peer['tok_s']:.2f}x" if peer and r["side"].startswith("pixiu") else ""
        goal = f">= {GOALS[r['case']]}x" if ratio and r["case"] in GOALS and "eager" not in r["side"] else ""
        notes = "; ".join(
            f"{k}: {v}"
            for k, v in r.items()
            if k in ("completed", "graphs (1 stream)", "same_greedy_tokens_as_fast")
        )
        gib = "" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        lines.append(
            f"| {r['case']} | {r['side']} | {r['tokens']} | {r['tok_s']:.1f} | {ratio} | {goal} | {gib} | {notes} |"
        )
    return "\n".join(lines) + "\n"


def train_half(args, root: Path) -> None:
    """bench/gpu_train.py's measurements (helper module of this bench), on the models built here."""
    if args.skip_train or importlib.util.find_spec("gpu_train") is None:
        print("bench/gpu.py: training half skipped" + ("" if args.skip_train else " (no bench/gpu_train.py)"))
        return
    import gpu_train

    argv = ["--models", str(root)] + (["--cpu-smoke"] if args.cpu_smoke else [])
    if args.out:
        argv += ["--out", str(Path(args.out).parent)]
    gpu_train.main(argv)


if __name__ == "__main__":
    sys.exit(main())
