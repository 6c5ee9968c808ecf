"""THE training loop: schedule, clipping, logging, evaluation, atomic checkpoints and exact resume, for every stage.

A stage plugs in `Hooks`: its step (the forward and backward passes of one training step, calling `opt.update()`
once per optimizer update) and, if it has them, evaluation and extra checkpoint state. The loop owns the rest:
the AdamW optimizer and its clipping, the learning-rate schedule, metrics.jsonl and the progress bar, when to
evaluate and save, and resuming (checkpoint.py). Supervised stages (SFT, RM, the DPO family) hand `train` rows of
samples and a `loss_fn(model, batch) -> summed loss`; `supervised` turns them into hooks whose batch order is a
pure function of (seed, epoch) (data/collate.py), so a resumed run replays the same micro-batches. Their loss is
normalised by the target tokens of the whole optimizer step across micro-batches and processes, so
`accelerate launch` with N processes matches one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pixiu.chat.templates import Rendered
from pixiu.config import TrainConfig
from pixiu.data.collate import GroupBatch, TokenBatch, collate, collate_groups, collate_shared, plan
from pixiu.model.adapters import lr_groups, schedule
from pixiu.model.forward import autocast
from pixiu.train import checkpoint

LossFn = Callable[[torch.nn.Module, TokenBatch], torch.Tensor]  # -> summed loss over the batch's targets


class Optimizer:
    """AdamW over the trained parameters with the loop's gradient clipping: what a stage's step updates with."""

    def __init__(self, params: list[torch.nn.Parameter], cfg: TrainConfig, accelerator):
        self.params, self.max_norm, self.accelerator = params, cfg.max_grad_norm, accelerator
        # one group per learning-rate scale: LoRA+ B matrices learn faster (model/adapters.py)
        self.torch = torch.optim.AdamW(lr_groups(params), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.after_step: Callable[[int], None] | None = None  # AdaLoRA's rank allocation (adapters.schedule)
        self.at_step = 0  # the loop's step (from 0) the current updates belong to

    @property
    def lr(self) -> float:
        g = self.torch.param_groups[0]
        return g["lr"] / g.get("lr_scale", 1.0)  # checkpoints from before LoRA+ have no scale

    @lr.setter
    def lr(self, value: float) -> None:
        for g in self.torch.param_groups:
            g["lr"] = value * g.get("lr_scale", 1.0)

    def update(self) -> float:
        """Clip the accumulated gradients to train.max_grad_norm (0 = no clipping), take one AdamW step and clear
        them -> the gradient norm before clipping."""
        if self.max_norm > 0:
            norm = float(self.accelerator.clip_grad_norm_(self.params, self.max_norm))
        else:
            norms = [p.grad.detach().norm() for p in self.params if p.grad is not None]
            norm = float(torch.stack(norms).norm()) if norms else 0.0
        self.torch.step()
        if self.after_step:  # reads the gradients: before they are cleared
            self.after_step(self.at_step)
        self.torch.zero_grad(set_to_none=True)
        return norm


@dataclass
class Hooks:
    """What a stage plugs into `fit`."""

    step: Callable[[int, Optimizer], dict]
    """(step index from 0, optimizer) -> the step's metrics. It runs the forward and backward passes and calls
    `opt.update()` once per optimizer update (once for SFT; per minibatch for PPO, per epoch for GRPO)."""
    steps_per_epoch: float
    """Steps in one pass over the data: the run has ceil(train.epochs x this) steps unless train.max_steps."""
    evaluate: Callable[[], dict] | None = None
    """Held-out metrics, logged at step 0, every train.eval_every steps and after the last step."""
    state: Callable[[], dict] | None = None
    """The stage's own JSON state, saved in each checkpoint (PPO: its KL coefficient and reward moments)."""
    load_state: Callable[[dict], None] | None = None
    """Restores that state when the run resumes from a checkpoint."""
    name: str = "train"
    """The progress bar's label."""
    show: tuple[str, ...] = ("loss",)
    """Metrics shown on the progress bar (it shows the step rate and the time left itself)."""


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine / linear decay to 0, or constant."""
    warm = int(cfg.warmup_ratio * total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(1, total - warm)
    scale = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.lr * scale


def fit(
    model, hooks: Hooks, cfg: TrainConfig, accelerator, out: Path, params: list | None = None
) -> list[dict]:
    """Run the stage's steps with the loop's schedule, logging, evaluation and checkpoints -> the metrics rows it
    logged. `model` holds what trains (its trainable weights go into checkpoints); `params`, the parameters the
    optimizer updates, defaults to those of `model` that require grad."""
    main = accelerator.is_main_process
    opt = Optimizer(params or [p for p in model.parameters() if p.requires_grad], cfg, accelerator)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * hooks.steps_per_epoch))
    ckpts = out / "checkpoints"
    start, extra = checkpoint.restore(ckpts, model, opt.torch) if cfg.resume else (0, {})
    if start and hooks.load_state:
        hooks.load_state(extra)
    opt.after_step = schedule(model, total)
    log = MetricsLog(out, start, enabled=main)
    if start == 0 and hooks.evaluate:
        log.write({"step": 0, **hooks.evaluate()})
    bar = tqdm(total=total, initial=start, desc=hooks.name, unit="step", disable=not main)
    for step in range(start, total):
        done = step + 1
        opt.lr, opt.at_step = lr_at(step, total, cfg), step
        row = {"step": done, **hooks.step(step, opt), "lr": opt.lr}
        bar.update(1)
        bar.set_postfix({k: f"{row[k]:.4g}" for k in hooks.show if k in row})
        evaluated = hooks.evaluate and ((cfg.eval_every and done % cfg.eval_every == 0) or done == total)
        if evaluated:
            row.update(hooks.evaluate())
        if evaluated or done % cfg.log_every == 0 or done == total:
            log.write(row)
        if cfg.save_every and done % cfg.save_every == 0 and done < total:
            state = hooks.state() if hooks.state else None
            checkpoint.save(ckpts, done, model, opt.torch, cfg.keep_last, accelerator, state)
    bar.close()
    return log.rows


# ---------------------------------------------------------------- supervised stages: rows and a loss


@dataclass
class Rows:
    """Training rows (one sample each, or several packed ones) and how to batch them. `fit` takes any dataset
    with these methods: epoch(epoch, world) -> global micro-batches of indices, batch(indices) -> a batch with
    .n_tokens, n_targets(indices) -> the units the loss is summed over."""

    rows: list[list[Rendered]]
    pad_id: int
    batch_size: int  # rows per micro-batch per process
    seed: int = 0
    group_by_length: bool = True
    tokens_per_batch: int = 0  # > 0: micro-batches are cut by padded tokens per process, not batch_size

    def lengths(self) -> list[int]:
        return [sum(len(s.input_ids) for s in r) for r in self.rows]

    def epoch(self, epoch: int, world: int) -> list[list[int]]:
        """Global micro-batches of one epoch: each holds batch_size * world row indices, or rows up to
        tokens_per_batch padded tokens per process."""
        lengths, size = self.lengths(), self.batch_size * world
        return plan(lengths, size, self.seed, epoch, self.group_by_length, self.tokens_per_batch, world)

    def batch(self, idx: list[int]) -> TokenBatch:
        return collate([self.rows[i] for i in idx], self.pad_id)

    def n_targets(self, idx: list[int]) -> int:
        """Target tokens of these rows, as `collate` will mask them (a sample's first token never is one)."""
        return sum(sum(s.loss_mask[1:]) for i in idx for s in self.rows[i])


@dataclass
class Groups:
    """Groups of replies to one prompt (pairs, rankings), batched whole; the loss is summed per group."""

    groups: list[list[Rendered]]
    pad_id: int
    batch_size: int  # groups per micro-batch per process
    seed: int = 0
    group_by_length: bool = True
    extra: dict[str, list] = field(
        default_factory=dict
    )  # per-reply values nested like groups, e.g. cached reference log-probs
    shared_prefix: bool = False  # one row per group with the prompt once (`collate_shared`)

    def lengths(self) -> list[int]:
        return [sum(len(s.input_ids) for s in g) for g in self.groups]

    def epoch(self, epoch: int, world: int) -> list[list[int]]:
        return plan(self.lengths(), self.batch_size * world, self.seed, epoch, self.group_by_length)

    def batch(self, idx: list[int]) -> GroupBatch:
        extra = {k: [v[i] for i in idx] for k, v in self.extra.items()}
        collate_fn = collate_shared if self.shared_prefix else collate_groups
        return collate_fn([self.groups[i] for i in idx], self.pad_id, extra)

    def n_targets(self, idx: list[int]) -> int:
        return len(idx)


def supervised(
    model, data: Rows, loss_fn: LossFn, cfg: TrainConfig, accelerator, dtype, evaluate=None
) -> Hooks:
    """Hooks for a stage that is rows and a loss: each step accumulates train.grad_accum micro-batches (each
    process its share) into one update. Puts the model in training mode: from_pretrained returns eval mode, and
    dropout (LoRA's included) must be on while training."""
    world, rank = accelerator.num_processes, accelerator.process_index
    per_epoch = math.ceil(len(data.epoch(0, world)) / cfg.grad_accum)
    plans: dict[int, list[list[int]]] = {}  # the current epoch's micro-batches

    def step(step: int, opt: Optimizer) -> dict:
        epoch, within = divmod(step, per_epoch)
        if epoch not in plans:
            plans.clear()
            plans[epoch] = data.epoch(epoch, world)
        micro = plans[epoch][within * cfg.grad_accum : (within + 1) * cfg.grad_accum]
        t0 = time.perf_counter()
        shards = [idx[rank::world] for idx in micro]
        n_step = sum(data.n_targets(idx) for idx in micro)  # targets of the whole step, all processes
        loss_sum, tokens = 0.0, 0
        for i, shard in enumerate(shards):
            batch = data.batch(shard).to(accelerator.device)
            sync = i == len(shards) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                with autocast(dtype, accelerator.device, model):
                    loss = loss_fn(model, batch)
                accelerator.backward(loss * (world / max(n_step, 1)))
            loss_sum += loss.item()
            tokens += batch.n_tokens
        grad_norm = opt.update()
        elapsed = time.perf_counter() - t0
        loss_sum = accelerator.reduce(torch.tensor(loss_sum), "sum").item()
        tokens = int(accelerator.reduce(torch.tensor(tokens), "sum").item())
        return {
            "epoch": round((step + 1) / per_epoch, 4),
            "loss": loss_sum / max(n_step, 1),
            "grad_norm": grad_norm,
            "tokens_per_s": round(tokens / elapsed, 1),
        }

    model.train()
    return Hooks(step, per_epoch, evaluate, show=("loss", "tokens_per_s"))


def train(
    model,
    data: Rows,
    loss_fn: LossFn,
    cfg: TrainConfig,
    accelerator,
    out: Path,
    evaluate: Callable[[], dict] | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """`fit` with `supervised` hooks; returns the metrics rows. `model` is prepared by the caller's accelerator."""
    return fit(
        model, supervised(model, data, loss_fn, cfg, accelerator, dtype, evaluate), cfg, accelerator, out
    )


class MetricsLog:
    """metrics.jsonl (and TensorBoard when installed). On resume, rows after the checkpoint are dropped."""

    def __init__(self, out: Path, start: int, enabled: bool):
        self.path, self.enabled, self.rows = out / "metrics.jsonl", enabled, []
        self.tb = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        old = self.path.read_text().splitlines() if self.path.exists() and start else []
        kept = [line for line in old if json.loads(line)["step"] <= start]
        self.path.write_text("".join(line + "\n" for line in kept))
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])
