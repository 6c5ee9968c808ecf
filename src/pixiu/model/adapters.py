"""PEFT methods: `lora.method` -> the peft config it builds, and what each method asks of the rest of pixiu.

`METHODS` maps a name to a `Method`: a small function building the peft config from `LoraConfig`, and the facts
the other parts read: whether the adapter folds into the weights (prefix tuning has key/values, not weight
updates), whether it rewrites the base (PiSSA/OLoRA leave the residual W - B0 A0 in the base, so "adapter off"
is no longer the start model), and which stages it cannot run in, with the reason (`check`). The methods'
runtime needs live where they act: LoRA+ learning-rate groups in the loop's optimizer (`lr_groups`), AdaLoRA's
rank allocation after each optimizer step (`schedule`), prefix key/values in `forward.hidden_states`, GRPO's
`train/prefix.PrefixLM` and the engine's prefill (engine/torch_engine.py), and the conversion of a PiSSA/OLoRA
adapter to a plain LoRA over the untouched base when it is saved (`save_as_lora`). Plain LoRA layers run a fused
forward (`fuse_lora_forward`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pixiu.config import ConfigError, LoraConfig, RunConfig

if TYPE_CHECKING:  # torch loads only where tensors are touched: the pipeline's recipe check calls `check`
    import torch

LR_SCALE = "pixiu_lr_scale"  # attribute on a parameter: its learning rate is train.lr times this (LoRA+)
INITIAL = "pixiu_initial_adapter"  # attribute on a PiSSA/OLoRA PeftModel: the adapter's initial tensors


@dataclass(frozen=True)
class Method:
    build: Callable[[LoraConfig], object]  # -> a peft config
    prompt: bool = False  # virtual key/values in front of every layer (prefix tuning): nothing to merge
    mutates_base: bool = False  # the base holds W - B0 A0 while training (PiSSA, OLoRA)
    unsupported: tuple[tuple, ...] = ()  # (stages, why[, when(cfg) -> bool]) it cannot run in


METHODS: dict[str, Method] = {}


def register(name: str, **facts):
    def add(build: Callable[[LoraConfig], object]):
        METHODS[name] = Method(build, **facts)
        return build

    return add


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown lora.method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


def _targets(lora: LoraConfig) -> str | list[str]:
    t = lora.target_modules
    return t if t == "all-linear" else [m.strip() for m in t.split(",") if m.strip()]


def _saved(lora: LoraConfig) -> list[str] | None:
    return [m.strip() for m in lora.modules_to_save.split(",") if m.strip()] or None


def _lora(lora: LoraConfig, **extra):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_targets(lora),
        modules_to_save=_saved(lora),
        ensure_weight_tying=bool(_saved(lora)),  # tied embeddings and head (SmolLM2) stay one trained matrix
        task_type="CAUSAL_LM",
        **extra,
    )


register("lora")(_lora)
# rsLoRA (https://arxiv.org/abs/2312.03732): alpha / sqrt(r) keeps the update's scale stable as r grows
register("rslora")(lambda lora: _lora(lora, use_rslora=True))
# DoRA (https://arxiv.org/abs/2402.09353): a trained magnitude per output row times the LoRA-updated direction
register("dora")(lambda lora: _lora(lora, use_dora=True))

_RESIDUAL = (  # the base holds W - B0 A0, where PPO reads its reference and a shared reward model's adapter
    (
        ("ppo",),
        "its reference is the base with the adapter off, and {method} leaves the residual W - B0 A0 there",
    ),
    (
        ("grpo", "rloo"),
        "with grpo.kl_coef > 0 its reference is the base with the adapter off, and {method} leaves the residual "
        "W - B0 A0 there; set grpo.kl_coef=0 (no reference) or use lora",
        lambda cfg: cfg.grpo.kl_coef > 0,
    ),
)
# PiSSA (https://arxiv.org/abs/2404.02948): A, B from the top-r singular vectors, by the paper's fast randomized
# SVD with 4 subspace iterations (the exact SVD took 34 s for SmolLM2-135M on one core). OLoRA
# (https://arxiv.org/abs/2406.01775): from a QR decomposition. Both subtract B0 A0 from the base, so the start
# model is exact either way.
register("pissa", mutates_base=True, unsupported=_RESIDUAL)(
    lambda lora: _lora(lora, init_lora_weights="pissa_niter_4")
)
register("olora", mutates_base=True, unsupported=_RESIDUAL)(
    lambda lora: _lora(lora, init_lora_weights="olora")
)


@register(
    "adalora",
    unsupported=(
        (
            ("ppo",),
            "peft's AdaLoRA trains one adapter per model, and ppo trains two over one base (policy, critic); "
            "set ppo.shared_critic=true (the critic a head on the policy)",
            lambda cfg: not cfg.ppo.shared_critic,
        ),
    ),
)
def _adalora(lora: LoraConfig):
    """AdaLoRA (https://arxiv.org/abs/2303.10512): SVD-form adapters starting at rank r, pruned to an average of
    adalora_target_r by importance. total_step is a placeholder until `schedule` sets the run's real one."""
    from peft import AdaLoraConfig

    return AdaLoraConfig(
        init_r=lora.r,
        target_r=lora.adalora_target_r or max(1, lora.r // 2),
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_targets(lora),
        modules_to_save=_saved(lora),
        total_step=100,
        task_type="CAUSAL_LM",
    )


@register("ia3")
def _ia3(lora: LoraConfig):
    """(IA)^3 (https://arxiv.org/abs/2205.05638): learned vectors scaling keys, values and the MLP's inner
    activations. 'all-linear' means peft's per-architecture choice (k_proj, v_proj, down_proj for Llama), the
    paper's; a given list scales the inputs of its *down_proj / fc2 entries (feed-forward) and the outputs of the
    rest."""
    from peft import IA3Config

    targets = _targets(lora)
    custom = isinstance(targets, list)
    return IA3Config(
        target_modules=targets if custom else None,
        feedforward_modules=[t for t in targets if t.endswith(("down_proj", "fc2"))] if custom else None,
        modules_to_save=_saved(lora),
        task_type="CAUSAL_LM",
    )


def _prefix(lora: LoraConfig, projection: bool):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(
        num_virtual_tokens=lora.virtual_tokens, prefix_projection=projection, task_type="CAUSAL_LM"
    )


# Prefix tuning (https://arxiv.org/abs/2101.00190) trains the prefixes through an MLP (stabler); P-tuning v2
# (https://arxiv.org/abs/2110.07602, ChatGLM's) trains each layer's prefix key/values directly.
register("prefix", prompt=True)(lambda lora: _prefix(lora, projection=True))
register("ptuning_v2", prompt=True)(lambda lora: _prefix(lora, projection=False))


def build(model, lora: LoraConfig):
    """Wrap `model` with new adapters of `lora.method` -> the peft model. PiSSA/OLoRA keep their initial adapter
    tensors for `save_as_lora`; LoRA+ marks the B matrices' learning-rate scale."""
    from peft import get_peft_model, get_peft_model_state_dict

    method = get_method(lora.method)
    config = method.build(lora)
    if getattr(model.config, "is_encoder_decoder", False):  # T5: model/seq2seq.py
        if method.prompt:
            raise ConfigError(
                f"lora.method={lora.method} is not supported on encoder-decoder models "
                f"({model.config.model_type}): use lora, dora, rslora, pissa, olora, adalora or ia3"
            )
        config.task_type = "SEQ_2_SEQ_LM"  # peft's seq2seq wrapper: forward and generate take encoder inputs
    fuse_lora_forward()
    peft_model = get_peft_model(model, config)
    if method.mutates_base:
        initial = get_peft_model_state_dict(peft_model)
        setattr(peft_model, INITIAL, {k: v.detach().clone() for k, v in initial.items() if ".lora_" in k})
    mark_loraplus(peft_model, lora.loraplus_lr_ratio)
    return peft_model


# ---------------------------------------------------------------- LoRA's forward, two passes shorter

_PEFT_FORWARD = None  # peft's own LoRA Linear forward, for every case `_lora_forward` does not take


def fuse_lora_forward() -> None:
    """Make peft's LoRA Linear run `_lora_forward` (once per process; every LoRA model shares the class)."""
    global _PEFT_FORWARD
    from peft.tuners.lora.layer import Linear

    if _PEFT_FORWARD is None:
        _PEFT_FORWARD, Linear.forward = Linear.forward, _lora_forward


def _lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """peft's LoRA Linear forward for one plain adapter without dropout over an nn.Linear: the scaling applied to
    the (tokens, r) side and the adapter's output added inside the matmul (addmm), where peft multiplies and adds
    whole (tokens, out_features) tensors. The same up to rounding (exactly, for a power-of-two scaling); a PPO
    update of SmolLM2-135M with LoRA on all 7 projections spent 1.1 s of 8.1 s in those passes. Anything else
    (dropout, DoRA, several or no adapters, merged, quantized base, extra arguments) runs peft's forward."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    active = [a for a in self.active_adapters if a in self.lora_A]
    if (
        args or kwargs or self.disable_adapters or self.merged or len(active) != 1 or self.fan_in_fan_out
        or active[0] in getattr(self, "lora_variant", {}) or type(self.base_layer) is not nn.Linear
        or not isinstance(self.lora_dropout[active[0]], nn.Identity)
    ):  # fmt: skip
        return _PEFT_FORWARD(self, x, *args, **kwargs)
    a = active[0]
    result = self.base_layer(x)
    lora_a, lora_b = self.lora_A[a].weight, self.lora_B[a].weight
    low = F.linear(x.to(lora_a.dtype), lora_a) * self.scaling[a]  # (..., r)
    # a bf16 output beside fp32 adapters (under autocast, or over a bf16 base): added as peft adds it
    if result.dtype != lora_b.dtype:
        return (result + F.linear(low, lora_b)).to(result.dtype)
    flat = torch.addmm(result.reshape(-1, result.shape[-1]), low.reshape(-1, low.shape[-1]), lora_b.t())
    return flat.view(result.shape)


# ---------------------------------------------------------------- what the training stages ask


def check(cfg: RunConfig, stage: str) -> None:
    """A ConfigError naming the method and the stage when `cfg.lora.method` cannot train in `stage`."""
    if cfg.lora.r == 0:
        return
    name, method = cfg.lora.method, get_method(cfg.lora.method)
    for stages, why, *when in method.unsupported:
        if stage in stages and all(w(cfg) for w in when):
            raise ConfigError(
                f"lora.method={name} does not work in `{stage}`: {why.format(method=name, stage=stage)}"
            )
    if method.prompt and cfg.train.merge_lora:
        raise ConfigError(
            f"lora.method={name} cannot merge (train.merge_lora): prefix key/values are no weights"
        )
    if method.prompt and cfg.model.attn_implementation not in ("sdpa", "eager"):
        raise ConfigError(
            f"lora.method={name} needs attention masks over the prefix: model.attn_implementation=sdpa"
        )


def off_is_base(lora: LoraConfig) -> bool:
    """Whether a new adapter switched off gives the start model (not for PiSSA/OLoRA: the base is the residual)."""
    return not get_method(lora.method).mutates_base


def mark_loraplus(model, ratio: float) -> None:
    """LoRA+ (https://arxiv.org/abs/2402.12354): one learning rate for A and B is inefficient at large width, so
    the B matrices learn `ratio` times faster. Marked on the parameters, so every stage's optimizer (`lr_groups`)
    sees it without the stage passing it along."""
    if ratio == 1:
        return
    for name, p in model.named_parameters():
        if p.requires_grad and ".lora_B." in name:
            setattr(p, LR_SCALE, ratio)


def lr_groups(params: list[torch.nn.Parameter]) -> list[dict]:
    """Parameters -> AdamW param groups by their LR_SCALE (1 first), each with its `lr_scale`."""
    groups: dict[float, list] = {1.0: []}
    for p in params:
        groups.setdefault(float(getattr(p, LR_SCALE, 1.0)), []).append(p)
    return [{"params": ps, "lr_scale": s} for s, ps in groups.items() if ps]


def schedule(model: torch.nn.Module, total: int) -> Callable[[int], None] | None:
    """AdaLoRA's rank allocation, to run after every optimizer step (before the gradients are cleared) with the
    loop's step, over a run of `total` steps: importance warms up for the first 10%, ranks are final for the last
    20% (tinit, tfinal as in the paper's schedules). Stages with several updates per step (GRPO epochs) update
    the importance averages at each and the budget per step. None for every other method. The averages are not
    in checkpoints: a resumed run restarts them (its budget still follows the step)."""
    from peft.tuners.adalora import AdaLoraModel

    ada = next((m for m in model.modules() if isinstance(m, AdaLoraModel)), None)
    if ada is None:
        return None
    config = ada.peft_config[ada.trainable_adapter_name]
    config.total_step, config.tinit, config.tfinal = total, total // 10, total // 5
    final, finalised = total - config.tfinal, False

    def allocate(step: int) -> None:
        # the final allocation clears the importance averages: a later update of that step (a PPO minibatch, a
        # GRPO epoch) keeps the final ranks instead of allocating again from nothing (peft raised KeyError)
        nonlocal finalised
        if step == final:
            step, finalised = (step + 1 if finalised else step), True
        ada.update_and_allocate(step)

    return allocate


# ---------------------------------------------------------------- saving


def save_as_lora(model, out: Path) -> None:
    """Rewrite a PiSSA/OLoRA adapter just saved in `out` as a plain LoRA of rank 2r over the original base:
    W + dW = W_res + B A with W = W_res + B0 A0 gives dW = B A - B0 A0 = [B | -B0] [A ; A0] (peft's
    `subtract_mutated_init`, done from the tensors kept in memory). Nothing for other methods."""
    initial = getattr(model, INITIAL, None)
    if initial is None:
        return
    import torch
    from safetensors.torch import load_file, save_file

    file, config_file = out / "adapter_model.safetensors", out / "adapter_config.json"
    tensors = load_file(file)
    for k, v in tensors.items():
        if ".lora_A." in k:
            tensors[k] = torch.cat([v, initial[k].to(v)], dim=0)
        elif ".lora_B." in k:
            tensors[k] = torch.cat([v, -initial[k].to(v)], dim=1)
    save_file(tensors, file, metadata={"format": "pt"})
    config = json.loads(config_file.read_text())
    scale = math.sqrt(2) if config.get("use_rslora") else 2  # keeps alpha / r (alpha / sqrt(r)) as it was
    config.update(r=2 * config["r"], lora_alpha=scale * config["lora_alpha"], init_lora_weights=True)
    config_file.write_text(json.dumps(config, indent=2))


def trainable_count(model) -> int:
    """Parameters that train (the README's PEFT table counts them on SmolLM2-135M)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
