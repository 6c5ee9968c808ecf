"""Next-token choice for a batch of sequences that each have their own sampling settings.

The order matches transformers' `generate` (repetition penalty, then temperature, top-k, top-p), so greedy
output equals HF greedy and sampled output follows the same distribution. Each sequence draws from its own
`torch.Generator` seeded from `Sampling.seed`: a reply depends on its seed, not on which other requests
happen to share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from pixiu.engine.base import Sampling, TokenLogprob


@dataclass
class Choice:
    """One sequence's sampling state."""

    sampling: Sampling
    generator: torch.Generator
    seen: torch.Tensor | None  # (V,) bool: tokens in prompt and reply, kept only for a repetition penalty
    logps: list[float] | None = None  # when given: each drawn token's log-probability is appended here

    @classmethod
    def new(
        cls, sampling: Sampling, prompt_ids: list[int], vocab: int, device="cpu", logps: list | None = None
    ) -> Choice:
        if sampling.top_k > vocab:  # more than the vocabulary is no limit (and must not index past it)
            sampling = replace(sampling, top_k=0)
        generator = torch.Generator()
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed)
        seen = None
        if sampling.repetition_penalty != 1.0:
            seen = torch.zeros(vocab, dtype=torch.bool, device=device)
            seen[torch.tensor(prompt_ids, device=device)] = True
        return cls(sampling, generator, seen, logps)

    def saw(self, token: int) -> None:
        if self.seen is not None:
            self.seen[token] = True


def choose(logits: torch.Tensor, choices: list[Choice]) -> list[int]:
    """logits: (B, V) next-token scores of B sequences -> B token ids. Rows whose Choice tracks `logps` get
    each token's log-probability appended: under the distribution `draw` sampled from, or for a greedy row
    under its (penalized) logits at temperature 1."""
    logits = logits.float()
    for i, c in enumerate(choices):
        if c.seen is not None:
            logits[i] = penalize(logits[i], c.seen, c.sampling.repetition_penalty)
    tokens = logits.argmax(-1)
    logps = torch.zeros(len(choices), device=logits.device)
    hot = [i for i, c in enumerate(choices) if c.sampling.temperature > 0]
    if hot:
        rows = torch.tensor(hot, device=logits.device)
        tokens[rows], logps[rows] = draw(logits[rows], [choices[i] for i in hot])
    cold = [i for i, c in enumerate(choices) if c.sampling.temperature <= 0 and c.logps is not None]
    if cold:
        rows = torch.tensor(cold, device=logits.device)
        logps[rows] = logits[rows].log_softmax(-1).gather(1, tokens[rows, None])[:, 0]
    if any(c.logps is not None for c in choices):
        for c, lp in zip(choices, logps.tolist()):
            if c.logps is not None:
                c.logps.append(lp)
    return tokens.tolist()


def pick(logits: torch.Tensor, choices: list[Choice]) -> tuple[list[int], list[TokenLogprob | None]]:
    """`choose`, plus each chosen token's log-probability (and the top `Sampling.logprobs`) for the rows that
    ask: under the model's raw distribution, as OpenAI and vLLM report them, not the penalized or tempered one."""
    want = [i for i, c in enumerate(choices) if c.sampling.logprobs is not None]
    logp = logits[want].float().log_softmax(-1) if want else None  # before `choose` may penalize in place
    tokens = choose(logits, choices)
    out: list[TokenLogprob | None] = [None] * len(choices)
    for row, i in enumerate(want):
        top = logp[row].topk(choices[i].sampling.logprobs)
        pairs = list(zip(top.indices.tolist(), top.values.tolist()))
        out[i] = TokenLogprob(tokens[i], logp[row, tokens[i]].item(), pairs)
    return tokens, out


def penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, eq. 1 as HF applies it): seen tokens' scores are divided
    by the penalty when positive, multiplied when negative."""
    hit = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, hit, logits)


HEAD = 256  # best tokens a plain row's draw walks before it needs the (B, V) sort


def draw(logits: torch.Tensor, choices: list[Choice]) -> tuple[torch.Tensor, torch.Tensor]:
    """logits: (B, V) -> (B,) tokens sampled at each row's temperature, after its top-k and top-p, each row by
    one uniform from its own generator over the scores sorted best first (ties by token id); and (B,) their
    log-probabilities under that distribution (the kept tokens' softmax, renormalised).

    A row that cuts nothing (no top-k, no top-p: RL rollouts) walks only its best HEAD tokens (`head`), which
    hold its uniform nearly always; the rest, and rows that truncate, sort the whole vocabulary (`truncated`).
    GRPO-shaped rollouts (32 rows x 49,152 tokens): the sort took 40-47 ms a decode step, the head 3-5 ms."""
    temperature = torch.tensor([c.sampling.temperature for c in choices], device=logits.device)
    u = torch.stack([torch.rand((), generator=c.generator, dtype=torch.float64) for c in choices])
    scores, u = logits / temperature[:, None], u.to(logits.device)
    plain = torch.tensor([not c.sampling.top_k and c.sampling.top_p >= 1 for c in choices], device=u.device)
    tokens, logps, done = head(scores, u)
    rest = (~(plain & done)).nonzero()[:, 0]
    if len(rest):
        tokens[rest], logps[rest] = truncated(scores[rest], u[rest], [choices[i] for i in rest.tolist()])
    return tokens, logps


def head(scores: torch.Tensor, u: torch.Tensor, k: int = HEAD) -> tuple[torch.Tensor, ...]:
    """The inverse CDF of `truncated` with nothing cut, over the tokens scored above the k-th best only (the
    same tokens, in the same order, as the full sort's first ones). (B, V), (B,) -> tokens, log-probs, and
    whether each row's uniform fell within them (where not, its token is a placeholder)."""
    k = min(k, scores.shape[-1])
    top, idx = scores.topk(k, -1)
    idx, by_id = idx.sort(-1)  # ties by token id, as the stable full sort orders them
    top, best = top.gather(1, by_id).sort(dim=-1, descending=True, stable=True)
    idx = idx.gather(1, best)
    log_z = scores.logsumexp(-1)
    probs = (top - log_z[:, None]).exp().masked_fill(top <= top[:, -1:], 0.0)  # ties with the k-th may be cut
    cdf = probs.cumsum(-1)
    picked = torch.searchsorted(cdf, u.to(cdf.dtype)[:, None], right=True)
    done = picked[:, 0] < (probs > 0).sum(-1)
    picked = picked.clamp(max=k - 1)
    return idx.gather(1, picked)[:, 0], top.gather(1, picked)[:, 0] - log_z, done


def truncated(
    scores: torch.Tensor, u: torch.Tensor, choices: list[Choice]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k, then top-p over the sorted scores, then inverse-CDF sampling. (B, V), (B,) -> tokens, log-probs."""
    scores, order = scores.sort(dim=-1, descending=True, stable=True)  # (B, V) best first, ties by id
    vocab = scores.shape[-1]
    rank = torch.arange(vocab, device=scores.device)
    top_k = torch.tensor([min(c.sampling.top_k or vocab, vocab) for c in choices], device=scores.device)
    kth = scores.gather(1, (top_k - 1)[:, None])  # ties with the k-th score stay in, as in HF
    scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = scores.softmax(-1)
    top_p = torch.tensor([c.sampling.top_p for c in choices], device=scores.device)
    # nucleus (Holtzman et al. 2020): keep the smallest prefix whose mass reaches top_p, at least one token
    drop = (probs.cumsum(-1) - probs > top_p[:, None]) & (rank > 0)
    probs = probs.masked_fill(drop, 0.0)
    cdf = probs.cumsum(-1)
    x = (u * cdf[:, -1].double()).to(cdf.dtype)
    picked = torch.searchsorted(cdf, x[:, None], right=True)
    picked = torch.minimum(
        picked, (probs > 0).sum(-1, keepdim=True) - 1
    )  # u at the top stays in the kept set
    kept = scores.masked_fill(drop, float("-inf"))  # log p = log_softmax(kept scores) at the pick
    return order.gather(1, picked)[:, 0], kept.gather(1, picked)[:, 0] - kept.logsumexp(-1)
