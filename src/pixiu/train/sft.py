"""Supervised fine-tuning (`pixiu train sft`) and continued pretraining (`pixiu train pt`).

SFT renders each conversation with the chat template and trains on assistant tokens only; PT trains on every
token of raw text, split into max_len pieces and always packed. Both are the shared loop plus a loss function.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from pixiu import losses
from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Rendered
from pixiu.config import RunConfig
from pixiu.data import load_data
from pixiu.data.collate import collate, fit, pack
from pixiu.data.records import Text
from pixiu.model import TargetLM, io
from pixiu.model.forward import autocast, compile_layers
from pixiu.train.loop import Rows, train
from pixiu.train.stages import begin, finish, print_report

REPORT_LINE = (
    "{records} records -> {samples} samples, {tokens} tokens; truncated {truncated}, skipped as too long "
    "{skipped}, no target left {no_targets}"
)


def sft_loss(model, batch) -> torch.Tensor:
    return model(batch, nll=True)[0]  # losses.sft of the targets' log-probs, the head chunked or fused


def run(cfg: RunConfig, stage: str = "sft") -> Path:
    """Train and save `output_dir/final`; returns that path."""
    job = begin(cfg, stage)
    accelerator = job.accelerator
    data = load_data(
        cfg.data, want=Text if stage == "pt" else Conversation
    )  # bad data fails before the model loads
    loaded = io.load(cfg.model, cfg.lora, for_training=True)
    if cfg.train.gradient_checkpointing:
        io.enable_gradient_checkpointing(loaded.model)
    if cfg.train.compile:
        compile_layers(loaded.model)
    train_rows, eval_rows, report = prepare(stage, data.train, data.eval, loaded, cfg)
    report["skipped_rows"] = data.skipped
    print_report(job, report, data.counts, REPORT_LINE)
    pad = loaded.tokenizer.pad_token_id
    batching = (cfg.train.batch_size, cfg.data.seed, cfg.data.group_by_length, cfg.train.tokens_per_batch)
    rows = Rows(train_rows, pad, *batching)
    model = accelerator.prepare(TargetLM(loaded.model))
    dtype = loaded.dtype
    evaluate = (
        (lambda: eval_loss(model, eval_rows, pad, cfg.train.batch_size, accelerator, dtype))
        if eval_rows
        else None
    )
    history = train(model, rows, sft_loss, cfg.train, accelerator, job.out, evaluate, dtype)
    return finish(job, loaded, history, data=report)


def prepare(stage: str, train_records: list, eval_records: list, loaded: io.Loaded, cfg: RunConfig):
    """Records -> rows of rendered samples (packed when asked, always for PT) and a report of what was cut."""
    render = (
        _render_text(loaded.tokenizer, cfg.data.max_len)
        if stage == "pt"
        else (lambda c: [loaded.template.render(c, cfg.data.train_on)])
    )
    report = {}
    out = []
    for name, records in (("train", train_records), ("eval", eval_records)):
        samples = [s for r in records for s in render(r)]
        kept, overflow = fit(samples, cfg.data.max_len, cfg.data.overflow)
        report[name] = {
            "records": len(records),
            "samples": len(kept),
            **vars(overflow),
            "tokens": sum(len(s.input_ids) for s in kept),
        }
        if cfg.data.packing or stage == "pt":
            out.append(
                [
                    [kept[i] for i in row]
                    for row in pack([len(s.input_ids) for s in kept], cfg.data.max_len, cfg.data.seed)
                ]
            )
        else:
            out.append([[s] for s in kept])
    if not out[0]:
        raise ValueError(f"no training samples left after filtering: {report['train']}")
    return out[0], out[1], report


def _render_text(tokenizer, max_len: int):
    """Raw text + EOS, cut into max_len pieces that all carry loss."""

    def render(rec: Text) -> list[Rendered]:
        ids = tokenizer(rec.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return [
            Rendered(ids[i : i + max_len], [1] * len(ids[i : i + max_len]))
            for i in range(0, len(ids), max_len)
        ]

    return render


@torch.no_grad()
def eval_loss(model, rows: list, pad_id: int, batch_size: int, accelerator, dtype) -> dict:
    """Mean target-token loss and perplexity over the eval rows (sharded across processes)."""
    model.eval()
    mine = rows[accelerator.process_index :: accelerator.num_processes]
    total, count = torch.zeros(()), torch.zeros(())
    for i in range(0, len(mine), batch_size):
        batch = collate(mine[i : i + batch_size], pad_id).to(accelerator.device)
        with autocast(dtype, accelerator.device):
            logps, targets = model(batch, logps=True)
        total += losses.sft(logps).float().cpu()
        count += len(targets)
    model.train()
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    loss = (total / count.clamp(min=1)).item()
    return {"eval_loss": round(loss, 5), "eval_ppl": round(math.exp(min(loss, 50)), 3)}
