"""Scoring replies with a reward model: what PPO's reward, `pixiu score`, `pixiu eval` and moderation share.

A reward model is a `heads.ScalarLM` read at the last token of prompt + reply (loaded by `heads.load_scalar`).
It sits in model/ so training, evaluation and serving each call the scorer training reported on, without one of
them importing another (see tests/test_imports.py).
"""

from __future__ import annotations

import itertools

import torch

from pixiu import losses
from pixiu.batch import collate, collate_shared
from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Rendered, Template
from pixiu.model.forward import autocast, base_lm
from pixiu.model.heads import ScalarLM


def replies(record) -> list[str]:
    """The replies of a preference pair (chosen, rejected) or a ranking (responses), best first."""
    responses = getattr(
        record, "responses", None
    )  # data.records.Ranking; a PreferencePair has chosen/rejected
    return list(responses) if responses is not None else [record.chosen, record.rejected]


def ranking_stats(
    scores: list[float], sizes: list[int], margin: float | torch.Tensor = 0.0
) -> dict[str, float]:
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
def score_replies(
    model: ScalarLM,
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
