"""pixiu SFT against TRL's SFTTrainer on this CPU: tokens/s, peak RSS and MFU, config by config.

Both sides train the same SmolLM2-135M weights (the embedded default, as `pixiu.model.io.resolve` caches it) on
the same first N Alpaca rows as conversations rendered with SmolLM2's own chat template, loss on the assistant
reply only, with the same max length, batch size, steps, learning rate, threads and LoRA settings, for each of
{fp32, bf16} x {LoRA r=16 alpha=32 dropout 0 on all-linear, full fine-tuning}.

- tokens/s: real (non-padding) tokens over training-step wall time, steps 2..N summed (step 1 is warm-up).
  pixiu times its own steps (metrics.jsonl, collation included); TRL is timed from on_step_begin to on_step_end.
- peak RSS: `ru_maxrss` of a fresh subprocess per (framework, config), so every number is one run's own.
- MFU: tokens/s x FLOPs per token / measured peak of the config's compute dtype. FLOPs per token are 6P for full
  fine-tuning and 4P for LoRA (forward 2P + input-gradient backward 2P; no weight gradients for the frozen base);
  the peak is the best of a few large square matmuls, measured at start-up with the same threads.

Run from the repository root (the full run takes a while on a small CPU):
    python bench/sft.py
    python bench/sft.py --n 32 --steps 3 --max-len 128 --configs fp32-lora,fp32-full   # smoke test
It prints a markdown table and writes bench/results/sft.md and bench/results/sft.jsonl (one raw line per run).
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


# ---------------------------------------------------------------- data and machine (parent)


def write_data(work: Path, n: int) -> None:
    """First n non-empty Alpaca rows -> pixiu `messages` jsonl and TRL conversational prompt-completion jsonl."""
    if not ALPACA.is_file():
        sys.exit(f"Alpaca data not found at {ALPACA}; the benchmark reads the shared data directory.")
    rows = [r for r in json.loads(ALPACA.read_text()) if r["output"].strip()][: n + EVAL_ROWS]
    convs = []
    for r in rows:
        user = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        convs.append(({"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}))
    lines = {
        "pixiu_train": [{"messages": list(c)} for c in convs[:n]],
        "pixiu_eval": [{"messages": list(c)} for c in convs[n:]],  # held apart, so pixiu trains on all n rows
        "trl_train": [{"prompt": [u], "completion": [a]} for u, a in convs[:n]],
    }
    for name, items in lines.items():
        (work / f"{name}.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items))


def measure_peak(dtype, size: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of a size x size matmul in `dtype` with torch's current threads."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: thread pool, kernel selection
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def count_params(model_dir: str) -> int:
    """Unique parameters of the base model (tied embeddings once), built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def machine() -> str:
    import peft
    import torch
    import transformers
    import trl

    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown CPU"
    )
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
    data = load_data(cfg.data, want=Conversation)
    loaded = SimpleNamespace(tokenizer=tok, template=get_template("default", tok))
    rows, _, _ = sft.prepare("sft", data.train, data.eval, loaded, cfg)
    plan = Rows(rows, tok.pad_token_id, a.batch, cfg.data.seed, cfg.data.group_by_length)
    batches = [b for e in range(a.steps // len(plan.epoch(0, 1)) + 1) for b in plan.epoch(e, 1)]
    lengths = plan.lengths()
    tokens = [sum(lengths[i] for i in batches[s - 1]) for s in range(1, a.steps + 1)]
    timed = range(2, a.steps + 1)
    return {
        "tokens": sum(tokens[s - 1] for s in timed),
        "seconds": sum(tokens[s - 1] / steps[s]["tokens_per_s"] for s in timed),
        "mean_len": sum(lengths) / len(lengths),
        "mean_targets": sum(sum(r[0].loss_mask[1:]) for r in rows) / len(rows),
        "samples": len(rows),
        "first_loss": steps[1]["loss"],
    }


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
    rows = [json.loads(line) for line in (work / "trl_train.jsonl").read_text().splitlines()]
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

    args = SFTConfig(
        output_dir=str(work / f"trl-{a.dtype}-r{a.lora}"),
        max_length=a.max_len,
        per_device_train_batch_size=a.batch,
        max_steps=a.steps,
        learning_rate=a.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        bf16=a.dtype == "bf16",
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        packing=False,
        completion_only_loss=True,
        seed=0,
        disable_tqdm=True,
        gradient_checkpointing=False,  # TRL defaults to True; pixiu's default is off
        train_sampling_strategy="group_by_length",  # pixiu's data.group_by_length default
    )
    same = {"lora_dropout": 0.0, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}  # as io.add_lora
    lora = LoraConfig(r=a.lora, lora_alpha=LORA_ALPHA, **same) if a.lora else None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        data_collator=collate,
        peft_config=lora,
        callbacks=[StepTimer()],
    )
    trainer.train()
    ids, labels = trainer.train_dataset["input_ids"], trainer.train_dataset["labels"]
    return {
        "tokens": sum(seen[1 : a.steps]),
        "seconds": sum(times[1 : a.steps]),
        "mean_len": sum(map(len, ids)) / len(ids),
        "mean_targets": sum(sum(x != -100 for x in lab[1:]) for lab in labels) / len(labels),
        "samples": len(ids),
        "first_loss": next(h["loss"] for h in trainer.state.log_history if "loss" in h),
    }


def child(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    out = (run_pixiu if a.one == "pixiu" else run_trl)(a, Path(a.work))
    out.update(
        framework=a.one,
        config=f"{a.dtype}-{'lora' if a.lora else 'full'}",
        threads=torch.get_num_threads(),
        tokens_per_s=out["tokens"] / out["seconds"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    )
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------- the comparison (parent)


def spawn(a, framework: str, config: str, work: Path) -> dict:
    dtype, kind = config.split("-")
    flags = f"--one {framework} --dtype {dtype} --lora {LORA_R if kind == 'lora' else 0} --work {work} "
    flags += f"--n {a.n} --max-len {a.max_len} --batch {a.batch} --steps {a.steps} --lr {a.lr} --threads {a.threads}"
    cmd = [sys.executable, __file__, *flags.split()]
    print(f"  {framework} {config} ...", end=" ", flush=True)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    )
    found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        print(f"FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
        return {"framework": framework, "config": config, "error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(found[-1])
    print(f"{result['tokens_per_s']:.0f} tok/s, {result['peak_rss_mib']:.0f} MiB")
    return result


def add_mfu(r: dict, params: int, peaks: dict) -> dict:
    """Model FLOPs utilisation against the measured matmul peak of the run's compute dtype."""
    if "error" not in r:
        per_token = (6 if r["config"].endswith("full") else 4) * params
        r["mfu"] = r["tokens_per_s"] * per_token / (peaks[r["config"][:4]] * 1e9)
    return r


def both(p: dict, t: dict, key: str, fmt: str) -> list[str]:
    return ["-" if "error" in r else format(r[key], fmt) for r in (p, t)]


def ratio(p: dict, t: dict, key: str) -> str:
    return "-" if "error" in p or "error" in t else f"{p[key] / t[key]:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def report(a, results: list[dict], params: int, peaks: dict, command: str) -> str:
    main_rows, check_rows = [], []
    for cfg in a.configs:
        p, t = (
            next(r for r in results if r["framework"] == fw and r["config"] == cfg) for fw in ("pixiu", "trl")
        )

        speed, mem = both(p, t, "tokens_per_s", ".0f"), both(p, t, "peak_rss_mib", ".0f")
        main_rows.append(
            [
                cfg,
                *speed,
                ratio(p, t, "tokens_per_s"),
                *mem,
                ratio(p, t, "peak_rss_mib"),
                *both(p, t, "mfu", ".1%"),
            ]
        )
        check_rows.append(
            [
                cfg,
                *both(p, t, "mean_len", ".1f"),
                *both(p, t, "mean_targets", ".1f"),
                *both(p, t, "tokens", "d"),
            ]
            + both(p, t, "first_loss", ".3f")
        )
    head = [
        f"# pixiu SFT vs TRL SFTTrainer (CPU)\n\nMachine: {machine()}; {a.threads} threads.\n",
        f"Measured matmul peak ({a.peak_size}x{a.peak_size}): fp32 {peaks['fp32']:.1f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.1f} GFLOP/s. MFU = tok/s x FLOPs per token (6P full, 4P LoRA; "
        f"P = {params / 1e6:.1f}M) / the peak of the config's dtype.\n",
        f"{MODEL}, {a.n} Alpaca rows, max_len {a.max_len}, batch {a.batch}, {a.steps} steps (the first not timed), "
        f"lr {a.lr}, {a.threads} threads; LoRA r={LORA_R} alpha={LORA_ALPHA} dropout 0 on all-linear.\n",
        f"Command: `{command}`\n",
    ]
    speed = ["config", "pixiu tok/s", "TRL tok/s", "speed pixiu/TRL", "pixiu peak MiB", "TRL peak MiB"]
    speed += ["memory pixiu/TRL", "pixiu MFU", "TRL MFU"]
    check = ["config", "pixiu mean len", "TRL mean len", "pixiu mean targets", "TRL mean targets"]
    check += ["pixiu timed tokens", "TRL timed tokens", "pixiu loss@1", "TRL loss@1"]
    note = "\nSame data on both sides? Sample length and target tokens over all samples, tokens in the timed steps:\n"
    return "\n".join(head + table(speed, main_rows) + [note] + table(check, check_rows)) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512, help="Alpaca rows to train on")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps; the first is warm-up, not timed")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {','.join(CONFIGS)}")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads on both sides (0 = torch's default)"
    )
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
    import torch

    command = " ".join(["python", "bench/sft.py", *sys.argv[1:]])
    a.configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in a.configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; valid: {', '.join(CONFIGS)}")
    a.threads = a.threads or torch.get_num_threads()
    torch.set_num_threads(a.threads)
    peaks = {
        "fp32": measure_peak(torch.float32, a.peak_size),
        "bf16": measure_peak(torch.bfloat16, a.peak_size),
    }
    print(
        f"matmul peak ({a.peak_size}^2, {a.threads} threads): fp32 {peaks['fp32']:.1f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.1f} GFLOP/s"
    )
    from pixiu.model import io

    params = count_params(io.resolve(MODEL))
    results = []
    with tempfile.TemporaryDirectory(prefix="pixiu-bench-sft-") as tmp:
        write_data(Path(tmp), a.n)
        for cfg in a.configs:
            results += [add_mfu(spawn(a, fw, cfg, Path(tmp)), params, peaks) for fw in ("pixiu", "trl")]
    text = report(a, results, params, peaks, command)
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sft.md").write_text(text)
    (RESULTS / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))


if __name__ == "__main__":
    main()
