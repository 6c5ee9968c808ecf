"""Supervised fine-tuning (`pixiu train sft`) and continued pretraining (`pixiu train pt`).

SFT renders each conversation with the chat template and trains on assistant tokens only; PT trains on every
token of raw text, split into max_len pieces and always packed. Both are the shared loop plus a loss function.
An encoder-decoder model (T5) trains by SFT on (prompt -> reply) pairs instead (`FORMS`, model/seq2seq.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import torch

from pixiu import losses
from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Rendered
from pixiu.config import ConfigError, RunConfig
from pixiu.data import load_data
from pixiu.data.collate import PairRows, collate, collate_pairs, fit, fit_pairs, pack
from pixiu.data.records import Text
from pixiu.model import TargetLM, io, seq2seq
from pixiu.model.forward import autocast, compile_layers
from pixiu.train import loop
from pixiu.train.loop import Hooks, Rows
from pixiu.train.stages import begin, finish, print_report

REPORT_LINE = (
    "{records} records -> {samples} samples, {tokens} tokens; truncated {truncated}, skipped as too long "
    "{skipped}, no target left {no_targets}"
)


def sft_loss(model, batch) -> torch.Tensor:
    return model(batch, nll=True)[0]  # losses.sft of the targets' log-probs, the head chunked or fused


@dataclasses.dataclass(frozen=True)
class Form:
    """How one kind of model trains by SFT: records to samples, samples to loop rows, the forward wrapper."""

    prepare: (
        Callable  # (stage, train records, eval records, loaded, cfg) -> train samples, eval samples, report
    )
    rows: type  # loop.Rows or data.collate.PairRows: the loop's batches
    collate: Callable  # samples, pad id -> a batch (the held-out loss batches with it)
    wrap: type  # TargetLM or seq2seq.Seq2SeqLM: batch -> per-target log-probs or the summed NLL


def run(cfg: RunConfig, stage: str = "sft") -> Path:
    """Train and save `output_dir/final`; returns that path."""
    job = begin(cfg, stage)
    accelerator = job.accelerator
    data = load_data(
        cfg.data, want=Text if stage == "pt" else Conversation
    )  # bad data fails before the model loads
    loaded = io.load(cfg.model, cfg.lora, for_training=True)
    form = FORMS[seq2seq.is_encoder_decoder(loaded.model)]
    train_rows, eval_rows, report = form.prepare(stage, data.train, data.eval, loaded, cfg)
    if cfg.train.gradient_checkpointing:
        io.enable_gradient_checkpointing(loaded.model)
    if cfg.train.compile:
        compile_layers(loaded.model)
    report["skipped_rows"] = data.skipped
    print_report(job, report, data.counts, REPORT_LINE)
    pad = loaded.tokenizer.pad_token_id
    batching = (cfg.train.batch_size, cfg.data.seed, cfg.data.group_by_length, cfg.train.tokens_per_batch)
    rows = form.rows(train_rows, pad, *batching)
    model = accelerator.prepare(form.wrap(loaded.model))
    dtype = loaded.dtype
    size = cfg.train.batch_size
    evaluate = (
        (lambda: eval_loss(model, eval_rows, pad, size, accelerator, dtype, form.collate))
        if eval_rows
        else None
    )
    hooks = loop.supervised(model, rows, sft_loss, cfg.train, accelerator, dtype, evaluate)
    if stage == "pt" and cfg.pt.new_rows_first_steps:
        hooks = new_rows_first(hooks, loaded, cfg)
    history = loop.fit(model, hooks, cfg.train, accelerator, job.out)
    return finish(job, loaded, history, data=report)


def new_rows_first(hooks: Hooks, loaded: io.Loaded, cfg: RunConfig) -> Hooks:
    """Steps below pt.new_rows_first_steps train only the rows an extension added (ids from the checkpoint's
    "vocab" record on) of the input embedding and of an untied head: other weights get no gradient (AdamW leaves
    them as they are) and a hook zeroes the old rows' gradient (zero moments: Adam moves them by 0, weight decay
    aside). Later steps train everything. Fresh rows at the mean first learn against the frozen model, so the
    first full updates do not tear the trained weights to fit random-looking inputs."""
    first = io.read_meta(loaded.base_path).get("vocab", {}).get("first_new_id")
    if first is None or cfg.lora.r > 0:
        raise ConfigError(
            "pt.new_rows_first_steps needs full fine-tuning (lora.r=0) of a checkpoint from `pixiu data "
            f"extend-vocab` (pixiu.json with a 'vocab' record; {loaded.base_path} has "
            f"{'one' if first is not None else 'none'}); under LoRA use lora.modules_to_save=embed_tokens,lm_head"
        )
    model, phase = loaded.model, {"new_rows_only": True}
    tables = {
        id(m.weight): m.weight
        for m in (model.get_input_embeddings(), model.get_output_embeddings())
        if m is not None
    }
    others = [p for p in model.parameters() if id(p) not in tables]

    def mask(grad: torch.Tensor) -> torch.Tensor:  # (V, d): rows below `first` are the base's
        return torch.cat([torch.zeros_like(grad[:first]), grad[first:]]) if phase["new_rows_only"] else grad

    for w in tables.values():
        w.register_hook(mask)

    def step(i: int, opt) -> dict:
        phase["new_rows_only"] = i < cfg.pt.new_rows_first_steps
        for p in others:
            p.requires_grad_(not phase["new_rows_only"])
        return {**hooks.step(i, opt), "new_rows_only": int(phase["new_rows_only"])}

    return dataclasses.replace(hooks, step=step)


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


def prepare_pairs(stage: str, train_records: list, eval_records: list, loaded: io.Loaded, cfg: RunConfig):
    """An encoder-decoder's records -> (prompt -> reply) pairs, one per reply (data.train_on='last': per
    conversation), cut to max_len, and the report of what was cut. Pairs are never packed."""
    for field, on in (("data.packing", cfg.data.packing), ("train.compile", cfg.train.compile)):
        if on:
            raise ConfigError(f"{field} is for causal LMs; set it false for an encoder-decoder (T5)")
    report, out = {}, []
    for name, records in (("train", train_records), ("eval", eval_records)):
        pairs = [p for r in records for p in seq2seq.pairs(loaded.template, r, cfg.data.train_on)]
        kept, overflow = fit_pairs(pairs, cfg.data.max_len, cfg.data.overflow)
        tokens = sum(len(p.source_ids) + len(p.target_ids) for p in kept)
        report[name] = {"records": len(records), "samples": len(kept), **vars(overflow), "tokens": tokens}
        out.append(kept)
    if not out[0]:
        raise ValueError(f"no training samples left after filtering: {report['train']}")
    return out[0], out[1], report


FORMS = {  # is the model an encoder-decoder?
    False: Form(prepare, Rows, collate, TargetLM),
    True: Form(prepare_pairs, PairRows, collate_pairs, seq2seq.Seq2SeqLM),
}


@torch.no_grad()
def eval_loss(
    model, rows: list, pad_id: int, batch_size: int, accelerator, dtype, collate_fn: Callable = collate
) -> dict:
    """Mean target-token loss and perplexity over the eval rows (sharded across processes); `collate_fn` pads
    them (`collate_pairs` for an encoder-decoder's pairs)."""
    model.eval()
    mine = rows[accelerator.process_index :: accelerator.num_processes]
    total, count = torch.zeros(()), torch.zeros(())
    for i in range(0, len(mine), batch_size):
        batch = collate_fn(mine[i : i + batch_size], pad_id).to(accelerator.device)
        with autocast(dtype, accelerator.device):
            logps, targets = model(batch, logps=True)
        total += losses.sft(logps).float().cpu()
        count += len(targets)
    model.train()
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    loss = (total / count.clamp(min=1)).item()
    return {"eval_loss": round(loss, 5), "eval_ppl": round(math.exp(min(loss, 50)), 3)}
