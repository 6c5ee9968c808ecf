"""The training half of the GPU bench: pixiu SFT (LoRA and full), packed 16K-token SFT and its MFU, DPO steps/s and
a PPO step, beside TRL's SFTTrainer where trl is installed. bench/gpu.py (the one command) calls `main(args)`.

Models are seeded random weights of the SmolLM2-1.7B and -135M shapes (speed depends on shape, not values; the
hub is out of reach on the GPU machine) with SmolLM2's tokenizer from the embedded model, or, where that package
is missing, a small byte-level tokenizer with SmolLM2's chat template (the model keeps the 49,152-token head).
Data: `--data` is an Alpaca json (a list of instruction/input/output rows, e.g. a slice of ../shared/data/alpaca
copied to .gpu/alpaca.json, which is read when there) or else pixiu's packaged demo SFT rows, repeated to --rows.

Numbers (each run in this process, one after another):
- SFT tokens/s: the median of pixiu's own `tokens_per_s` (non-pad tokens over step wall time) over steps 6..N,
  batch 8, max_len 512, bf16 (LoRA r=16 on a bf16 base; full fine-tuning with fp32 master weights under bf16
  autocast), as in issue 16. TRL: the same definition, timed from on_step_begin to on_step_end.
- peak GiB: torch.cuda.max_memory_allocated over the run (not nvidia-smi: no CUDA context or cache slack).
- packed: full fine-tuning on rows packed to 2,048 tokens, 16,384 tokens per step (train.tokens_per_batch);
  MFU = 6 x params x tokens/s / the GPU's dense bf16 peak (989 TFLOP/s for an H100/H200 SXM; --peak-tflops).
- DPO: LoRA r=16 on the 1.7B shape, 8 pairs a step: median steps/s over steps 4..N (time between optimizer steps).
- PPO: the 135M shape, LoRA, 16 rollouts of at most 64 new tokens, the `format` task's reward: median step time.

    python bench/gpu_train.py                  # on a CUDA GPU (~3 minutes on an H200)
    python bench/gpu_train.py --cpu-smoke      # every measurement on a tiny shape on the CPU (a typo check)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPE_135M = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
)
SHAPES = {
    "m135": {**SHAPE_135M, "rope_theta": 100000.0},
    "m17": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        rope_theta=130000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
}
ALPACA = ROOT / ".gpu" / "alpaca.json"  # where a GPU run finds Alpaca rows (.gpu/ is ignored by git)
PEAK_TFLOPS = 989.0  # H100 / H200 SXM dense bf16 (NVIDIA data sheet; 1,979 is with 2:4 sparsity)


def parse(argv: list[str] | argparse.Namespace | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", default="", help=f"an Alpaca json (default: {ALPACA} when there, else the demo rows)"
    )
    p.add_argument("--rows", type=int, default=1000, help="training rows")
    p.add_argument("--steps", type=int, default=30, help="SFT steps (median over steps 6..N)")
    p.add_argument("--models", default="", help="a folder with m17/ and m135/ already built (bench/gpu.py's)")
    p.add_argument("--out", default="", help="where gpu_train.json and gpu_train.md go (default: a temp dir)")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS, help="dense bf16 peak for the MFU")
    p.add_argument("--compile", action="store_true", help="also run the packed SFT with train.compile=true")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny shapes and few steps on the CPU")
    p.add_argument("--no-trl", action="store_true", help="skip TRL even where it is installed")
    if isinstance(argv, argparse.Namespace):  # bench/gpu.py's own arguments: take the ones this bench knows
        defaults = vars(p.parse_args([]))
        args = argparse.Namespace(**{k: getattr(argv, k, v) for k, v in defaults.items()})
    else:
        args = p.parse_args(argv)
    if not args.data and ALPACA.exists() and not args.cpu_smoke:
        args.data = str(ALPACA)
    return args


def main(argv: list[str] | argparse.Namespace | None = None) -> dict:
    """Run every measurement -> {"rows": [...], "table": markdown, "device": ...}; also written under --out."""
    args = parse(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_train: no CUDA GPU here; nothing measured (use --cpu-smoke to check the script on a CPU)")
        return {"rows": [], "table": "", "device": "cpu"}
    work = Path(tempfile.mkdtemp(prefix="pixiu-gpu-train-"))
    out = Path(args.out) if args.out else work
    out.mkdir(parents=True, exist_ok=True)
    rows = measure(args, work)
    device = "cpu (smoke)" if args.cpu_smoke else torch.cuda.get_device_name()
    result = {"rows": rows, "table": table(rows, device, args), "device": device}
    (out / "gpu_train.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_train.md").write_text(result["table"])
    print(result["table"])
    return result


def measure(args: argparse.Namespace, work: Path) -> list[dict]:
    """The runs, in order: SFT LoRA and full (TRL beside each), packed SFT, DPO, PPO."""
    smoke = args.cpu_smoke
    big, small = ("tiny", "tiny") if smoke else ("m17", "m135")
    models = Path(args.models) if args.models else make_models(work / "models", {big, small})
    big, small = models / big, models / small
    steps, first = (3, 2) if smoke else (args.steps, 6)  # the medians start at step `first` (warm-up before)
    max_len = 128 if smoke else 512
    sft_data, pairs = write_data(work, args.data, 64 if smoke else args.rows)
    dtype = "--model.dtype=" + ("fp32" if smoke else "bf16")
    common = [dtype, f"--data.path={sft_data}", "--data.eval_size=0", "--data.skip_bad_rows=true"]
    common += ["--train.batch_size=8", "--lora.dropout=0.05"]
    sft = [*common, f"--data.max_len={max_len}", f"--train.max_steps={steps}"]
    rows = []
    for name, r in (("sft lora", 16), ("sft full", 0)):
        rows.append(attempt(pixiu_sft, name, big, work, [*sft, f"--lora.r={r}"], first))
        if has_trl() and not args.no_trl:
            rows.append(attempt(trl_sft, f"{name} TRL", big, sft_data, r, steps, max_len, first, smoke))
    packed = [*common, "--lora.r=0", "--data.packing=true", f"--train.max_steps={3 if smoke else 10}"]
    packed += [
        f"--data.max_len={256 if smoke else 2048}",
        f"--train.tokens_per_batch={1024 if smoke else 16384}",
    ]
    rows.append(attempt(pixiu_sft, "sft packed", big, work, packed, first // 2, args.peak_tflops))
    if args.compile:
        compiled = [*packed, "--train.compile=true"]
        rows.append(attempt(pixiu_sft, "sft packed compiled", big, work, compiled, 3, args.peak_tflops))
    dpo_steps = 4 if smoke else 12  # 8 pairs a step; reference log-probs are cached for these pairs only
    dpo = [dtype, f"--data.path={pairs}", "--data.eval_size=0", "--lora.r=16", "--train.batch_size=8"]
    dpo += [f"--train.max_steps={dpo_steps}", f"--data.max_samples={8 * dpo_steps}", "--data.max_len=512"]
    rows.append(attempt(pixiu_dpo, "dpo", big, work, dpo))
    ppo = [dtype, "--lora.r=16", "--ppo.reward_fn=format", "--data.path=pixiu:demo/prompts.jsonl"]
    ppo += [f"--train.max_steps={2 if smoke else 3}", "--data.eval_size=0"]
    ppo += [f"--gen.max_new_tokens={8 if smoke else 64}"]
    ppo += ["--ppo.rollout_prompts=4", "--ppo.minibatch=4"] if smoke else []
    rows.append(attempt(pixiu_ppo, "ppo", small, work, ppo))
    return rows


# ---------------------------------------------------------------- models and data


def make_models(root: Path, names: set[str]) -> Path:
    """Seeded random bf16 weights of each named shape + a tokenizer -> root/NAME (Hugging Face directories)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = load_tokenizer()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in sorted(names):
        cfg = LlamaConfig(
            vocab_size=49152,
            max_position_embeddings=8192,
            tie_word_embeddings=True,
            rms_norm_eps=1e-5,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **SHAPES[name],
        )
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters -> {root / name}")
        del model
    return root


def load_tokenizer():
    """SmolLM2's tokenizer (the embedded model's), else a byte-level BPE with its chat template."""
    from pixiu.model import io

    with contextlib.suppress(Exception):
        return io.load_tokenizer(io.resolve("smollm2-135m"))
    print("gpu_train: the embedded SmolLM2 is not installed; using a small byte-level tokenizer")
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_tokenizer  # the fast tests' tokenizer: SmolLM2's template, 400 tokens

    return make_tokenizer()


def write_data(work: Path, alpaca: str, n: int) -> tuple[Path, Path]:
    """n SFT rows (`messages` jsonl) from an Alpaca json or the demo rows repeated; and the demo pairs."""
    if alpaca:
        items = [r for r in json.loads(Path(alpaca).read_text()) if r["output"].strip()]
        convs = [
            [
                {
                    "role": "user",
                    "content": r["instruction"] + ("\n\n" + r["input"] if r.get("input") else ""),
                },
                {"role": "assistant", "content": r["output"]},
            ]
            for r in items
        ]
    else:
        demo = ROOT / "src" / "pixiu" / "data" / "demo" / "sft.jsonl"
        convs = [json.loads(line)["messages"] for line in demo.read_text().splitlines()]
    convs = (convs * (n // len(convs) + 1))[:n]
    sft = work / "sft.jsonl"
    sft.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in convs))
    return sft, ROOT / "src" / "pixiu" / "data" / "demo" / "pairs.jsonl"


# ---------------------------------------------------------------- measurements


def attempt(run, name: str, *args) -> dict:
    """run(name, *args): one measurement; a failure (an OOM, a missing package) becomes a row with its error, and
    the rest go on."""
    try:
        return run(name, *args)
    except Exception as e:  # noqa: BLE001 - one GPU run must report as much as it can
        traceback.print_exc()
        return {"name": name, "value": 0.0, "unit": "", "error": f"{type(e).__name__}: {e}"[:300]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@contextlib.contextmanager
def step_clock(times: list[float]):
    """Record the wall time at each optimizer update (after a CUDA sync): step times are the differences."""
    from pixiu.train import loop

    if not hasattr(loop, "Optimizer"):
        yield
        return
    update = loop.Optimizer.update

    def timed(self):
        norm = update(self)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter())
        return norm

    loop.Optimizer.update = timed
    try:
        yield
    finally:
        loop.Optimizer.update = update


def run_stage(
    module: str, stage: str, model: Path, out: Path, overrides: list[str]
) -> tuple[list[dict], float]:
    """Train one pixiu stage in this process -> its metrics rows and peak GPU GiB."""
    from pixiu import config

    cfg = config.load(None, [f"--model.name_or_path={model}", f"--train.output_dir={out}", *overrides])
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    importlib.import_module(module).run(cfg, stage)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    gc.collect()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], peak


def pixiu_sft(
    name: str, model: Path, work: Path, overrides: list[str], first: int, peak: float = 0.0
) -> dict:
    metrics, gib = run_stage("pixiu.train.sft", "sft", model, work / name.replace(" ", "_"), overrides)
    rates = [r["tokens_per_s"] for r in metrics if "tokens_per_s" in r and r["step"] >= first]
    tok_s = statistics.median(rates)
    row = {"name": name, "value": tok_s, "unit": "tok/s", "peak_gib": round(gib, 2), "steps": len(rates)}
    if peak:
        params = _params(model)
        row["mfu"] = round(6 * params * tok_s / (peak * 1e12), 4)
        row["note"] = f"MFU = 6 x {params / 1e9:.3f}B x tok/s / {peak:g} TFLOP/s"
    return row


def pixiu_dpo(name: str, model: Path, work: Path, overrides: list[str]) -> dict:
    times: list[float] = []
    with step_clock(times):
        _, gib = run_stage("pixiu.train.pref", "dpo", model, work / "dpo", overrides)
    rates = [1 / (b - a) for a, b in zip(times[2:], times[3:])]  # steps 4..N: the first ones warm up
    row = {
        "name": name,
        "value": statistics.median(rates or [0.0]),
        "unit": "steps/s",
        "peak_gib": round(gib, 2),
    }
    return row if rates else {**row, "note": "not timed: pixiu.train.loop.Optimizer.update was not found"}


def pixiu_ppo(name: str, model: Path, work: Path, overrides: list[str]) -> dict:
    metrics, gib = run_stage("pixiu.train.ppo", "ppo", model, work / "ppo", overrides)
    phases = ("gen_s", "score_s", "exp_s", "train_s")
    steps = [sum(r.get(k, 0.0) for k in phases) for r in metrics if "gen_s" in r]
    later = steps[1:] or steps  # the first step warms up
    return {
        "name": name,
        "value": statistics.median(later),
        "unit": "s/step",
        "peak_gib": round(gib, 2),
        "note": "phases of the last step: " + ", ".join(f"{k} {metrics[-1].get(k, 0):.2f}" for k in phases),
    }


def has_trl() -> bool:
    return bool(importlib.util.find_spec("trl") and importlib.util.find_spec("datasets"))


def trl_sft(
    name: str, model: Path, data: Path, r: int, steps: int, max_len: int, first: int, smoke: bool
) -> dict:
    """TRL's SFTTrainer with the settings of the pixiu run beside it (from ../shared/gpu/trl_sft_gpu.py)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    convs = [json.loads(line)["messages"] for line in data.read_text().splitlines()]
    ds = Dataset.from_list([{"prompt": c[:1], "completion": c[1:]} for c in convs])
    cuda = torch.cuda.is_available() and not smoke
    dtype = torch.bfloat16 if r and cuda else torch.float32
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    seen, tokens = [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            torch.cuda.synchronize() if cuda else None
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            torch.cuda.synchronize() if cuda else None
            seen.append(time.perf_counter() - self.t)

    cfg = SFTConfig(
        output_dir=str(data.parent / "trl"),
        max_length=max_len,
        completion_only_loss=True,
        per_device_train_batch_size=8,
        learning_rate=2e-4,
        max_steps=steps,
        bf16=cuda,
        logging_steps=1000,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
        use_cpu=not cuda,
    )
    peft = LoraConfig(
        r=r, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = SFTTrainer(
        model=lm,
        args=cfg,
        train_dataset=ds,
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=peft if r else None,
    )
    step = trainer.training_step

    def counted(model, inputs, *a, **k):
        tokens.append(int(inputs["attention_mask"].sum()))
        return step(model, inputs, *a, **k)

    trainer.training_step = counted
    trainer.add_callback(Clock())
    trainer.train()
    gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    rates = [n / t for n, t in zip(tokens[first - 1 :], seen[first - 1 :])]
    return {"name": name, "value": statistics.median(rates), "unit": "tok/s", "peak_gib": round(gib, 2)}


def _params(model: Path) -> int:
    """Parameters saved in a model directory (a tied head counts once)."""
    from safetensors import safe_open

    total = 0
    for f in model.glob("*.safetensors"):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                n = 1
                for d in s.get_slice(k).get_shape():
                    n *= d
                total += n
    return total


def table(rows: list[dict], device: str, args: argparse.Namespace) -> str:
    liger = (
        "installed" if importlib.util.find_spec("liger_kernel") else "not installed (pixiu's chunked head)"
    )
    trl = ("skipped (--no-trl)" if args.no_trl else "installed") if has_trl() else "not installed there"
    head = [
        f"Training on {device}; torch {torch.__version__}; Liger Kernel: {liger}; TRL: {trl}.",
        f"Data: {args.data or 'pixiu demo SFT rows repeated'}, {64 if args.cpu_smoke else args.rows} rows; "
        f"MFU peak: {args.peak_tflops:g} TFLOP/s (dense bf16).",
        "",
        "| run | value | unit | peak GiB (allocated) | MFU | note |",
        "|---|---:|---|---:|---:|---|",
    ]
    body = [
        f"| {r['name']} | {r['value']:.1f} | {r['unit']} | {r.get('peak_gib', 0):.2f} | "
        f"{(str(round(100 * r['mfu'], 1)) + '%') if 'mfu' in r else ''} | {r.get('error') or r.get('note', '')} |"
        for r in rows
    ]
    return "\n".join(head + body) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
