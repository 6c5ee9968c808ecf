"""Loss functions: pure tensor code, one registry. Each cites its equation in one comment.

Stages normalise by the number of target tokens in the whole optimizer step (across micro-batches and
processes), so gradient accumulation and data parallelism give the same update as one big batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

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
def sft(logps: torch.Tensor) -> torch.Tensor:
    """Summed token negative log-likelihood  sum_t -log p(y_t | y_<t)  over target tokens.

    logps: (N,) log-probabilities of the N targets (model/forward.py `token_logps`, or TargetLM with
    logps=True). Returns a scalar sum; the caller divides by the step's target count.
    """
    return -logps.sum()


# ---------------------------------------------------------------- reward model


@register("rm_pairwise")
def rm_pairwise(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Bradley–Terry pair loss  sum_p -log σ(r_c - r_r - m)  (InstructGPT eq. 1 for K=2; Llama 2 eq. 2 margin).

    chosen, rejected: (P,) scores of the preferred and the dispreferred reply of P pairs; margin: a float or (P,).
    Returns the sum over pairs. Written as softplus(-x) = -log σ(x), which stays finite for any x.
    """
    return F.softplus(-(chosen.float() - rejected.float() - margin)).sum()


@register("rm_kwise")
def rm_kwise(scores: torch.Tensor, sizes: list[int], margin: float | torch.Tensor = 0.0) -> torch.Tensor:
    """K-wise ranking loss, InstructGPT (https://arxiv.org/abs/2203.02155) eq. 1:
    per group  1/C(K,2) * sum_{i<j} -log σ(r_i - r_j - m)  with replies best first; summed over groups.

    scores: (R,) the replies of every group, group after group (R = sum(sizes)); sizes: K per group. Each group
    weighs the same whatever its K, as in InstructGPT, so a 9-reply ranking does not drown 36 pairs.
    margin: one m for every pair, or (G,) one per group (a pair's own margin, e.g. its vote gap).
    """
    better, worse, weight, group = [], [], [], []
    start = 0
    for g, k in enumerate(sizes):
        i, j = torch.triu_indices(k, k, offset=1)  # all pairs i < j of this group
        better.append(i + start)
        worse.append(j + start)
        weight.append(torch.full((len(i),), 2.0 / (k * (k - 1))))
        group.append(torch.full((len(i),), g))
        start += k
    if start != len(scores):
        raise ValueError(f"sizes add up to {start} replies, but there are {len(scores)} scores")
    i, j, w, g = (torch.cat(x).to(scores.device) for x in (better, worse, weight, group))
    m = margin.to(scores.device).float()[g] if isinstance(margin, torch.Tensor) else margin
    return (w * F.softplus(-(scores[i].float() - scores[j].float() - m))).sum()


# ---------------------------------------------------------------- PPO


@register("ppo_policy")
def ppo_policy(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """Clipped surrogate  sum_t max(-A_t ρ_t, -A_t clip(ρ_t, 1-ε, 1+ε)),  ρ_t = π(a_t|s_t) / π_old(a_t|s_t)
    (PPO, Schulman et al. 2017, https://arxiv.org/abs/1707.06347 eq. 7, negated into a loss).

    logps: (N,) log π of the sampled reply tokens under the policy being trained; old_logps, advantages: (N,)
    from the rollout. Returns the sum over tokens; the caller divides by the minibatch's reply tokens.
    """
    ratio = torch.exp(logps.float() - old_logps.float())
    adv = advantages.float()
    return torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).sum()


@register("ppo_value")
def ppo_value(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> torch.Tensor:
    """Clipped value loss  sum_t 1/2 max((V_t - R_t)^2, (V_old,t + clip(V_t - V_old,t, -ε, ε) - R_t)^2), the
    value clipping of OpenAI baselines' PPO2 that InstructGPT's PPO inherits: the critic moves at most ε from
    its rollout-time estimate per update unless that makes the error smaller.

    values: (N,) critic output now; old_values, returns: (N,) from the rollout (returns = GAE advantages + old
    values). Returns the sum over tokens.
    """
    v, old, ret = values.float(), old_values.float(), returns.float()
    clipped = old + (v - old).clamp(-clip, clip)
    return 0.5 * torch.maximum((v - ret) ** 2, (clipped - ret) ** 2).sum()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """(N, V) logits -> (N,) entropy  H = -sum_v p_v log p_v  of each next-token distribution, in fp32."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """(N,) per-token estimates of KL(π || π_ref) from tokens sampled from π, with log r = log π_ref - log π
    (Schulman 2020, http://joschu.net/blog/kl-approx.html): k1 = -log r (unbiased; the per-token penalty of
    Ziegler et al. 2019), k2 = (log r)^2 / 2, k3 = (r - 1) - log r (unbiased and never negative)."""
    log_r = ref_logps.float() - logps.float()
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    if kind == "k3":
        return torch.expm1(log_r) - log_r
    raise ValueError(f"unknown KL estimator {kind!r}; valid: ['k1', 'k2', 'k3']")


# ---------------------------------------------------------------- preference (DPO family, KTO, RRHF)
# Inputs are per-sequence log-probs summed over the reply's tokens (model/forward.py `sequence_logps`) and, where
# a method normalises by length, the reply's token counts. Each returns per-example losses (the stage sums them)
# and the implicit rewards it logs, detached.


class PairLoss(NamedTuple):
    loss: torch.Tensor  # (B,) per-pair loss
    chosen_rewards: torch.Tensor  # (B,) implicit reward of the preferred reply (detached)
    rejected_rewards: torch.Tensor  # (B,) implicit reward of the dispreferred reply (detached)


@register("dpo")
def dpo(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> PairLoss:
    """DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290 eq. 7):  -log σ(β Δ),
    Δ = [log π(y_w) - log π_ref(y_w)] - [log π(y_l) - log π_ref(y_l)]. With label smoothing ε it is conservative
    DPO (Mitchell 2023, https://ericmitchell.ai/cdpo.pdf): labels are flipped with probability ε, so
    -(1-ε) log σ(βΔ) - ε log σ(-βΔ). Rewards r = β (log π - log π_ref). All inputs (B,)."""
    chosen = chosen_logps.float() - ref_chosen_logps.float()
    rejected = rejected_logps.float() - ref_rejected_logps.float()
    logits = beta * (chosen - rejected)
    loss = (1 - label_smoothing) * F.softplus(-logits) + label_smoothing * F.softplus(logits)
    return PairLoss(loss, beta * chosen.detach(), beta * rejected.detach())


@register("ipo")
def ipo(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_counts: torch.Tensor,
    rejected_counts: torch.Tensor,
    beta: float,
) -> PairLoss:
    """IPO (Azar et al. 2023, https://arxiv.org/abs/2310.12036 eq. 17):  (h - 1/(2β))^2  with β the paper's τ.
    h is the difference of the per-token mean log-ratios, TRL's convention (confirmed with the IPO authors: the
    paper's results use it), so β means the same for short and long replies. Rewards β (log π - log π_ref)."""
    chosen = chosen_logps.float() - ref_chosen_logps.float()
    rejected = rejected_logps.float() - ref_rejected_logps.float()
    h = chosen / chosen_counts.clamp(min=1) - rejected / rejected_counts.clamp(min=1)
    return PairLoss((h - 1 / (2 * beta)) ** 2, beta * chosen.detach(), beta * rejected.detach())


@register("simpo")
def simpo(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_counts: torch.Tensor,
    rejected_counts: torch.Tensor,
    beta: float,
    gamma: float,
) -> PairLoss:
    """SimPO (Meng et al. 2024, https://arxiv.org/abs/2405.14734 eq. 6), no reference model:
    -log σ(r_w - r_l - γ)  with the length-normalised reward r = β/|y| log π(y|x)."""
    chosen = beta * chosen_logps.float() / chosen_counts.clamp(min=1)
    rejected = beta * rejected_logps.float() / rejected_counts.clamp(min=1)
    return PairLoss(F.softplus(-(chosen - rejected - gamma)), chosen.detach(), rejected.detach())


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - e^x) for x < 0, stable at both ends (Mächler 2012)."""
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


@register("orpo")
def orpo(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_counts: torch.Tensor,
    rejected_counts: torch.Tensor,
    lam: float,
) -> PairLoss:
    """ORPO (Hong et al. 2024, https://arxiv.org/abs/2403.07691 eqs. 6-7), no reference model:
    L_SFT + λ L_OR,  L_OR = -log σ(log odds(y_w) - log odds(y_l)),  odds(y) = P / (1 - P) with
    P = exp(mean token log-prob), and L_SFT the mean token NLL of y_w. Rewards λ · mean log-prob, as TRL logs."""
    chosen = chosen_logps.float() / chosen_counts.clamp(min=1)
    rejected = rejected_logps.float() / rejected_counts.clamp(min=1)
    log_odds = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))
    loss = -chosen + lam * F.softplus(-log_odds)
    return PairLoss(loss, lam * chosen.detach(), lam * rejected.detach())


def kto_kl(kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point before clamping: the batch mean of log π(y'|x) - log π_ref(y'|x) over mismatched
    (prompt, reply) pairs, detached (KTO eq. 8's z_ref estimate, as TRL computes it). Processes average it before
    `kto` clamps it at 0."""
    return (kl_logps.float() - ref_kl_logps.float()).mean().detach()


class KTOLoss(NamedTuple):
    loss: torch.Tensor  # (B,) weighted per-example loss
    rewards: torch.Tensor  # (B,) β (log π - log π_ref), detached


@register("kto")
def kto(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLoss:
    """KTO (Ethayarajh et al. 2024, https://arxiv.org/abs/2402.01306 eq. 7), as TRL implements it:
    λ_D (1 - σ(β(r - z))) for desirable replies, λ_U (1 - σ(β(z - r))) for undesirable ones, with
    r = log π(y|x) - log π_ref(y|x) and z = max(0, kl) the reference point. logps, ref_logps, desirable: (B,)."""
    r = logps.float() - ref_logps.float()
    z = kl.float().clamp(min=0)
    good = desirable.bool()
    loss = torch.where(
        good,
        desirable_weight * (1 - torch.sigmoid(beta * (r - z))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z - r))),
    )
    return KTOLoss(loss, beta * r.detach())


class RankLoss(NamedTuple):
    loss: torch.Tensor  # () the group's loss
    scores: torch.Tensor  # (K,) length-normalised log-probs p_i, detached


@register("rrhf")
def rrhf(logps: torch.Tensor, counts: torch.Tensor, sft_weight: float = 1.0) -> RankLoss:
    """RRHF (Yuan et al. 2023, https://arxiv.org/abs/2304.05302 eqs. 1-3) for one group of K replies, best first:
    sum_{i<j} max(0, p_j - p_i) + w · L_ft,  p_i = log π(y_i|x) / |y_i|. L_ft is the NLL of the best reply per
    token (-p_0): eq. 2 sums it over tokens, the authors' code averages it; the mean keeps both terms on one scale.
    """
    p = logps.float() / counts.clamp(min=1)
    # hinge[i, j], i < j: how far p_j rises above p_i although reply i ranks higher
    hinge = torch.relu(p[None, :] - p[:, None]).triu(diagonal=1)
    return RankLoss(hinge.sum() + sft_weight * -p[0], p.detach())


# ---------------------------------------------------------------- GRPO / RLOO (critic-free, group baselines)
# Rewards come as (G, K): K sampled replies to each of G prompts. The baseline of a reply is its own group's
# reward, so no critic is trained; the advantage is shared by every token of the reply.


def grpo_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(G, K) rewards -> (G, K) advantages  A_i = (r_i - mean(r)) / (std(r) + eps)  per group (DeepSeekMath,
    Shao et al. 2024, https://arxiv.org/abs/2402.03300 §4.1.2 outcome supervision; std unbiased, as TRL).
    scale=False keeps r_i - mean(r): Dr GRPO (Liu et al. 2025, https://arxiv.org/abs/2503.20783) shows the std
    division up-weights groups that are nearly all right or all wrong. A group with equal rewards gets 0."""
    r = rewards.float()
    centred = r - r.mean(1, keepdim=True)
    return centred / (r.std(1, keepdim=True) + eps) if scale else centred


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(G, K) rewards -> (G, K)  A_i = r_i - 1/(K-1) sum_{j != i} r_j,  the leave-one-out baseline (RLOO, Kool
    et al. 2019; Ahmadian et al. 2024, https://arxiv.org/abs/2402.14740 eq. 5), equal to K/(K-1) (r_i - mean)."""
    r = rewards.float()
    k = r.shape[1]
    return r - (r.sum(1, keepdim=True) - r) / (k - 1)


@register("grpo")
def grpo(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    ref_logps: torch.Tensor | None = None,
    clip: float = 0.2,
    beta: float = 0.0,
) -> torch.Tensor:
    """Token-level GRPO  sum_t [ -min(ρ_t A_t, clip(ρ_t, 1-ε, 1+ε) A_t) + β KL_k3,t ]  (DeepSeekMath eq. 3 with
    the k3 estimator of eq. 4,  KL = π_ref/π - log(π_ref/π) - 1). RLOO uses the same surrogate.

    logps: (N,) log π of the reply tokens under the policy being trained; old_logps: (N,) at rollout time;
    advantages: (N,) the reply's advantage at each of its tokens; ref_logps: (N,) under the reference (needed
    when beta > 0). Returns the sum over tokens: the stage divides by the step's reply tokens (DAPO's token-level
    mean, which Dr GRPO also recommends over eq. 3's per-reply 1/|o_i| that favours long wrong replies)."""
    loss = ppo_policy(logps, old_logps, advantages, clip)
    if beta > 0:
        loss = loss + beta * kl_estimate(logps, ref_logps, "k3").sum()
    return loss


# ---------------------------------------------------------------- distillation (token-level KD, GKD, MiniLLM)
# Inputs are log-probabilities of student and teacher over the same categories at each target token, (N, C):
# the whole vocabulary (C = V, from `tempered` logits), or a teacher's top-k plus one tail bucket (`topk_support`).
# Each returns the (N,) per-token divergence; stages sum it and divide by the step's target tokens, and
# `token_mean` is the masked average over a padded (B, T) layout (TRL's "batchmean" with labels).


def tempered(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(..., V) logits -> (..., V) log softmax(logits / τ) in fp32 (Hinton et al. 2015's softened targets)."""
    return F.log_softmax(logits.float() / temperature, dim=-1)


def _kl(p_logps: torch.Tensor, q_logps: torch.Tensor) -> torch.Tensor:
    """(N, C) log p, log q -> (N,)  KL(p || q) = sum_c p_c (log p_c - log q_c);  a category with p_c = 0 adds 0."""
    seen = p_logps > float(
        "-inf"
    )  # masked rather than where()'d after the fact: 0 * -inf would be a NaN gradient
    return (p_logps.exp() * (p_logps.where(seen, 0.0) - q_logps.where(seen, 0.0))).sum(-1)


@register("forward_kl")
def forward_kl(student_logps: torch.Tensor, teacher_logps: torch.Tensor) -> torch.Tensor:
    """(N, C) -> (N,)  KL(p_T || p_S), word-level KD (Hinton et al. 2015; Kim & Rush 2016 eq. 4): mode-covering,
    the student spreads mass over everything the teacher deems likely."""
    return _kl(teacher_logps.float(), student_logps.float())


@register("reverse_kl")
def reverse_kl(student_logps: torch.Tensor, teacher_logps: torch.Tensor) -> torch.Tensor:
    """(N, C) -> (N,)  KL(p_S || p_T), MiniLLM (Gu et al. 2023, https://arxiv.org/abs/2306.08543 eq. 1):
    mode-seeking, the student puts no mass where the teacher has little."""
    return _kl(student_logps.float(), teacher_logps.float())


@register("jsd")
def generalized_jsd(
    student_logps: torch.Tensor, teacher_logps: torch.Tensor, beta: float = 0.5
) -> torch.Tensor:
    """(N, C) -> (N,) generalized JSD of GKD (Agarwal et al. 2023, https://arxiv.org/abs/2306.13649 eq. 1) as
    TRL's GKDTrainer computes it:  β KL(p_T || M) + (1-β) KL(p_S || M),  M = β p_T + (1-β) p_S.  Like TRL,
    β = 0 is forward KL(p_T || p_S) and β = 1 reverse KL(p_S || p_T) (the mixture form vanishes at both ends)."""
    if beta == 0:
        return forward_kl(student_logps, teacher_logps)
    if beta == 1:
        return reverse_kl(student_logps, teacher_logps)
    s, t = student_logps.float(), teacher_logps.float()
    mix = torch.logaddexp(s + math.log1p(-beta), t + math.log(beta))
    return beta * _kl(t, mix) + (1 - beta) * _kl(s, mix)


def topk_support(
    student_logps: torch.Tensor, teacher_ids: torch.Tensor, teacher_logps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher known only by its top-k (a stored file, an endpoint's top_logprobs): student (N, V) log-probs,
    teacher (N, K) token ids and log-probs -> both as (N, K+1) distributions over those K tokens plus one tail
    bucket holding the rest of the mass. Any divergence of the two is a lower bound of the full-vocabulary one
    (merging categories loses information) and equals it when the top-k holds all the teacher's mass; with K = V
    there is no tail and the result is the full distributions, reordered."""
    s = student_logps.float().gather(-1, teacher_ids.long())
    t = teacher_logps.float()
    if teacher_ids.shape[-1] >= student_logps.shape[-1]:
        return s, t
    return torch.cat([s, _tail(s)], -1), torch.cat([t, _tail(t)], -1)


def _tail(logps: torch.Tensor) -> torch.Tensor:
    """(N, K) log-probs of K categories -> (N, 1) log of the mass left over, floored at 1e-30 (rounding can make
    the top-k sum to slightly over 1)."""
    covered = torch.logsumexp(logps, -1, keepdim=True).clamp(max=-1e-30)
    return torch.log((-torch.expm1(covered)).clamp(min=1e-30))


def token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) per-token values, (B, T) mask (1 = a target) -> the mean over masked tokens; 0 when none."""
    m = mask.bool()
    return per_token[m].sum() / m.sum().clamp(min=1)
