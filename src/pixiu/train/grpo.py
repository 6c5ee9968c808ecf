"""GRPO and RLOO (`pixiu train grpo`, `pixiu train rloo`): critic-free RL against a task's checkable reward.

Each step samples grpo.group_size replies to each of grpo.prompts_per_step prompts with THE generation function
(engine.sample), scores them with the task, and turns each group's rewards into advantages against the group's
own baseline: mean and std (GRPO) or the leave-one-out mean (RLOO). The policy then takes grpo.epochs clipped
policy-gradient steps over the reply tokens, with an optional k3 KL penalty to the reference; with LoRA the
reference is the same weights with the adapters off, so there is one copy of the model. A group's K replies share
one forward of their prompt (`PrefixLM`), so a forward is one group and train.batch_size is not used here.

The step runs on the training loop (train/loop.py): optimizer, lr schedule, clipping, metrics.jsonl, evaluation
timing, checkpoints and resume are the loop's. A step's prompts are a pure function of (seed, step) and the checkpoint carries the torch RNG that sampling draws from, so a
resumed run samples the same replies as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pixiu import config as config_mod
from pixiu import losses
from pixiu.chat.templates import Rendered
from pixiu.config import LoraConfig, RunConfig
from pixiu.data import load_data
from pixiu.data.collate import GroupBatch, collate_groups
from pixiu.data.records import Prompt
from pixiu.data.tasks import Example, Task, resolve
from pixiu.engine import Sampling, sample
from pixiu.model import io
from pixiu.model.forward import autocast, token_logps
from pixiu.train import loop
from pixiu.train.actors import fold
from pixiu.train.guards import Probe, rollout_penalty
from pixiu.train.loop import Hooks, Optimizer
from pixiu.train.prefix import PrefixLM, logps_of, token_advantages
from pixiu.train.rollout import reuse_reason
from pixiu.train.stages import begin, finish


@dataclass
class Rollouts:
    """One step's replies, group after group: G prompts x K replies = R replies."""

    prompts: list[list[int]]  # (G,) prompt token ids, generation prompt included
    replies: list[list[int]]  # (R,) sampled token ids, up to and including the stop token; R = G * K
    rewards: torch.Tensor  # (G, K) the task's reward of each reply
    correct: torch.Tensor  # (G, K) the task's evaluate(): 1 = right answer
    advantages: torch.Tensor  # (R,) A_i, shared by every token of reply i
    lengths: torch.Tensor  # (R,) reply tokens
    finished: torch.Tensor  # (R,) 1 = a stop token ended the reply
    logps: list[list[float]] | None = None  # (R,) the sampler's log-prob of each reply token (engine.Sample)
    guarded: dict = field(default_factory=dict)  # the guard penalty's step metrics (train/guards.py), if on


def advantages(rewards: torch.Tensor, estimator: str, scale: bool) -> torch.Tensor:
    """(G, K) rewards -> (G, K) advantages with the estimator's group baseline (see losses.py)."""
    if estimator == "rloo":
        return losses.rloo_advantages(rewards)
    return losses.grpo_advantages(rewards, scale)


def step_prompts(n: int, per_step: int, seed: int, step: int) -> list[int]:
    """Indices of the prompts of `step`: epochs of seeded shuffles laid end to end, per_step at a time."""
    orders: dict[int, list[int]] = {}
    out = []
    for flat in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(flat, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(seed * 100_003 + epoch).shuffle(orders[epoch])
        out.append(orders[epoch][i])
    return out


# ---------------------------------------------------------------- rollouts


def rollout(loaded: io.Loaded, task: Task, batch: list[Example], cfg: RunConfig, estimator: str) -> Rollouts:
    """Sample K replies per prompt, score them, and attach group-baseline advantages."""
    k, gen = cfg.grpo.group_size, cfg.gen
    sampling = Sampling(gen.max_new_tokens, gen.temperature, gen.top_p, gen.top_k)
    with autocast(loaded.dtype, loaded.model.device):
        samples = sample(
            loaded.model, loaded.tokenizer, loaded.template, [e.prompt for e in batch], sampling, k
        )
    rewards, correct = score(task, batch, samples, k)
    asked = [e.prompt.messages[-1].content for e in batch for _ in range(k)]
    pen, guarded = rollout_penalty(cfg.guard, asked, samples)  # loops, cut and off-language replies cost
    rewards = rewards + pen.view(-1, k)
    return Rollouts(
        [samples[i].prompt_ids for i in range(0, len(samples), k)],
        [s.reply_ids for s in samples],
        rewards,
        correct,
        advantages(rewards, estimator, cfg.grpo.scale_rewards).flatten(),
        torch.tensor([len(s.reply_ids) for s in samples]),
        torch.tensor([float(s.finished) for s in samples]),
        [s.logps for s in samples],
        guarded,
    )


def score(task: Task, batch: list[Example], samples, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A step's rewards, all in this one place: (G, K) the task's reward of each reply, and (G, K) its
    evaluate() (1 = right answer), for K replies to each of the G prompts of `batch`."""
    convs = [e.conversation for e in batch for _ in range(k)]
    rewards = torch.tensor([task.reward(c, s.text) for c, s in zip(convs, samples)]).view(-1, k).float()
    correct = torch.tensor([task.evaluate(c, s.text) for c, s in zip(convs, samples)]).view(-1, k).float()
    return rewards, correct


def group_batches(ro: Rollouts, pad_id: int, device) -> list[GroupBatch]:
    """One GroupBatch per prompt: its K prompt + reply rows, each reply's advantage as extra["advantages"]."""
    k = len(ro.replies) // len(ro.prompts)
    out = []
    for g, prompt in enumerate(ro.prompts):
        rows = [
            Rendered(prompt + r, [0] * len(prompt) + [1] * len(r)) for r in ro.replies[g * k : (g + 1) * k]
        ]
        adv = {"advantages": [ro.advantages[g * k : (g + 1) * k].tolist()]}
        out.append(collate_groups([rows], pad_id, adv).to(device))
    return out


# ---------------------------------------------------------------- the step


def update(policy, opt: Optimizer, groups, old, ref, cfg: RunConfig, accelerator, dtype) -> dict:
    """grpo.epochs optimizer steps over the step's groups (one forward each); the loss is normalised by the reply
    tokens of the whole step (all processes), so splitting into groups and processes does not change the update."""
    world, g = accelerator.num_processes, cfg.grpo
    n_local = sum(b.tokens.n_targets for b in groups)
    n_step = int(accelerator.reduce(torch.tensor(n_local), "sum").item())
    temperature = cfg.gen.temperature
    sums = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0}
    for _ in range(g.epochs):
        for i, batch in enumerate(groups):
            sync = i == len(groups) - 1
            adv = token_advantages(batch)
            with contextlib.nullcontext() if sync else accelerator.no_sync(policy):
                with autocast(dtype, adv.device, policy):
                    logits, targets = policy(batch)
                logps = token_logps(logits / temperature, targets)
                old_i = old[i] if old else logps.detach()
                ref_i = ref[i] if ref else None
                loss = losses.grpo(logps, old_i, adv, ref_i, g.clip, g.kl_coef)
                accelerator.backward(loss * (world / max(n_step, 1)))
            sums["loss"] += loss.item()
            if ref_i is not None:
                sums["kl"] += losses.kl_estimate(logps.detach(), ref_i, "k3").sum().item()
            sums["clip_frac"] += ((logps.detach() - old_i).exp().sub(1).abs() > g.clip).sum().item()
        grad_norm = opt.update()
    total = accelerator.reduce(torch.tensor(list(sums.values())), "sum") / max(n_step * g.epochs, 1)
    stats = {**dict(zip(sums, total.tolist())), "grad_norm": grad_norm}
    if ref is None:
        del stats["kl"]  # no reference to measure against (full fine-tuning with kl_coef = 0)
    return stats


def step_metrics(ro: Rollouts, accelerator) -> dict:
    local = torch.stack(
        [ro.rewards.sum(), ro.correct.sum(), ro.lengths.sum().float(), ro.finished.sum(),
         (ro.rewards.std(1) == 0).sum().float(), torch.tensor(float(ro.rewards.numel())),
         torch.tensor(float(len(ro.rewards)))]
    )  # fmt: skip
    s = accelerator.reduce(local, "sum").tolist()
    n, groups = max(s[5], 1), max(s[6], 1)
    return {
        "reward": s[0] / n,
        "accuracy": s[1] / n,
        "reply_len": s[2] / n,
        "finished": s[3] / n,
        "flat_groups": s[4] / groups,  # groups whose rewards are all equal: zero advantage, no signal
    }


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_task(
    loaded: io.Loaded, task: Task, n: int, sampling: Sampling, examples: list[Example] | None = None,
    batch_size: int = 64,
) -> dict:  # fmt: skip
    """Score the first n held-out examples (the task's test split unless given): accuracy (task.evaluate, e.g.
    exact match), mean reward and mean reply length in tokens."""
    examples = (task.examples("test") if examples is None else examples)[:n]
    scores, rewards, lengths = [], [], []
    for i in range(0, len(examples), batch_size):
        part = examples[i : i + batch_size]
        with autocast(loaded.dtype, loaded.model.device):
            out = sample(loaded.model, loaded.tokenizer, loaded.template, [e.prompt for e in part], sampling)
        for e, s in zip(part, out):
            scores.append(task.evaluate(e.conversation, s.text))
            rewards.append(task.reward(e.conversation, s.text))
            lengths.append(len(s.reply_ids))
    m = max(len(scores), 1)
    return {
        "accuracy": sum(scores) / m,
        "reward": sum(rewards) / m,
        "reply_len": sum(lengths) / m,
        "n": len(scores),
    }


# ---------------------------------------------------------------- setup


def build(cfg: RunConfig) -> tuple[io.Loaded, torch.nn.Module | None, bool]:
    """-> (the policy, a separate frozen reference or None, whether the start was an adapter folded in).

    With LoRA the reference is the policy with adapters disabled. A start checkpoint that is itself an adapter
    (an SFT LoRA) is merged into its base first, so the reference is the SFT model, not the bare base."""
    if cfg.lora.r > 0:
        loaded = io.load(cfg.model)
        folded = fold(loaded)
        loaded.model.requires_grad_(False)
        loaded.model = io.add_lora(loaded.model, cfg.lora)
        return loaded, None, folded
    loaded = io.load(cfg.model, LoraConfig(r=0), for_training=True)  # fp32 master weights
    folded = fold(loaded)
    loaded.model.requires_grad_(True)
    ref = None
    if cfg.grpo.kl_coef > 0:
        ref_loaded = io.load(cfg.model)
        fold(ref_loaded)
        ref = ref_loaded.model.requires_grad_(False).eval()
    return loaded, ref, folded


def prompts(cfg: RunConfig, task: Task, loaded: io.Loaded) -> tuple[list[Example], list[Example], dict]:
    """Train and held-out examples: prompt records from data when given, else the task's splits. Prompts that
    leave no room for max_new_tokens within data.max_len are skipped and counted."""
    if cfg.data.specs():
        data = load_data(cfg.data, want=Prompt)
        # a row's `answer` is the reference the task checks (else the task finds it, e.g. arithmetic)
        train, held = ([Example(r.prompt, r.answer) for r in part] for part in (data.train, data.eval))
    else:
        train, held = task.examples("train"), task.examples("test")
    room = cfg.data.max_len - cfg.gen.max_new_tokens
    report = {"train": len(train), "held_out": len(held)}
    fit = lambda xs: [e for e in xs if len(loaded.template.prompt_ids(e.prompt)) <= room]  # noqa: E731
    train, held = fit(train), fit(held)
    report["skipped_too_long"] = report["train"] + report["held_out"] - len(train) - len(held)
    if len(train) < cfg.grpo.prompts_per_step:
        raise config_mod.ConfigError(
            f"only {len(train)} training prompts fit data.max_len={cfg.data.max_len}: {report}"
        )
    return train, held, report


def one_step(
    loaded, policy, ref_logps, opt: Optimizer, task, batch, cfg: RunConfig, estimator, accelerator
) -> dict:
    """Rollouts for this process's prompts, then grpo.epochs updates -> the step's metrics."""
    t0 = time.perf_counter()
    ro = rollout(loaded, task, batch, cfg, estimator)
    t1 = time.perf_counter()
    groups = group_batches(ro, loaded.tokenizer.pad_token_id, accelerator.device)
    temperature = cfg.gen.temperature
    ref = ref_logps(groups) if ref_logps else None
    if cfg.grpo.epochs > 1 and old_reason(cfg, loaded.dtype) is None:  # the sampler's: no forward
        k = cfg.grpo.group_size
        old = [
            torch.tensor(sum(ro.logps[i : i + k], []), device=accelerator.device)
            for i in range(0, len(ro.logps), k)
        ]
    elif cfg.grpo.epochs > 1:
        old = logps_of(policy, groups, temperature, lambda: autocast(loaded.dtype, accelerator.device))
    else:
        old = None  # one update per rollout: π_old is π itself, taken detached in `update`
    stats = update(policy, opt, groups, old, ref, cfg, accelerator, loaded.dtype)
    return {**step_metrics(ro, accelerator), **ro.guarded, **stats, "gen_s": round(t1 - t0, 2),
            "train_s": round(time.perf_counter() - t1, 2)}  # fmt: skip


def old_reason(cfg: RunConfig, dtype: torch.dtype) -> str | None:
    """Why the sampler's log-probs cannot be π_old for grpo.epochs > 1 (None: they can; see rollout.py)."""
    gen = cfg.gen
    return reuse_reason(Sampling(1, gen.temperature, gen.top_p, gen.top_k), gen.temperature, dtype)


# ---------------------------------------------------------------- the stage


def run(cfg: RunConfig, stage: str = "grpo") -> Path:
    """Train and save `output_dir/final`; returns that path. stage 'rloo' forces the RLOO estimator."""
    estimator = "rloo" if stage == "rloo" else cfg.grpo.estimator
    if cfg.gen.temperature <= 0:
        raise config_mod.ConfigError("GRPO samples a group per prompt: gen.temperature must be > 0")
    job = begin(cfg, stage)
    accelerator, g = job.accelerator, cfg.grpo
    task = resolve(g.task, **g.task_args)
    loaded, ref_model, folded = build(cfg)
    if cfg.train.gradient_checkpointing:
        io.enable_gradient_checkpointing(loaded.model)
    train_set, held, report = prompts(cfg, task, loaded)
    if job.main:
        print(f"grpo ({estimator}): task {g.task}, prompts {report}")
        if g.epochs > 1:
            why = old_reason(cfg, loaded.dtype)
            print(f"grpo: log π_old {'from the sampler' if why is None else 'from a policy forward: ' + why}")
    policy = accelerator.prepare(PrefixLM(loaded.model))
    reference = PrefixLM(ref_model).to(accelerator.device) if ref_model is not None else None
    ref_logps = _reference(policy, reference, cfg, loaded.dtype, accelerator.device)
    world, rank = accelerator.num_processes, accelerator.process_index
    greedy = Sampling(cfg.gen.max_new_tokens, temperature=0.0)

    size = cfg.guard.probe_size
    probe = (
        Probe(
            [e.prompt for e in train_set[-size:]],
            cfg.gen.max_new_tokens,
            cfg.guard,
            [p for p in policy.parameters() if p.requires_grad],
        )
        if size
        else None
    )

    def step(step: int, opt: Optimizer) -> dict:
        if probe and probe.stopped:  # guard.max_rise passed: the policy before the rise stays
            return {"guard_stopped": 1.0}
        idx = step_prompts(len(train_set), g.prompts_per_step * world, cfg.train.seed, step)[rank::world]
        batch = [train_set[i] for i in idx]
        return one_step(loaded, policy, ref_logps, opt, task, batch, cfg, estimator, accelerator)

    def evaluate() -> dict:
        out = probe.measure(loaded.model, loaded.tokenizer, loaded.template) if probe else {}
        if g.eval_size:
            ev = evaluate_task(loaded, task, g.eval_size, greedy, held if cfg.data.specs() else None)
            out |= {f"eval_{k}": v for k, v in ev.items()}
        return out

    per_epoch = len(train_set) / g.prompts_per_step / world
    hooks = Hooks(step, per_epoch, evaluate if g.eval_size or probe else None, name=estimator, show=SHOW)
    rows = loop.fit(policy, hooks, cfg.train, accelerator, job.out)
    # a folded start's base exists only in memory, so the result is saved merged (full weights)
    return finish(job, loaded, rows, folded=folded, prompts=report)


SHOW = ("reward", "accuracy", "kl")  # on the progress bar


def _reference(policy, reference, cfg: RunConfig, dtype, device):
    """groups -> (N,) reference log-probs per group: the policy with adapters off (LoRA) or a separate model.
    None when kl_coef = 0, which skips that forward (a third of a step's compute on a CPU) and leaves KL unlogged."""
    if cfg.grpo.kl_coef == 0:
        return None
    lm = io.unwrap(policy).lm

    @contextlib.contextmanager
    def ctx():
        off = io.unwrap(lm).disable_adapter() if reference is None else contextlib.nullcontext()
        with autocast(dtype, device), off:
            yield

    return lambda groups: logps_of(reference or policy, groups, cfg.gen.temperature, ctx)
