"""Guards against degeneration in PPO and GRPO (config.GuardConfig; off unless a recipe turns them on).

RL optimises what the reward can see. A small reward model scores length, language and format, and rarely sees
a reply that loops ("雪雨雨雨…", "。。。。") or runs into the token limit, so the policy drifts there (issue 15:
the quickstart's PPO model answered a haiku request with "雪雨雨雨雨…" to the limit). Two guards:
- penalty(): subtracted from each reply's reward, repeat_penalty x its share of repeated 3-grams, plus
  no_eos_penalty when it hit max_new_tokens without a stop token, plus language_penalty when it is written in
  the other script than the prompt. It enters the reward before advantages, so the policy learns to avoid
  what it costs.
- Probe: a few fixed prompts answered greedily at step 0 and every train.eval_every steps (the loop's evaluate
  hook); `risen()` names the metrics that rose more than max_rise above step 0, and the stage stops updating
  and puts the trained weights back to where they were at the last probe that passed (kept on the CPU), so it
  ends with the policy before the rise, not the degenerate one that tripped the guard.
The KL penalty to the start policy (ppo.kl_coef, grpo.kl_coef) is the third guard: it keeps the policy near
replies the SFT model would write.
"""

from __future__ import annotations

import torch

from pixiu.config.methods import PROBE_METRICS
from pixiu.degeneration import off_language, repeated_ngram_rate, reply_stats, summarize
from pixiu.engine import Sampling, sample


def penalty(prompts: list[str], texts: list[str], finished: list[bool], guard) -> torch.Tensor:
    """(B,) reward change, <= 0, under config.GuardConfig `guard`: -(repeat_penalty x repeated 3-gram share
    + no_eos_penalty x [no stop token] + language_penalty x [written in the other script than the prompt]).

    "a b c a b c a b c" (9 units, 7 trigrams, 3 distinct: share 4/7), cut at the limit, with repeat 1 and
    no_eos 0.5: -(4/7 + 0.5) = -1.0714; "雪是白的。" to an English prompt with language 2: -2."""
    return torch.tensor(
        [
            -(guard.repeat_penalty * repeated_ngram_rate(t) + guard.no_eos_penalty * (not f)
              + guard.language_penalty * off_language(p, t))
            for p, t, f in zip(prompts, texts, finished, strict=True)
        ],
        dtype=torch.float32,
    )  # fmt: skip


def rollout_penalty(guard, prompts: list[str], samples: list) -> tuple[torch.Tensor, dict]:
    """penalty() of sampled replies (engine Samples) to the prompts' last user turns, and what a step logs: the
    mean penalty, the mean repeated 3-gram share and the off-language share. Zeros and {} when all are off."""
    if not (guard.repeat_penalty or guard.no_eos_penalty or guard.language_penalty):
        return torch.zeros(len(samples)), {}
    texts = [s.text for s in samples]
    pen = penalty(prompts, texts, [s.finished for s in samples], guard)
    n = max(len(texts), 1)
    return pen, {
        "guard_penalty": float(pen.mean()),
        "repeated_ngram": sum(map(repeated_ngram_rate, texts)) / n,
        "off_language": sum(map(off_language, prompts, texts)) / n,
    }


def risen(start: dict, now: dict, max_rise: float, watch=PROBE_METRICS) -> list[str]:
    """The probe metrics of `watch` that rose more than max_rise above their value at step 0."""
    return [
        k for k in watch if f"probe_{k}" in now and now[f"probe_{k}"] - start.get(f"probe_{k}", 0) > max_rise
    ]


class Probe:
    """Fixed prompts answered greedily by the policy; their degeneration as probe_* metrics, and whether any
    one of guard.watch has risen past guard.max_rise since the first measure. `params` are the weights training
    moves: a copy of them is kept at each measure that passes and put back at the one that trips."""

    def __init__(self, convs: list, max_new_tokens: int, guard, params: list[torch.Tensor]):
        self.convs, self.guard, self.params = convs, guard, params
        self.sampling = Sampling(max_new_tokens, 0.0)
        self.start: dict | None = None
        self.stopped: list[str] = []  # the metrics that stopped training, once they have
        # the weights at the last measure that passed, in this process (none yet after a resume)
        self.kept: list[torch.Tensor] | None = None

    def measure(self, model, tokenizer, template) -> dict:
        """probe_* metrics of the policy's replies now; a rise past max_rise sets `stopped` (for good) and puts
        the weights back to the last passing measure's (guard_restored 1; 0 when this process has none, after a
        resume)."""
        samples = sample(model, tokenizer, template, self.convs, self.sampling)
        stats = [reply_stats(c.messages[-1].content, s.text, s.finished) for c, s in zip(self.convs, samples)]
        now = {f"probe_{k}": v for k, v in summarize(stats).items() if k in PROBE_METRICS}
        if self.start is None:
            self.start = now
        if self.stopped:
            return {**now, "guard_stopped": 1.0}
        self.stopped = risen(self.start, now, self.guard.max_rise, self.guard.watch)
        if not self.stopped:
            self.kept = [p.detach().to("cpu", copy=True) for p in self.params]
            return {**now, "guard_stopped": 0.0}
        back = self.kept is not None
        if back:
            with torch.no_grad():
                for p, k in zip(self.params, self.kept, strict=True):
                    p.copy_(k)
        print(
            f"guard: {', '.join(self.stopped)} rose more than {self.guard.max_rise:g} above step 0 on the probe: "
            f"updates stop{'; the weights are back to the last probe that passed' if back else ''}"
        )
        return {**now, "guard_stopped": 1.0, "guard_restored": float(back)}

    def state(self) -> dict:
        return {"start": self.start, "stopped": self.stopped}

    def load_state(self, state: dict) -> None:
        self.start, self.stopped = state.get("start"), state.get("stopped", [])
