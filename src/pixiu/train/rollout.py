"""PPO experience: sampled replies -> a typed Rollout with log-probs, values, per-token rewards and GAE.

The reward of a reply is the reward model's score (and/or a reward function's), optionally normalised by
running statistics, given at its last token; every token also pays the KL penalty -β (log π_old - log π_ref)
against the frozen reference (Ziegler et al. 2019, https://arxiv.org/abs/1909.08593 eq. 2; InstructGPT eq. 2).
Advantages come from GAE over those rewards and the critic's values, then are whitened over the batch.
log π_old is the sampler's own log-prob of each token when it sampled from the policy itself (`reuse_reason`),
so the rollout runs no second policy forward; otherwise a forward recomputes it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from pixiu import losses
from pixiu.chat.templates import Rendered
from pixiu.data.collate import TokenBatch, collate
from pixiu.engine import Sample, Sampling
from pixiu.model.forward import autocast, token_logps
from pixiu.train.actors import Actors


@dataclass
class Rollout:
    """B replies to B prompts and what the models made of them. Per-token tensors are (B, R): reply tokens,
    right-padded to the longest reply R; `mask` marks the real ones. Row-major `x[mask]` is the (N,) order of
    `Actors.policy_logits` on `rows`."""

    rows: list[Rendered]  # B prompt + reply token ids; loss_mask marks the reply tokens
    mask: torch.Tensor  # (B, R) 1 = reply token a_t
    logps: torch.Tensor  # (B, R) log π_old(a_t | s_t), the policy at rollout time
    ref_logps: torch.Tensor  # (B, R) log π_ref(a_t | s_t)
    values: torch.Tensor  # (B, R) V_old(s_t), the critic at rollout time
    scores: torch.Tensor  # (B,) raw reward of each reply: reward-model score + reward function
    rewards: torch.Tensor  # (B, R) r_t = -β KL_t, plus the (normalised) score at the last reply token
    advantages: torch.Tensor  # (B, R) GAE advantages, whitened over the batch's reply tokens
    returns: torch.Tensor  # (B, R) GAE advantages (before whitening) + V_old: the critic's targets

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)  # (B,)


def reply_rows(samples: list[Sample]) -> list[Rendered]:
    """Prompt + reply exactly as sampled (no re-tokenization), loss mask on the reply."""
    return [
        Rendered(s.prompt_ids + s.reply_ids, [0] * len(s.prompt_ids) + [1] * len(s.reply_ids))
        for s in samples
    ]


def to_device(batch: TokenBatch, device: torch.device) -> TokenBatch:
    return dataclasses.replace(batch, **{k: v.to(device) for k, v in vars(batch).items() if v is not None})


def padded(flat: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """(N,) values in row-major order -> (B, R) right-padded with zeros."""
    rows = torch.split(flat, lengths)
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)


def scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits of the sampling distribution softmax(z / T); no (N, V) copy at T = 1."""
    return logits if temperature == 1.0 else logits / temperature


def reuse_reason(sampling: Sampling, temperature: float, dtype: torch.dtype) -> str | None:
    """Why the sampler's log-probs cannot stand for log π_old (None: they can). They can when the tokens were
    drawn from the very distribution the update scores, softmax(z / T) at the update's T with nothing cut or
    penalised, computed in fp32. In bf16/fp16 the KV-cached decode and the update's full-row forward round
    differently (log-prob gaps of ~1e-2), so the first update's ratio would not start at 1: there (our choice)
    a policy forward recomputes them in the update's own arithmetic."""
    if not sampling.plain:
        return "greedy decoding, top-k, top-p or a repetition penalty reshape the sampling distribution"
    if sampling.temperature != temperature:
        return f"sampled at temperature {sampling.temperature}, scored at {temperature}"
    if dtype != torch.float32:
        return (
            f"{str(dtype).removeprefix('torch.')} compute: cached decode and full forward round differently"
        )
    return None


@torch.no_grad()
def experience(
    actors: Actors,
    rows: list[Rendered],
    pad_id: int,
    batch_size: int,
    temperature: float,
    dtype: torch.dtype,
    old: list[list[float]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (B, R) log π_old, log π_ref and V_old of every reply token, in micro-batches of batch_size rows.
    old: the sampler's log-probs of each row's reply tokens (see `reuse_reason`); given, no policy forward."""
    device = next(actors.parameters()).device
    logps, refs, values = [], [], []
    for i in range(0, len(rows), batch_size):
        batch = to_device(collate([[r] for r in rows[i : i + batch_size]], pad_id), device)
        with autocast(dtype, device):
            if old is not None:  # the critic alone (a shared critic: its head on the policy's states)
                logps.append(torch.tensor([x for row in old[i : i + batch_size] for x in row]))
                v = None
            elif actors.shared_critic:  # one forward for both
                logits, targets, v = actors.policy_and_values(batch)
            else:
                (logits, targets), v = actors.policy_logits(batch), None
            if old is None:
                logps.append(token_logps(scaled(logits, temperature), targets).cpu())
                del logits
            ref, targets = actors.reference_logits(batch)
            refs.append(token_logps(scaled(ref, temperature), targets).cpu())
            del ref
            values.append((actors.values(batch) if v is None else v).float().cpu())
    lengths = [sum(r.loss_mask) for r in rows]
    return tuple(padded(torch.cat(x), lengths) for x in (logps, refs, values))


def token_rewards(
    scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """r_t = -β (log π_old - log π_ref) at every reply token, plus the score at the last one.

    scores: (B,) already normalised when asked; the rest (B, R). -> (B, R), zero at padding."""
    rewards = -kl_coef * losses.kl_estimate(logps, ref_logps, "k1") * mask
    last = (mask.sum(1) - 1).long()
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438 eq. 16):
    δ_t = r_t + γ V(s_{t+1}) - V(s_t),  A_t = δ_t + γλ A_{t+1},  with V = 0 after the last reply token.

    rewards, values, mask: (B, R), right-padded. -> (advantages, returns = advantages + values), both (B, R)
    and zero at padding."""
    rewards, values = rewards * mask, values * mask  # padding: no reward, and V = 0 past the end
    adv = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        next_v = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        running = delta + gamma * lam * running
        adv[:, t] = running
    adv = adv * mask
    return adv, (adv + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; zero elsewhere. One value (or none) is only centred."""
    n = mask.sum()
    mean = (x * mask).sum() / n.clamp(min=1)
    var = (((x - mean) * mask) ** 2).sum() / (n - 1).clamp(min=1)
    scale = torch.rsqrt(var + eps) if n > 1 else 1.0
    return (x - mean) * scale * mask


@dataclass
class RunningMoments:
    """Running mean and variance of reward scores (Chan et al.'s parallel update), kept across PPO steps and
    saved in checkpoints, so normalisation after a resume equals that of an uninterrupted run."""

    count: float = 0.0
    mean: float = 0.0
    var: float = 1.0

    def update(self, x: torch.Tensor) -> None:
        n, m = float(x.numel()), float(x.float().mean())
        v = float(x.float().var(unbiased=False)) if x.numel() > 1 else 0.0
        total = self.count + n
        delta = m - self.mean
        m2 = self.var * self.count + v * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / math.sqrt(self.var + 1e-8) if self.count > 1 else x - self.mean


def adapt_kl(kl_coef: float, kl: float, target: float, horizon_gain: float = 0.1) -> float:
    """Ziegler et al. 2019 section 2.2: e = clip(KL / KL_target - 1, -0.2, 0.2),  β <- β (1 + K_β e), K_β = 0.1.
    kl: the batch's mean KL per reply in nats."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return kl_coef * (1.0 + horizon_gain * error)
