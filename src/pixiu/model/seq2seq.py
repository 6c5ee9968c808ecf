"""Encoder-decoder models (T5, mT5/mT0, Flan-T5, BART, ChatYuan): what differs from a causal LM, in one place.

A T5 reads the prompt with its encoder and writes the reply with its decoder. So a training sample is a pair
(source ids -> target ids) instead of one sequence with a loss mask (pixiu/batch.py `Pair`), the forward takes
the source and the shifted reply (`Seq2SeqLM`), and replies come from transformers' `generate` behind the engine
interface (engine/seq2seq.py) instead of the causal slot-KV engine. Prompts are plain text by default, as T5-style
models were trained ("question" in, "answer" out, the tokenizer's EOS closing each side); a chat template applies
when the tokenizer ships one or the user names one (--model.template). Stages that score or extend one token
sequence (rm, the DPO family, ppo, grpo, distill, pt) need a causal LM: train/stages.py refuses them (`refuse`)
before anything loads.
"""

from __future__ import annotations

import torch
from torch import nn

from pixiu import losses
from pixiu.batch import Pair, Seq2SeqBatch
from pixiu.chat.messages import TARGET_ROLES, Conversation
from pixiu.chat.templates import SlotFormat, Template, get_template
from pixiu.config import ConfigError
from pixiu.model.forward import base_lm, token_logps

# Plain text, one line per turn; the generation prompt is empty, so a one-question conversation is the question.
PLAIN = SlotFormat(
    name="plain", system="{content}\n", user="{content}\n", assistant="{content}\n", tool="{content}\n"
)


def is_encoder_decoder(model) -> bool:
    """Whether a (possibly peft- or DDP-wrapped) transformers model is an encoder-decoder."""
    model = getattr(model, "module", model)
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def refuse(stage: str, config: dict) -> None:
    """A ConfigError naming the stage and the model type when `config` (a config.json) is an encoder-decoder's:
    the stage needs a causal LM."""
    if not config.get("is_encoder_decoder"):
        return
    kind = config.get("model_type", "encoder-decoder")
    raise ConfigError(
        f"`pixiu train {stage}` needs a causal (decoder-only) LM, and this model is an encoder-decoder "
        f"({kind}): pixiu trains encoder-decoder models with `sft` only, and generates and evaluates them; "
        f"{stage} scores or extends one token sequence (reward, reference and rollout log-probs), which an "
        "encoder-decoder splits between encoder and decoder"
    )


def template(name: str, tokenizer, jinja: str = "") -> Template:
    """An encoder-decoder's prompt format: 'default' is the tokenizer's own chat template when it ships one
    (or the saved `jinja`), else plain text; 'plain' or any registered template when named."""
    if name == "plain" or (name == "default" and not (jinja or getattr(tokenizer, "chat_template", None))):
        return Template(PLAIN, tokenizer)
    return get_template(name, tokenizer, jinja=jinja)


def source_ids(template: Template, conv: Conversation) -> list[int]:
    """The encoder's input for a reply to `conv`: its text with the template's generation prompt (plain: the
    turns one per line), tokenized with the tokenizer's special tokens (T5's closing EOS)."""
    text = template.text(conv, add_generation_prompt=True)[0]
    if template.name == PLAIN.name:
        text = text.rstrip("\n")
    ids = list(template.tokenizer(text)["input_ids"])
    if not ids:
        raise ValueError("the prompt is empty")
    return ids


def target_ids(tokenizer, text: str) -> list[int]:
    """The decoder's targets: the reply and EOS (added here when the tokenizer does not add it itself)."""
    ids = list(tokenizer(text)["input_ids"])
    eos = tokenizer.eos_token_id
    return ids if ids and ids[-1] == eos else [*ids, eos]


def pairs(template: Template, conv: Conversation, train_on: str = "all") -> list[Pair]:
    """A (source ids -> target ids) pair for each reply of `conv` ('last': its last reply only): the conversation before
    the reply is the source."""
    turns = [i for i, m in enumerate(conv.messages) if m.role in TARGET_ROLES]
    if train_on == "last":
        turns = turns[-1:]
    return [
        Pair(
            source_ids(template, Conversation(conv.messages[:i], conv.tools)),
            target_ids(template.tokenizer, conv.messages[i].content),
        )
        for i in turns
    ]


class Seq2SeqLM(nn.Module):
    """TargetLM's contract (model/forward.py) for an encoder-decoder: a `Seq2SeqBatch` in, per-target values out,
    so the SFT step and its eval loss run unchanged."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(
        self, batch: Seq2SeqBatch, logps: bool = False, nll: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> logits (N, V) at the N target tokens and the targets (N,); with `logps` the (N,) log p(target);
        with `nll` their summed negative (the SFT loss). The decoder reads the labels shifted right behind the
        model's decoder start token (teacher forcing); padding sits after each reply, so no target sees it."""
        lm = base_lm(self.lm)  # LoRA layers stay injected in it
        decoder_ids = lm.prepare_decoder_input_ids_from_labels(labels=batch.labels)  # (B, T)
        logits = lm(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            decoder_input_ids=decoder_ids,
            use_cache=False,
        ).logits  # (B, T, V)
        mask = batch.labels >= 0
        targets, logits = batch.labels[mask], logits[mask]
        if nll:
            return losses.sft(token_logps(logits, targets)), targets
        return (token_logps(logits, targets) if logps else logits), targets
