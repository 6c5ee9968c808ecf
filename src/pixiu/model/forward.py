"""A causal LM forward that runs the LM head only where a target token is predicted.

SFT trains on assistant tokens only, and the head (vocab x hidden) is a large share of a small model's FLOPs
and of its activation memory (B x T x V logits). Gathering the hidden states of target positions first skips
both for prompt and padding tokens. It is an nn.Module so DDP wraps it and syncs gradients as usual.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

from pixiu import compat, losses
from pixiu.batch import TokenBatch


@contextlib.contextmanager
def autocast(dtype: torch.dtype, device: torch.device, model: nn.Module | None = None):
    """Compute in `dtype` (torch autocast; nothing for fp32). Given the model being trained, its LoRA layers also
    stop casting their input up to the fp32 adapter weights (peft's default, which autocast makes needless):
    each LoRA'd linear would keep fp32 tensors of its input for the backward (measured on one bf16 SmolLM2
    batch of 8 x 256 tokens: 3.08 GiB saved with the cast, 2.50 without). Same switch as
    `peft.helpers.disable_input_dtype_casting`."""
    if dtype == torch.float32:
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    keep = disable_input_dtype_casting(model) if model is not None else contextlib.nullcontext()
    with torch.autocast(device.type, dtype=dtype), keep:
        yield


def base_lm(model: nn.Module) -> nn.Module:
    """The transformers CausalLM under a peft wrapper (LoRA layers stay injected in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def hidden_states(lm: nn.Module, batch: TokenBatch) -> torch.Tensor:
    """-> (B, T, H) the decoder's last hidden states (no LM head)."""
    base, mask, positions = base_lm(lm), batch.attention_mask, batch.position_ids
    past = prefix_kv(lm, *batch.input_ids.shape)
    if past is not None:  # prefix tuning: every row attends to the P virtual positions first, as peft does
        n = past.get_seq_length()
        mask, positions = with_prefix(mask, positions, n), positions + n
    if mask is not None and mask.dim() == 4:  # shared-prompt rows: transformers passes 4D masks through as is
        impl = base.config._attn_implementation
        if impl not in ("sdpa", "eager"):
            raise ValueError(f"shared-prompt rows need sdpa or eager attention, not {impl}")
        if impl == "eager":  # eager adds the mask to the scores; sdpa takes it as bool
            mask = torch.zeros(mask.shape, dtype=base.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(base.dtype).min
            )
    return base.get_decoder()(
        input_ids=batch.input_ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=False,  # a cache would also disable the packed-sample attention mask
        **({compat.CACHE: past} if past is not None else {}),
    ).last_hidden_state


def prefix_kv(lm: nn.Module, rows: int, length: int):
    """The key/value cache holding a prefix-tuning adapter's P virtual positions per layer for `rows` rows of
    `length` tokens, or None (no such adapter, or adapters switched off by peft's `disable_adapter`)."""
    config = getattr(lm, "active_peft_config", None)
    if config is None or not config.is_prompt_learning or lm._adapters_disabled:
        return None
    return lm.get_prompt(rows, max_cache_len=length + config.num_virtual_tokens)


def with_prefix(mask: torch.Tensor | None, positions: torch.Tensor, n: int) -> torch.Tensor:
    """A (B, T) padding mask, (B, 1, T, T) boolean mask or None (packed rows: samples restart their positions at
    0) -> the mask over n prefix positions + T: (B, n + T), or (B, 1, T, n + T) that sees the prefix everywhere.
    Packed rows get their block-causal mask spelled out, since transformers infers it only without a cache."""
    if mask is not None and mask.dim() == 2:
        return torch.cat([mask.new_ones(mask.shape[0], n), mask], dim=1)
    if mask is None:
        sample = (positions == 0).cumsum(1)  # (B, T) index of each token's sample within its row
        causal = torch.ones(positions.shape[1], positions.shape[1], dtype=torch.bool, device=positions.device)
        mask = (sample[:, :, None] == sample[:, None, :]) & causal.tril()
        mask = mask[:, None]
    return torch.cat([mask.new_ones(*mask.shape[:3], n), mask], dim=3)


def at_targets(hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """(B, T, H) -> (N, H): the states at positions predicting a target (token t+1 is a target, predicted at t)."""
    if batch.shared:
        return hidden.flatten(0, 1)[batch.shared.pred]
    return hidden[:, :-1][batch.loss_mask[:, 1:].bool()]


class TargetLM(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        if getattr(getattr(lm, "config", None), "is_encoder_decoder", False):  # its decoder alone is no LM
            raise ValueError(
                "TargetLM scores causal LMs; an encoder-decoder (T5) uses model/seq2seq.py Seq2SeqLM"
            )
        self.lm = lm

    def forward(
        self, batch: TokenBatch, logps: bool = False, nll: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> logits (N, V) at positions predicting a target, and the targets (N,); with `logps`, the (N,) log
        p(target) instead of the logits (see `target_logps`); with `nll`, their summed negative (a scalar: the
        SFT loss, see `nll`)."""
        states, targets = at_targets(hidden_states(self.lm, batch), batch), self.targets(batch)
        if nll:
            return self.nll(states, targets), targets
        return (self.target_logps(states, targets) if logps else self.head(states)), targets

    def nll(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(N, H) states, (N,) targets -> sum -log p(target) (`losses.sft`). On a CUDA GPU with Liger Kernel
        installed, its fused linear cross-entropy computes it chunk by chunk with the gradients in the same
        pass, so no (N, V) logits ever exist; otherwise `target_logps`' chunked path."""
        head = base_lm(self.lm).get_output_embeddings()
        fused = _liger_sum() if states.is_cuda and type(head) is nn.Linear else None  # a LoRA'd head: no
        if fused is None or not torch.is_grad_enabled():
            return losses.sft(self.target_logps(states, targets))
        return fused(head.weight, states, targets, head.bias)

    def target_logps(self, states: torch.Tensor, targets: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """(N, H) states, (N,) targets -> (N,) log p(target). With a backward to come, chunks of `chunk` targets
        recompute their logits in the backward (activation checkpointing), so one chunk's (chunk, V) logits,
        log-softmax and gradients live at a time instead of N's (1,720 targets of an 8 x 256 Alpaca batch: 0.32
        GiB per fp32 (N, V) tensor on SmolLM2), for one more head forward. A frozen head (LoRA) always chunks.
        A trained head (full fine-tuning) also holds a second (V, H) weight gradient while chunks add theirs up,
        so it chunks once N > 2H, when the one-pass (N, V) tensors (about 10 bytes an element) are several
        times that: 16K-token packed steps, not the 8 x 128 CPU batches where the extra head forward would
        only cost time."""
        weight = base_lm(self.lm).get_output_embeddings().weight
        big = len(targets) > chunk and (not weight.requires_grad or len(targets) > 2 * weight.shape[1])
        if not (big and torch.is_grad_enabled()):
            return token_logps(self.head(states), targets)
        from torch.utils.checkpoint import checkpoint

        def part(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return token_logps(self.head(s), t)

        pieces = zip(states.split(chunk), targets.split(chunk))
        return torch.cat([checkpoint(part, s, t, use_reentrant=False) for s, t in pieces])

    def head(self, states: torch.Tensor) -> torch.Tensor:
        return base_lm(self.lm).get_output_embeddings()(states)

    @staticmethod
    def targets(batch: TokenBatch) -> torch.Tensor:
        if batch.shared:
            return batch.shared.targets
        return batch.input_ids[:, 1:][batch.loss_mask[:, 1:].bool()]


@functools.cache
def _liger_sum():
    """Liger Kernel's fused linear cross-entropy summed over targets, or None when it is not installed or fails a
    first check on the GPU against the plain sum (early releases ignored `reduction` and returned a mean)."""
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")

    def fused(weight, states, targets, bias):
        return loss(weight, states, targets, bias)

    w, x, t = (
        torch.randn(64, 16, device="cuda"),
        torch.randn(8, 16, device="cuda"),
        torch.arange(8, device="cuda"),
    )
    try:
        ok = torch.allclose(fused(w, x, t, None), F.cross_entropy(x @ w.T, t, reduction="sum"), rtol=1e-3)
    except Exception:  # noqa: BLE001 - an API change: pixiu's own chunked head still works
        ok = False
    print(
        f"SFT head: Liger Kernel's fused linear cross-entropy {'on' if ok else 'failed its check: chunked'}"
    )
    return fused if ok else None


def compile_layers(model: nn.Module, backend: str = "inductor") -> None:
    """torch.compile each decoder layer in place (regional compilation, as torchtune does): one layer's code
    compiles once for all layers, in seconds, while the embedding, the target gather and the chunked head stay
    eager (their shapes change with every batch's target count)."""
    for layer in base_lm(model).get_decoder().layers:
        layer.compile(backend=backend)


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, V) logits, (N,) targets -> (N,) log p(target), computed in fp32."""
    return -F.cross_entropy(logits.float(), targets, reduction="none")


def per_row(values: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Sum per-target values (N,) in TargetLM's order back into one number per row (B,), or per reply (R,) of
    shared-prompt rows."""
    if batch.shared:
        rows, n = batch.shared.reply, len(batch.shared.ends)
    else:  # (N,) row of each target, row-major like TargetLM
        rows, n = batch.loss_mask[:, 1:].bool().nonzero()[:, 0], len(batch.input_ids)
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(
        0, rows.to(values.device), values
    )


def sequence_logps(model: nn.Module, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (B,) summed log-prob of each row's target tokens under `model` (a TargetLM), and (B,) their counts."""
    logits, targets = model(batch)
    logps = per_row(token_logps(logits, targets), batch)
    counts = per_row(torch.ones_like(targets, dtype=logps.dtype), batch)
    return logps, counts
