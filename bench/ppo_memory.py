"""Peak memory of PPO with LoRA (one base + adapters, a reward-model adapter on the same base) vs LoRA SFT.

Both train SmolLM2-135M (`smollm2-135m`) with the same LoRA settings, batch size and sequence length, each in a
fresh subprocess that reports its own peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, and VmHWM from
/proc as a cross-check). The parent never loads a model, so nothing of its memory can leak into a child's peak.

- SFT: Alpaca rows of at least L tokens cut to L = max_len, so every row is exactly L tokens; batch B.
- PPO: B prompts per step (Alpaca instructions of L - N - 16 to L - N tokens), one reply of up to N new
  tokens each, so rows are close to L and never longer; minibatch B, train.batch_size B, one PPO epoch (memory does not grow with more). Policy, critic
  (started from the RM) and reward model are adapters on one base; the reference is the base, adapters off.
  The reward model is an untrained LoRA RM written by a third subprocess (memory does not depend on its skill).
- baseline: a subprocess that only loads the base model, to show what the training itself adds.

Goal (issue 3): PPO peak <= 1.3x SFT peak. Run from the repository root; writes bench/results/ppo_memory.md:
    python bench/ppo_memory.py                       # B=8, L=160, N=64, fp32, one thread per child
    python bench/ppo_memory.py --batch 4 --max-len 128 --new 32 --dtype bf16
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
MODEL, LORA_R = "smollm2-135m", 16


def peak_mib() -> tuple[float, float]:
    """(ru_maxrss, VmHWM) of this process in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0.0)
    return rss, hwm


def write_data(work: Path, batch: int, max_len: int, new: int) -> float:
    """SFT rows of >= max_len tokens (cut to max_len) and prompts of max_len - new - 16 to max_len - new tokens,
    so a full-length PPO reply makes a row of nearly max_len tokens too. SmolLM2's tokenizer and template."""
    from pixiu.chat.messages import Conversation
    from pixiu.chat.templates import get_template
    from pixiu.model import io

    tokenizer = io.load_tokenizer(io.resolve(MODEL))
    template = get_template("default", tokenizer)
    sft, prompts, lengths = [], [], []
    for r in json.loads(ALPACA.read_text()):
        user = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        conv = Conversation.from_openai([{"role": "user", "content": user}])
        full = conv.add("assistant", r["output"])
        if len(sft) < 4 * batch and len(template.render(full).input_ids) >= max_len:
            sft.append({"messages": full.to_openai()})
        if len(prompts) < 4 * batch and max_len - new - 16 <= len(template.prompt_ids(conv)) <= max_len - new:
            prompts.append({"prompt": conv.to_openai()})
            lengths.append(len(template.prompt_ids(conv)))
        if len(sft) == len(prompts) == 4 * batch:
            break
    (work / "sft.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in sft))
    (work / "prompts.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in prompts))
    return sum(lengths) / len(lengths)  # mean prompt tokens


def child(kind: str, work: Path, a) -> dict:
    """Runs inside the subprocess: one stage, then its own peak."""
    from pixiu import config

    common = [
        f"--model.name_or_path={MODEL}",
        f"--model.dtype={a.dtype}",
        f"--lora.r={LORA_R}",
        "--lora.alpha=32",
        "--lora.dropout=0",
        f"--data.max_len={a.max_len}",
        "--data.eval_size=0",
        f"--train.batch_size={a.batch}",
        "--train.warmup_ratio=0",
        "--train.lr=1e-4",
    ]
    t0 = time.perf_counter()
    extra = {}
    if kind == "load":
        from pixiu.model import io

        io.load(config.ModelConfig(MODEL, dtype=a.dtype))
    elif kind == "rm":
        from pixiu.model import heads, io

        loaded, scalar = heads.load_scalar(
            config.ModelConfig(MODEL, dtype=a.dtype), config.LoraConfig(r=LORA_R), for_training=True
        )
        io.save(work / "rm", loaded, head=scalar.head)
    elif kind == "sft":
        from pixiu.train import sft

        cfg = config.load(
            None,
            [*common, f"--data.path={work / 'sft.jsonl'}", f"--train.output_dir={work / 'sft'}",
             f"--train.max_steps={a.steps}"],
        )  # fmt: skip
        sft.run(cfg)
        rows = [json.loads(x) for x in (work / "sft" / "metrics.jsonl").read_text().splitlines()]
        extra = {"steps": len(rows), "tokens_per_s": [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]}
    elif kind == "ppo":
        from pixiu.train import ppo

        cfg = config.load(
            None,
            [*common, f"--data.path={work / 'prompts.jsonl'}", f"--train.output_dir={work / 'ppo'}",
             f"--train.max_steps={a.steps}", f"--gen.max_new_tokens={a.new}", f"--ppo.reward_model={work / 'rm'}",
             f"--ppo.rollout_prompts={a.batch}", f"--ppo.minibatch={a.batch}", "--ppo.ppo_epochs=1"],
        )  # fmt: skip
        ppo.run(cfg)
        rows = [json.loads(x) for x in (work / "ppo" / "metrics.jsonl").read_text().splitlines()]
        keys = ("response_length", "gen_s", "score_s", "exp_s", "train_s")
        extra = {"steps": len(rows), "per_step": [{k: round(r[k], 2) for k in keys} for r in rows]}
    rss, hwm = peak_mib()
    return {"kind": kind, "maxrss_mib": round(rss), "vmhwm_mib": round(hwm),
            "seconds": round(time.perf_counter() - t0, 1), **extra}  # fmt: skip


def spawn(kind: str, work: Path, argv: list[str], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--work", str(work), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=160)
    p.add_argument("--new", type=int, default=64, help="max new tokens per PPO reply")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument(
        "--threads", type=int, default=1, help="OMP threads per child (memory does not depend on it)"
    )
    p.add_argument("--child", default="")
    p.add_argument("--work", default="")
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, Path(a.work), a)))
        return
    if not ALPACA.exists():
        sys.exit(f"needs the shared Alpaca data at {ALPACA}")
    argv = [f"--batch={a.batch}", f"--max-len={a.max_len}", f"--new={a.new}", f"--steps={a.steps}",
            f"--dtype={a.dtype}"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prompt_len = write_data(work, a.batch, a.max_len, a.new)
        spawn("rm", work, argv, a.threads)
        runs = {k: spawn(k, work, argv, a.threads) for k in ("load", "sft", "ppo")}
    for r in runs.values():
        print(json.dumps(r))
    ratio = runs["ppo"]["maxrss_mib"] / runs["sft"]["maxrss_mib"]
    print(f"PPO / SFT peak RSS: {ratio:.2f}x (goal <= 1.3x)")
    write_report(a, runs, ratio, " ".join(sys.argv[1:]), prompt_len)


def write_report(a, runs: dict, ratio: float, args: str, prompt_len: float) -> None:
    import peft
    import torch
    import transformers

    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = [x.split(":", 1)[1].strip() for x in info if x.startswith("model name")]
    lines = [
        "# PPO (LoRA, one base + adapters) vs LoRA SFT: peak memory",
        "",
        f"Machine: {cpu[0] if cpu else 'unknown CPU'}, {os.cpu_count()} cores.",
        "",
        f"Command: `{' '.join(['python bench/ppo_memory.py', args]).strip()}`",
        "",
        f"SmolLM2-135M (`{MODEL}`), LoRA r={LORA_R} alpha=32 on all-linear, {a.dtype}, batch {a.batch}, "
        f"sequence length <= {a.max_len} (SFT rows exactly {a.max_len}; PPO prompt + up to {a.new} new tokens), "
        f"{a.steps} steps each. torch {torch.__version__}, transformers {transformers.__version__}, peft "
        f"{peft.__version__}; CPU, {a.threads} thread(s) per run. Each number is one fresh subprocess.",
        "",
        "| run | peak RSS MiB (ru_maxrss) | VmHWM MiB | wall s |",
        "|---|---:|---:|---:|",
        *(f"| {k} | {r['maxrss_mib']} | {r['vmhwm_mib']} | {r['seconds']} |" for k, r in runs.items()),
        "",
        f"**PPO / SFT peak: {ratio:.2f}x** (goal <= 1.3x). `load` only loads the base model.",
        "",
        f"PPO rows: prompts of {prompt_len:.1f} tokens on average + the replies below (response_length, "
        f"tokens, stop token included); SFT rows: {a.max_len} tokens each. PPO per step: {runs['ppo'].get('per_step')}",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ppo_memory.md").write_text("\n".join(lines))
    raw = "".join(json.dumps({"run": k, **r}) + "\n" for k, r in runs.items())
    (RESULTS / "ppo_memory.jsonl").write_text(raw)


if __name__ == "__main__":
    main()
