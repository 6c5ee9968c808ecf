"""A causal-LM body with a scalar head: the reward model and the PPO critic.

The head maps the last hidden state of every token to one number. A reward model scores a reply by the head at
its last token (InstructGPT, https://arxiv.org/abs/2203.02155 section 3.5); the critic reads it at every token
as the value. Sharing the body with the policy (LoRA adapters over one frozen base) keeps PPO to one copy of
the weights. Saved by `io.save(..., head=)` as score_head.safetensors beside the body.
"""

from __future__ import annotations

import torch
from torch import nn

from pixiu.batch import TokenBatch
from pixiu.config import LoraConfig, ModelConfig
from pixiu.model import io
from pixiu.model.forward import base_lm, hidden_states


class ScalarLM(nn.Module):
    def __init__(self, lm: nn.Module, head: nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        hidden = base_lm(lm).config.hidden_size
        if head is None:
            head = nn.Linear(hidden, 1, bias=True)
            nn.init.normal_(head.weight, std=1 / (hidden + 1) ** 0.5)
            nn.init.zeros_(head.bias)
        self.head = head

    def values(self, batch: TokenBatch) -> torch.Tensor:
        """-> (B, T) head output at every position, fp32."""
        return self.head(hidden_states(self.lm, batch)).squeeze(-1).float()

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        """-> (B,) the score of each row: the head at its last real token (rows are right-padded), or (R,) the
        score of each reply of shared-prompt rows."""
        if batch.shared:
            hidden = hidden_states(self.lm, batch).flatten(0, 1)[batch.shared.ends]
            return self.head(hidden).squeeze(-1).float()
        if batch.attention_mask is None:
            raise ValueError("a reward model scores one reply per row; packed rows are not supported")
        last = batch.attention_mask.sum(1) - 1  # (B,)
        return self.values(batch)[torch.arange(len(last)), last.to(batch.input_ids.device)]


def load_scalar(cfg: ModelConfig, lora: LoraConfig | None = None, for_training: bool = False):
    """-> (Loaded, ScalarLM). A pixiu reward model brings its head; any other model gets a new one."""
    loaded = io.load(cfg, lora, for_training=for_training)
    model = ScalarLM(loaded.model)
    if io.read_meta(io.resolve(cfg.name_or_path)).get("head"):
        model.head.load_state_dict(io.load_head(cfg.name_or_path))
    model.head.requires_grad_(for_training)
    model.head.to(next(loaded.model.parameters()).device)  # beside the body io.load placed (model.device)
    return loaded, model
