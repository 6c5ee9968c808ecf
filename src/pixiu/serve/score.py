"""Echo-only text completions: `max_tokens: 0, echo: true` returns the prompt, and with `logprobs: K` each of its
tokens' log-probability and the K most likely tokens at its position: what OpenAI's legacy completions API gave
for scoring a text, and what a client distilling from this server reads (train/distill.py EndpointTeacher).

Nothing is sampled, so the engine's batch slots are not involved: one forward of the served model over the
prompt, in a worker thread beside the engine's own (read-only use of the weights). It lives here, not in
engine/, because only the torch backend's plain model can do it; a llama.cpp engine, or one that prefills a
prefix-tuning adapter's key/values, answers a 400 rather than log-probs of a different model.
"""

from __future__ import annotations

import asyncio
from functools import partial

import torch

from pixiu.config import ServeConfig
from pixiu.engine.base import TokenLogprob
from pixiu.engine.text import token_bytes
from pixiu.serve import protocol as p
from pixiu.serve.limits import check_prompt
from pixiu.serve.protocol import APIError


async def echo(engine, body: p.CompletionRequest, config: ServeConfig) -> p.Completion:
    """The prompts back as n choices each (finish_reason "length": max_tokens 0 ends them at once), scored
    when `logprobs` is set; usage counts the prompt tokens, no completion tokens."""
    choices, tokens = [], 0
    for prompt in body.prompts():
        ids = await asyncio.to_thread(engine.prompt_ids, prompt)
        check_prompt(len(ids), config, "prompt")
        if len(ids) > engine.context_len:
            raise APIError(
                400, f"the prompt has {len(ids)} tokens: over the context window of {engine.context_len}",
                "prompt", "context_length_exceeded",
            )  # fmt: skip
        logprobs = None
        if body.logprobs is not None:
            scored = await asyncio.to_thread(prompt_logprobs, engine, ids, body.logprobs)
            raw = partial(token_bytes, engine.tokenizer)
            logprobs = p.TextLogprobs.echoed(ids[0], scored, raw, body.return_tokens_as_token_ids)
        tokens += len(ids)
        choices += [
            p.CompletionChoice(index=len(choices) + j, text=prompt, finish_reason="length", logprobs=logprobs)
            for j in range(body.n)
        ]
    return p.Completion(model=body.model, choices=choices, usage=p.Usage.of(tokens, 0))


def unscorable(engine, model) -> str:
    """Why this engine cannot score a prompt's tokens ('' when it can)."""
    from pixiu.model.seq2seq import is_encoder_decoder

    if model is None:
        return f"the {type(engine).__name__} backend"
    if getattr(engine, "n_prefix", 0):
        return "a prefix-tuned model"
    if is_encoder_decoder(model):  # its prompt is the encoder's input, not text the model predicts
        return "an encoder-decoder"
    return ""


@torch.no_grad()
def prompt_logprobs(engine, ids: list[int], k: int) -> list[TokenLogprob]:
    """Tokens 1..T-1 of the prompt `ids`, each with log p(token | the tokens before it) under the served model's
    raw logits (as the engine reports sampled tokens' log-probs) and the k most likely tokens there, best first."""
    model = getattr(engine, "model", None)
    why = unscorable(engine, model)
    if why:
        raise APIError(400, f"prompt log-probabilities are not available for {why}", "logprobs")
    x = torch.tensor([ids], device=engine.device)
    logps = torch.log_softmax(
        model(input_ids=x).logits[0, :-1].float(), -1
    )  # (T-1, V): position j predicts j+1
    own = logps.gather(-1, x[0, 1:, None])[:, 0].tolist()
    top = logps.topk(k, -1) if k else None
    rows = zip(top.indices.tolist(), top.values.tolist()) if top is not None else ([[], []] for _ in own)
    return [
        TokenLogprob(token, lp, list(zip(i, v))) for token, lp, (i, v) in zip(ids[1:], own, rows, strict=True)
    ]
