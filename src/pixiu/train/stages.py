"""The training stages: one registry (`pixiu train NAME`, pipeline stages) and what every stage does first and last.

`STAGES` maps a stage name to the module whose `run(cfg, name)` trains it and to its `Role` in a pipeline (what
it makes, whether it reads the latest reward model). Modules load when a stage runs, so listing the stages (the
CLI's usage line, the pipeline's recipe check) imports no training code (nor torch: `begin` and `save_model`
import what they use). Every stage's `run` opens with `begin`
(accelerator, seed, output directory, config.yaml) and closes with `finish` (out/final, out/merged when asked,
summary.json), so all stages leave the same files behind.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from pixiu import config
from pixiu.config import ConfigError, RunConfig


@dataclass(frozen=True)
class Role:
    """What a stage makes, and whether it reads the latest reward model (every stage reads the policy so far)."""

    makes: str  # "policy" or "reward_model"
    reads_reward_model: bool = False


@dataclass(frozen=True)
class Stage:
    name: str  # `pixiu train NAME`, a pipeline stage's `stage:`
    module: str  # the module whose run(cfg, name) trains it and returns the saved model's path
    role: Role
    encoder_decoder: bool = False  # also trains encoder-decoders (T5: model/seq2seq.py); the rest refuse them

    def run(self, cfg: RunConfig) -> Path:
        return Path(importlib.import_module(self.module).run(cfg, self.name))


POLICY, REWARD_MODEL = Role("policy"), Role("reward_model")
STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("sft", "pixiu.train.sft", POLICY, encoder_decoder=True),
        Stage("pt", "pixiu.train.sft", POLICY),
        Stage("rm", "pixiu.train.rm", REWARD_MODEL),
        Stage("dpo", "pixiu.train.pref", POLICY),
        Stage("kto", "pixiu.train.pref", POLICY),
        Stage("rrhf", "pixiu.train.pref", POLICY),
        Stage("ppo", "pixiu.train.ppo", Role("policy", reads_reward_model=True)),
        Stage("grpo", "pixiu.train.grpo", POLICY),
        Stage("rloo", "pixiu.train.grpo", POLICY),
        Stage("distill", "pixiu.train.distill", POLICY),
    )
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; valid: {sorted(STAGES)}")
    return STAGES[name]


# ---------------------------------------------------------------- a stage's opening and closing


@dataclass
class Job:
    """One run of a stage, as `begin` opens it."""

    cfg: RunConfig
    stage: str  # its name in STAGES
    accelerator: object  # accelerate.Accelerator
    out: Path  # train.output_dir
    t0: float  # perf_counter() at the start, for summary.json's seconds

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def begin(cfg: RunConfig, stage: str) -> Job:
    """The accelerator (CPU data parallel under `torchrun` when there is no CUDA), the seed, the output directory
    and its config.yaml (what a resumed run or a pipeline re-run compares against)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from pixiu.model import io, seq2seq
    from pixiu.model.adapters import check

    check(cfg, stage)  # a PEFT method that cannot run in this stage fails before any loading
    if not get_stage(stage).encoder_decoder:  # and so does a T5 in a stage that needs a causal LM
        seq2seq.refuse(stage, io.base_config(cfg.model.name_or_path, cfg.model.trust_remote_code))
    # cpu=True without CUDA lets `torchrun` / `accelerate launch --multi_gpu` start CPU data parallel (gloo)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(cfg.train.seed)
    out = Path(cfg.train.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(cfg, out / "config.yaml")
    return Job(cfg, stage, accelerator, out, time.perf_counter())


def print_report(job: Job, report: dict, counts: dict, line: str) -> None:
    """What happened to the data on its way to training: counts per source, one line per split (`line`, a format
    string over the split's report), and every bad row skipped."""
    if not job.main:
        return
    print(f"data: {counts}")
    for name in ("train", "eval"):
        print(f"  {name}: " + line.format(**report[name]))
    for bad in report["skipped_rows"]:
        print(f"  skipped bad row: {bad}")


def finish(job: Job, loaded, rows: list[dict], head=None, folded: bool = False, **summary) -> Path:
    """Save out/final and summary.json (the stage, its seconds, `summary`, the first and last metrics rows);
    -> out/final. See `save_model` for what final holds."""
    final = job.out / "final"
    state = gathered(job.accelerator, loaded.model)  # every process takes part, or a sharded run hangs here
    if job.main:
        save_model(job.out, loaded, job.cfg, head, folded, state)
        doc = {
            "stage": job.stage,
            "seconds": round(time.perf_counter() - job.t0, 1),
            **summary,
            "first": rows[0] if rows else {},
            "last": rows[-1] if rows else {},
        }
        (job.out / "summary.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    job.accelerator.wait_for_everyone()
    return final


def gathered(accelerator, model) -> dict | None:
    """The full weights of a model sharded over processes (FSDP, DeepSpeed ZeRO-3): gathering them is a
    collective, so every process calls this and the main one saves what it returns. None when unsharded (each
    process holds the whole model: save it directly)."""
    if str(accelerator.distributed_type).rsplit(".", 1)[-1] not in ("FSDP", "DEEPSPEED"):
        return None
    return accelerator.get_state_dict(model)


def save_model(out: Path, loaded, cfg: RunConfig, head=None, folded: bool = False, state=None) -> Path:
    """out/final: the LoRA adapter (with a reward model's score head) or full weights; saved merged when the run
    started from an adapter folded into its base (that base exists only in memory). With train.merge_lora also
    out/merged, the full model a next stage stacks its adapter on (a reward model is always read with its head,
    so it has none)."""
    from pixiu.model import io

    final = io.save(out / "final", loaded, head=head, merge=folded, state_dict=state)
    if cfg.train.merge_lora and state is not None:
        print("train.merge_lora: no out/merged from a sharded run; merge out/final afterwards (pixiu export)")
    elif cfg.train.merge_lora and cfg.lora.r > 0 and not folded and head is None:
        io.save(out / "merged", loaded, merge=True)
    return final
