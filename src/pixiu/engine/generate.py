"""Generation: the one function PPO / GRPO rollouts, evaluation and the CLI call to sample replies.

`sample` uses transformers' `generate` (KV cache, batched with left padding) on the model being trained, as
PPO / GRPO rollouts need; serving goes through the `Engine` (engine/base.py), which streams and batches
continuously.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Template
from pixiu.model.io import Loaded, unwrap


@dataclass
class Sampling:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus: sample from the smallest set of tokens whose probability reaches top_p
    top_k: int = 0  # 0 = no limit
    repetition_penalty: float = 1.0  # 1 = none; >1 discourages tokens already in prompt or reply (CTRL)
    seed: int | None = None  # the same seed, prompt and settings give the same reply
    logprobs: int | None = None  # None: off; k: each sampled token's log-probability and the k most likely

    def __post_init__(self):
        checks = {
            "max_new_tokens must be >= 1": self.max_new_tokens >= 1,
            "temperature must be >= 0": self.temperature >= 0,
            "top_p must be in (0, 1]": 0 < self.top_p <= 1,
            "top_k must be >= 0": self.top_k >= 0,
            "repetition_penalty must be > 0": self.repetition_penalty > 0,
            "logprobs must be None or in 0..20": self.logprobs is None or 0 <= self.logprobs <= 20,
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"bad sampling settings: {'; '.join(bad)}")


@dataclass
class Sample:
    prompt_ids: list[int]  # (P,) the rendered prompt, generation prompt included
    reply_ids: list[int]  # (R,) sampled tokens up to and including the first stop token, if one came
    text: str  # the reply decoded and cut at the first stop string
    finished: bool  # True when a stop token ended the reply before max_new_tokens


@torch.no_grad()
def sample(
    model, tokenizer, template: Template, convs: list[Conversation], sampling: Sampling, n: int = 1
) -> list[Sample]:
    """n replies per conversation (conversation-major order); each conversation ends with a user turn.

    `model` is any causal LM (a peft model samples with its active adapter)."""
    model = unwrap(model)
    prompts = [template.prompt_ids(c) for c in convs for _ in range(n)]
    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stop_ids = [
        ids[0] for s in template.stop if len(ids := tokenizer(s, add_special_tokens=False)["input_ids"]) == 1
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
    samples = []
    for prompt, row in zip(prompts, out[:, width:].tolist()):
        end = next((i + 1 for i, t in enumerate(row) if t in stop_ids), None)
        reply = row[:end] if end else row
        text = tokenizer.decode(reply, skip_special_tokens=False)
        cut = min([text.find(s) for s in template.stop if s in text] or [len(text)])
        samples.append(Sample(prompt, reply, text[:cut].strip(), end is not None))
    return samples


def generate(loaded: Loaded, convs: list[Conversation], sampling: Sampling | None = None) -> list[str]:
    """One reply text per conversation."""
    samples = sample(loaded.model, loaded.tokenizer, loaded.template, convs, sampling or Sampling())
    return [s.text for s in samples]
