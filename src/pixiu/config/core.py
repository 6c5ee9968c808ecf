"""The model, adapter, data, training and generation sections, and ConfigError."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A recipe or override that does not fit the config schema."""


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {list(choices)}")


def _deprecated(old: str, new: str) -> None:
    print(f"note: {old} is deprecated, use {new}", file=sys.stderr)


# section class -> {old field name: new field name}; the old name is still read, with a deprecation note
RENAMED: dict[str, dict[str, str]] = {"GRPOConfig": {"beta": "kl_coef"}}


@dataclass
class ModelConfig:
    name_or_path: str = "smollm2-135m"
    """A Hugging Face model directory or hub name, a .gguf file, or 'smollm2-135m' (the embedded default)."""
    dtype: str = "auto"
    """Compute dtype: 'bf16', 'fp32', or 'auto' (bf16 on GPUs with bf16; on a CPU, whichever measures faster)."""
    template: str = "default"
    """Chat template: 'default' uses the tokenizer's own Jinja template; otherwise a name from `pixiu templates`."""
    trust_remote_code: bool = False
    """Run model code shipped with a hub checkpoint. Off unless you trust its author."""
    attn_implementation: str = "sdpa"
    """Attention backend passed to transformers: 'sdpa', 'eager' or 'flash_attention_2'."""
    device: str = "auto"
    """Where the model runs for generation and scoring (serve, chat, generate, eval, score, moderation): 'auto'
    (the first CUDA GPU, else the CPU), 'cuda', 'cuda:N', 'mps' or 'cpu'. Training ignores it: accelerate places
    the trained model (its launch config picks the GPUs)."""

    def __post_init__(self):
        from pixiu.device import DeviceError, check

        _choice("model.dtype", self.dtype, ("auto", "bf16", "fp32"))
        try:
            check(self.device)
        except DeviceError as e:
            raise ConfigError(f"model.device: {e}") from None


# lora.method names; model/adapters.py maps each to the peft config it builds (a test keeps the two in step)
PEFT_METHODS = ("lora", "rslora", "dora", "pissa", "olora", "adalora", "ia3", "prefix", "ptuning_v2")


@dataclass
class LoraConfig:
    r: int = 0
    """LoRA rank; 0 trains all weights (full fine-tuning). r > 0 switches adapters on for every `method`; ia3,
    prefix and ptuning_v2 have no rank and use r only as that switch."""
    method: str = "lora"
    """PEFT method (peft, see model/adapters.py and the README's "PEFT methods" table): lora, rslora (scale
    alpha / sqrt(r)), dora, pissa / olora (LoRA initialised from the weights' SVD / QR), adalora, ia3, prefix
    (prefix tuning, MLP-reparametrised) or ptuning_v2 (per-layer prefixes trained directly)."""
    alpha: int = 32
    """LoRA scaling numerator: the update is scaled by alpha / r (alpha / sqrt(r) for rslora)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str = "all-linear"
    """Modules that get adapters: 'all-linear' or a comma-separated list such as 'q_proj,v_proj'."""
    qlora: bool = False
    """Load the frozen base in 4-bit (bitsandbytes, CUDA only) under the adapters."""
    modules_to_save: str = ""
    """Modules trained in full beside the adapters and saved with them, comma-separated: 'embed_tokens,lm_head'
    trains the rows of tokens added by `pixiu data extend-vocab` under LoRA."""
    loraplus_lr_ratio: float = 1.0
    """LoRA+ (https://arxiv.org/abs/2402.12354): the B matrices learn at train.lr times this (the paper: 16);
    1 = one learning rate for all. LoRA-family methods (lora, rslora, dora, pissa, olora) only."""
    adalora_target_r: int = 0
    """adalora: the average rank its budget prunes the initial rank r down to (0 = r // 2)."""
    virtual_tokens: int = 16
    """prefix, ptuning_v2: trained key/value positions placed in front of every layer's attention."""

    def __post_init__(self):
        if self.r < 0:
            raise ConfigError(f"lora.r must be >= 0, got {self.r}")
        _choice("lora.method", self.method, PEFT_METHODS)
        if self.method != "lora" and self.r == 0:
            raise ConfigError(
                f"lora.method={self.method} trains adapters: set lora.r > 0 (r = 0 means full fine-tuning)"
            )
        if self.loraplus_lr_ratio <= 0 or self.virtual_tokens < 1 or self.adalora_target_r < 0:
            raise ConfigError(
                "lora.loraplus_lr_ratio must be > 0, lora.virtual_tokens >= 1, adalora_target_r >= 0"
            )
        if self.loraplus_lr_ratio != 1 and self.method in ("adalora", "ia3", "prefix", "ptuning_v2"):
            raise ConfigError(
                f"lora.loraplus_lr_ratio needs a LoRA-family method (B matrices), not {self.method}"
            )
        if self.qlora and self.r == 0:
            raise ConfigError("lora.qlora needs lora.r > 0: QLoRA trains adapters over a 4-bit base")


@dataclass
class DatasetSpec:
    path: str
    """A local .json/.jsonl/.csv/.parquet file, or a hub dataset name (online users)."""
    format: str = "auto"
    """Row format: auto, alpaca, sharegpt, messages, pairs, rankings, oasst, prompts or text."""
    weight: float = 1.0
    """Mixing weight: the share of this dataset in the training mix is proportional to weight * size."""
    columns: dict[str, str] = field(default_factory=dict)
    """Rename columns before parsing, e.g. {question: instruction, answer: output}."""
    split: str = "train"
    """Split name for hub datasets."""

    def __post_init__(self):
        if self.weight <= 0:
            raise ConfigError(f"data weight must be > 0, got {self.weight} for {self.path}")


@dataclass
class DataConfig:
    path: str = ""
    """Shortcut for one dataset; several are given as `datasets`. Comma-separated paths are allowed."""
    datasets: list[DatasetSpec] = field(default_factory=list)
    """Datasets to mix, each with its own format, weight and column mapping."""
    eval_path: str = ""
    """An explicit held-out file. When empty, `eval_size` rows are split off the training data."""
    eval_size: float = 0.05
    """Held-out share (< 1) or count (>= 1) split off deterministically when no eval_path is given."""
    max_samples: int = 0
    """Use at most this many training records after mixing (0 = all)."""
    max_len: int = 1024
    """Longest sample in tokens."""
    overflow: str = "truncate"
    """What to do with samples longer than max_len: 'truncate' or 'skip'. Either way they are counted."""
    skip_bad_rows: bool = False
    """Skip (and count and report) malformed rows instead of stopping at the first one."""
    train_on: str = "all"
    """Assistant turns that carry loss: 'all' or 'last'."""
    packing: bool = False
    """Pack several samples into one row with per-sample attention (no cross-contamination)."""
    group_by_length: bool = True
    """Without packing, batch samples of similar length together to cut padding."""
    shared_prefix: bool = True
    """Reward model, DPO family and RRHF: run the prompt that a group's replies share once, in one row whose
    attention mask keeps the replies apart (the same numbers as one row per reply, up to rounding; about 1/3
    fewer tokens on HH pairs). False: one padded row per reply. KTO, and flash-attention (which takes no 4D
    mask), always use one row per reply."""
    seed: int = 0
    """Seed for the split, the mix and the batch order."""

    def __post_init__(self):
        _choice("data.overflow", self.overflow, ("truncate", "skip"))
        _choice("data.train_on", self.train_on, ("all", "last"))
        if self.max_len < 8:
            raise ConfigError(f"data.max_len must be >= 8, got {self.max_len}")

    def specs(self) -> list[DatasetSpec]:
        """All training datasets: `path` (comma-separated) plus `datasets`."""
        extra = [DatasetSpec(p.strip()) for p in self.path.split(",") if p.strip()]
        return extra + list(self.datasets)


@dataclass
class TrainConfig:
    output_dir: str = "runs/sft"
    """Run directory: checkpoints, metrics.jsonl, config.yaml and the final model."""
    lr: float = 2e-4
    """Peak learning rate."""
    epochs: float = 1.0
    """Passes over the training data (fractions allowed); ignored when max_steps > 0."""
    max_steps: int = 0
    """Optimizer steps to run; 0 derives them from epochs."""
    batch_size: int = 8
    """Samples per micro-batch on each process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    schedule: str = "cosine"
    """Learning-rate schedule after warmup: 'cosine', 'linear' or 'constant'."""
    warmup_ratio: float = 0.03
    """Share of steps spent warming the learning rate up from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this value (0 = no clipping)."""
    eval_every: int = 0
    """Evaluate every N steps (0 = only at the start and the end)."""
    save_every: int = 0
    """Write a resumable checkpoint every N steps (0 = only the final model)."""
    keep_last: int = 2
    """Checkpoints to keep."""
    log_every: int = 1
    """Write a metrics line every N steps."""
    seed: int = 0
    """Seed for weights of new layers, dropout and sampling."""
    resume: bool = False
    """Continue from the last checkpoint in output_dir: same step, data order, RNG and optimizer state."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% slower."""
    merge_lora: bool = False
    """Also save a merged model (adapter folded into the base) under output_dir/merged."""
    tokens_per_batch: int = 0
    """SFT/PT: a micro-batch holds rows up to this many padded tokens per process (rows x longest row) instead
    of batch_size rows, so short rows come many at a time and a GPU stays full (0 = off: batch_size rows)."""
    compile: bool = False
    """SFT/PT: torch.compile each decoder layer for training (the first steps compile; faster after on a GPU)."""

    def __post_init__(self):
        _choice("train.schedule", self.schedule, ("cosine", "linear", "constant"))
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.tokens_per_batch < 0:
            raise ConfigError(f"train.tokens_per_batch must be >= 0, got {self.tokens_per_batch}")


@dataclass
class GenConfig:
    max_new_tokens: int = 64
    """Longest reply sampled in rollouts (PPO, GRPO) and evaluation."""
    temperature: float = 1.0
    """Sampling temperature for rollouts (0 = greedy)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest token set whose probability reaches top_p."""
    top_k: int = 0
    """Keep only the k most likely tokens (0 = off)."""
