"""Generation on a model being trained: the one function PPO / GRPO rollouts, evaluation and the CLI call.

`sample` runs the torch engine's scheduler (engine/torch_engine.py: slot KV cache, batched prefill, continuous
batching, per-row seeded sampling) in the calling thread on the live model: adapters stay active and unmerged,
nothing is copied, and the model's mode is restored afterwards. So the server and the rollouts share one
implementation of prefill, decode, sampling and stopping. `build` picks that engine, or for an encoder-decoder
(T5) the one over transformers' `generate` (engine/seq2seq.py), for every caller.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch

from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Template
from pixiu.engine.base import Engine, Request, Sampling
from pixiu.model.forward import base_lm
from pixiu.model.io import Loaded, unwrap

__all__ = ["Sample", "Sampling", "generate", "sample"]


@dataclass
class Sample:
    prompt_ids: list[int]  # (P,) the rendered prompt, generation prompt included
    reply_ids: list[int]  # (R,) sampled tokens up to and including the one that ended the reply
    text: str  # the reply decoded, cut before the first stop string, stripped
    finished: bool  # True when a stop token or stop string ended the reply before max_new_tokens
    # (R,) log-probability of each reply token under the distribution it was drawn from: softmax of the logits
    # after repetition penalty, temperature, top-k and top-p (renormalised); greedy: the logits at temperature 1
    logps: list[float]


def sample(
    model, tokenizer, template: Template, convs: list[Conversation], sampling: Sampling, n: int = 1
) -> list[Sample]:
    """n replies per conversation (conversation-major order); each conversation ends with a user turn.

    `model` is any causal LM or encoder-decoder; a peft model samples with its active adapter. Row i draws from its own generator,
    seeded from `sampling.seed` (or, when None, from torch's global RNG, so a seeded run and its resume sample
    the same replies) and never from what else shares its batch."""
    seeds = row_seeds(sampling.seed, len(convs) * n)
    loaded = Loaded(unwrap(model), tokenizer, template, "", torch.float32)
    with live_mode(base_lm(unwrap(model))):
        # eager decode: captured CUDA graphs would pin a cache per call for a model whose weights keep moving
        engine = build(loaded, "live", max_batch=len(seeds), live=True, decode="eager")
        requests = []
        for i, conv in enumerate(c for c in convs for _ in range(n)):
            ids = engine.prompt_ids(conv)
            engine.check_context(ids, sampling)
            requests.append(
                Request(ids, replace(sampling, seed=seeds[i]), engine.stops(()), track_logps=True)
            )
        engine.run(requests)
    return [to_sample(r, tokenizer) for r in requests]


def build(
    loaded: Loaded,
    name: str,
    max_batch: int = 16,
    quantize: str = "none",
    live: bool = False,
    decode: str = "auto",
) -> Engine:
    """The torch backend's engine for `loaded`, the one place that tells the model kinds apart: the slot-KV
    engine for a causal LM (engine/torch_engine.py), transformers' `generate` behind the same interface for an
    encoder-decoder such as T5 (engine/seq2seq.py; `decode` does not apply)."""
    from pixiu.model.seq2seq import is_encoder_decoder

    if is_encoder_decoder(loaded.model):
        from pixiu.engine.seq2seq import Seq2SeqEngine

        return Seq2SeqEngine(loaded, name, max_batch, quantize, live=live)
    from pixiu.engine.torch_engine import TorchEngine

    return TorchEngine(loaded, name, max_batch, quantize, live=live, decode=decode)


def row_seeds(seed: int | None, rows: int) -> list[int]:
    """One seed per row: distinct, from `seed` when given, else from torch's global RNG (it advances)."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randint(0, 2**62, (rows,), generator=gen).tolist()


def to_sample(request, tokenizer) -> Sample:
    deltas = list(request)  # the run is over: every Delta is queued; raises EngineError if the request failed
    reply = [t for d in deltas for t in d.token_ids]
    text = "".join(d.text for d in deltas).strip()
    return Sample(request.prompt_ids, reply, text, request.finish_reason == "stop", request.sampled_logps)


@contextlib.contextmanager
def live_mode(lm):
    """Eval mode (no dropout) and SDPA attention (the slot cache passes boolean length masks) while sampling;
    the training mode and attention implementation come back afterwards."""
    was_training, impl = lm.training, getattr(lm.config, "_attn_implementation", "sdpa")
    lm.eval()
    if impl != "sdpa":
        lm.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        if impl != "sdpa":
            lm.set_attn_implementation(impl)
        lm.train(was_training)


def generate(loaded: Loaded, convs: list[Conversation], sampling: Sampling | None = None) -> list[str]:
    """One reply text per conversation."""
    samples = sample(loaded.model, loaded.tokenizer, loaded.template, convs, sampling or Sampling())
    return [s.text for s in samples]
