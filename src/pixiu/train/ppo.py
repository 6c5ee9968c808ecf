"""PPO from prompts (`pixiu train ppo`): InstructGPT's third stage, https://arxiv.org/abs/2203.02155.

One PPO step: sample one reply per prompt with the policy (`engine.sample`), score the replies (reward model
and/or reward function), compute log-probs, reference log-probs and values (rollout.py), turn scores and the
per-token KL penalty into GAE advantages, then run `ppo_epochs` passes of clipped policy and value updates over
minibatches (plus PPO-ptx when asked). With LoRA every model is an adapter on one base (actors.py).

Dropout stays off (eval mode) throughout: the rollout's log-probs must equal the first update's, so the ratio
starts at exactly 1. The batch order, sampling seed and minibatch shuffle are pure functions of (seed, step),
and the KL coefficient and reward statistics travel in the checkpoint, so a resumed run matches.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections import defaultdict
from pathlib import Path

import torch

from pixiu import losses
from pixiu.chat.messages import Conversation
from pixiu.config import ConfigError, RunConfig
from pixiu.data import DataError, load_data
from pixiu.data.collate import collate, fit, plan
from pixiu.data.records import Prompt
from pixiu.data.tasks import reward_fn
from pixiu.engine import Sampling, sample
from pixiu.model import io
from pixiu.model.forward import autocast, token_logps
from pixiu.train import loop
from pixiu.train.actors import CRITIC, REWARD, Actors, build
from pixiu.train.guards import Probe, rollout_penalty
from pixiu.train.loop import Hooks, Optimizer, Rows
from pixiu.train.rollout import (
    Rollout,
    RunningMoments,
    adapt_kl,
    experience,
    gae,
    reply_rows,
    reuse_reason,
    scaled,
    to_device,
    token_rewards,
    whiten,
)
from pixiu.train.stages import begin, finish, save_model


def run(cfg: RunConfig, stage: str = "ppo") -> Path:
    """Train the policy and save `output_dir/final` (adapter or full weights); returns that path."""
    if not (cfg.ppo.reward_model or cfg.ppo.reward_fn):
        raise ConfigError(
            "PPO needs a reward: set ppo.reward_model (a `pixiu train rm` output), ppo.reward_fn, or both"
        )
    job = begin(cfg, stage)
    if job.accelerator.num_processes > 1:
        raise ConfigError("PPO runs in one process for now; start it without `accelerate launch`/torchrun")
    data = load_data(cfg.data, want=Prompt)  # bad data fails before the models load
    fn = reward_fn(cfg.ppo.reward_fn) if cfg.ppo.reward_fn else None
    actors, loaded, merged = build(cfg)
    actors.to(job.accelerator.device).eval()
    prompts, report = fit_prompts(data.train, loaded.template, cfg.data.max_len, cfg.gen.max_new_tokens)
    report["skipped_rows"] = data.skipped
    ptx = ptx_rows(cfg, loaded) if cfg.ppo.ptx_coef > 0 else None
    models = "one base + adapters" if actors.shared else "separate models"
    models += "; the critic is a head on the policy" if actors.shared_critic else ""
    print(
        f"ppo: {report['prompts']} prompts ({report['too_long']} skipped: longer than data.max_len minus "
        f"gen.max_new_tokens); {models}"
    )
    trainer = Trainer(actors, loaded, cfg, fn, ptx, job.accelerator)
    history = trainer.fit(prompts, job.out)
    policy = policy_only(actors, loaded)
    return finish(job, policy, history, folded=merged, models=models, data=report, time=trainer.seconds)


def fit_prompts(records: list[Prompt], template, max_len: int, max_new: int) -> tuple[list, dict]:
    """Keep prompts whose rendering leaves room for max_new reply tokens within max_len; count the rest."""
    kept = [r for r in records if len(template.prompt_ids(r.prompt)) + max_new <= max_len]
    if not kept:
        raise DataError(
            f"no prompt fits data.max_len={max_len} with gen.max_new_tokens={max_new} of reply room"
        )
    return kept, {"records": len(records), "prompts": len(kept), "too_long": len(records) - len(kept)}


def ptx_rows(cfg: RunConfig, loaded: io.Loaded) -> Rows:
    """PPO-ptx data: SFT conversations from ppo.ptx_path, rendered like the SFT stage."""
    dc = dataclasses.replace(
        cfg.data, path=cfg.ppo.ptx_path, datasets=[], eval_path="", eval_size=0, max_samples=0
    )
    records = load_data(dc, want=Conversation).train
    samples, _ = fit(
        [loaded.template.render(c, cfg.data.train_on) for c in records], cfg.data.max_len, "truncate"
    )
    if not samples:
        raise DataError(f"{cfg.ppo.ptx_path}: no PPO-ptx sample with a target token")
    return Rows([[s] for s in samples], loaded.tokenizer.pad_token_id, cfg.train.batch_size, cfg.data.seed)


# a step's phases, timed: sampling, scoring, experience (log-probs, values, advantages), updates
STEP_TIMES = ("gen_s", "score_s", "exp_s", "train_s")


class Trainer:
    """PPO's step on the training loop: rollouts, scores, experience, updates. Holds what the steps share."""

    def __init__(self, actors: Actors, loaded: io.Loaded, cfg: RunConfig, fn, ptx: Rows | None, accelerator):
        self.actors, self.loaded, self.cfg, self.fn, self.ptx = actors, loaded, cfg, fn, ptx
        self.accelerator = accelerator
        self.pad = loaded.tokenizer.pad_token_id
        self.temperature = cfg.gen.temperature if cfg.gen.temperature > 0 else 1.0
        gen = cfg.gen
        self.reuse = reuse_reason(
            Sampling(1, gen.temperature, gen.top_p, gen.top_k), self.temperature, loaded.dtype
        )
        print(
            f"ppo: log π_old {'from the sampler' if self.reuse is None else 'from a policy forward: ' + self.reuse}"
        )
        self.kl_coef = cfg.ppo.kl_coef
        self.moments = RunningMoments()
        self.seconds = dict.fromkeys(STEP_TIMES, 0.0)  # this process's totals

    def fit(self, prompts: list[Prompt], out: Path) -> list[dict]:
        """The PPO steps on the training loop (loop.py) -> the metrics rows. A step's prompts are a pure function
        of (seed, step); the KL coefficient and reward moments travel in the checkpoints."""
        cfg = self.cfg
        per_epoch = math.ceil(len(prompts) / cfg.ppo.rollout_prompts)
        size = cfg.guard.probe_size
        probe = [p.prompt for p in prompts[-size:]]
        params = self.actors.trained_parameters()  # what a probe that trips puts back
        self.probe = Probe(probe, cfg.gen.max_new_tokens, cfg.guard, params) if size else None

        def step(step: int, opt: Optimizer) -> dict:
            if self.probe and self.probe.stopped:  # guard.max_rise passed: the policy before the rise stays
                return {"guard_stopped": 1.0, **dict.fromkeys(self.seconds, 0.0)}
            epoch, within = divmod(step, per_epoch)
            idx = plan([0] * len(prompts), cfg.ppo.rollout_prompts, cfg.data.seed, epoch, False)[within]
            row = self.step(step, [prompts[i] for i in idx], opt)
            self.seconds = {k: round(v + row[k], 3) for k, v in self.seconds.items()}
            return row

        evaluate = self.measure if self.probe else None
        hooks = Hooks(
            step, per_epoch, evaluate, self.state, self.load_state, name="ppo", show=("reward", "kl")
        )
        return loop.fit(
            self.actors, hooks, cfg.train, self.accelerator, out, self.actors.trained_parameters()
        )

    def state(self) -> dict:
        probe = {"probe": self.probe.state()} if self.probe else {}
        return {"kl_coef": self.kl_coef, "moments": dataclasses.asdict(self.moments), **probe}

    def load_state(self, state: dict) -> None:
        self.kl_coef, self.moments = state["kl_coef"], RunningMoments(**state["moments"])
        if self.probe and "probe" in state:
            self.probe.load_state(state["probe"])

    def measure(self) -> dict:
        """The guard's probe (train/guards.py): the policy's greedy replies to a few fixed prompts."""
        with self.actors.use("policy"):
            return self.probe.measure(self.actors.lm, self.loaded.tokenizer, self.loaded.template)

    def step(self, step: int, prompts: list[Prompt], opt: Optimizer) -> dict:
        """One PPO step: rollouts, scores, experience, updates -> the metrics row."""
        cfg, t, convs = self.cfg, [time.perf_counter()], [p.prompt for p in prompts]
        gen = cfg.gen
        sampling = Sampling(
            gen.max_new_tokens, gen.temperature, gen.top_p, gen.top_k, seed=cfg.train.seed * 1_000_003 + step
        )
        with self.actors.use("policy"):
            samples = sample(self.actors.lm, self.loaded.tokenizer, self.loaded.template, convs, sampling)
        t.append(time.perf_counter())
        scores, parts = self.score(prompts, samples)
        t.append(time.perf_counter())
        ro = self.rollout(samples, scores)
        t.append(time.perf_counter())
        stats = self.update(ro, random.Random(cfg.train.seed * 1_000_003 + step), step, opt)
        t.append(time.perf_counter())
        kl = float(((ro.logps - ro.ref_logps) * ro.mask).sum(1).mean())  # nats per reply
        row = {
            "reward": float(scores.mean()),
            "reward_std": float(scores.std()) if len(scores) > 1 else 0.0,
            **parts,
            "kl": kl,
            "kl_coef": self.kl_coef,
            **stats,
            "response_length": float(ro.lengths.float().mean()),
            "finished": sum(s.finished for s in samples) / len(samples),
            "empty_replies": sum(not s.text for s in samples),
            **{k: round(b - a, 3) for k, a, b in zip(STEP_TIMES, t, t[1:])},
        }
        if cfg.ppo.adaptive_kl:
            self.kl_coef = adapt_kl(self.kl_coef, kl, cfg.ppo.target_kl)
        return row

    def score(self, prompts: list[Prompt], samples) -> tuple[torch.Tensor, dict]:
        """A step's rewards, all in this one place: (B,) raw reward = reward-model score + reward-function value
        (times ppo.reward_fn_weight; it sees the prompt's reference answer, when the data has one); and their
        means when both are set."""
        cfg, answered = self.cfg, [p.prompt.add("assistant", s.text) for p, s in zip(prompts, samples)]
        parts, total = {}, torch.zeros(len(samples))
        if self.actors.reward is not None:
            rm = torch.tensor(self.actors.scores(answered, self.loaded.tokenizer, cfg.train.batch_size, 0))
            total, parts["rm_score"] = total + rm, float(rm.mean())
        if self.fn is not None:
            fn = cfg.ppo.reward_fn_weight * torch.tensor(
                [float(self.fn(p.conversation, s.text)) for p, s in zip(prompts, samples)]
            )
            total, parts["fn_reward"] = total + fn, float(fn.mean())
        asked = [p.prompt.messages[-1].content for p in prompts]
        pen, guarded = rollout_penalty(cfg.guard, asked, samples)  # loops, cut and off-language replies cost
        return total + pen, (parts if len(parts) > 1 or guarded else {}) | guarded

    def rollout(self, samples, scores: torch.Tensor) -> Rollout:
        cfg = self.cfg.ppo
        rows = reply_rows(samples)
        old = [s.logps for s in samples] if self.reuse is None else None  # the sampler's: no policy forward
        logps, ref_logps, values = experience(
            self.actors, rows, self.pad, self.cfg.train.batch_size, self.temperature, self.loaded.dtype, old
        )
        mask = torch.nn.utils.rnn.pad_sequence(
            [torch.ones(len(s.reply_ids)) for s in samples], batch_first=True
        )
        normed = scores
        if cfg.whiten_rewards:
            self.moments.update(scores)
            normed = self.moments.normalise(scores)
        rewards = token_rewards(normed, logps, ref_logps, mask, self.kl_coef)
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        return Rollout(
            rows, mask, logps, ref_logps, values, scores, rewards, whiten(advantages, mask), returns
        )

    def update(self, ro: Rollout, rng: random.Random, step: int, opt: Optimizer) -> dict:
        """ppo_epochs passes of minibatch updates; -> token-averaged losses, entropy, clip fraction."""
        cfg, mb = self.cfg, self.cfg.ppo.minibatch
        sums, n_updates, norms = defaultdict(float), 0, []
        for _ in range(cfg.ppo.ppo_epochs):
            order = rng.sample(range(len(ro.rows)), len(ro.rows))
            for start in range(0, len(order), mb):
                idx = order[start : start + mb]
                n_tok = float(ro.mask[idx].sum())
                for i in range(0, len(idx), cfg.train.batch_size):
                    self.micro_step(ro, idx[i : i + cfg.train.batch_size], n_tok, sums)
                if self.ptx is not None:
                    sums["ptx_loss"] += self.ptx_step(step, n_updates)
                norms.append(opt.update())
                n_updates += 1
        tokens = sums.pop("tokens")
        out = {k: v / tokens for k, v in sums.items() if k != "ptx_loss"}
        if self.ptx is not None:
            out["ptx_loss"] = sums["ptx_loss"] / n_updates
        return {**out, "grad_norm": sum(norms) / len(norms), "updates": n_updates}

    def micro_step(self, ro: Rollout, idx: list[int], n_tok: float, sums: dict) -> None:
        """Policy then critic forward + backward on rows idx; losses divided by the minibatch's reply tokens.
        Two backward passes keep one forward's activations alive at a time (the critic is a second forward);
        a shared critic needs one forward and one backward for both losses."""
        cfg, actors = self.cfg.ppo, self.actors
        device = next(actors.parameters()).device
        batch = to_device(collate([[ro.rows[i]] for i in idx], self.pad), device)
        m = ro.mask[idx].bool()
        old, adv = ro.logps[idx][m].to(device), ro.advantages[idx][m].to(device)
        old_values, returns = ro.values[idx][m].to(device), ro.returns[idx][m].to(device)
        with autocast(self.loaded.dtype, device, actors):
            if actors.shared_critic:
                logits, targets, values = actors.policy_and_values(batch)
            else:
                (logits, targets), values = actors.policy_logits(batch), None
            logits = scaled(logits, self.temperature)
            logp = token_logps(logits, targets)
            policy = losses.ppo_policy(logp, old, adv, cfg.clip)
            if cfg.entropy_coef > 0:
                ent = losses.entropy(logits).sum()
            else:  # only logged: no graph, and in slices, so no extra (N, V) fp32 copies at once
                with torch.no_grad():
                    ent = sum(losses.entropy(c).sum() for c in logits.detach().split(256))
            loss = policy - cfg.entropy_coef * ent
            if values is not None:
                value = losses.ppo_value(values, old_values, returns, cfg.value_clip)
                loss = loss + cfg.vf_coef * value
        (loss / n_tok).backward()
        ratio = torch.exp(logp.detach() - old)
        del logits, loss
        if values is None:
            with autocast(self.loaded.dtype, device, actors):
                value = losses.ppo_value(actors.values(batch), old_values, returns, cfg.value_clip)
            (cfg.vf_coef * value / n_tok).backward()
        sums["policy_loss"] += policy.item()
        sums["value_loss"] += value.item()
        sums["entropy"] += ent.item()
        sums["clip_frac"] += float(((ratio - 1).abs() > cfg.clip).sum())
        sums["tokens"] += float(m.sum())

    def ptx_step(self, step: int, update: int) -> float:
        """PPO-ptx (InstructGPT eq. 2's γ term): ptx_coef x the SFT loss of one batch, backward; -> that loss."""
        plan_ = self.ptx.epoch(step, 1)  # a fresh order each PPO step, a pure function of (seed, step)
        idx = plan_[update % len(plan_)]
        device = next(self.actors.parameters()).device
        batch = to_device(self.ptx.batch(idx), device)
        with autocast(self.loaded.dtype, device, self.actors):
            loss = losses.sft(token_logps(*self.actors.policy_logits(batch))) / max(
                self.ptx.n_targets(idx), 1
            )
        (self.cfg.ppo.ptx_coef * loss).backward()
        return loss.item()


def policy_only(actors: Actors, loaded: io.Loaded) -> io.Loaded:
    """The policy alone, to save like sft.py: its adapter over the base (the critic and reward adapters are
    dropped first), or its full weights."""
    lm = actors.lm
    if actors.shared:
        lm.set_adapter("default")
        for name in (CRITIC, REWARD):
            if name in lm.peft_config:
                delete_adapter(lm, name)
    return dataclasses.replace(loaded, model=lm)


def delete_adapter(lm, name: str) -> None:
    """lm.delete_adapter(name); a prompt-learning adapter (prefix, P-tuning v2) lives on the PeftModel itself,
    and peft < 0.21 hands its deletion to transformers' delete_adapter, which takes other arguments (TypeError)."""
    if not lm.peft_config[name].is_prompt_learning:
        return lm.delete_adapter(name)
    for table in (lm.peft_config, lm.prompt_encoder, lm.prompt_tokens):
        del table[name]


def save_policy(out: Path, actors: Actors, loaded: io.Loaded, merged: bool, cfg: RunConfig) -> Path:
    """out/final (and out/merged when asked) of the policy alone; merged when its start was an adapter folded in
    memory, since that base exists nowhere on disk."""
    return save_model(out, policy_only(actors, loaded), cfg, folded=merged)
