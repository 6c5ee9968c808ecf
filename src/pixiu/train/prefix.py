"""A group's K replies to one prompt in ONE forward of the prompt: GRPO's policy and reference log-probs.

A group is a `GroupBatch` of K rows, the same prompt followed by each reply (grpo.group_batches); `PrefixLM`
runs the prompt once and the K replies on its shared KV cache, so a forward costs the prompt once instead of K
times, with the logits and gradients of K full-row forwards (tests/test_grpo.py).
"""

from __future__ import annotations

import torch
from torch import nn

from pixiu import compat
from pixiu.data.collate import GroupBatch
from pixiu.model.forward import base_lm, prefix_kv, token_logps


class PrefixLM(nn.Module):
    """Log-prob logits of K replies to one prompt, running the prompt once and sharing its KV cache.

    On short-answer tasks the prompt is most of a row (about 46 of 56 tokens for arithmetic on SmolLM2), so
    forwarding it once per group instead of K times cuts a step's forward and backward compute about 3x.
    Gradients flow into the prompt's keys and values through the shared cache, as in a full-row forward."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, g: GroupBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """g: ONE group, K rows of the same prompt + a reply (`group_batches`). -> (N, V) logits at the positions
        predicting each real reply token, (N,) those tokens, row-major."""
        base = base_lm(self.lm)
        decoder = base.get_decoder()
        prompt, replies, mask = split_prompt(g)
        k, width = replies.shape
        past = prefix_kv(self.lm, 1, prompt.shape[1] + width)  # prefix tuning: its key/values come first
        out = decoder(input_ids=prompt, use_cache=True, **({compat.CACHE: past} if past is not None else {}))
        first = out.last_hidden_state[:, -1:].expand(k, 1, -1)  # (K, 1, H): predicts each reply's first token
        hidden = first
        if width > 1:
            cache = compat.output_cache(out)
            cache.batch_repeat_interleave(k)
            start = cache.get_seq_length()  # the prompt's length (plus the prefix's)
            positions = torch.arange(start, start + width - 1, device=prompt.device).expand(k, -1)
            # right padding sits after every real token, so the causal mask alone keeps it out of sight
            rest = decoder(
                input_ids=replies[:, :-1], position_ids=positions, use_cache=True, **{compat.CACHE: cache}
            )
            hidden = torch.cat([first, rest.last_hidden_state], 1)  # (K, L, H)
        keep = mask.bool()
        return base.get_output_embeddings()(hidden[keep]), replies[keep]


def split_prompt(g: GroupBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A group's rows -> (1, P) the prompt they share, (K, L) the replies right-padded, (K, L) 1 = a reply token.
    The loss mask starts at the first reply token, the same column P in every row."""
    t = g.tokens
    start = int(t.loss_mask[0].argmax())
    return t.input_ids[:1, :start], t.input_ids[:, start:], t.loss_mask[:, start:]


def token_advantages(g: GroupBatch) -> torch.Tensor:
    """(N,) each reply's advantage at each of its tokens, row-major like `PrefixLM`'s output."""
    _, _, mask = split_prompt(g)
    return g.extra["advantages"][:, None].expand(mask.shape)[mask.bool()]


@torch.no_grad()
def logps_of(policy, groups: list[GroupBatch], temperature: float, ctx) -> list[torch.Tensor]:
    """(N,) log-probs of each group's reply tokens under `policy` inside the context `ctx()`, in eval mode:
    π_old and π_ref are the distributions that sampled, without LoRA dropout noise."""
    was_training = policy.training
    policy.eval()
    out = []
    for g in groups:
        with ctx():
            logits, targets = policy(g)
        out.append(token_logps(logits / temperature, targets))
    policy.train(was_training)
    return out
