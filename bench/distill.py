"""Distillation vs SFT alone (issue 17.4): SmolLM2-135M teaches a student made of every third of its layers.

The student keeps the teacher's embeddings, final norm and head and its layers 0, 3, 6, ... (10 of 30 for
every=3), so it starts as a damaged copy of the teacher with the same vocabulary. Each run trains that same
student for the same steps on the same Alpaca rows (the first --rows after the held-out split, SmolLM2's chat
template, loss on the reply), full fine-tuning, with one of:
- sft: the reference replies' NLL (`pixiu train sft`);
- forward_kl, reverse_kl, jsd (beta 0.5): `pixiu train distill` against the teacher's top-k log-probs, written
  once by the teacher alone (distill.teacher_logprobs) and read by all three runs;
- reverse_kl_live, jsd_live: the same with the teacher in memory, over the whole vocabulary (the top-k tail bucket
  hides how little the teacher likes the student's own favourite tokens, which reverse KL and JSD weigh).
Held-out: data.eval_size rows split off the whole Alpaca file. Each run logs the student's NLL of the reference
replies there (what SFT optimises) at step 0 and at the end; afterwards every final student (and the start) is
scored against the live teacher over the whole vocabulary: NLL, KL both ways, top-1 agreement.

Run from the repository root; it writes bench/results/distill.md and distill.jsonl:
    python bench/distill.py                                   # the defaults
    python bench/distill.py --rows 16 --steps 2 --eval-rows 8 # smoke test
    python bench/distill.py ... --skip-train                  # only score the runs already under --out
    python bench/distill.py --student-only --layers 0-4,20-29 --out runs/distill  # only write that student
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_data.json"
RESULTS = ROOT / "bench" / "results"
RUNS = ("forward_kl", "reverse_kl", "jsd", "reverse_kl_live", "jsd_live", "sft")  # the first writes the file


def make_student(teacher_dir: str, out: Path, every: int, layers: str = "") -> Path:
    """A smaller model of the teacher's architecture holding its layers 0, every, 2*every, ... (or those `layers`
    names, e.g. "0-4,20-29") and all its other weights (embeddings, final norm, head): same vocabulary,
    initialised from the teacher's layers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "model.safetensors").exists():
        return out
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
    keep = spans(layers) if layers else list(range(0, teacher.config.num_hidden_layers, every))
    cfg = teacher.config.__class__.from_dict({**teacher.config.to_dict(), "num_hidden_layers": len(keep)})
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [teacher.config.layer_types[i] for i in keep]
    student = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    state, prefix = teacher.state_dict(), "model.layers."
    moved = {}
    for new, old in enumerate(keep):
        moved.update(
            {
                k.replace(f"{prefix}{old}.", f"{prefix}{new}.", 1): v
                for k, v in state.items()
                if k.startswith(f"{prefix}{old}.")
            }
        )
    rest = {k: v for k, v in state.items() if not k.startswith(prefix)}
    missing, unexpected = student.load_state_dict({**rest, **moved}, strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    student.save_pretrained(out)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(out)
    print(
        f"student: layers {keep} of {teacher.config.num_hidden_layers}, {student.num_parameters() / 1e6:.1f}M params -> {out}"
    )
    return out


def spans(text: str) -> list[int]:
    """ "0-4,20-29" -> [0, 1, 2, 3, 4, 20, ..., 29]."""
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def overrides(args, student: Path, out: Path, loss: str) -> list[str]:
    common = [
        f"--model.name_or_path={student}",
        "--model.dtype=fp32",
        f"--data.path={ALPACA}",
        f"--data.eval_size={args.eval_rows}",
        f"--data.max_samples={args.rows}",
        f"--data.max_len={args.max_len}",
        f"--train.output_dir={out / loss}",
        f"--train.lr={args.lr}",
        f"--train.batch_size={args.batch_size}",
        f"--train.max_steps={args.steps}",
        "--train.warmup_ratio=0.1",
        "--lora.r=0",
        "--data.skip_bad_rows=true",  # Alpaca has rows with an empty output
    ]
    if loss == "sft":
        return common
    teacher = [f"--distill.teacher={args.teacher}", f"--distill.loss={loss.removesuffix('_live')}"]
    if loss.endswith("_live"):  # the teacher in memory beside the student: the whole vocabulary, every step
        return [*common, *teacher]
    stored = out / f"teacher_top{args.top_k}.safetensors"
    return [*common, *teacher, f"--distill.teacher_logprobs={stored}", f"--distill.top_k={args.top_k}"]


def train(args, student: Path, out: Path, loss: str) -> None:
    from pixiu import config
    from pixiu.train.stages import get_stage

    get_stage("sft" if loss == "sft" else "distill").run(
        config.load(None, overrides(args, student, out, loss))
    )


def summarise(out: Path, loss: str) -> dict:
    """A run's held-out NLL at step 0 and at the end (its metrics.jsonl) and its seconds (summary.json)."""
    rows = [json.loads(line) for line in (out / loss / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_loss" in r]
    return {
        "run": loss,
        "seconds": json.loads((out / loss / "summary.json").read_text())["seconds"],
        "eval_loss_start": evals[0]["eval_loss"],
        "eval_loss": evals[-1]["eval_loss"],
        "last_train_loss": round([r["loss"] for r in rows if "loss" in r][-1], 5),
    }


@torch.no_grad()
def held_out(args, student: Path, out: Path, runs: list[str]) -> list[dict]:
    """Every student (the start and each run's final) against the live teacher on the held-out rows, over the whole
    vocabulary: reference NLL, forward and reverse KL to the teacher, and how often its top token is the teacher's."""
    from pixiu import config, losses
    from pixiu.chat.messages import Conversation
    from pixiu.config import ModelConfig
    from pixiu.data import load_data
    from pixiu.data.collate import collate
    from pixiu.model import TargetLM, io
    from pixiu.train.sft import prepare

    cfg = config.load(None, overrides(args, student, out, "sft"))
    data = load_data(cfg.data, want=Conversation)
    teacher = io.load(ModelConfig(args.teacher, dtype="fp32", device="cpu"))
    rows = prepare("sft", data.train, data.eval, teacher, cfg)[1]  # the rows every run evaluated on
    pad, size = teacher.tokenizer.pad_token_id, 8
    batches = [collate(rows[i : i + size], pad) for i in range(0, len(rows), size)]
    found = []
    paths = {"teacher": io.resolve(args.teacher), "start": student, **{r: out / r / "final" for r in runs}}
    for name, path in paths.items():  # the teacher's own row: its NLL is the floor, its KLs 0
        lm = TargetLM(io.load(ModelConfig(str(path), dtype="fp32", device="cpu")).model.eval())
        sums = {"nll": 0.0, "forward_kl": 0.0, "reverse_kl": 0.0, "top1_agree": 0.0}
        count = 0
        for batch in batches:
            t_logits, targets = TargetLM(teacher.model)(batch)
            s_logits, _ = lm(batch)
            s, t = losses.tempered(s_logits), losses.tempered(t_logits)
            sums["nll"] += -s.gather(-1, targets[:, None]).sum().item()
            sums["forward_kl"] += losses.forward_kl(s, t).sum().item()
            sums["reverse_kl"] += losses.reverse_kl(s, t).sum().item()
            sums["top1_agree"] += (s.argmax(-1) == t.argmax(-1)).sum().item()
            count += len(targets)
        found.append({"student": name, "targets": count, **{k: round(v / count, 4) for k, v in sums.items()}})
        print(json.dumps(found[-1]), flush=True)
    return found


def table(results: list[dict], compare: list[dict]) -> str:
    lines = [
        "| student trained by | held-out NLL at step 0 | held-out NLL at the end | last training loss | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['run']} | {r['eval_loss_start']} | {r['eval_loss']} | {r['last_train_loss']} | {r['seconds']} |"
        )
    lines += [
        "",
        "| student | held-out NLL | KL(teacher ‖ student) | KL(student ‖ teacher) | top-1 = teacher's |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in compare:
        lines.append(
            f"| {c['student']} | {c['nll']} | {c['forward_kl']} | {c['reverse_kl']} | {c['top1_agree']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="smollm2-135m")
    p.add_argument("--every", type=int, default=3, help="the student keeps every N-th teacher layer")
    p.add_argument("--layers", default="", help='or the teacher layers it keeps, e.g. "0-4,20-29"')
    p.add_argument("--rows", type=int, default=320)
    p.add_argument("--eval-rows", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--out", default="runs/bench_distill")
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--skip-train", action="store_true", help="only evaluate the runs already under --out")
    p.add_argument(
        "--student-only", action="store_true", help="only write the student (recipes/distill.yaml)"
    )
    args = p.parse_args()
    from pixiu.model import io

    out, runs = Path(args.out), args.runs.split(",")
    name = f"student_layers{args.layers.replace(',', '_')}" if args.layers else f"student_every{args.every}"
    student = make_student(io.resolve(args.teacher), out / name, args.every, args.layers)
    if args.student_only:
        return
    for loss in runs if not args.skip_train else []:
        train(args, student, out, loss)
    results = [summarise(out, loss) for loss in runs]
    compare = held_out(args, student, out, runs)
    command = "python bench/distill.py " + " ".join(
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "skip_train"
    )
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    doc = (
        f"# Distillation vs SFT alone (SmolLM2-135M -> every {args.every}rd layer)\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"load after the run: `{load}`\n\nCommand: `{command}`\n\n{table(results, compare)}\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distill.md").write_text(doc)
    (RESULTS / "distill.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results + compare))
    print(doc)


if __name__ == "__main__":
    main()
