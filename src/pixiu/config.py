"""Typed configuration: one dataclass per concern, YAML recipes, `--section.field=value` overrides.

A recipe is a YAML mapping whose top-level keys are the sections of `RunConfig` (model, lora, data, train).
Every field carries a docstring (the string literal under it); `describe()` reads them back for `--help`.
The resolved config is written into every run directory as `config.yaml`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A recipe or override that does not fit the config schema."""


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {list(choices)}")


@dataclass
class ModelConfig:
    name_or_path: str = "smollm2-135m"
    """A Hugging Face model directory or hub name, a .gguf file, or 'smollm2-135m' (the embedded default)."""
    dtype: str = "auto"
    """Compute dtype: 'bf16', 'fp32', or 'auto' (bf16 on GPUs and CPUs with native bf16 math, else fp32)."""
    template: str = "default"
    """Chat template: 'default' uses the tokenizer's own Jinja template; otherwise a name from `pixiu templates`."""
    trust_remote_code: bool = False
    """Run model code shipped with a hub checkpoint. Off unless you trust its author."""
    attn_implementation: str = "sdpa"
    """Attention backend passed to transformers: 'sdpa', 'eager' or 'flash_attention_2'."""

    def __post_init__(self):
        _choice("model.dtype", self.dtype, ("auto", "bf16", "fp32"))


@dataclass
class LoraConfig:
    r: int = 0
    """LoRA rank; 0 trains all weights (full fine-tuning)."""
    alpha: int = 32
    """LoRA scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str = "all-linear"
    """Modules that get adapters: 'all-linear' or a comma-separated list such as 'q_proj,v_proj'."""
    qlora: bool = False
    """Load the frozen base in 4-bit (bitsandbytes, CUDA only) under the adapters."""

    def __post_init__(self):
        if self.r < 0:
            raise ConfigError(f"lora.r must be >= 0, got {self.r}")
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

    def __post_init__(self):
        _choice("train.schedule", self.schedule, ("cosine", "linear", "constant"))
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------- building from dicts


def _build(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"unknown field(s) {sorted(unknown)} in {where or 'config'}; valid: {sorted(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}".strip(".")) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML reads 5e-5 (no dot) as text
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def parse_overrides(args: list[str]) -> dict:
    """['--train.lr=1e-4', '--data.packing'] -> {'train': {'lr': 1e-4}, 'data': {'packing': True}}."""
    out: dict = {}
    for arg in args:
        if not arg.startswith("--") or "." not in arg.split("=")[0]:
            raise ConfigError(f"override {arg!r} must look like --section.field=value")
        key, _, raw = arg[2:].partition("=")
        value = yaml.safe_load(raw) if raw else True
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    """Deep-merge `extra` into a copy of `base`."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: str | Path | None = None, overrides: list[str] = (), cls: type = RunConfig):
    """Recipe YAML (optional) + overrides -> validated config object."""
    values = {}
    if path:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return _build(cls, merge(values, parse_overrides(list(overrides))), "")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save(cfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")


def describe(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, docstring) for every field, read from the field docstrings in the source."""
    docs = _field_docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((prefix + f.name, repr(default), docs.get(f.name, "")))
    return rows


def _field_docs(cls: type) -> dict[str, str]:
    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = nxt.value.value
    return docs
