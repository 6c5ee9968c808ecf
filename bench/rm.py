"""pixiu reward model against TRL's RewardTrainer on this CPU: held-out accuracy, train tokens/s and pairs/s, peak RSS.

Data: Anthropic HH harmless-base pairs (`../shared/data/hh_rlhf/`, 5,000 {prompt, chosen, rejected}). The LAST 500
pairs are held out; both sides train on the first N of the rest, each pair rendered as user prompt + assistant
reply in SmolLM2's own chat template. Same on both sides: SmolLM2-135M weights (`pixiu.model.io.resolve`), LoRA
r=16 alpha=32 dropout 0 on all-linear with a trainable scalar head, max_len (pairs with a reply over it are
dropped on both sides: TRL filters them, pixiu runs with data.overflow=skip), batch (pairs), steps (1 epoch),
learning rate (constant, no warmup), dtype, torch threads, length-grouped batches, and gradient checkpointing
(on by default, TRL's default: without it a batch of 16 rows x 256 tokens took 7-10 GB per side, and on a
24 GB machine shared with other jobs the kernel killed a side; --no-grad-ckpt turns it off on both sides).

pixiu puts a pair's two replies in one row behind a single copy of the prompt (data.shared_prefix, on by default;
--no-shared turns it off); TRL runs one padded row per reply. Tokens are counted per reply row on both sides.
- held-out accuracy: share of the 500 pairs whose chosen reply scores higher, every pair at full length. pixiu
  scores with `reward.score_replies` on its saved checkpoint reloaded by path (the way PPO loads it); TRL with its
  trained model's forward on the same token ids (apply_chat_template, as TRL tokenizes conversational data).
- tokens/s, pairs/s: real (non-padding) tokens and pairs over training-step wall time, steps 2..N (step 1 is
  warm-up). pixiu's step times come from metrics.jsonl (collation included), TRL's from on_step_begin/end.
- peak RSS: `ru_maxrss` of a fresh subprocess per side.
The machine is shared: the load average at the start and end of each side is recorded beside its numbers.

Run from the repository root; it prints a markdown table and writes bench/results/rm.md:
    nice -n 5 python bench/rm.py                       # default: 256 train pairs, max_len 256, fp32, 1 thread
    nice -n 5 python bench/rm.py --n 4500 --parallel --dtype bf16 --no-grad-ckpt --out rm_full  # full split:
    #   a core and ~10 GB each, about 65 min on a 2-core CPU with native bf16
    python bench/rm.py --n 16 --eval 16 --max-len 128 --out /tmp/rm-smoke   # smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf"
RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m"
LORA_R, LORA_ALPHA, HELD_OUT = 16, 32, 500


def write_data(work: Path, n: int, n_eval: int) -> int:
    """First n training pairs and the held-out pairs (taken from the end of the LAST 500) as JSON lists.
    A pair with an empty field (one in the full training split) is left out of both sides: pixiu refuses such a
    row by design. -> how many were left out."""
    files = sorted(HH.glob("*.json"))
    pairs = json.loads(files[0].read_text())
    held, rest = pairs[-HELD_OUT:], pairs[:-HELD_OUT][:n]
    train = [p for p in rest if all(str(p[k]).strip() for k in ("prompt", "chosen", "rejected"))]
    (work / "train.json").write_text(json.dumps(train, ensure_ascii=False))
    (work / "eval.json").write_text(json.dumps(held[:n_eval], ensure_ascii=False))
    return len(rest) - len(train)


def conversation(prompt: str, reply: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def accuracy(chosen: list[float], rejected: list[float]) -> dict:
    d = [c - r for c, r in zip(chosen, rejected)]
    return {"accuracy": sum(x > 0 for x in d) / len(d), "margin": sum(d) / len(d), "eval_pairs": len(d)}


# ---------------------------------------------------------------- one side (child)


def run_pixiu(a, work: Path) -> dict:
    from safetensors.torch import load_file

    from pixiu import config
    from pixiu.config import ModelConfig
    from pixiu.data import load_data, load_records
    from pixiu.data.records import PreferencePair, Ranking
    from pixiu.model import heads, reward
    from pixiu.train import rm
    from pixiu.train.loop import Groups

    out = work / "pixiu"
    overrides = (
        f"model.name_or_path={MODEL} model.dtype={a.dtype} lora.r={LORA_R} lora.alpha={LORA_ALPHA} lora.dropout=0 "
        f"data.path={work}/train.json data.eval_size=0 data.max_len={a.max_len} data.overflow=skip "
        f"train.output_dir={out} train.epochs=1 train.batch_size={a.batch} train.lr={a.lr} "
        "train.warmup_ratio=0 train.schedule=constant train.save_every=0 train.seed=0 "
        f"train.gradient_checkpointing={str(a.grad_ckpt).lower()} data.shared_prefix={str(a.shared).lower()}"
    )
    cfg = config.load(None, ["--" + o for o in overrides.split()])
    t0 = time.perf_counter()
    final = rm.run(cfg)
    train_wall, train_rss = time.perf_counter() - t0, peak_rss_mib()
    gc.collect()  # the trained model is unreachable once run() returns; free it before the reload below
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in logged if "tokens_per_s" in r}
    # The batch plan is a pure function of (lengths, seed, epoch): replaying it gives each step's tokens and pairs.
    loaded, model = heads.load_scalar(ModelConfig(str(final), dtype=a.dtype))
    data = load_data(cfg.data, want=(PreferencePair, Ranking))
    groups, report = rm.prepare(data.train, loaded.template, a.max_len, "skip")
    plan = Groups(groups, loaded.tokenizer.pad_token_id, a.batch, cfg.data.seed, cfg.data.group_by_length)
    batches, lengths = plan.epoch(0, 1), plan.lengths()
    timed = range(2, len(steps) + 1)
    tokens = {s: sum(lengths[i] for i in batches[s - 1]) for s in timed}
    seconds = sum(n / steps[s]["tokens_per_s"] for s, n in tokens.items())
    records, _ = load_records(config.DatasetSpec(str(work / "eval.json")))
    convs = [r.prompt.add("assistant", t) for r in records for t in (r.chosen, r.rejected)]
    t0 = time.perf_counter()
    scores = reward.score_replies(model, loaded.tokenizer, loaded.template, convs, batch_size=a.eval_batch)
    eval_s = time.perf_counter() - t0
    eval_tokens = sum(len(loaded.template.render(c).input_ids) for c in convs)
    saved = [load_file(final / f) for f in ("adapter_model.safetensors", "score_head.safetensors")]
    trainable = sum(t.numel() for part in saved for t in part.values())
    return {
        **accuracy(scores[0::2], scores[1::2]),
        "train_pairs": report.groups, "dropped_pairs": report.skipped, "steps": len(steps),
        "tokens": sum(tokens.values()), "pairs": sum(len(batches[s - 1]) for s in timed), "seconds": seconds,
        "train_wall_s": train_wall, "eval_s": eval_s, "eval_tokens": eval_tokens, "trainable": trainable,
        "peak_rss_train_mib": train_rss,
        "first_loss": steps[1]["loss"], "last_loss": steps[len(steps)]["loss"],
    }  # fmt: skip


def run_trl(a, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from pixiu.model import io

    model_dir = io.resolve(MODEL)
    tok = AutoTokenizer.from_pretrained(model_dir)

    def ids(
        prompt: str, reply: str
    ) -> list[int]:  # what TRL's own tokenization does for conversational pairs
        return tok.apply_chat_template(conversation(prompt, reply), tokenize=True, return_dict=True)[
            "input_ids"
        ]

    rows = []
    for p in json.loads((work / "train.json").read_text()):
        c, r = ids(p["prompt"], p["chosen"]), ids(p["prompt"], p["rejected"])
        rows.append({"chosen_ids": c, "rejected_ids": r, "length": len(c) + len(r)})  # length: for grouping
    data = Dataset.from_list(rows)
    base, seen, times = DataCollatorForPreference(pad_token_id=tok.pad_token_id), [], []

    def collate(examples):
        batch = base(examples)
        seen.append((int(batch["attention_mask"].sum()), len(examples)))  # training batches only, in order
        return batch

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    # fmt: off
    args = RewardConfig(
        output_dir=str(work / "trl"), max_length=a.max_len, per_device_train_batch_size=a.batch, num_train_epochs=1,
        learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, seed=0, bf16=a.dtype == "bf16",
        use_cpu=True, report_to=[], save_strategy="no", eval_strategy="no", logging_steps=1,
        dataloader_num_workers=0, disable_tqdm=True,
        gradient_checkpointing=a.grad_ckpt, gradient_checkpointing_kwargs={"use_reentrant": False},  # as pixiu
        train_sampling_strategy="group_by_length", remove_unused_columns=False,  # as pixiu's group_by_length
        model_init_kwargs={"dtype": torch.bfloat16 if a.dtype == "bf16" else torch.float32,
                           "attn_implementation": "sdpa"},
    )
    # fmt: on
    lora = LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules="all-linear", task_type="SEQ_CLS"
    )
    t0 = time.perf_counter()
    trainer = RewardTrainer(model_dir, args, collate, data, processing_class=tok, peft_config=lora)
    trainer.add_callback(StepTimer())
    trainer.train()
    train_wall, train_rss = time.perf_counter() - t0, peak_rss_mib()
    model = trainer.model.eval()
    held = json.loads((work / "eval.json").read_text())
    seqs = [ids(p["prompt"], reply) for p in held for reply in (p["chosen"], p["rejected"])]
    t0 = time.perf_counter()
    scores = score_trl(model, seqs, tok.pad_token_id, a.eval_batch, a.dtype)
    eval_s = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    steps = len(times)
    return {
        **accuracy(scores[0::2], scores[1::2]),
        "train_pairs": len(trainer.train_dataset), "dropped_pairs": len(rows) - len(trainer.train_dataset),
        "steps": steps, "tokens": sum(t for t, _ in seen[1:steps]), "pairs": sum(n for _, n in seen[1:steps]),
        "seconds": sum(times[1:steps]), "train_wall_s": train_wall, "eval_s": eval_s,
        "eval_tokens": sum(map(len, seqs)), "first_loss": losses[0], "last_loss": losses[-1],
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "peak_rss_train_mib": train_rss,
    }  # fmt: skip


def score_trl(model, seqs: list[list[int]], pad: int, batch: int, dtype: str) -> list[float]:
    """The sequence classifier's score of each token list (right padded, in length order), in input order."""
    import torch

    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = [0.0] * len(seqs)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.no_grad(), ctx:
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.tensor([seqs[i] + [pad] * (width - len(seqs[i])) for i in idx])
            attn = torch.tensor([[1] * len(seqs[i]) + [0] * (width - len(seqs[i])) for i in idx])
            logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits.squeeze(-1)
            for i, v in zip(idx, logits.float().tolist()):
                out[i] = v
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    out = (run_pixiu if a.one == "pixiu" else run_trl)(a, Path(a.work))
    out.update(framework=a.one, peak_rss_mib=peak_rss_mib(), threads=torch.get_num_threads())
    out.update(tokens_per_s=out["tokens"] / out["seconds"], pairs_per_s=out["pairs"] / out["seconds"])
    out.update(load_start=load0, load_end=os.getloadavg()[0])
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------- the comparison (parent)


def spawn(a, framework: str, work: Path) -> dict:
    flags = (
        f"--one {framework} --work {work} --dtype {a.dtype} --n {a.n} --eval {a.eval} --max-len {a.max_len} "
    )
    flags += f"--batch {a.batch} --eval-batch {a.eval_batch} --lr {a.lr} --threads {a.threads}"
    flags += ("" if a.grad_ckpt else " --no-grad-ckpt") + ("" if a.shared else " --no-shared")
    print(f"  {framework} started", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *flags.split()], capture_output=True, text=True)
    found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        print(f"  {framework} FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
        return {"framework": framework, "error": proc.stderr.strip().splitlines()[-1:]}
    r = json.loads(found[-1])
    r["wall_s"] = time.perf_counter() - t0
    print(
        f"  {framework}: accuracy {r['accuracy']:.3f}, {r['tokens_per_s']:.1f} tok/s, {r['peak_rss_mib']:.0f} MiB, {r['wall_s']:.0f} s"
    )
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


def report(a, p: dict, t: dict, command: str) -> str:
    def row(name, key, fmt, ratio=True):
        cells = ["-" if "error" in r else format(r[key], fmt) for r in (p, t)]
        both = "error" not in p and "error" not in t
        return [name, *cells, f"{p[key] / t[key]:.2f}x" if ratio and both and t[key] else ""]

    rows = [
        row("held-out accuracy (500 pairs)" if a.eval == HELD_OUT else f"held-out accuracy ({a.eval} pairs)",
            "accuracy", ".3f", ratio=False),
        row("held-out mean margin r_c - r_r", "margin", ".3f", ratio=False),
        row("train tokens/s (steps 2..N)", "tokens_per_s", ".1f"),
        row("train pairs/s (steps 2..N)", "pairs_per_s", ".3f"),
        row("peak RSS MiB, training (at its end)", "peak_rss_train_mib", ".0f"),
        row("peak RSS MiB, whole side (with scoring)", "peak_rss_mib", ".0f"),
        row("train pairs used", "train_pairs", "d", ratio=False),
        row("train pairs dropped (a reply > max_len)", "dropped_pairs", "d", ratio=False),
        row("optimizer steps", "steps", "d", ratio=False),
        row("trainable parameters", "trainable", "d", ratio=False),
        row("loss at step 1", "first_loss", ".4f", ratio=False),
        row("loss at last step", "last_loss", ".4f", ratio=False),
        row("timed tokens (steps 2..N)", "tokens", "d", ratio=False),
        row("held-out tokens scored", "eval_tokens", "d", ratio=False),
        row("held-out scoring s", "eval_s", ".0f"),
        row("whole side wall s (load, train, save, score)", "wall_s", ".0f"),
        row("load average at start", "load_start", ".1f", ratio=False),
        row("load average at end", "load_end", ".1f", ratio=False),
    ]  # fmt: skip
    return "\n".join([
        f"# pixiu reward model vs TRL RewardTrainer (CPU)\n\nMachine: {machine()}; {a.threads} torch thread(s).\n",
        f"{MODEL}, HH harmless-base: train on the first {a.n} pairs (of the 4,500 before the held-out 500), "
        f"held-out = the last 500 pairs{'' if a.eval == HELD_OUT else f' (first {a.eval} of them)'}"
        f"{f'; {a.empty} training pair(s) with an empty field left out of both sides' if a.empty else ''}; "
        f"{a.dtype}, max_len {a.max_len}, batch {a.batch} pairs, 1 epoch, lr {a.lr} constant; "
        f"LoRA r={LORA_R} alpha={LORA_ALPHA} dropout 0 on all-linear + scalar head; gradient checkpointing "
        f"{'on' if a.grad_ckpt else 'off'}; pixiu's shared-prompt rows {'on' if a.shared else 'off'}."
        f"\n\nCommand: `{command}`\n",
        *table(["", "pixiu", "TRL RewardTrainer", "pixiu/TRL"], rows),
        "\nRaw results:\n", "```json", *(json.dumps(r) for r in (p, t)), "```",
    ]) + "\n"  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256, help="training pairs (the full split: 4500)")
    ap.add_argument("--eval", type=int, default=HELD_OUT, help="held-out pairs scored (of the last 500)")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8, help="pairs per optimizer step")
    ap.add_argument("--eval-batch", type=int, default=16, help="rows per scoring forward")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    ap.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=True, help="both sides")
    ap.add_argument(
        "--shared", action=argparse.BooleanOptionalAction, default=True, help="pixiu's shared prompts"
    )
    ap.add_argument(
        "--parallel", action="store_true", help="run both sides at once (one core each: the full split)"
    )
    ap.add_argument("--out", default="rm", help="bench/results/OUT.md and OUT.jsonl")
    ap.add_argument("--one", choices=("pixiu", "trl"), help=argparse.SUPPRESS)  # the child's own flags
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        return child(a)
    if not sorted(HH.glob("*.json")):
        sys.exit(f"HH-RLHF pairs not found under {HH}; this benchmark reads the shared data directory.")
    if not 0 < a.eval <= HELD_OUT or not 0 < a.n <= 4500:
        ap.error(f"--eval must be in 1..{HELD_OUT} and --n in 1..4500")
    with tempfile.TemporaryDirectory(prefix="pixiu-bench-rm-") as tmp:
        a.empty = write_data(Path(tmp), a.n, a.eval)
        if a.parallel:  # same load on both sides: each shares the machine with the other for the whole run
            with ThreadPoolExecutor(2) as pool:
                p, t = pool.map(lambda fw: spawn(a, fw, Path(tmp)), ("pixiu", "trl"))
        else:
            p, t = (spawn(a, fw, Path(tmp)) for fw in ("pixiu", "trl"))
    text = report(a, p, t, " ".join(["python", "bench/rm.py", *sys.argv[1:]]))
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.md").write_text(text)
    (RESULTS / f"{a.out}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (p, t)))


if __name__ == "__main__":
    main()
