"""pixiu GRPO against TRL's GRPOTrainer on this CPU: optimizer-step time, where it goes, peak RSS.

Both sides run recipes/arithmetic-grpo.yaml, resolved once by the parent (with the overrides below) and read by
both: SmolLM2-135M (`pixiu.model.io.resolve`), LoRA r=16 alpha=32 dropout 0 on all-linear, fp32, synthetic
two-digit arithmetic ("What is 47 - 19? Reply with only the number.", the task's train split), G prompts x K
replies per optimizer step sampled at the recipe's temperature with up to max_new_tokens new tokens (stop at
<|im_end|>), reward = exact match of the reply's final number (the SAME Python function, pixiu's
`Arithmetic.reward`, on both sides), group-normalised advantages (mean / (unbiased std + 1e-4)), clip 0.2, one
update per rollout batch, k3 KL penalty beta to the reference = the base with the adapter off, token-level loss
normalised by the step's reply tokens (TRL loss_type="dapo"), lr constant, grad clip 1.0, no gradient
checkpointing, no evaluation. TRL: per_device_train_batch_size = num_generations = K, gradient_accumulation_steps
= G, so it generates the step's G x K replies in one `generate` call, as pixiu does, and trains one group per
micro-batch, as pixiu does (pixiu also runs a group's shared prompt once: `PrefixLM` in train/grpo.py).

- step time: wall time of optimizer steps 2..N (step 1 is warm-up). pixiu: gen_s + train_s of metrics.jsonl;
  TRL: on_step_begin to on_step_end (its generation runs inside the step's first micro-batch).
- generation: pixiu's gen_s (engine.sample, then the reward); TRL's `_generate` (generate + decode), timed by a
  subclass that changes nothing else. The rest of a step is reference and policy forwards, backward, optimizer.
- peak RSS: `ru_maxrss` of each side's subprocess.
Sampling is random on both sides, so reply lengths (and with them the work) differ a little: compare the mean
reply length row before reading the ratio.

Run from the repository root; it prints a markdown table and writes bench/results/grpo.md and grpo.jsonl:
    python bench/grpo.py                                   # the recipe's 4 prompts x 8 replies, 8 steps, 2 threads
    python bench/grpo.py --steps 2 --prompts 2 --group 4 --max-new 8 --threads 1   # smoke test
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

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "arithmetic-grpo.yaml"
RESULTS = Path(__file__).resolve().parent / "results"
SIDES = ("pixiu", "trl")


def resolve_config(a, work: Path) -> None:
    """The recipe plus this benchmark's overrides -> work/config.yaml, read by both sides."""
    from pixiu import config

    overrides = [
        f"--model.dtype={a.dtype}", f"--train.output_dir={work / 'pixiu'}", f"--train.max_steps={a.steps}",
        "--train.save_every=0", "--train.seed=0", "--train.max_grad_norm=1.0", "--grpo.eval_size=0",
    ]  # fmt: skip
    for flag, key in (("prompts", "grpo.prompts_per_step"), ("group", "grpo.group_size"),
                      ("max_new", "gen.max_new_tokens")):  # fmt: skip
        if getattr(a, flag):
            overrides.append(f"--{key}={getattr(a, flag)}")
    cfg = config.load(RECIPE, overrides)
    if cfg.lora.r <= 0 or cfg.grpo.estimator != "grpo":
        sys.exit("the recipe must train LoRA with the grpo estimator: that is what the TRL side mirrors")
    config.save(cfg, work / "config.yaml")


# ---------------------------------------------------------------- one side (child)


def run_pixiu(cfg) -> dict:
    from pixiu.train import grpo

    out = Path(cfg.train.output_dir)
    t0 = time.perf_counter()
    grpo.run(cfg, "grpo")
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "gen_s" in r]
    timed = rows[1:]
    return {
        "steps": len(rows), "seconds": sum(r["gen_s"] + r["train_s"] for r in timed),
        "gen_s": sum(r["gen_s"] for r in timed), "wall_s": wall,
        "reply_len": sum(r["reply_len"] for r in rows) / len(rows),
        "reward": sum(r["reward"] for r in rows) / len(rows), "kl_last": rows[-1].get("kl", 0.0),
        "loss_first": rows[0]["loss"],
    }  # fmt: skip


def run_trl(cfg) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from pixiu.chat.messages import Conversation, Message
    from pixiu.data.tasks import resolve
    from pixiu.model import io

    task = resolve(cfg.grpo.task, **cfg.grpo.task_args)
    model_dir = io.resolve(cfg.model.name_or_path)
    tok = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.bfloat16 if cfg.model.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    examples = task.examples("train")
    data = Dataset.from_list(
        [{"prompt": e.prompt.to_openai(), "answer": e.answer} for e in examples]
    )  # pixiu's prompt records as TRL conversational prompts

    def reward(prompts, completions, answer, **kwargs) -> list[float]:
        """pixiu's own Arithmetic.reward on the reply text, with the reference answer as the last turn."""
        out = []
        for prompt, completion, ans in zip(prompts, completions, answer):
            conv = Conversation(
                [*(Message(m["role"], m["content"]) for m in prompt), Message("assistant", ans)]
            )
            out.append(task.reward(conv, completion[0]["content"]))
        return out

    times, gen = [], [0.0]

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()
            gen.append(0.0)

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    class Timed(GRPOTrainer):  # times generation; changes nothing else
        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            gen[-1] += time.perf_counter() - t0
            return out

    g, gc, tc = cfg.grpo, cfg.gen, cfg.train
    # fmt: off
    args = GRPOConfig(
        output_dir=str(Path(tc.output_dir).parent / "trl"), per_device_train_batch_size=g.group_size,
        gradient_accumulation_steps=g.prompts_per_step, num_generations=g.group_size,
        max_completion_length=gc.max_new_tokens, temperature=gc.temperature, top_p=gc.top_p, top_k=gc.top_k,
        learning_rate=tc.lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=tc.max_steps,
        max_grad_norm=tc.max_grad_norm, weight_decay=tc.weight_decay, seed=tc.seed,
        beta=g.kl_coef, epsilon=g.clip, num_iterations=g.epochs, scale_rewards="group" if g.scale_rewards else "none",
        loss_type="dapo",  # token-level mean over the step's reply tokens, as pixiu's update()
        bf16=cfg.model.dtype == "bf16", use_cpu=True, report_to=[], save_strategy="no", eval_strategy="no",
        logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
        gradient_checkpointing=False,  # TRL's default is on; pixiu's is off
    )
    # fmt: on
    lo = cfg.lora
    lora = LoraConfig(
        r=lo.r,
        lora_alpha=lo.alpha,
        lora_dropout=lo.dropout,
        target_modules=lo.target_modules,
        task_type="CAUSAL_LM",
    )
    trainer = Timed(
        model, reward_funcs=[reward], args=args, train_dataset=data, processing_class=tok, peft_config=lora
    )
    trainer.add_callback(StepTimer())
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "reward" in h]
    n = len(times)
    return {
        "steps": n, "seconds": sum(times[1:n]), "gen_s": sum(gen[2 : n + 1]), "wall_s": wall,
        "reply_len": sum(h["completions/mean_length"] for h in logs) / len(logs),
        "reward": sum(h["reward"] for h in logs) / len(logs), "kl_last": logs[-1].get("kl", 0.0),
        "loss_first": logs[0]["loss"],
    }  # fmt: skip


def prompt_tokens(cfg) -> tuple[float, float]:
    """Mean prompt tokens of the first 200 training prompts: pixiu's template, TRL's apply_chat_template."""
    from pixiu.chat.templates import get_template
    from pixiu.data.tasks import resolve
    from pixiu.model import io

    tok = io.load_tokenizer(io.resolve(cfg.model.name_or_path))
    template = get_template(cfg.model.template, tok)
    examples = resolve(cfg.grpo.task, **cfg.grpo.task_args).examples("train")[:200]
    pixiu = [len(template.prompt_ids(e.prompt)) for e in examples]
    trl = [
        len(
            tok.apply_chat_template(e.prompt.to_openai(), add_generation_prompt=True, return_dict=True)[
                "input_ids"
            ]
        )
        for e in examples
    ]
    return sum(pixiu) / len(pixiu), sum(trl) / len(trl)


def child(a) -> None:
    import torch

    from pixiu import config

    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    cfg = config.load(Path(a.work) / "config.yaml")
    out = run_pixiu(cfg) if a.one == "pixiu" else run_trl(cfg)
    out.update(side=a.one, threads=torch.get_num_threads(), load_start=load0, load_end=os.getloadavg()[0])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    timed = max(out["steps"] - 1, 1)
    out["step_s"] = out["seconds"] / timed
    out["gen_step_s"] = out["gen_s"] / timed
    out["rest_step_s"] = out["step_s"] - out["gen_step_s"]
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------- the comparison (parent)


def spawn(a, side: str, work: Path) -> dict:
    print(f"  {side} ...", end=" ", flush=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--one", side, "--work", str(work), "--threads", str(a.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        print(f"FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
        return {"side": side, "error": proc.stderr.strip().splitlines()[-1:]}
    r = json.loads(found[-1])
    r["process_s"] = time.perf_counter() - t0
    print(f"{r['step_s']:.2f} s/step, {r['peak_rss_mib']:.0f} MiB, {r['process_s']:.0f} s")
    return r


def machine() -> str:
    import peft
    import torch
    import transformers
    import trl

    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"
    return (
        f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} cores; {versions}, peft {peft.__version__}"
    )


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def report(a, cfg, p: dict, t: dict, prompt_len: tuple[float, float], command: str) -> str:
    def row(name, key, fmt, ratio=True):
        cells = ["-" if "error" in r else format(r[key], fmt) for r in (p, t)]
        both = "error" not in p and "error" not in t
        return [name, *cells, f"{p[key] / t[key]:.2f}x" if ratio and both and t[key] else ""]

    rows = [
        row("step s (mean of steps 2..N)", "step_s", ".2f"),
        row("  generation s per step", "gen_step_s", ".2f"),
        row("  rest of the step s (ref + policy forward, backward, optimizer)", "rest_step_s", ".2f"),
        row("peak RSS MiB", "peak_rss_mib", ".0f"),
        row("optimizer steps", "steps", "d", ratio=False),
        row("mean reply tokens (all steps)", "reply_len", ".2f", ratio=False),
        row("mean reward (all steps)", "reward", ".3f", ratio=False),
        row("KL at the last step", "kl_last", ".5f", ratio=False),
        row("whole side wall s (load, train, save)", "process_s", ".0f"),
        row("load average at start", "load_start", ".1f", ratio=False),
        row("load average at end", "load_end", ".1f", ratio=False),
    ]  # fmt: skip
    g, gc, tc, lo = cfg.grpo, cfg.gen, cfg.train, cfg.lora
    return "\n".join([
        f"# pixiu GRPO vs TRL GRPOTrainer (CPU)\n\nMachine: {machine()}; {a.threads} torch thread(s).\n",
        f"{cfg.model.name_or_path}, recipes/arithmetic-grpo.yaml: task {g.task}{' ' + str(g.task_args) if g.task_args else ''} (prompts of "
        f"{prompt_len[0]:.2f} tokens on average in pixiu's rendering, {prompt_len[1]:.2f} in TRL's), {g.prompts_per_step} prompts x {g.group_size} replies per step, "
        f"max_new_tokens {gc.max_new_tokens}, temperature {gc.temperature}, top_p {gc.top_p}, top_k {gc.top_k}; "
        f"{cfg.model.dtype}, LoRA r={lo.r} alpha={lo.alpha} dropout {lo.dropout} on {lo.target_modules}; lr "
        f"{tc.lr} constant, grad clip {tc.max_grad_norm}; kl_coef {g.kl_coef} (k3, reference = adapter off), clip "
        f"{g.clip}, {g.epochs} update(s) per rollout, group-std scaling {g.scale_rewards}; {tc.max_steps} steps, "
        "the first not timed; no gradient checkpointing.\n\nCommand: `" + command + "`\n",
        *table(["", "pixiu", "TRL GRPOTrainer", "pixiu/TRL"], rows),
        "\nRaw results:\n", "```json", *(json.dumps(r) for r in (p, t)), "```",
    ]) + "\n"  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps; the first is warm-up, not timed")
    ap.add_argument("--prompts", type=int, default=0, help="prompts per step (0 = the recipe's)")
    ap.add_argument("--group", type=int, default=0, help="replies per prompt (0 = the recipe's)")
    ap.add_argument("--max-new", type=int, default=0, help="max new tokens (0 = the recipe's)")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    ap.add_argument("--one", choices=SIDES, help=argparse.SUPPRESS)  # the child's own flags
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        return child(a)
    if a.steps < 2:
        ap.error("--steps must be >= 2: the first step is warm-up and is not timed")
    from pixiu import config

    with tempfile.TemporaryDirectory(prefix="pixiu-bench-grpo-") as tmp:
        resolve_config(a, Path(tmp))
        cfg = config.load(Path(tmp) / "config.yaml")
        p, t = (spawn(a, side, Path(tmp)) for side in SIDES)
    text = report(a, cfg, p, t, prompt_tokens(cfg), " ".join(["python", "bench/grpo.py", *sys.argv[1:]]))
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grpo.md").write_text(text)
    (RESULTS / "grpo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (p, t)))


if __name__ == "__main__":
    main()
