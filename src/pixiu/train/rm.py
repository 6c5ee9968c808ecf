"""Reward model (`pixiu train rm`) and reward scoring (`pixiu score`, `score_replies`).

A reward model is the causal LM with a scalar head (`model/heads.py`) read at the last token of prompt + reply.
Each preference pair or ranking becomes one group of rendered replies, best first; all replies of a micro-batch
go through ONE forward, and the loss is InstructGPT's k-wise ranking loss (for a pair: Bradley–Terry), summed
per group and divided by the groups of the step in the loop. Evaluation reports held-out pairwise accuracy (the
share of pairs i < j scored r_i > r_j) and the mean margin r_i - r_j.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from pixiu import config as config_mod
from pixiu import losses
from pixiu.chat.messages import TARGET_ROLES, Conversation
from pixiu.chat.templates import Rendered, Template
from pixiu.config import RunConfig
from pixiu.data import DataError, load_data, load_records
from pixiu.data.collate import collate, collate_shared
from pixiu.data.records import PreferencePair, Ranking
from pixiu.model import heads, io
from pixiu.model.forward import autocast, base_lm
from pixiu.train.loop import Groups, train


def replies(record: PreferencePair | Ranking) -> list[str]:
    """The replies of a record, best first."""
    return [record.chosen, record.rejected] if isinstance(record, PreferencePair) else list(record.responses)


def render_group(template: Template, prompt: Conversation, texts: list[str]) -> list[Rendered]:
    """prompt + each reply, rendered by the chat template: one row per reply."""
    return [template.render(prompt.add("assistant", t)) for t in texts]


@dataclass
class GroupReport:
    """What happened to the records of one split on their way to groups; nothing is cut or dropped silently."""

    records: int = 0
    groups: int = 0
    replies: int = 0
    tokens: int = 0
    truncated: int = 0  # groups with a reply cut to max_len (its score then reads the cut-off token)
    skipped: int = 0  # groups dropped because a reply was longer than max_len (data.overflow=skip)
    tied: int = 0  # groups dropped because two replies became the same tokens after truncation


def prepare(records: list, template: Template, max_len: int, overflow: str):
    """Records -> groups of rendered replies and a report. A group is kept or dropped whole, so a pair is
    never split; one reply over max_len truncates each long reply ('truncate') or skips the group ('skip')."""
    groups, report = [], GroupReport(records=len(records))
    for rec in records:
        group = render_group(template, rec.prompt, replies(rec))
        if any(len(s.input_ids) > max_len for s in group):
            if overflow == "skip":
                report.skipped += 1
                continue
            report.truncated += 1
            group = [Rendered(s.input_ids[:max_len], s.loss_mask[:max_len]) for s in group]
            if len({tuple(s.input_ids) for s in group}) < len(group):
                report.tied += 1  # identical rows cannot be ranked: the pair would teach nothing
                continue
        groups.append(group)
        report.groups += 1
        report.replies += len(group)
        report.tokens += sum(len(s.input_ids) for s in group)
    return groups, report


def rm_loss(margin: float):
    """loss_fn for the loop: scores every reply of the batch in one forward, then the k-wise ranking loss."""

    def loss_fn(model, batch) -> torch.Tensor:
        return losses.rm_kwise(model(batch.tokens), batch.sizes, margin)  # summed over groups

    return loss_fn


def run(cfg: RunConfig, stage: str = "rm") -> Path:
    """Train and save `output_dir/final` (body or LoRA adapter + score head); returns that path."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(cfg.train.seed)
    out = Path(cfg.train.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, out / "config.yaml")
    t0 = time.perf_counter()
    data = load_data(cfg.data, want=(PreferencePair, Ranking))  # bad data fails before the model loads
    loaded, scalar = heads.load_scalar(cfg.model, cfg.lora, for_training=True)
    if cfg.train.gradient_checkpointing:
        io.enable_gradient_checkpointing(loaded.model)
    train_groups, train_report = prepare(data.train, loaded.template, cfg.data.max_len, cfg.data.overflow)
    eval_groups, eval_report = prepare(data.eval, loaded.template, cfg.data.max_len, cfg.data.overflow)
    if not train_groups:
        raise DataError(f"no training groups left after the length limit: {vars(train_report)}")
    report = {"train": vars(train_report), "eval": vars(eval_report), "skipped_rows": data.skipped}
    _print_report(report, data.counts, accelerator.is_main_process)
    pad = loaded.tokenizer.pad_token_id
    batched = partial(
        Groups, pad_id=pad, batch_size=cfg.train.batch_size, seed=cfg.data.seed,
        group_by_length=cfg.data.group_by_length, shared_prefix=cfg.shared_prefix,
    )  # fmt: skip
    groups, held = batched(train_groups), batched(eval_groups)
    scalar.train()  # from_pretrained leaves the body in eval mode; LoRA dropout should act while training
    model = accelerator.prepare(scalar)
    dtype, margin = loaded.dtype, cfg.rm.margin

    def evaluate() -> dict:
        return evaluate_groups(model, held, accelerator, dtype, margin)

    history = train(
        model, groups, rm_loss(margin), cfg.train, accelerator, out, evaluate if eval_groups else None, dtype
    )
    final = out / "final"
    if accelerator.is_main_process:
        io.save(final, loaded, head=scalar.head)
        summary = {
            "stage": stage,
            "seconds": round(time.perf_counter() - t0, 1),
            "data": report,
            "first": history[0] if history else {},
            "last": history[-1] if history else {},
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    accelerator.wait_for_everyone()
    return final


# ---------------------------------------------------------------- evaluation and scoring


def ranking_stats(scores: list[float], sizes: list[int], margin: float = 0.0) -> dict[str, float]:
    """Sums over all pairs i < j of each group (best first): pairs, correct (r_i > r_j), margin r_i - r_j, and
    the k-wise loss summed over groups. Sums, so shards of a multi-process run add up."""
    flat = torch.tensor(scores, dtype=torch.float32)
    pairs = correct = diff = 0.0
    start = 0
    for k in sizes:
        g = flat[start : start + k]
        i, j = torch.triu_indices(k, k, offset=1)
        d = g[i] - g[j]
        pairs, correct, diff = pairs + len(d), correct + float((d > 0).sum()), diff + float(d.sum())
        start += k
    loss = float(losses.rm_kwise(flat, sizes, margin)) if sizes else 0.0
    return {"pairs": pairs, "correct": correct, "margin": diff, "loss": loss, "groups": float(len(sizes))}


@torch.no_grad()
def evaluate_groups(model, data: Groups, accelerator, dtype, margin: float) -> dict:
    """Held-out pairwise accuracy, mean margin and mean k-wise loss (sharded across processes)."""
    model.eval()
    mine = list(range(accelerator.process_index, len(data.groups), accelerator.num_processes))
    scores, sizes = [], []
    for i in range(0, len(mine), data.batch_size):
        batch = data.batch(mine[i : i + data.batch_size]).to(accelerator.device)
        with autocast(dtype, accelerator.device):
            scores += model(batch.tokens).float().cpu().tolist()
        sizes += batch.sizes
    model.train()
    stats = ranking_stats(scores, sizes, margin)
    total = {k: accelerator.reduce(torch.tensor(v), "sum").item() for k, v in stats.items()}
    return {
        "eval_loss": round(total["loss"] / max(total["groups"], 1), 5),
        "eval_accuracy": round(total["correct"] / max(total["pairs"], 1), 5),
        "eval_margin": round(total["margin"] / max(total["pairs"], 1), 5),
    }


@torch.no_grad()
def score_replies(
    model: heads.ScalarLM,
    tokenizer,
    template: Template,
    convs_with_replies: list[Conversation],
    batch_size: int = 8,
    max_len: int = 0,
) -> list[float]:
    """The reward of each conversation, read at its last token (each ends with the assistant reply to score).

    Neighbours with the same prompt (the replies of a pair or ranking, as callers list them) share one row
    with the prompt once (`collate_shared`), as training does, where the attention backend takes its mask.
    Batches of batch_size such groups go in length order (less padding); scores return in input order.
    max_len > 0 cuts longer rows as training does. Runs under autocast when the body is in bf16."""
    rows = [template.render(c) for c in convs_with_replies]
    if max_len:
        rows = [Rendered(r.input_ids[:max_len], r.loss_mask[:max_len]) for r in rows]
    lm = base_lm(model.lm)
    runs = itertools.groupby(range(len(rows)), key=lambda i: convs_with_replies[i].messages[:-1])
    groups = [list(run) for _, run in runs]
    shared = len(groups) < len(rows) and lm.config._attn_implementation in ("sdpa", "eager")
    if not shared:
        groups = [[i] for i in range(len(rows))]
    groups.sort(key=lambda g: sum(len(rows[i].input_ids) for i in g))
    device, dtype = lm.device, lm.dtype
    was_training = model.training
    model.eval()
    out = [0.0] * len(rows)
    for k in range(0, len(groups), batch_size):
        chunk = groups[k : k + batch_size]
        if shared:
            batch = collate_shared([[rows[i] for i in g] for g in chunk], tokenizer.pad_token_id).tokens
        else:
            batch = collate([[rows[i]] for g in chunk for i in g], tokenizer.pad_token_id)
        with autocast(dtype, device):
            scores = model(batch.to(device)).float().cpu().tolist()
        for i, score in zip([i for g in chunk for i in g], scores):
            out[i] = score
    model.train(was_training)
    return out


def score_cli(argv: list[str]) -> None:
    """pixiu score MODEL --data FILE [--out scores.jsonl] [--batch_size N]"""
    p = argparse.ArgumentParser(prog="pixiu score", description="Score replies with a pixiu reward model.")
    p.add_argument("model", help="a reward model saved by `pixiu train rm`")
    p.add_argument(
        "--data", required=True, help="pairs, rankings or conversations (json, jsonl, csv, parquet)"
    )
    p.add_argument("--out", default="", help="write one JSON line per row here (default: stdout)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--format", default="auto", help="row format, as data.datasets[].format")
    p.add_argument("--max_len", type=int, default=0, help="cut rows longer than this (0 = no limit)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--skip_bad_rows", action="store_true", help="skip (and report) malformed rows")
    a = p.parse_args(argv)
    records, skipped = load_records(config_mod.DatasetSpec(a.data, format=a.format), a.skip_bad_rows)
    loaded, model = heads.load_scalar(config_mod.ModelConfig(a.model, dtype=a.dtype))
    convs, sizes = [], []
    for rec in records:
        if isinstance(rec, (PreferencePair, Ranking)):
            texts = replies(rec)
            convs += [rec.prompt.add("assistant", t) for t in texts]
            sizes.append(len(texts))
        elif isinstance(rec, Conversation) and rec.messages[-1].role in TARGET_ROLES:
            convs.append(rec)
            sizes.append(1)
        else:
            raise DataError(f"{rec.source}: a {type(rec).__name__} that does not end with a reply to score")
    scores = score_replies(model, loaded.tokenizer, loaded.template, convs, a.batch_size, a.max_len)
    per_row, start = [], 0
    for k in sizes:
        per_row.append(scores[start : start + k])
        start += k
    lines = [
        json.dumps({"source": r.source, "scores": [round(x, 6) for x in s]}, ensure_ascii=False) + "\n"
        for r, s in zip(records, per_row)
    ]
    if a.out:
        Path(a.out).write_text("".join(lines), encoding="utf-8")
    else:
        sys.stdout.write("".join(lines))
    ranked = [s for s in per_row if len(s) > 1]
    stats = ranking_stats([x for s in ranked for x in s], [len(s) for s in ranked])
    summary = f"scored {len(convs)} replies in {len(records)} rows" + (f" -> {a.out}" if a.out else "")
    if stats["pairs"]:
        summary += (
            f"\npairwise accuracy {stats['correct'] / stats['pairs']:.4f} over {int(stats['pairs'])} pairs, "
            f"mean margin {stats['margin'] / stats['pairs']:.4f}"
        )
    for line in skipped:
        summary += f"\nskipped bad row: {line}"
    print(summary, file=sys.stdout if a.out else sys.stderr)  # stdout may be the scores themselves


def _print_report(report: dict, counts: dict, main: bool) -> None:
    if not main:
        return
    print(f"data: {counts}")
    for name in ("train", "eval"):
        r = report[name]
        print(
            f"  {name}: {r['records']} records -> {r['groups']} groups, {r['replies']} replies, {r['tokens']} "
            f"tokens; truncated {r['truncated']}, skipped as too long {r['skipped']}, tied after cut {r['tied']}"
        )
    for line in report["skipped_rows"]:
        print(f"  skipped bad row: {line}")
