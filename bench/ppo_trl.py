"""pixiu PPO against TRL 1.0's `trl.experimental.ppo.PPOTrainer` on this CPU: PPO-step time, where it goes, peak RSS.

TRL runs in its own virtual environment (trl==1.0.0, the last release with this trainer; the issue asks for it),
made once with:
    python3 -m venv /work/trl10-venv && /work/trl10-venv/bin/pip install torch==2.13.0 \
        && /work/trl10-venv/bin/pip install trl==1.0.0 peft
(check `pip list` there shows the same torch build as the main venv, e.g. 2.13.0+cpu). The TRL side never
imports pixiu; the parent hands it the model directory, the prompts and the reward head.

Same on both sides: SmolLM2-135M (`pixiu.model.io.resolve`), fp32, the pixiu demo prompts
(`pixiu:demo/prompts.jsonl`, those whose rendering leaves room for the reply within max_len), SmolLM2's own chat
template, R prompts per PPO step with one reply each, up to N new tokens at temperature 1 (top_k 0, top_p 1),
stop at <|im_end|>; LoRA r=16 alpha=32 dropout 0 on the 7 projections of every layer for the policy AND the
critic; critic (body adapter + value head) started from the reward model; reference = the policy's base with the
adapter off; E PPO epochs, each ONE optimizer update over all R rollouts accumulated in micro-batches of m rows
(pixiu: ppo.minibatch=R, train.batch_size=m; TRL: num_mini_batches=1, per_device_train_batch_size=m,
gradient_accumulation_steps=R/m: TRL 1.0 sizes its rollout batch as per_device x accumulation steps and steps the
optimizer once per accumulation cycle, so with several minibatches its updates would not match pixiu's), k1 KL
penalty kl_coef per token,
no reward whitening, advantages whitened, clip 0.2, value clip 0.2, vf_coef 0.5 on a 1/2-squared value loss,
gamma 1, lambda 0.95, AdamW lr constant, no gradient checkpointing, dropout off.

The reward model is a fixed scoring model, the same on both sides: a pixiu LoRA reward model written by a third
subprocess and never trained (its LoRA B matrices are zero, so its body IS the base model; checked) with a seeded
random scalar head and zero bias. pixiu loads it by path as an adapter on its one base; TRL gets
AutoModelForSequenceClassification on the same weights with that head as `score`. The scores are a fixed random
linear function of the last hidden state: what PPO optimises is beside the point here, the work per step is not.
The two trainers read the score at different tokens (pixiu at the end of the reply rendered by the chat template,
after its "<|im_end|>\n"; TRL at the reply's <|im_end|>, or its last token when it has none), so the mean scores
differ between the sides although the model is the same.

How each trainer holds its models (this is what the memory comparison measures): pixiu keeps ONE base with
policy, critic and reward adapters (actors.py). TRL 1.0 keeps three bases: the policy (peft, reference = adapter
off), the value model (here given LoRA too, via peft's inject_adapter_in_model, so both sides train the same
parameters) and the reward model.

Differences that are TRL's design, left as they are: TRL samples without an early stop (its GenerationConfig has
no eos), so every reply costs N decode steps, then truncates after the first <|im_end|>; it takes the rollout's
log-probs from the generation scores (no extra policy forward) and computes full-vocabulary logits for every
position; it does not clip gradients (pixiu clips to 1.0). TRL generates in chunks of
local_rollout_forward_batch_size (set to R here, so both sample the step's R prompts in one `generate` call) and
runs its no-grad rollout forwards in chunks of R rows (pixiu: m). TRL's pad token is set to <|endoftext|> (id 0):
SmolLM2 pads with <|im_end|>, which TRL would mask out of every chat turn.

- step time: PPO steps 2..S (step 1 is warm-up). pixiu: gen_s + score_s + exp_s + train_s of metrics.jsonl; TRL:
  from one on_step_end (or on_train_begin) to the next. Generation and scoring (reward + value model forwards in
  TRL's `get_reward`) are timed on the TRL side by wrapping those two module functions (timing only).
- peak RSS: `ru_maxrss` of each side's subprocess.

Run from the repository root; it prints a markdown table and writes bench/results/ppo_trl.md and ppo_trl.jsonl:
    python bench/ppo_trl.py                        # R=8 prompts, m=4, E=2, N=32, max_len 192, 6 steps, 2 threads
    python bench/ppo_trl.py --rollout 4 --micro 2 --epochs 1 --new 8 --steps 2 --threads 1   # smoke test
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

RESULTS = Path(__file__).resolve().parent / "results"
MODEL, PROMPTS = "smollm2-135m", "pixiu:demo/prompts.jsonl"
LORA_R, LORA_ALPHA = 16, 32
PROJECTIONS = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
]  # = pixiu's all-linear
TRL_PYTHON = "/work/trl10-venv/bin/python"
SIDES = (
    "pixiu",
    "pixiu-shared",
    "trl",
)  # pixiu-shared: ppo.shared_critic (a value head on the policy's body)


def write_prompts(work: Path, max_len: int, new: int) -> dict:
    """The demo prompts that leave room for `new` reply tokens -> work/prompts.jsonl; -> counts and lengths."""
    from pixiu.chat.messages import Conversation
    from pixiu.chat.templates import get_template
    from pixiu.data.sources import read_rows
    from pixiu.model import io

    template = get_template("default", io.load_tokenizer(io.resolve(MODEL)))
    rows = [row for _, row in read_rows(PROMPTS, "train")]
    kept, lengths = [], []
    for row in rows:
        n = len(template.prompt_ids(Conversation.from_openai([{"role": "user", "content": row["prompt"]}])))
        if n + new <= max_len:
            kept.append({"prompt": row["prompt"]})
            lengths.append(n)
    (work / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return {
        "prompts": len(kept),
        "too_long": len(rows) - len(kept),
        "prompt_tokens": sum(lengths) / len(lengths),
    }


# ---------------------------------------------------------------- children


def build_rm(a, work: Path) -> dict:
    """A pixiu LoRA reward model, never trained: seeded head, zero bias; its adapter must be the identity."""
    import torch

    from pixiu.config import LoraConfig, ModelConfig
    from pixiu.model import heads, io

    torch.manual_seed(0)
    loaded, scalar = heads.load_scalar(
        ModelConfig(MODEL, dtype="fp32"),
        LoraConfig(r=LORA_R, alpha=LORA_ALPHA, dropout=0.0),
        for_training=True,
    )
    torch.nn.init.zeros_(scalar.head.bias)
    lora_b = [p for n, p in loaded.model.named_parameters() if "lora_B" in n]
    if not lora_b or any(bool(p.any()) for p in lora_b):
        sys.exit("the reward model's LoRA B matrices are not all zero: its body would differ from the base")
    io.save(work / "rm", loaded, head=scalar.head)
    return {"model_dir": str(io.resolve(MODEL))}


def run_pixiu(a, work: Path) -> dict:
    from pixiu import config
    from pixiu.train import ppo

    out = work / a.one
    overrides = (
        f"model.name_or_path={MODEL} model.dtype=fp32 lora.r={LORA_R} lora.alpha={LORA_ALPHA} lora.dropout=0 "
        f"data.path={work}/prompts.jsonl data.eval_size=0 data.max_len={a.max_len} "
        f"gen.max_new_tokens={a.new} gen.temperature=1.0 gen.top_p=1.0 gen.top_k=0 "
        f"train.output_dir={out} train.max_steps={a.steps} train.batch_size={a.micro} train.lr={a.lr} "
        "train.warmup_ratio=0 train.schedule=constant train.max_grad_norm=1.0 train.save_every=0 train.seed=0 "
        f"ppo.reward_model={work}/rm ppo.rollout_prompts={a.rollout} ppo.minibatch={a.rollout} "
        f"ppo.ppo_epochs={a.epochs} ppo.kl_coef={a.kl_coef} ppo.whiten_rewards=false ppo.critic_from_rm=true "
        "ppo.clip=0.2 ppo.value_clip=0.2 ppo.vf_coef=0.5 ppo.gamma=1.0 ppo.lam=0.95 ppo.adaptive_kl=false "
        f"ppo.shared_critic={str(a.one == 'pixiu-shared').lower()}"
    )
    cfg = config.load(None, ["--" + o for o in overrides.split()])
    t0 = time.perf_counter()
    ppo.run(cfg)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[1:]
    parts = {k: sum(r[k] for r in timed) for k in ("gen_s", "score_s", "exp_s", "train_s")}
    return {
        "steps": len(rows), "seconds": sum(parts.values()), "gen_s": parts["gen_s"],
        "score_s": parts["score_s"], "exp_s": parts["exp_s"], "train_s": parts["train_s"], "wall_s": wall,
        "reply_len": sum(r["response_length"] for r in rows) / len(rows),
        "generated_len": sum(r["response_length"] for r in rows) / len(rows),  # pixiu stops at <|im_end|>
        "reward": sum(r["reward"] for r in rows) / len(rows), "kl_last": rows[-1]["kl"],
    }  # fmt: skip


def run_trl(a, work: Path) -> dict:
    """TRL 1.0 in its own venv: no pixiu imports here."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, inject_adapter_in_model
    from safetensors.torch import load_file
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    tok = AutoTokenizer.from_pretrained(a.model_dir, padding_side="left")
    tok.pad_token = "<|endoftext|>"  # id 0; SmolLM2's own pad is <|im_end|>, which TRL would mask as padding
    head = load_file(str(work / "rm" / "score_head.safetensors"))
    if float(head["bias"].abs().max()) != 0.0:
        sys.exit("the reward head has a bias; TRL's score layer has none")

    def scorer(lora: bool):
        m = AutoModelForSequenceClassification.from_pretrained(a.model_dir, num_labels=1, dtype=torch.float32)
        m.config.pad_token_id = tok.pad_token_id
        m.score.weight.data.copy_(head["weight"])
        m.requires_grad_(False)
        if lora:  # the critic: LoRA on the body + a trainable head, as pixiu's critic adapter
            cfg = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=PROJECTIONS)
            m = inject_adapter_in_model(cfg, m)
            for n, p in m.named_parameters():
                p.requires_grad_("lora_" in n or n.startswith("score."))
        return m

    policy = AutoModelForCausalLM.from_pretrained(
        a.model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    prompts = [json.loads(line)["prompt"] for line in (work / "prompts.jsonl").read_text().splitlines()]
    chats = [[{"role": "user", "content": p}] for p in prompts]
    ids = [
        tok.apply_chat_template(c, add_generation_prompt=True, return_dict=True)["input_ids"] for c in chats
    ]
    data = Dataset.from_list([{"input_ids": x} for x in ids])
    clock = {"gen": 0.0, "score": 0.0, "generated": [], "replies": []}
    gen_fn, reward_fn = trl_ppo.batch_generation, trl_ppo.get_reward

    def timed_generation(model, queries, *args, **kwargs):  # timing and reply lengths only
        t0 = time.perf_counter()
        out = gen_fn(model, queries, *args, **kwargs)
        clock["gen"] += time.perf_counter() - t0
        replies = out[0][:, queries.shape[1] :]
        clock["generated"].append(replies.shape[1])
        ends = [(r == tok.eos_token_id).nonzero() for r in replies]
        clock["replies"] += [int(e[0]) + 1 if len(e) else replies.shape[1] for e in ends]
        return out

    def timed_reward(*args, **kwargs):
        t0 = time.perf_counter()
        out = reward_fn(*args, **kwargs)
        clock["score"] += time.perf_counter() - t0
        return out

    trl_ppo.batch_generation, trl_ppo.get_reward = timed_generation, timed_reward
    marks = []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), clock["gen"], clock["score"]))

        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), clock["gen"], clock["score"]))

    # fmt: off
    args = PPOConfig(
        output_dir=str(work / "trl"), per_device_train_batch_size=a.micro,
        gradient_accumulation_steps=a.rollout // a.micro, num_mini_batches=1, num_ppo_epochs=a.epochs, total_episodes=a.rollout * a.steps,
        local_rollout_forward_batch_size=a.rollout, response_length=a.new, stop_token="eos", temperature=1.0,
        kl_coef=a.kl_coef, kl_estimator="k1", cliprange=0.2, cliprange_value=0.2, vf_coef=0.5, gamma=1.0, lam=0.95,
        whiten_rewards=False, learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, seed=0,
        num_sample_generations=0, use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0, gradient_checkpointing=False,
    )
    # fmt: on
    lora = LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=PROJECTIONS, task_type="CAUSAL_LM"
    )
    trainer = PPOTrainer(
        args=args, processing_class=tok, model=policy, ref_model=None, reward_model=scorer(False),
        train_dataset=data, value_model=scorer(True), eval_dataset=data.select(range(a.rollout)), peft_config=lora,
        callbacks=[StepTimer()],
    )  # fmt: skip
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "objective/scores" in h]
    steps = [(b[0] - a_[0], b[1] - a_[1], b[2] - a_[2]) for a_, b in zip(marks, marks[1:])]
    timed = steps[1:]
    return {
        "steps": len(steps), "seconds": sum(s for s, _, _ in timed), "gen_s": sum(g for _, g, _ in timed),
        "score_s": sum(c for _, _, c in timed), "wall_s": wall,
        "reply_len": sum(clock["replies"]) / len(clock["replies"]),
        "generated_len": sum(clock["generated"]) / len(clock["generated"]),
        "reward": sum(h["objective/scores"] for h in logs) / len(logs), "kl_last": logs[-1]["objective/kl"],
        "trainable": trainable, "prompt_tokens": sum(map(len, ids)) / len(ids),
    }  # fmt: skip


def child(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    work = Path(a.work)
    if a.one == "rm":
        print("RESULT " + json.dumps(build_rm(a, work)))
        return
    out = run_trl(a, work) if a.one == "trl" else run_pixiu(a, work)
    out.update(side=a.one, threads=torch.get_num_threads(), load_start=load0, load_end=os.getloadavg()[0])
    out.update(torch=torch.__version__, trl=_version("trl"), transformers=_version("transformers"))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    timed = max(out["steps"] - 1, 1)
    out["step_s"] = out["seconds"] / timed
    out["gen_step_s"], out["score_step_s"] = out["gen_s"] / timed, out["score_s"] / timed
    out["rest_step_s"] = out["step_s"] - out["gen_step_s"] - out["score_step_s"]
    for key in ("exp_s", "train_s"):  # pixiu's split of the rest
        if key in out:
            out[key.replace("_s", "_step_s")] = out[key] / timed
    print("RESULT " + json.dumps(out))


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# ---------------------------------------------------------------- the comparison (parent)


def spawn(a, side: str, work: Path, python: str, model_dir: str = "") -> dict:
    flags = f"--one {side} --work {work} --threads {a.threads} --max-len {a.max_len} --new {a.new} "
    flags += f"--rollout {a.rollout} --micro {a.micro} --epochs {a.epochs} --steps {a.steps} "
    flags += f"--lr {a.lr} --kl-coef {a.kl_coef}" + (f" --model-dir {model_dir}" if model_dir else "")
    print(f"  {side} ...", end=" ", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([python, __file__, *flags.split()], capture_output=True, text=True)
    found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        print(f"FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
        return {"side": side, "error": proc.stderr.strip().splitlines()[-1:]}
    r = json.loads(found[-1])
    r["process_s"] = time.perf_counter() - t0
    print(f"{r['step_s']:.1f} s/step, {r['peak_rss_mib']:.0f} MiB" if "step_s" in r else "done", flush=True)
    return r


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def report(a, p: dict, ps: dict, t: dict, data: dict, command: str) -> str:
    """p: pixiu, ps: pixiu with a shared critic, t: TRL."""

    def row(name, key, fmt, ratio=True):
        cells = ["-" if "error" in r or key not in r else format(r[key], fmt) for r in (p, ps, t)]
        ok = lambda r: "error" not in r and key in r  # noqa: E731
        both = [f"{r[key] / t[key]:.2f}x" if ratio and ok(r) and ok(t) and t[key] else "" for r in (p, ps)]
        return [name, *cells, *both]

    rows = [
        row("PPO step s (mean of steps 2..S)", "step_s", ".1f"),
        row("  generation s per step", "gen_step_s", ".1f"),
        row("  scoring s per step (pixiu: reward model; TRL: reward + value model)", "score_step_s", ".1f"),
        row("  rest s per step (log-probs, reference, values, updates)", "rest_step_s", ".1f"),
        row("    pixiu: reference and critic forwards of the rollout (log π_old is the sampler's: no policy forward)", "exp_step_s", ".1f", ratio=False),
        row("    pixiu: PPO updates", "train_step_s", ".1f", ratio=False),
        row("peak RSS MiB", "peak_rss_mib", ".0f"),
        row("PPO steps", "steps", "d", ratio=False),
        row("tokens generated per reply", "generated_len", ".1f", ratio=False),
        row("reply tokens up to <|im_end|> (all steps)", "reply_len", ".1f", ratio=False),
        row("mean reward-model score (all steps)", "reward", ".3f", ratio=False),
        row("KL at the last step (nats per reply)", "kl_last", ".4f", ratio=False),
        row("whole side wall s (load, train, save)", "process_s", ".0f"),
        row("load average at start", "load_start", ".1f", ratio=False),
        row("load average at end", "load_end", ".1f", ratio=False),
    ]  # fmt: skip
    tv = t.get("trl", "?")
    return "\n".join([
        f"# pixiu PPO vs TRL 1.0 PPOTrainer (CPU)\n\nMachine: {_cpu()}, {os.cpu_count()} cores; {a.threads} torch "
        f"thread(s). pixiu side: torch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}; TRL side "
        f"(its own venv): trl {tv}, torch {t.get('torch', '?')}, transformers {t.get('transformers', '?')}.\n",
        f"{MODEL}, fp32, {PROMPTS}: {data['prompts']} prompts of {data['prompt_tokens']:.1f} tokens on average "
        f"({data['too_long']} longer than max_len {a.max_len} - {a.new} left out); {a.rollout} prompts per step, "
        f"{a.epochs} PPO epochs of one optimizer update over all of them in micro-batches of {a.micro} rows, "
        f"max_new_tokens {a.new}, temperature 1; LoRA r={LORA_R} alpha={LORA_ALPHA} dropout 0 for "
        f"policy and critic; kl_coef {a.kl_coef} (k1), lr {a.lr} constant; a fixed untrained reward model (see "
        f"the script's docstring); {a.steps} steps, the first not timed. TRL trainable parameters: "
        f"{t.get('trainable', '-')} (pixiu trains the same set plus its head's bias). `pixiu, shared critic`: "
        "the same run with ppo.shared_critic=true (no critic adapter: a value head on the policy's body, one "
        "forward and backward per row for both losses; not the algorithm TRL 1.0 runs).\n\n"
        f"Command: `{command}`\n",
        *table(["", "pixiu", "pixiu, shared critic", f"TRL {tv} PPOTrainer", "pixiu/TRL", "shared/TRL"], rows),
        "\nRaw results:\n", "```json", *(json.dumps(r) for r in (p, ps, t)), "```",
    ]) + "\n"  # fmt: skip


def _cpu() -> str:
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return names[0] if names else "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rollout", type=int, default=8, help="prompts per PPO step (R)")
    ap.add_argument("--micro", type=int, default=4, help="rows per forward / backward (m); R/m accumulate")
    ap.add_argument("--epochs", type=int, default=2, help="PPO epochs over each rollout batch (E)")
    ap.add_argument("--new", type=int, default=32, help="max new tokens per reply (N)")
    ap.add_argument(
        "--max-len", type=int, default=192, help="prompt + reply limit; longer prompts are left out"
    )
    ap.add_argument("--steps", type=int, default=6, help="PPO steps (S); the first is warm-up, not timed")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--kl-coef", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    ap.add_argument("--trl-python", default=TRL_PYTHON, help="python of the venv with trl==1.0.0")
    ap.add_argument("--one", choices=(*SIDES, "rm"), help=argparse.SUPPRESS)  # the child's own flags
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        return child(a)
    if a.steps < 2 or a.rollout % a.micro:
        ap.error("--steps must be >= 2 (the first is not timed) and --rollout a multiple of --micro")
    if not Path(a.trl_python).exists():
        sys.exit(f"{a.trl_python} not found: make the TRL 1.0 venv first (see this script's docstring)")
    with tempfile.TemporaryDirectory(prefix="pixiu-bench-ppo-") as tmp:
        work = Path(tmp)
        data = write_prompts(work, a.max_len, a.new)
        rm = spawn(a, "rm", work, sys.executable)
        if "error" in rm:
            sys.exit("could not build the reward model")
        p = spawn(a, "pixiu", work, sys.executable)
        ps = spawn(a, "pixiu-shared", work, sys.executable)
        t = spawn(a, "trl", work, a.trl_python, rm["model_dir"])
    text = report(a, p, ps, t, data, " ".join(["python", "bench/ppo_trl.py", *sys.argv[1:]]))
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ppo_trl.md").write_text(text)
    (RESULTS / "ppo_trl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (p, ps, t)))


if __name__ == "__main__":
    main()
