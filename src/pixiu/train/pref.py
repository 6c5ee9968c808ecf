"""Offline preference training: `pixiu train dpo` (DPO, cDPO, IPO, SimPO, ORPO), `pixiu train kto`, `pixiu train rrhf`.

Every method is the shared loop over `Groups` of replies to one prompt, best first: a pair is a group of two, a
ranking a group of K, a KTO example its reply plus a mismatched reply for the KL estimate. The reference model's
log-probs are computed once, before training, in one no-grad pass (with a new LoRA adapter: the same weights with
the adapter switched off, so no second model is loaded) and ride along as per-reply `extra` values: a training
step runs the policy only. The loss math lives in losses.py; this file turns records into groups and log-probs
into a method's loss, and reports held-out reward accuracy, rewards and margins.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from pixiu import losses
from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Rendered, Template
from pixiu.config import DataConfig, PrefConfig, RunConfig
from pixiu.data import load_data, read_rows
from pixiu.data.collate import TokenBatch, fit
from pixiu.data.formats import rename
from pixiu.data.records import Labelled, PreferencePair, Ranking
from pixiu.model import TargetLM, adapters, io
from pixiu.model.forward import autocast, sequence_logps
from pixiu.train.loop import Groups, train
from pixiu.train.stages import Job, begin, finish, print_report

WANT = {"dpo": PreferencePair, "kto": (Labelled, PreferencePair), "rrhf": (Ranking, PreferencePair)}


@dataclass
class Judged:
    """A method's verdict on some groups: the loss to train on and the rewards to report."""

    loss: torch.Tensor  # (G,) per-group loss; a step's loss is the sum
    chosen: torch.Tensor  # (P,) reward of the preferred reply of each compared pair (KTO: of good replies)
    rejected: torch.Tensor  # (P,) reward of the dispreferred reply (KTO: of bad replies)
    paired: bool = True  # False (KTO): accuracy compares every desirable reply with every undesirable one


# (logps (R,), counts (R,), extra {name: (R,)}, sizes) -> Judged; rows run group after group, best first
Judge = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], list[int]], Judged]
Forward = Callable[[torch.nn.Module, TokenBatch], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Method:
    judge: Judge
    needs_ref: bool  # cache reference log-probs as extra["ref_logps"] before training
    forward: Forward = sequence_logps  # policy (R,) log-probs and counts, with gradients where they train


# ---------------------------------------------------------------- methods


def pair_loss(name: str, logps: torch.Tensor, counts: torch.Tensor, ref, cfg: PrefConfig) -> losses.PairLoss:
    """The pair loss `name` from the one registry (losses.LOSSES: dpo, ipo, simpo, orpo). logps, counts, ref:
    (B, 2), chosen first. The losses take different inputs (a reference or none, token counts or none), so each
    is called with the arguments its signature names, out of everything a pair provides."""
    fn = losses.get_loss(name)
    given = {
        "chosen_logps": logps[:, 0], "rejected_logps": logps[:, 1],
        "chosen_counts": counts[:, 0], "rejected_counts": counts[:, 1],
        "beta": cfg.beta, "label_smoothing": cfg.label_smoothing, "gamma": cfg.simpo_gamma, "lam": cfg.orpo_lambda,
    }  # fmt: skip
    if ref is not None:
        given |= {"ref_chosen_logps": ref[:, 0], "ref_rejected_logps": ref[:, 1]}
    return fn(**{arg: given[arg] for arg in inspect.signature(fn).parameters})


def referenced(name: str) -> bool:
    """Whether the pair loss `name` is measured against the reference model (DPO, IPO; not SimPO, ORPO)."""
    return "ref_chosen_logps" in inspect.signature(losses.get_loss(name)).parameters


def judge_pairs(cfg: PrefConfig) -> Judge:
    def judge(logps, counts, extra, sizes):
        ref = extra["ref_logps"].to(logps).view(-1, 2) if "ref_logps" in extra else None
        out = pair_loss(cfg.loss, logps.view(-1, 2), counts.view(-1, 2), ref, cfg)
        return Judged(out.loss, out.chosen_rewards, out.rejected_rewards)

    return judge


def judge_rrhf(cfg: PrefConfig) -> Judge:
    """Groups of any size K; rewards are the length-normalised log-probs, compared over all C(K,2) pairs."""

    def judge(logps, counts, extra, sizes):
        outs = [
            losses.rrhf(lp, n, cfg.rrhf_sft_weight) for lp, n in zip(logps.split(sizes), counts.split(sizes))
        ]
        pairs = [torch.triu_indices(k, k, offset=1) for k in sizes]
        chosen = torch.cat([o.scores[i] for o, (i, _) in zip(outs, pairs)])
        rejected = torch.cat([o.scores[j] for o, (_, j) in zip(outs, pairs)])
        return Judged(torch.stack([o.loss for o in outs]), chosen, rejected)

    return judge


def judge_kto(cfg: PrefConfig, sync: Callable[[torch.Tensor], torch.Tensor]) -> Judge:
    """Each group is [reply, mismatched reply]; `sync` averages the KL estimate over processes, as TRL does."""

    def judge(logps, counts, extra, sizes):
        lp, ref = logps.view(-1, 2), extra["ref_logps"].to(logps).view(-1, 2)
        good = extra["desirable"].view(-1, 2)[:, 0].bool().to(logps.device)
        kl = sync(losses.kto_kl(lp[:, 1], ref[:, 1]))
        out = losses.kto(
            lp[:, 0], ref[:, 0], good, kl, cfg.beta, cfg.kto_desirable_weight, cfg.kto_undesirable_weight
        )
        return Judged(out.loss, out.rewards[good], out.rewards[~good], paired=False)

    return judge


def forward_kto(model, tokens: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The replies with gradients; the mismatched replies only feed the (detached) KL estimate: no graph."""
    logps, counts = sequence_logps(model, take(tokens, slice(0, None, 2)))
    with torch.no_grad():
        kl_logps, kl_counts = sequence_logps(model, take(tokens, slice(1, None, 2)))
    return torch.stack([logps, kl_logps], 1).view(-1), torch.stack([counts, kl_counts], 1).view(-1)


def take(tokens: TokenBatch, rows: slice) -> TokenBatch:
    """Some rows of a right-padded batch, cut to their own width."""
    mask = tokens.attention_mask[rows]
    width = int(mask.sum(1).max())
    return TokenBatch(
        tokens.input_ids[rows, :width],
        tokens.position_ids[rows, :width],
        mask[:, :width],
        tokens.loss_mask[rows, :width],
    )


METHODS: dict[str, Callable[[PrefConfig, Callable], Method]] = {
    "dpo": lambda cfg, sync: Method(judge_pairs(cfg), referenced(cfg.loss)),
    "kto": lambda cfg, sync: Method(judge_kto(cfg, sync), True, forward_kto),
    "rrhf": lambda cfg, sync: Method(judge_rrhf(cfg), False),
}


# ---------------------------------------------------------------- records -> groups


def conversations(stage: str, records: list, seed: int) -> tuple[list[list[Conversation]], dict[str, list]]:
    """Records -> groups of whole conversations (the prompt plus one reply), best first, and per-reply extras."""
    if stage == "kto":
        return kto_conversations([e for r in records for e in labelled(r)], seed)
    groups = []
    for r in records:
        replies = [r.chosen, r.rejected] if isinstance(r, PreferencePair) else r.responses
        groups.append([r.prompt.add("assistant", text) for text in replies])
    return groups, {}


def labelled(record: Labelled | PreferencePair) -> list[Labelled]:
    """KTO needs no pairs: a pair gives one desirable and one undesirable example."""
    if isinstance(record, Labelled):
        return [record]
    return [
        Labelled(record.prompt, record.chosen, True, record.source),
        Labelled(record.prompt, record.rejected, False, record.source),
    ]


def kto_conversations(
    examples: list[Labelled], seed: int
) -> tuple[list[list[Conversation]], dict[str, list]]:
    """[x + y, x + y'] per example, y' the reply of another example (KTO sec. 4.1: the reference point z_ref is
    estimated from mismatched pairs). TRL pairs each example with its batch neighbour's reply; our batches are
    shuffled by the loop, so the partner is fixed here instead, by a seeded permutation, which lets the reference
    log-probs of y' be cached once like every other reference value."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    partner = {order[k]: order[k - 1] for k in range(len(order))}
    groups = [
        [e.prompt.add("assistant", e.reply), e.prompt.add("assistant", examples[partner[i]].reply)]
        for i, e in enumerate(examples)
    ]
    return groups, {"desirable": [[float(e.desirable), 0.0] for e in examples]}


def render_groups(
    groups: list[list[Conversation]],
    extra: dict[str, list],
    template: Template,
    data: DataConfig,
    distinct: bool,
) -> tuple[list[list[Rendered]], dict[str, list], dict]:
    """Render every reply (loss on the final reply only). A group loses nothing silently: it is kept whole, or
    dropped and counted (a reply too long under overflow=skip, a reply with no target left, or, when the replies
    are compared, two replies that became identical once truncated)."""
    kept, keep, counts = [], [], {"truncated": 0, "skipped": 0, "no_targets": 0, "identical": 0}
    for gi, convs in enumerate(groups):
        rendered, over = fit(
            [template.render(c, train_on="last") for c in convs], data.max_len, data.overflow
        )
        if over.skipped or over.no_targets:
            counts["skipped" if over.skipped else "no_targets"] += 1
            continue
        if distinct and len({tuple(r.input_ids) for r in rendered}) < len(rendered):
            counts["identical"] += 1
            continue
        counts["truncated"] += bool(over.truncated)
        kept.append(rendered)
        keep.append(gi)
    report = {"groups": len(kept), **counts, "tokens": sum(len(r.input_ids) for g in kept for r in g)}
    return kept, {k: [v[i] for i in keep] for k, v in extra.items()}, report


def kto_data(data: DataConfig) -> DataConfig:
    """{messages, label} rows auto-detect as plain chats (what SFT reads); KTO reads them with their label."""

    def with_label(spec):
        first = next(iter(read_rows(spec.path, spec.split)), None) if spec.format == "auto" else None
        row = rename(first[1], spec.columns) if first and isinstance(first[1], dict) else {}
        return replace(spec, format="kto") if {"messages", "label"} <= set(row) else spec

    return replace(data, path="", datasets=[with_label(s) for s in data.specs()])


# ---------------------------------------------------------------- no-grad passes: reference and evaluation


@torch.no_grad()
def all_logps(model, data: Groups, accelerator, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(R,) summed log-probs and (R,) target counts of every reply, group after group; in eval mode (no dropout),
    each process scoring a share, batched by length to cut padding. It calls the module under the DDP wrapper:
    processes run different numbers of batches here, and a no-grad pass needs no gradient sync."""
    model = io.unwrap(model)
    was_training = model.training
    model.eval()
    groups = data.groups
    mine = sorted(
        range(accelerator.process_index, len(groups), accelerator.num_processes),
        key=lambda i: max(len(r.input_ids) for r in groups[i]),
    )
    found = {}
    for s in range(0, len(mine), data.batch_size):
        idx = mine[s : s + data.batch_size]
        batch = data.batch(idx).to(accelerator.device)
        with autocast(dtype, accelerator.device):
            logps, counts = sequence_logps(model, batch.tokens)
        for i, lp, n in zip(idx, logps.float().cpu().split(batch.sizes), counts.cpu().split(batch.sizes)):
            found[i] = (lp, n)
    model.train(was_training)
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        found = {i: v for part in gather_object([found]) for i, v in part.items()}
    if not groups:
        return torch.zeros(0), torch.zeros(0)
    logps, counts = zip(*(found[i] for i in range(len(groups))))
    return torch.cat(logps), torch.cat(counts)


def reference_logps(model, data: Groups, accelerator, dtype, adapter_off: bool) -> torch.Tensor:
    """(R,) reference log-probs: the policy before its first step. A new LoRA adapter is switched off (peft's
    `disable_adapter`, exactly the base model); a loaded adapter being trained further stays on, since it is the
    model the run starts from (an SFT adapter, say)."""
    lm = io.unwrap(model).lm
    with lm.disable_adapter() if adapter_off else contextlib.nullcontext():
        return all_logps(model, data, accelerator, dtype)[0]


def nest(flat: torch.Tensor, groups: list[list]) -> list[list[float]]:
    """(R,) values -> lists nested like `groups`, the layout of `Groups.extra`."""
    return [v.tolist() for v in flat.split([len(g) for g in groups])]


def metrics(judged: Judged, prefix: str = "eval_") -> dict:
    c, r = judged.chosen.float(), judged.rejected.float()
    out = {"loss": judged.loss.float().mean().item()}
    if len(c) and len(r):
        wins = c > r if judged.paired else c[:, None] > r[None, :]
        out |= {
            "reward_accuracy": wins.float().mean().item(),
            "chosen_reward": c.mean().item(),
            "rejected_reward": r.mean().item(),
            "margin": (c.mean() - r.mean()).item(),
        }
    return {prefix + k: round(v, 5) for k, v in out.items()}


def evaluate(model, data: Groups, method: Method, accelerator, dtype) -> dict:
    logps, counts = all_logps(model, data, accelerator, dtype)
    extra = {k: torch.tensor([x for g in v for x in g]) for k, v in data.extra.items()}
    with torch.no_grad():
        return metrics(method.judge(logps, counts, extra, [len(g) for g in data.groups]))


# ---------------------------------------------------------------- the stage


REPORT_LINE = (
    "{records} records -> {groups} groups, {tokens} tokens; truncated {truncated}; dropped: too long {skipped}, "
    "no target left {no_targets}, replies identical after truncation {identical}"
)


def run(cfg: RunConfig, stage: str = "dpo") -> Path:
    """Train and save `output_dir/final`; returns that path."""
    job = begin(cfg, stage)
    accelerator = job.accelerator
    data = load_data(kto_data(cfg.data) if stage == "kto" else cfg.data, want=WANT[stage])
    loaded = io.load(cfg.model, cfg.lora, for_training=True)
    if cfg.train.gradient_checkpointing:
        io.enable_gradient_checkpointing(loaded.model)
    sets, report = datasets(stage, data, loaded, cfg)
    print_report(job, report, data.counts, REPORT_LINE)
    model = accelerator.prepare(TargetLM(loaded.model))
    dtype = loaded.dtype
    method = METHODS[stage](cfg.pref, lambda t: accelerator.reduce(t, "mean"))
    t_ref = time.perf_counter()
    if method.needs_ref:
        cache_reference(model, sets, cfg, job, dtype)
    t_ref = time.perf_counter() - t_ref

    def loss_fn(model, batch):
        logps, counts = method.forward(model, batch.tokens)
        return method.judge(logps, counts, batch.extra, batch.sizes).loss.sum()

    ev = sets["eval"]
    hook = (lambda: evaluate(model, ev, method, accelerator, dtype)) if ev.groups else None
    history = train(model, sets["train"], loss_fn, cfg.train, accelerator, job.out, hook, dtype)
    loss = cfg.pref.loss if stage == "dpo" else stage
    return finish(job, loaded, history, loss=loss, reference_seconds=round(t_ref, 1), data=report)


def datasets(stage: str, data, loaded: io.Loaded, cfg: RunConfig) -> tuple[dict[str, Groups], dict]:
    """Loaded records -> {"train", "eval"} groups of rendered replies, and the report of what was dropped."""
    pad, bs = loaded.tokenizer.pad_token_id, cfg.train.batch_size
    sets, report = {}, {"skipped_rows": data.skipped}
    shared = cfg.shared_prefix and stage != "kto"  # KTO splits its rows: see forward_kto
    for name, records in (("train", data.train), ("eval", data.eval)):
        groups, extra = conversations(stage, records, cfg.data.seed)
        kept, extra, report[name] = render_groups(groups, extra, loaded.template, cfg.data, stage != "kto")
        report[name]["records"] = len(records)
        sets[name] = Groups(kept, pad, bs, cfg.data.seed, cfg.data.group_by_length, extra, shared)
    if not sets["train"].groups:
        raise ValueError(f"no training groups left after filtering: {report['train']}")
    return sets, report


def cache_reference(model, sets: dict[str, Groups], cfg: RunConfig, job: Job, dtype: torch.dtype) -> None:
    """Every reply's reference log-prob as extra["ref_logps"], once before training; also written to
    reference_logps.safetensors for inspection (a resumed run recomputes them)."""
    fresh_adapter = cfg.lora.r > 0 and not io.read_meta(io.resolve(cfg.model.name_or_path)).get("adapter")
    # PiSSA/OLoRA: their adapter switched off is the residual base; switched on at step 0 it is the start model
    fresh_adapter = fresh_adapter and adapters.off_is_base(cfg.lora)
    cached = {}
    for name, s in sets.items():
        cached[name] = reference_logps(model, s, job.accelerator, dtype, fresh_adapter)
        s.extra["ref_logps"] = nest(cached[name], s.groups)
    if job.main:
        save_file(cached, job.out / "reference_logps.safetensors")
