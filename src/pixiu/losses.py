"""Loss functions: pure tensor code, one registry. Each cites its equation in one comment.

Stages normalise by the number of target tokens in the whole optimizer step (across micro-batches and
processes), so gradient accumulation and data parallelism give the same update as one big batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES: dict[str, Callable] = {}


def register(name: str):
    def wrap(fn):
        LOSSES[name] = fn
        return fn

    return wrap


def get_loss(name: str) -> Callable:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}")
    return LOSSES[name]


@register("sft")
def sft(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed token cross-entropy  sum_t -log p(y_t | y_<t)  over target tokens.

    logits: (N, V) at the N positions that predict a target; targets: (N,) token ids. Returns a scalar sum;
    the caller divides by the step's target count.
    """
    return F.cross_entropy(logits.float(), targets, reduction="sum")
