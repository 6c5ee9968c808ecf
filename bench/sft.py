"""pixiu SFT against TRL's SFTTrainer on this CPU: tokens/s, peak RSS and MFU, config by config.

Both sides train the same SmolLM2-135M weights (`pixiu.model.io.resolve("smollm2-135m")`) on the first N
Alpaca rows as conversations in SmolLM2's own chat template, loss on the assistant reply only, with the same
max length, batch size, steps, learning rate, threads and LoRA settings, for each of {fp32, bf16} x {LoRA r=16
alpha=32 dropout 0 on all-linear, full fine-tuning}. Batches are length-grouped on both sides (pixiu's default)
and TRL's gradient checkpointing is off (pixiu's default).

- tokens/s: real (non-padding) tokens over training-step wall time, steps 2..N summed (step 1 is warm-up).
  pixiu times its own steps (metrics.jsonl, collation included); TRL is timed from on_step_begin to on_step_end.
- peak RSS: `ru_maxrss` of a fresh subprocess per (framework, config), so every number is one run's own.
- MFU: tokens/s x FLOPs per token / the measured peak of the config's compute dtype. FLOPs per token: 6P for
  full fine-tuning, 4P for LoRA (forward 2P + input-gradient backward 2P; no weight gradients for the frozen
  base); attention scores are left out. The peak is the best of a few large square matmuls at start-up.

Run from the repository root; it prints a markdown table and writes bench/results/sft.md and sft.jsonl (one
raw line per run). The full run takes long on a small CPU, bf16 most of all without AVX-512 BF16 or AMX:
    python bench/sft.py
    python bench/sft.py --n 32 --steps 3 --max-len 128 --configs fp32-lora,fp32-full   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_data.json"
RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m"
LORA_R, LORA_ALPHA, EVAL_ROWS = 16, 32, 8
CONFIGS = ("fp32-lora", "fp32-full", "bf16-lora", "bf16-full")


def write_data(work: Path, n: int) -> None:
    """First n non-empty Alpaca rows -> pixiu `messages` jsonl and TRL conversational prompt-completion jsonl."""
    convs = []
    for r in [r for r in json.loads(ALPACA.read_text()) if r["output"].strip()][: n + EVAL_ROWS]:
        user = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        convs.append(({"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}))
    files = {
        "pixiu_train": [{"messages": list(c)} for c in convs[:n]],
        "pixiu_eval": [{"messages": list(c)} for c in convs[n:]],  # held apart, so pixiu trains on all n rows
        "trl_train": [{"prompt": [u], "completion": [a]} for u, a in convs[:n]],
    }
    for name, items in files.items():
        (work / f"{name}.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items))


def measure_peak(dtype, size: int, seconds: float = 3.0) -> float:
    """Best GFLOP/s of F.linear on two size x size matrices (x @ w.T, the layout of every nn.Linear forward).
    Not `a @ b`: in bf16 on an AVX2-only CPU (torch 2.13) that layout takes a slow path ~25x below F.linear."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.nn.functional.linear(a, b)  # warm-up: thread pool, kernel selection
    times = []
    while len(times) < 5 and sum(times) < seconds:
        t0 = time.perf_counter()
        torch.nn.functional.linear(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / min(times) / 1e9


def machine() -> str:
    import peft
    import torch
    import transformers
    import trl

    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    cpu = names[0] if names else "unknown CPU"
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"
    return f"{cpu}, {os.cpu_count()} cores; {versions}, peft {peft.__version__}"


# ---------------------------------------------------------------- one run (child)


def run_pixiu(a, work: Path) -> dict:
    from types import SimpleNamespace

    from pixiu import config
    from pixiu.chat.messages import Conversation
    from pixiu.chat.templates import get_template
    from pixiu.data import load_data
    from pixiu.model import io
    from pixiu.train import sft
    from pixiu.train.loop import Rows

    out = work / f"pixiu-{a.dtype}-r{a.lora}"
    overrides = (
        f"model.name_or_path={MODEL} model.dtype={a.dtype} lora.r={a.lora} lora.alpha={LORA_ALPHA} lora.dropout=0 "
        f"data.path={work}/pixiu_train.jsonl data.eval_path={work}/pixiu_eval.jsonl data.max_len={a.max_len} "
        f"train.output_dir={out} train.max_steps={a.steps} train.batch_size={a.batch} train.lr={a.lr} "
        "train.warmup_ratio=0 train.schedule=constant train.eval_every=0 train.save_every=0 train.seed=0"
    )
    cfg = config.load(None, ["--" + o for o in overrides.split()])
    sft.run(cfg)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in logged if "tokens_per_s" in r}
    # pixiu logs a rate per step; its batch plan is a pure function of (lengths, seed, epoch), so replaying it
    # over the same rendered samples gives each step's token count, hence its time.
    tok = io.load_tokenizer(io.resolve(MODEL))
    loaded = SimpleNamespace(tokenizer=tok, template=get_template("default", tok))
    data = load_data(cfg.data, want=Conversation)
    rows, _, _ = sft.prepare("sft", data.train, data.eval, loaded, cfg)
    plan = Rows(rows, tok.pad_token_id, a.batch, cfg.data.seed, cfg.data.group_by_length)
    batches = [b for e in range(a.steps // len(plan.epoch(0, 1)) + 1) for b in plan.epoch(e, 1)]
    lengths = plan.lengths()
    tokens = {s: sum(lengths[i] for i in batches[s - 1]) for s in range(2, a.steps + 1)}
    seconds = sum(n / steps[s]["tokens_per_s"] for s, n in tokens.items())
    targets = [sum(r[0].loss_mask[1:]) for r in rows]
    return summary(sum(tokens.values()), seconds, lengths, targets, steps[1]["loss"])


def run_trl(a, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from pixiu.model import io

    model_dir = io.resolve(MODEL)
    # As pixiu: fp32 master weights for full fine-tuning (bf16 autocasts), a bf16 frozen base under bf16 LoRA.
    dtype = torch.bfloat16 if a.lora and a.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(model_dir)
    lines = (work / "trl_train.jsonl").read_text().splitlines()
    data = Dataset.from_list([json.loads(line) for line in lines])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    base, seen, times = DataCollatorForLanguageModeling(pad_token_id=pad), [], []

    def collate(examples):
        batch = base(examples)
        seen.append(int(batch["attention_mask"].sum()))  # training batches only, in order (no eval here)
        return batch

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    # fmt: off
    args = SFTConfig(
        output_dir=str(work / f"trl-{a.dtype}-r{a.lora}"), max_length=a.max_len, per_device_train_batch_size=a.batch,
        max_steps=a.steps, learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, seed=0,
        bf16=a.dtype == "bf16", use_cpu=True, report_to=[], save_strategy="no", eval_strategy="no", logging_steps=1,
        dataloader_num_workers=0, disable_tqdm=True, packing=False, completion_only_loss=True,
        gradient_checkpointing=False,  # TRL defaults to True; pixiu's default is off
        train_sampling_strategy="group_by_length",  # as pixiu's data.group_by_length default
    )
    # fmt: on
    same = {"lora_dropout": 0.0, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}  # as io.add_lora
    lora = LoraConfig(r=a.lora, lora_alpha=LORA_ALPHA, **same) if a.lora else None
    trainer = SFTTrainer(model, args, collate, data, processing_class=tok, peft_config=lora)
    trainer.add_callback(StepTimer())
    trainer.train()
    targets = [sum(x != -100 for x in lab[1:]) for lab in trainer.train_dataset["labels"]]
    first_loss = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    return summary(sum(seen[1 : a.steps]), sum(times[1 : a.steps]), lengths, targets, first_loss)


def summary(tokens: int, seconds: float, lengths: list[int], targets: list[int], first_loss: float) -> dict:
    """Timed steps (2..N) and the samples a side saw: its length and its loss-carrying tokens."""
    n = len(lengths)
    return {"tokens": tokens, "seconds": seconds, "mean_len": sum(lengths) / n, "mean_targets": sum(targets) / n,
            "samples": n, "first_loss": first_loss}  # fmt: skip


def child(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    out = (run_pixiu if a.one == "pixiu" else run_trl)(a, Path(a.work))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out.update(framework=a.one, config=f"{a.dtype}-{'lora' if a.lora else 'full'}", peak_rss_mib=rss)
    out.update(threads=torch.get_num_threads(), tokens_per_s=out["tokens"] / out["seconds"])
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------- the comparison (parent)


def spawn(a, framework: str, config: str, work: Path, params: int, peaks: dict) -> dict:
    dtype, kind = config.split("-")
    flags = f"--one {framework} --dtype {dtype} --lora {LORA_R if kind == 'lora' else 0} --work {work} "
    flags += f"--n {a.n} --max-len {a.max_len} --batch {a.batch} --steps {a.steps} --lr {a.lr} --threads {a.threads}"
    print(f"  {framework} {config} ...", end=" ", flush=True)
    proc = subprocess.run([sys.executable, __file__, *flags.split()], capture_output=True, text=True)
    found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        print(f"FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
        return {"framework": framework, "config": config, "error": proc.stderr.strip().splitlines()[-1:]}
    r = json.loads(found[-1])
    r["mfu"] = r["tokens_per_s"] * (6 if kind == "full" else 4) * params / (peaks[dtype] * 1e9)  # see top
    print(f"{r['tokens_per_s']:.1f} tok/s, {r['peak_rss_mib']:.0f} MiB")
    return r


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def report(a, results: list[dict], params: int, peaks: dict, command: str) -> str:
    def both(key, fmt):
        return ["-" if "error" in r else format(r[key], fmt) for r in (p, t)]

    def ratio(key):
        return "-" if "error" in p or "error" in t else f"{p[key] / t[key]:.2f}x"

    speed_rows, check_rows = [], []
    by = {(r["framework"], r["config"]): r for r in results}
    for cfg in a.configs:
        p, t = by["pixiu", cfg], by["trl", cfg]
        speed = [*both("tokens_per_s", ".1f"), ratio("tokens_per_s"), *both("peak_rss_mib", ".0f")]
        speed_rows.append([cfg, *speed, ratio("peak_rss_mib"), *both("mfu", ".1%")])
        checks = (("mean_len", ".1f"), ("mean_targets", ".1f"), ("tokens", "d"), ("first_loss", ".3f"))
        check_rows.append([cfg, *(cell for key, fmt in checks for cell in both(key, fmt))])
    return "\n".join([
        f"# pixiu SFT vs TRL SFTTrainer (CPU)\n\nMachine: {machine()}; {a.threads} threads.\n",
        f"Measured matmul peak (F.linear, {a.peak_size}x{a.peak_size}): fp32 {peaks['fp32']:.1f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.1f} GFLOP/s. MFU = tok/s x FLOPs per token (6P full, 4P LoRA; "
        f"P = {params / 1e6:.1f}M) / the peak of the config's dtype.\n",
        f"{MODEL}, {a.n} Alpaca rows, max_len {a.max_len}, batch {a.batch}, {a.steps} steps (the first not timed), "
        f"lr {a.lr}; LoRA r={LORA_R} alpha={LORA_ALPHA} dropout 0 on all-linear.\n\nCommand: `{command}`\n",
        *table(["config", "pixiu tok/s", "TRL tok/s", "speed pixiu/TRL", "pixiu peak MiB", "TRL peak MiB",
                "memory pixiu/TRL", "pixiu MFU", "TRL MFU"], speed_rows),
        "\nSame data on both sides? Sample length and target tokens over all samples, tokens in the timed steps:\n",
        *table(["config", "pixiu mean len", "TRL mean len", "pixiu mean targets", "TRL mean targets",
                "pixiu timed tokens", "TRL timed tokens", "pixiu loss@1", "TRL loss@1"], check_rows),
    ]) + "\n"  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512, help="Alpaca rows to train on")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps; the first is warm-up, not timed")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {','.join(CONFIGS)}")
    ap.add_argument("--threads", type=int, default=0, help="torch threads, both sides (0 = torch's default)")
    ap.add_argument("--peak-size", type=int, default=2048, help="side of the square matmul for the peak")
    ap.add_argument("--one", choices=("pixiu", "trl"), help=argparse.SUPPRESS)  # the child's own flags
    ap.add_argument("--dtype", choices=("fp32", "bf16"), help=argparse.SUPPRESS)
    ap.add_argument("--lora", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.steps < 2:
        ap.error("--steps must be >= 2: the first step is warm-up and is not timed")
    if a.one:
        return child(a)
    a.configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    if unknown := [c for c in a.configs if c not in CONFIGS]:
        ap.error(f"unknown configs {unknown}; valid: {', '.join(CONFIGS)}")
    if not ALPACA.is_file():
        sys.exit(f"Alpaca data not found at {ALPACA}; this benchmark reads the shared data directory.")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pixiu.model import io

    a.threads = a.threads or torch.get_num_threads()
    torch.set_num_threads(a.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {name: measure_peak(dtype, a.peak_size) for name, dtype in dtypes.items()}
    print(f"peak ({a.threads} threads): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()))
    with torch.device("meta"):  # unique parameters (tied embeddings once), no weights loaded
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(io.resolve(MODEL)))
    params = sum(p.numel() for p in model.parameters())
    results = []
    with tempfile.TemporaryDirectory(prefix="pixiu-bench-sft-") as tmp:
        write_data(Path(tmp), a.n)
        for cfg in a.configs:
            results += [spawn(a, fw, cfg, Path(tmp), params, peaks) for fw in ("pixiu", "trl")]
    text = report(a, results, params, peaks, " ".join(["python", "bench/sft.py", *sys.argv[1:]]))
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sft.md").write_text(text)
    (RESULTS / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))


if __name__ == "__main__":
    main()
