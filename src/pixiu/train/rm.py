"""Reward model training (`pixiu train rm`); scoring with one is model/reward.py (`score_replies`).

A reward model is the causal LM with a scalar head (`model/heads.py`) read at the last token of prompt + reply.
Each preference pair or ranking becomes one group of rendered replies, best first; all replies of a micro-batch
go through ONE forward, and the loss is InstructGPT's k-wise ranking loss (for a pair: Bradley–Terry), summed
per group and divided by the groups of the step in the loop. Evaluation reports held-out pairwise accuracy (the
share of pairs i < j scored r_i > r_j) and the mean margin r_i - r_j.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from pixiu import losses
from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Rendered, Template
from pixiu.config import RunConfig
from pixiu.data import DataError, load_data
from pixiu.data.records import PreferencePair, Ranking
from pixiu.model import heads, io
from pixiu.model.forward import autocast
from pixiu.model.reward import ranking_stats, replies
from pixiu.train.loop import Groups, train
from pixiu.train.stages import begin, finish, print_report


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
    """Records -> groups of rendered replies, each group's own margin (a pair's `margin` column, else 0) and a
    report. A group is kept or dropped whole, so a pair is never split; one reply over max_len truncates each
    long reply ('truncate') or skips the group ('skip')."""
    groups, margins, report = [], [], GroupReport(records=len(records))
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
        margins.append(getattr(rec, "margin", 0.0))  # a Ranking has none
        report.groups += 1
        report.replies += len(group)
        report.tokens += sum(len(s.input_ids) for s in group)
    return groups, margins, report


REPORT_LINE = (
    "{records} records -> {groups} groups, {replies} replies, {tokens} tokens; truncated {truncated}, skipped "
    "as too long {skipped}, tied after cut {tied}"
)


def group_margins(batch, margin: float) -> torch.Tensor | float:
    """rm.margin plus each group's own margin where the batch carries them (extra["margin"], one per reply)."""
    if "margin" not in batch.extra:
        return margin
    first = torch.tensor([0, *batch.sizes[:-1]]).cumsum(0)  # each group's first row
    return margin + batch.extra["margin"][first.to(batch.extra["margin"].device)]


def rm_loss(margin: float):
    """loss_fn for the loop: scores every reply of the batch in one forward, then the k-wise ranking loss."""

    def loss_fn(model, batch) -> torch.Tensor:
        scores = model(batch.tokens)
        return losses.rm_kwise(scores, batch.sizes, group_margins(batch, margin))  # summed over groups

    return loss_fn


def run(cfg: RunConfig, stage: str = "rm") -> Path:
    """Train and save `output_dir/final` (body or LoRA adapter + score head); returns that path."""
    job = begin(cfg, stage)
    accelerator = job.accelerator
    data = load_data(cfg.data, want=(PreferencePair, Ranking))  # bad data fails before the model loads
    loaded, scalar = heads.load_scalar(cfg.model, cfg.lora, for_training=True)
    if cfg.train.gradient_checkpointing:
        io.enable_gradient_checkpointing(loaded.model)
    train_groups, train_margins, train_report = prepare(
        data.train, loaded.template, cfg.data.max_len, cfg.data.overflow
    )
    eval_groups, eval_margins, eval_report = prepare(
        data.eval, loaded.template, cfg.data.max_len, cfg.data.overflow
    )
    if not train_groups:
        raise DataError(f"no training groups left after the length limit: {vars(train_report)}")
    report = {"train": vars(train_report), "eval": vars(eval_report), "skipped_rows": data.skipped}
    print_report(job, report, data.counts, REPORT_LINE)
    pad = loaded.tokenizer.pad_token_id
    batched = partial(
        Groups, pad_id=pad, batch_size=cfg.train.batch_size, seed=cfg.data.seed,
        group_by_length=cfg.data.group_by_length, shared_prefix=cfg.shared_prefix,
    )  # fmt: skip

    def per_reply(groups, margins) -> dict:  # nested like the groups, as Groups.extra wants
        return {"margin": [[m] * len(g) for g, m in zip(groups, margins)]} if cfg.rm.pair_margins else {}

    groups = batched(train_groups, extra=per_reply(train_groups, train_margins))
    held = batched(eval_groups, extra=per_reply(eval_groups, eval_margins))
    scalar.train()  # from_pretrained leaves the body in eval mode; LoRA dropout should act while training
    model = accelerator.prepare(scalar)
    dtype, margin = loaded.dtype, cfg.rm.margin

    def evaluate() -> dict:
        return evaluate_groups(model, held, accelerator, dtype, margin)

    hook = evaluate if eval_groups else None
    history = train(model, groups, rm_loss(margin), cfg.train, accelerator, job.out, hook, dtype)
    return finish(job, loaded, history, head=scalar.head, data=report)


# ---------------------------------------------------------------- held-out evaluation


@torch.no_grad()
def evaluate_groups(model, data: Groups, accelerator, dtype, margin: float) -> dict:
    """Held-out pairwise accuracy, mean margin and mean k-wise loss (sharded across processes)."""
    model.eval()
    mine = list(range(accelerator.process_index, len(data.groups), accelerator.num_processes))
    scores, sizes, margins = [], [], []
    for i in range(0, len(mine), data.batch_size):
        batch = data.batch(mine[i : i + data.batch_size]).to(accelerator.device)
        with autocast(dtype, accelerator.device):
            scores += model(batch.tokens).float().cpu().tolist()
        sizes += batch.sizes
        m = group_margins(batch, margin)
        margins += m.cpu().tolist() if isinstance(m, torch.Tensor) else [m] * len(batch.sizes)
    model.train()
    stats = ranking_stats(scores, sizes, torch.tensor(margins))
    total = {k: accelerator.reduce(torch.tensor(v), "sum").item() for k, v in stats.items()}
    return {
        "eval_loss": round(total["loss"] / max(total["groups"], 1), 5),
        "eval_accuracy": round(total["correct"] / max(total["pairs"], 1), 5),
        "eval_margin": round(total["margin"] / max(total["pairs"], 1), 5),
    }
