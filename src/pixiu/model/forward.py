"""A causal LM forward that runs the LM head only where a target token is predicted.

SFT trains on assistant tokens only, and the head (vocab x hidden) is a large share of a small model's FLOPs
and of its activation memory (B x T x V logits). Gathering the hidden states of target positions first skips
both for prompt and padding tokens. It is an nn.Module so DDP wraps it and syncs gradients as usual.
"""

from __future__ import annotations

import torch
from torch import nn

from pixiu.data.collate import TokenBatch


def base_lm(model: nn.Module) -> nn.Module:
    """The transformers CausalLM under a peft wrapper (LoRA layers stay injected in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class TargetLM(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """-> logits (N, V) at positions predicting a target, and the targets (N,)."""
        base = base_lm(self.lm)
        hidden = base.get_decoder()(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,  # a cache would also disable the packed-sample attention mask
        ).last_hidden_state  # (B, T, H)
        keep = batch.loss_mask[:, 1:].bool()  # (B, T-1): token t+1 is a target, predicted at t
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])  # (N, V)
        return logits, batch.input_ids[:, 1:][keep]
