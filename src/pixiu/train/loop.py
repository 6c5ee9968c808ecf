"""THE training loop: accumulation, clipping, schedule, logging, eval, atomic checkpoints, exact resume.

A stage hands in rows of samples and a `loss_fn(model, batch) -> summed loss`; the loop does the rest. The
batch order is a pure function of (seed, epoch) (see data/collate.py), so a resumed run replays the same
micro-batches; trainable weights, optimizer moments and the torch RNG are restored bit for bit from
safetensors + JSON (no pickle). Loss is normalised by the target tokens of the whole optimizer step across
micro-batches and processes, so `accelerate launch` with N processes matches one process with the same global
batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from pixiu.chat.templates import Rendered
from pixiu.config import TrainConfig
from pixiu.data.collate import GroupBatch, TokenBatch, collate, collate_groups, collate_shared, plan
from pixiu.model.forward import autocast
from pixiu.model.io import unwrap

LossFn = Callable[[torch.nn.Module, TokenBatch], torch.Tensor]  # -> summed loss over the batch's targets
# The loop takes any dataset with the methods of `Rows`: epoch(epoch, world) -> global micro-batches of
# indices, batch(indices) -> a batch with .n_tokens, n_targets(indices) -> the units the loss is summed over.


@dataclass
class Rows:
    """Training rows (one sample each, or several packed ones) and how to batch them."""

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
    """Run the loop; returns the metrics rows it logged. `model` is prepared by the caller's accelerator."""
    world, rank = accelerator.num_processes, accelerator.process_index
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(data.epoch(0, world)) / cfg.grad_accum)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    ckpts = out / "checkpoints"
    start = _resume(ckpts, model, opt) if cfg.resume else 0
    log = MetricsLog(out, start, enabled=accelerator.is_main_process)
    if start == 0 and evaluate:
        log.write({"step": 0, **evaluate()})
    model.train()  # from_pretrained returns eval mode: dropout (LoRA's included) must be on while training
    bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not accelerator.is_main_process)
    epoch_plan, plan_epoch = None, -1
    for step in range(start, total):
        epoch, within = divmod(step, per_epoch)
        if epoch != plan_epoch:
            epoch_plan, plan_epoch = data.epoch(epoch, world), epoch
        micro = epoch_plan[within * cfg.grad_accum : (within + 1) * cfg.grad_accum]
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, cfg)
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
        grad_norm = _clip(accelerator, params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - t0
        loss_sum = accelerator.reduce(torch.tensor(loss_sum), "sum").item()
        tokens = int(accelerator.reduce(torch.tensor(tokens), "sum").item())
        done = step + 1
        row = {
            "step": done,
            "epoch": round(done / per_epoch, 4),
            "loss": loss_sum / max(n_step, 1),
            "lr": opt.param_groups[0]["lr"],
            "grad_norm": grad_norm,
            "tokens_per_s": round(tokens / elapsed, 1),
        }
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
        evaluated = evaluate and ((cfg.eval_every and done % cfg.eval_every == 0) or done == total)
        if evaluated:
            row.update(evaluate())
        if evaluated or done % cfg.log_every == 0 or done == total:
            log.write(row)
        if cfg.save_every and done % cfg.save_every == 0 and done < total:
            _checkpoint(ckpts, done, model, opt, cfg.keep_last, accelerator)
    bar.close()
    return log.rows


def _clip(accelerator, params, max_norm: float) -> float:
    if max_norm > 0:
        return float(accelerator.clip_grad_norm_(params, max_norm))
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


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


# ---------------------------------------------------------------- checkpoints


def _checkpoint(root: Path, step: int, model, opt, keep: int, accelerator, extra: dict | None = None) -> None:
    """Write step-N atomically (temp dir, then rename) and keep the newest `keep`. `extra`: a stage's own
    JSON state (PPO's KL coefficient and reward statistics), read back with `checkpoint_state`."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp, final = root / f".step-{step}.tmp", root / f"step-{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        trainable = {
            n: p.detach().contiguous() for n, p in unwrap(model).named_parameters() if p.requires_grad
        }
        save_file(trainable, tmp / "trainable.safetensors")
        tensors, meta = _optimizer_state(opt)
        save_file(tensors, tmp / "optimizer.safetensors")
        save_file({"cpu": torch.get_rng_state()}, tmp / "rng.safetensors")
        state = {"step": step, "optimizer": meta, "python_rng": _py_rng_to_json(random.getstate())}
        state["extra"] = extra or {}
        (tmp / "state.json").write_text(json.dumps(state))
        tmp.rename(final)
        for old in sorted(_steps(root))[:-keep] if keep > 0 else []:
            shutil.rmtree(root / f"step-{old}")
    accelerator.wait_for_everyone()


def _resume(root: Path, model, opt) -> int:
    steps = sorted(_steps(root))
    if not steps:
        print(f"resume: no checkpoint under {root}, starting at step 0")
        return 0
    ck = root / f"step-{steps[-1]}"
    state = json.loads((ck / "state.json").read_text())
    weights = load_file(ck / "trainable.safetensors")
    named = dict(unwrap(model).named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            named[name].copy_(value)
    _load_optimizer_state(opt, load_file(ck / "optimizer.safetensors"), state["optimizer"])
    torch.set_rng_state(load_file(ck / "rng.safetensors")["cpu"])
    random.setstate(_py_rng_from_json(state["python_rng"]))
    print(f"resume: continuing from {ck} (step {state['step']})")
    return state["step"]


def checkpoint_state(root: Path) -> dict:
    """state.json of the newest checkpoint under root ({} when there is none): what `_resume` continues from."""
    steps = sorted(_steps(root))
    return json.loads((root / f"step-{steps[-1]}" / "state.json").read_text()) if steps else {}


def _steps(root: Path) -> list[int]:
    return [int(p.name[5:]) for p in root.glob("step-*") if p.is_dir()] if root.exists() else []


def _optimizer_state(opt) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer_state(opt, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _py_rng_to_json(s):
    return [s[0], list(s[1]), s[2]]


def _py_rng_from_json(s):
    return (s[0], tuple(s[1]), s[2])
