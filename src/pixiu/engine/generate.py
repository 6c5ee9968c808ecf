"""Generation: the one function PPO rollouts, evaluation and the CLI call to sample replies.

This first backend uses transformers' `generate` (KV cache, batched with left padding); the serving issue
grows it into an engine with streaming and continuous batching behind the same call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pixiu.chat.messages import Conversation
from pixiu.model.io import Loaded, unwrap


@dataclass
class Sampling:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None


@torch.no_grad()
def generate(loaded: Loaded, convs: list[Conversation], sampling: Sampling | None = None) -> list[str]:
    """One reply per conversation; each conversation ends with a user turn."""
    sampling = sampling or Sampling()
    tok, template = loaded.tokenizer, loaded.template
    model = unwrap(loaded.model)
    prompts = [template.prompt_ids(c) for c in convs]
    width = max(map(len, prompts))
    pad = tok.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stop_ids = [
        ids[0] for s in template.stop if len(ids := tok(s, add_special_tokens=False)["input_ids"]) == 1
    ]
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    greedy = sampling.temperature <= 0
    was_training = model.training
    model.eval()
    out = model.generate(
        input_ids=input_ids.to(model.device),
        attention_mask=attn.to(model.device),
        max_new_tokens=sampling.max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else sampling.temperature,
        top_p=None if greedy else sampling.top_p,
        top_k=None if greedy else (sampling.top_k or None),
        repetition_penalty=sampling.repetition_penalty,
        eos_token_id=stop_ids or None,
        pad_token_id=pad,
    )
    model.train(was_training)
    replies = []
    for row in out[:, width:].tolist():
        text = tok.decode(row, skip_special_tokens=False)
        cut = min([text.find(s) for s in template.stop if s in text] or [len(text)])
        replies.append(text[:cut].strip())
    return replies
