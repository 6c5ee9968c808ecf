"""pixiu DPO against TRL's DPOTrainer on this CPU: training tokens/s, pairs/s, peak RSS.

Data: Anthropic HH harmless-base pairs (`../shared/data/hh_rlhf/`), the first N pairs (in file order) whose chosen
and rejected conversations both fit max_len tokens in SmolLM2's chat template and differ, so neither side truncates
or drops anything; each pair is a user prompt and two assistant replies. Same on both sides: SmolLM2-135M weights
(`pixiu.model.io.resolve`), sigmoid DPO with beta, LoRA r=16 alpha=32 dropout 0 on all-linear, batch (pairs),
1 epoch, learning rate (constant, no warmup), grad-norm clip 1.0, dtype, torch threads, length-grouped batches,
no gradient checkpointing. The reference is the base with the new adapter switched off on every side.

Three sides, each a fresh subprocess:
- pixiu: `pixiu train dpo`. It computes the reference log-probs of the whole dataset once, before training (one
  no-grad pass, adapters off), so a step runs the policy only; a pair's two replies share one row behind a
  single copy of the prompt (data.shared_prefix, on by default; --no-shared turns it off).
- trl: DPOTrainer as configured by default: a second, no-grad forward with adapters off in every step.
- trl-precompute: DPOTrainer with precompute_ref_log_probs=True (TRL's own cache, also before training).

- tokens/s: real (non-padding) tokens of chosen + rejected rows, each counted whole even where pixiu runs the
  shared prompt once, over training-step wall time, steps 2..N (step 1
  is warm-up). pixiu's step times come from metrics.jsonl (collation included), TRL's from on_step_begin/end.
- with reference pass: the same tokens over step time plus the one-off reference pass, pro rata (N-1)/N of it,
  since the pass covers all N steps' pairs. This is the number to compare when one side caches and one does not.
- peak RSS: `ru_maxrss` of each side's subprocess.

Run from the repository root; it prints a markdown table and writes bench/results/dpo.md and dpo.jsonl:
    python bench/dpo.py                                       # 48 pairs, batch 4, max_len 256, fp32, 2 threads
    python bench/dpo.py --n 8 --batch 2 --max-len 128 --threads 1   # smoke test
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

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf"
RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m"
LORA_R, LORA_ALPHA = 16, 32
SIDES = ("pixiu", "trl", "trl-precompute")


def conversation(prompt: str, reply: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def write_data(work: Path, n: int, max_len: int) -> dict:
    """The first n usable pairs -> pixiu pairs JSON and TRL conversational preference rows; -> what was skipped."""
    from transformers import AutoTokenizer

    from pixiu.model import io

    tok = AutoTokenizer.from_pretrained(io.resolve(MODEL))

    def length(prompt: str, reply: str) -> int:
        return len(
            tok.apply_chat_template(conversation(prompt, reply), tokenize=True, return_dict=True)["input_ids"]
        )

    pairs = json.loads(sorted(HH.glob("*.json"))[0].read_text())
    kept, scanned, too_long, same = [], 0, 0, 0
    for p in pairs:
        if len(kept) == n:
            break
        scanned += 1
        if (
            p["chosen"].strip() == p["rejected"].strip()
            or not p["chosen"].strip()
            or not p["rejected"].strip()
        ):
            same += 1
        elif max(rows := (length(p["prompt"], p["chosen"]), length(p["prompt"], p["rejected"]))) > max_len:
            too_long += 1
        else:
            kept.append((p, sum(rows)))
    if len(kept) < n:
        sys.exit(f"only {len(kept)} HH pairs fit max_len {max_len}; lower --n or raise --max-len")
    trl_rows = [
        {"prompt": [{"role": "user", "content": p["prompt"]}],
         "chosen": [{"role": "assistant", "content": p["chosen"]}],
         "rejected": [{"role": "assistant", "content": p["rejected"]}],
         "length": n_tokens}  # what TRL's length grouping sorts by, as pixiu's (both rows' tokens)
        for p, n_tokens in kept
    ]  # fmt: skip
    (work / "pairs.json").write_text(json.dumps([p for p, _ in kept], ensure_ascii=False))
    (work / "trl.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in trl_rows))
    return {"scanned": scanned, "kept": len(kept), "too_long": too_long, "empty_or_identical": same}


# ---------------------------------------------------------------- one side (child)


def run_pixiu(a, work: Path) -> dict:
    from pixiu import config
    from pixiu.chat.templates import get_template
    from pixiu.data import load_data
    from pixiu.model import io
    from pixiu.train import pref
    from pixiu.train.loop import Groups

    out = work / "pixiu"
    overrides = (
        f"model.name_or_path={MODEL} model.dtype={a.dtype} lora.r={LORA_R} lora.alpha={LORA_ALPHA} lora.dropout=0 "
        f"data.path={work}/pairs.json data.eval_size=0 data.max_len={a.max_len} data.overflow=skip "
        f"train.output_dir={out} train.epochs=1 train.batch_size={a.batch} train.lr={a.lr} train.max_grad_norm=1.0 "
        "train.warmup_ratio=0 train.schedule=constant train.save_every=0 train.seed=0 "
        f"pref.loss=dpo pref.beta={a.beta} data.shared_prefix={str(a.shared).lower()}"
    )
    cfg = config.load(None, ["--" + o for o in overrides.split()])
    t0 = time.perf_counter()
    pref.run(cfg, "dpo")
    wall = time.perf_counter() - t0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in logged if "tokens_per_s" in r}
    summary = json.loads((out / "summary.json").read_text())
    # The batch plan is a pure function of (lengths, seed, epoch): replaying it gives each step's tokens.
    tok = io.load_tokenizer(io.resolve(MODEL))
    template = get_template("default", tok)
    records = load_data(cfg.data, want=pref.WANT["dpo"]).train
    groups, extra = pref.conversations("dpo", records, cfg.data.seed)
    kept, _, report = pref.render_groups(groups, extra, template, cfg.data, True)
    plan = Groups(kept, tok.pad_token_id, a.batch, cfg.data.seed, cfg.data.group_by_length)
    batches, lengths = plan.epoch(0, 1), plan.lengths()
    timed = range(2, len(steps) + 1)
    tokens = {s: sum(lengths[i] for i in batches[s - 1]) for s in timed}
    targets = [sum(r.loss_mask[1:]) for g in kept for r in g]
    return {
        "pairs_used": report["groups"], "dropped": report["skipped"] + report["identical"] + report["no_targets"],
        "steps": len(steps), "tokens": sum(tokens.values()), "pairs": sum(len(batches[s - 1]) for s in timed),
        "seconds": sum(n / steps[s]["tokens_per_s"] for s, n in tokens.items()),
        "ref_s": summary["reference_seconds"], "wall_s": wall,
        "mean_targets": sum(targets) / len(targets), "mean_len": sum(lengths) / len(lengths) / 2,
        "first_loss": steps[1]["loss"], "last_loss": steps[len(steps)]["loss"],
    }  # fmt: skip


def run_trl(a, work: Path, precompute: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from pixiu.model import io

    model_dir = io.resolve(MODEL)
    tok = AutoTokenizer.from_pretrained(model_dir)
    # LoRA: the frozen base in the compute dtype, as pixiu loads it
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    rows = [json.loads(line) for line in (work / "trl.jsonl").read_text().splitlines()]
    data = Dataset.from_list(rows)
    seen, times, ref_s = [], [], [0.0]

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    class Timed(DPOTrainer):  # times TRL's reference pass; changes nothing else
        def _precompute_ref_logps(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._precompute_ref_logps(*args, **kwargs)
            ref_s[0] += time.perf_counter() - t0
            return out

    # fmt: off
    args = DPOConfig(
        output_dir=str(work / f"trl-{int(precompute)}"), max_length=a.max_len, per_device_train_batch_size=a.batch,
        num_train_epochs=1, learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
        seed=0, bf16=a.dtype == "bf16", use_cpu=True, report_to=[], save_strategy="no", eval_strategy="no",
        logging_steps=1, dataloader_num_workers=0, disable_tqdm=True, beta=a.beta, loss_type=["sigmoid"],
        precompute_ref_log_probs=precompute,
        gradient_checkpointing=False,  # TRL's default is on; pixiu's is off
        train_sampling_strategy="group_by_length", remove_unused_columns=False,  # as pixiu's group_by_length
    )
    # fmt: on
    lora = LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = Timed(model, args=args, train_dataset=data, processing_class=tok, peft_config=lora)
    base = trainer.data_collator

    def collate(examples):  # training batches only (the precompute pass ran in the constructor)
        batch = base(examples)
        seen.append((int(batch["attention_mask"].sum()), len(examples)))
        return batch

    trainer.data_collator = collate
    trainer.add_callback(StepTimer())
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0 + ref_s[0]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    ds = trainer.train_dataset
    targets = [len(x) for col in ("chosen_ids", "rejected_ids") for x in ds[col]]
    rows_len = [
        len(p) + len(c) for col in ("chosen_ids", "rejected_ids") for p, c in zip(ds["prompt_ids"], ds[col])
    ]
    n = len(times)
    return {
        "pairs_used": len(ds), "dropped": len(rows) - len(ds), "steps": n,
        "tokens": sum(t for t, _ in seen[1:n]), "pairs": sum(k for _, k in seen[1:n]), "seconds": sum(times[1:n]),
        "ref_s": ref_s[0], "wall_s": wall,
        "mean_targets": sum(targets) / len(targets), "mean_len": sum(rows_len) / len(rows_len),
        "first_loss": losses[0], "last_loss": losses[-1],
    }  # fmt: skip


def child(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    work = Path(a.work)
    out = run_pixiu(a, work) if a.one == "pixiu" else run_trl(a, work, a.one == "trl-precompute")
    steps = max(out["steps"], 1)
    out.update(side=a.one, threads=torch.get_num_threads(), load_start=load0, load_end=os.getloadavg()[0])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out["tokens_per_s"] = out["tokens"] / out["seconds"]
    out["pairs_per_s"] = out["pairs"] / out["seconds"]
    out["step_s"] = out["seconds"] / max(steps - 1, 1)
    out["tokens_per_s_with_ref"] = out["tokens"] / (out["seconds"] + out["ref_s"] * (steps - 1) / steps)
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------- the comparison (parent)


def spawn(a, side: str, work: Path) -> dict:
    flags = f"--one {side} --work {work} --dtype {a.dtype} --n {a.n} --max-len {a.max_len} --batch {a.batch} "
    flags += f"--lr {a.lr} --beta {a.beta} --threads {a.threads}" + ("" if a.shared else " --no-shared")
    print(f"  {side} ...", end=" ", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *flags.split()], capture_output=True, text=True)
    found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        print(f"FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
        return {"side": side, "error": proc.stderr.strip().splitlines()[-1:]}
    r = json.loads(found[-1])
    r["process_s"] = time.perf_counter() - t0
    print(
        f"{r['tokens_per_s']:.1f} tok/s, {r['step_s']:.1f} s/step, {r['peak_rss_mib']:.0f} MiB, {r['process_s']:.0f} s"
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


def report(a, results: dict, data: dict, command: str) -> str:
    p = results.get("pixiu", {"error": "not run"})
    others = [s for s in SIDES[1:] if s in results]

    def row(name, key, fmt, ratio=True):
        cells = ["-" if "error" in results[s] else format(results[s][key], fmt) for s in ("pixiu", *others)]
        ratios = [
            f"{p[key] / results[s][key]:.2f}x"
            if ratio and "error" not in p and "error" not in results[s] and results[s][key] else ""
            for s in others
        ]  # fmt: skip
        return [name, *cells, *ratios]

    rows = [
        row("train tokens/s (steps 2..N)", "tokens_per_s", ".1f"),
        row("train tokens/s with the reference pass", "tokens_per_s_with_ref", ".1f"),
        row("train pairs/s (steps 2..N)", "pairs_per_s", ".3f"),
        row("mean step s (steps 2..N)", "step_s", ".2f"),
        row("reference pass s (before training)", "ref_s", ".1f"),
        row("peak RSS MiB", "peak_rss_mib", ".0f"),
        row("pairs trained", "pairs_used", "d", ratio=False),
        row("pairs dropped by the trainer", "dropped", "d", ratio=False),
        row("optimizer steps", "steps", "d", ratio=False),
        row("timed tokens (steps 2..N)", "tokens", "d", ratio=False),
        row("mean row tokens", "mean_len", ".1f", ratio=False),
        row("mean reply (target) tokens", "mean_targets", ".1f", ratio=False),
        row("loss at step 1 (ln 2 = 0.6931)", "first_loss", ".4f", ratio=False),
        row("loss at last step", "last_loss", ".4f", ratio=False),
        row("whole side wall s (load, prepare, train)", "process_s", ".0f"),
        row("load average at start", "load_start", ".1f", ratio=False),
        row("load average at end", "load_end", ".1f", ratio=False),
    ]  # fmt: skip
    names = {"pixiu": "pixiu", "trl": "TRL DPOTrainer", "trl-precompute": "TRL, precompute_ref_log_probs"}
    header = ["", *(names[s] for s in ("pixiu", *others)), *(f"pixiu / {names[s]}" for s in others)]
    return "\n".join([
        f"# pixiu DPO vs TRL DPOTrainer (CPU)\n\nMachine: {machine()}; {a.threads} torch thread(s).\n",
        f"{MODEL}, HH harmless-base: the first {data['kept']} pairs that fit (scanned {data['scanned']}: "
        f"{data['too_long']} over max_len, {data['empty_or_identical']} empty or identical); {a.dtype}, "
        f"max_len {a.max_len}, batch {a.batch} pairs, 1 epoch, lr {a.lr} constant, sigmoid DPO beta {a.beta}, "
        f"grad clip 1.0; LoRA r={LORA_R} alpha={LORA_ALPHA} dropout 0 on all-linear; no gradient checkpointing; "
        f"reference = the base with the adapter off; pixiu's shared-prompt rows {'on' if a.shared else 'off'}."
        "\n\nCommand: `" + command + "`\n",
        *table(header, rows),
        "\nRaw results:\n", "```json", *(json.dumps(results[s]) for s in ("pixiu", *others) if s in results), "```",
    ]) + "\n"  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48, help="training pairs (one epoch: n / batch steps)")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4, help="pairs per optimizer step")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, every side")
    ap.add_argument(
        "--shared", action=argparse.BooleanOptionalAction, default=True, help="pixiu's shared prompts"
    )
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, from {','.join(SIDES)}")
    ap.add_argument("--out", default="dpo", help="result files bench/results/OUT.md and OUT.jsonl")
    ap.add_argument("--one", choices=SIDES, help=argparse.SUPPRESS)  # the child's own flags
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        return child(a)
    sides = [s.strip() for s in a.sides.split(",") if s.strip()]
    if "pixiu" not in sides or not set(sides) <= set(SIDES):
        ap.error(f"--sides must include pixiu and come from {', '.join(SIDES)}; got {sides}")
    if a.n < 2 * a.batch:
        ap.error("--n must be at least 2 x --batch: the first step is warm-up and is not timed")
    if not sorted(HH.glob("*.json")):
        sys.exit(f"HH-RLHF pairs not found under {HH}; this benchmark reads the shared data directory.")
    with tempfile.TemporaryDirectory(prefix="pixiu-bench-dpo-") as tmp:
        data = write_data(Path(tmp), a.n, a.max_len)
        results = {s: spawn(a, s, Path(tmp)) for s in sides}
    text = report(a, results, data, " ".join(["python", "bench/dpo.py", *sys.argv[1:]]))
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.md").write_text(text)
    (RESULTS / f"{a.out}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results.values()))


if __name__ == "__main__":
    main()
