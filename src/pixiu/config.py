"""Typed configuration: one dataclass per concern, YAML recipes, `--section.field=value` overrides.

A recipe is a YAML mapping whose top-level keys are the sections of `RunConfig` (model, lora, data, train,
gen, rm, pref, ppo, grpo); a stage reads the sections it needs.
Every field carries a docstring (the string literal under it); `describe()` reads them back for `--help`.
The resolved config is written into every run directory as `config.yaml`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
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


@dataclass
class RewardConfig:
    margin: float = 0.0
    """Pairwise margin m: loss = -log sigmoid(r_chosen - r_rejected - m) (Llama 2's margin loss)."""


@dataclass
class PrefConfig:
    loss: str = "dpo"
    """`pixiu train dpo` loss, a name in losses.LOSSES: dpo, ipo, simpo or orpo; cDPO is dpo with
    label_smoothing > 0. 'sigmoid' (TRL's name, pixiu's before) still means dpo, with a deprecation note."""
    beta: float = 0.1
    """Inverse temperature of the implicit reward beta * log(pi / pi_ref) (SimPO: of the mean log-prob)."""
    label_smoothing: float = 0.0
    """Conservative DPO: the assumed share of flipped labels (0 = plain DPO)."""
    simpo_gamma: float = 0.5
    """SimPO target margin gamma between chosen and rejected rewards."""
    orpo_lambda: float = 0.1
    """ORPO weight of the odds-ratio term next to the SFT loss on the chosen reply."""
    kto_desirable_weight: float = 1.0
    """KTO weight of desirable (good) examples."""
    kto_undesirable_weight: float = 1.0
    """KTO weight of undesirable (bad) examples."""
    rrhf_sft_weight: float = 1.0
    """RRHF weight of the SFT term on the best response next to the ranking loss."""

    def __post_init__(self):
        if self.loss == "sigmoid":
            _deprecated("pref.loss=sigmoid", "pref.loss=dpo")
            self.loss = "dpo"
        _choice("pref.loss", self.loss, ("dpo", "ipo", "simpo", "orpo"))
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"pref.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.beta <= 0:  # IPO's target gap is 1/(2 beta)
            raise ConfigError(f"pref.beta must be > 0, got {self.beta}")
        if min(self.kto_desirable_weight, self.kto_undesirable_weight) <= 0 or self.rrhf_sft_weight < 0:
            raise ConfigError("pref.kto_*_weight must be > 0 and pref.rrhf_sft_weight >= 0")


@dataclass
class PPOConfig:
    reward_model: str = ""
    """A pixiu reward-model checkpoint scoring rollouts ('' = none; then reward_fn must be set)."""
    reward_fn: str = ""
    """A task name (`pixiu.data.tasks`) or 'module:function' whose reward(conversation, reply) is added."""
    reward_fn_weight: float = 1.0
    """Multiplies reward_fn's value before it is added to the reward model's score (their scales differ)."""
    rollout_prompts: int = 16
    """Prompts sampled per PPO step (one reply each)."""
    minibatch: int = 8
    """Rollouts per PPO minibatch update."""
    ppo_epochs: int = 2
    """Passes over each rollout batch."""
    kl_coef: float = 0.05
    """Per-token KL penalty coefficient against the frozen reference (the SFT model)."""
    adaptive_kl: bool = False
    """Adapt kl_coef towards target_kl (Ziegler et al. 2019) instead of keeping it fixed."""
    target_kl: float = 6.0
    """KL (nats per reply) that the adaptive controller aims for."""
    gamma: float = 1.0
    """Discount factor of GAE."""
    lam: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """Policy ratio clip range epsilon."""
    value_clip: float = 0.2
    """Value-function clip range around the rollout's values."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    whiten_rewards: bool = True
    """Normalise scores with running mean / std before the KL penalty is added."""
    ptx_coef: float = 0.0
    """PPO-ptx: weight of the SFT loss on ppo.ptx_path mixed into each update (InstructGPT); 0 = off."""
    ptx_path: str = ""
    """SFT data for PPO-ptx (any conversation format; train.batch_size rows per update)."""
    critic_from_rm: bool = True
    """Start the critic (body adapter and head) from the reward model, as InstructGPT did; else a new one.
    With shared_critic only the head starts from the reward model's."""
    shared_critic: bool = False
    """The critic is a value head on the policy's own body (TRL 0.x, trlx): one forward and one backward per row
    serve both losses (about a third less PPO time), but value-loss gradients also move the policy."""
    entropy_coef: float = 0.0
    """Weight of an entropy bonus in the policy loss (0 = none; entropy is logged either way)."""

    def __post_init__(self):
        if min(self.rollout_prompts, self.minibatch, self.ppo_epochs) < 1:
            raise ConfigError("ppo.rollout_prompts, ppo.minibatch and ppo.ppo_epochs must be >= 1")
        if not (0 < self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ConfigError(f"ppo.gamma must be in (0, 1], ppo.lam in [0, 1]; got {self.gamma}, {self.lam}")
        if self.kl_coef < 0 or self.clip <= 0 or self.value_clip <= 0 or self.target_kl <= 0:
            raise ConfigError("ppo.kl_coef must be >= 0 and ppo.clip, value_clip, target_kl > 0")
        if self.ptx_coef > 0 and not self.ptx_path:
            raise ConfigError("ppo.ptx_coef > 0 needs ppo.ptx_path (the SFT data to mix in)")


@dataclass
class GRPOConfig:
    task: str = "arithmetic"
    """Task whose reward scores replies: a name from `pixiu.data.tasks` or 'module:function'."""
    estimator: str = "grpo"
    """Advantage baseline: 'grpo' (group mean, divided by group std) or 'rloo' (leave-one-out mean)."""
    group_size: int = 8
    """Replies sampled per prompt."""
    prompts_per_step: int = 4
    """Prompts per optimizer step on each process (each gets group_size replies)."""
    kl_coef: float = 0.04
    """KL penalty coefficient (beta) against the reference model (0 = none: no reference forward, KL not logged).
    The same name as ppo.kl_coef; the old name grpo.beta is still read, with a deprecation note."""
    clip: float = 0.2
    """Policy ratio clip range epsilon."""
    task_args: dict[str, str] = field(default_factory=dict)
    """Options of the task, e.g. {path: ../shared/data/gsm8k} or {low: 1, high: 20} (`--grpo.task_args.low=1`)."""
    epochs: int = 1
    """Optimizer updates per batch of rollouts (μ of DeepSeekMath); above 1 the ratio clip starts to bind."""
    scale_rewards: bool = True
    """GRPO divides advantages by the group's reward std; false keeps r - mean (Dr GRPO, Liu et al. 2025)."""
    eval_size: int = 100
    """Held-out prompts scored greedily (exact match) at the start, every train.eval_every steps and the end."""

    def __post_init__(self):
        _choice("grpo.estimator", self.estimator, ("grpo", "rloo"))
        if self.prompts_per_step < 1 or self.epochs < 1 or self.kl_coef < 0 or self.clip <= 0:
            raise ConfigError("grpo.prompts_per_step and grpo.epochs must be >= 1, kl_coef >= 0 and clip > 0")
        if self.group_size < 2:
            raise ConfigError(
                f"grpo.group_size must be >= 2 (the baseline needs a group), got {self.group_size}"
            )


@dataclass
class GuardConfig:
    """Guards against degeneration in PPO and GRPO (train/guards.py): RL optimises what the reward can see, and
    a reward model rarely sees a reply looping ("雪雨雨雨…") or running into the token limit. Off by default."""

    repeat_penalty: float = 0.0
    """Subtracted from a reply's reward times its share of repeated 3-grams (words, Chinese characters, marks):
    a reply that says one thing over and over loses up to this much (0 = off)."""
    no_eos_penalty: float = 0.0
    """Subtracted from the reward of a reply that hit gen.max_new_tokens without a stop token (0 = off)."""
    probe_size: int = 0
    """Training prompts (the last ones) answered greedily at step 0 and every train.eval_every steps; their
    degeneration is logged as probe_* (0 = no probe, no early stop)."""
    max_rise: float = 0.15
    """Stop training (the remaining steps do nothing) once the probe's repeated 3-gram share, token-limit rate
    or off-language rate rises more than this above its value at step 0."""

    def __post_init__(self):
        if min(self.repeat_penalty, self.no_eos_penalty, self.probe_size) < 0 or self.max_rise <= 0:
            raise ConfigError("guard penalties and probe_size must be >= 0, guard.max_rise > 0")


@dataclass
class DistillConfig:
    """`pixiu train distill`: token-level distillation of a teacher's next-token distributions into the student
    (model.name_or_path) on the replies of data.path (train/distill.py). Both models must share one vocabulary.
    Sequence-level KD (Kim & Rush 2016) needs no stage of its own: it is SFT on the teacher's replies
    (`pixiu data generate --method answer`, then `pixiu train sft`)."""

    teacher: str = ""
    """The teacher model: a Hugging Face directory or name, or 'smollm2-135m'. Loaded frozen, with model.dtype.
    May be empty when teacher_logprobs already exists."""
    loss: str = "forward_kl"
    """'forward_kl' KL(teacher || student) (classic KD), 'reverse_kl' KL(student || teacher) (MiniLLM), or 'jsd'
    the generalized Jensen-Shannon divergence of GKD with weight `beta` (losses.generalized_jsd)."""
    beta: float = 0.5
    """jsd only: the mixture weight of the teacher, M = beta teacher + (1 - beta) student (TRL's convention:
    0 is forward KL, 1 reverse KL)."""
    temperature: float = 1.0
    """Both distributions are softmax(logits / temperature) (> 1 softens them). The loss is not scaled by
    temperature^2, as in TRL's GKD."""
    lmbda: float = 0.0
    """On-policy share (GKD's lambda): each micro-batch is, with this probability, replaced by replies the student
    samples (through the engine, with the gen section) to the training prompts, scored by the live teacher."""
    teacher_logprobs: str = ""
    """A .safetensors file of the teacher's top-k token ids and log-probs at every target token of the training
    and eval rows. When it does not exist the teacher writes it first and is freed before the student loads, so
    the two models are never resident together; when it exists, training reads it (the teacher is not loaded)."""
    top_k: int = 0
    """Tokens per position stored in teacher_logprobs (0 = the whole vocabulary). The rest of the teacher's mass
    is one tail bucket (losses.topk_support), so the loss is a lower bound of the full one. Fine for forward KL;
    reverse KL and jsd weigh the student's own likely tokens, whose low teacher probability the bucket blurs."""

    def __post_init__(self):
        _choice("distill.loss", self.loss, ("forward_kl", "reverse_kl", "jsd"))
        if not (0 <= self.beta <= 1 and 0 <= self.lmbda <= 1):
            raise ConfigError(
                f"distill.beta and distill.lmbda must be in [0, 1], got {self.beta}, {self.lmbda}"
            )
        if self.temperature <= 0 or self.top_k < 0:
            raise ConfigError("distill.temperature must be > 0 and distill.top_k >= 0")
        if self.lmbda > 0 and self.teacher_logprobs:
            raise ConfigError(
                "distill.lmbda > 0 needs a live teacher: stored log-probs cannot score new samples"
            )


@dataclass
class PTConfig:
    """`pixiu train pt` (continued pretraining) over a checkpoint from `pixiu data extend-vocab`."""

    new_rows_first_steps: int = 0
    """The first N steps train only the embedding (and head) rows of the tokens the extension added, everything
    else frozen, before all weights train (full fine-tuning, lora.r=0; under LoRA use lora.modules_to_save)."""

    def __post_init__(self):
        if self.new_rows_first_steps < 0:
            raise ConfigError(f"pt.new_rows_first_steps must be >= 0, got {self.new_rows_first_steps}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gen: GenConfig = field(default_factory=GenConfig)
    rm: RewardConfig = field(default_factory=RewardConfig)
    pref: PrefConfig = field(default_factory=PrefConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pt: PTConfig = field(default_factory=PTConfig)

    @property
    def shared_prefix(self) -> bool:
        """data.shared_prefix where the attention takes a 4D mask (sdpa, eager); flash-attention gets one row
        per reply."""
        return self.data.shared_prefix and self.model.attn_implementation in ("sdpa", "eager")


@dataclass
class ServeConfig:
    """`pixiu serve`: what to serve, where, and the limits every request must fit (over one: a 400 or 413
    naming the limit, answered before any rendering or tokenizing)."""

    models: list[str] = field(default_factory=list)
    """[NAME=]PATH of each model: checkpoint dir, HF dir, .gguf file or smollm2-135m; NAME is the served id."""
    host: str = "127.0.0.1"
    """Address to listen on (loopback unless you mean it)."""
    port: int = 8000
    """TCP port to listen on."""
    api_key: str = ""
    """Key required on every route; empty: read it from the variable named by api_key_env (keeps it out of
    files and the process list)."""
    api_key_env: str = "PIXIU_API_KEY"
    """Environment variable holding the API key when api_key is empty."""
    insecure: bool = False
    """Allow a non-loopback host without an API key."""
    db: str = ""
    """Feedback store: a SQLite file or postgresql://...; empty: $PIXIU_HOME/feedback.db, else
    ~/.local/share/pixiu/feedback.db (feedback.store.default_path), never the current directory."""
    moderation: str = ""
    """Input/output filter spec (see pixiu.serve.moderation); empty: none."""
    max_batch: int = 16
    """Sequences decoded together per model."""
    max_tokens: int = 512
    """Reply cap when a request sets no max_tokens."""
    dtype: str = "auto"
    """Compute dtype: auto, bf16 or fp32."""
    backend: str = "auto"
    """Engine backend: auto, torch or llamacpp."""
    quantize: str = "none"
    """Weights: none, or int8 (faster CPU decoding, torch backend; see pixiu.engine.quant)."""
    template: str = "default"
    """Chat template name (see `pixiu templates`)."""
    max_messages: int = 1000
    """Messages per chat request (400 above it)."""
    max_body_bytes: int = 2 * 1024 * 1024
    """Request body size in bytes, checked before the JSON is parsed (413 above it)."""
    max_stop: int = 16
    """Stop strings per request (OpenAI allows 4)."""
    max_stop_length: int = 256
    """Characters per stop string."""
    max_prompt_tokens: int = 0
    """Tokens per rendered prompt; 0: only the model's context window limits it."""
    rag: str = ""
    """A `pixiu index build` folder: each chat request's last user turn gets the top rag_k passages, numbered,
    in the prompt, and the response lists them as `sources`; empty: no retrieval."""
    rag_k: int = 3
    """Passages retrieved per chat request when rag is set."""

    def __post_init__(self):
        _choice("serve.dtype", self.dtype, ("auto", "bf16", "fp32"))
        _choice("serve.backend", self.backend, ("auto", "torch", "llamacpp"))
        _choice("serve.quantize", self.quantize, ("none", "int8"))  # = engine.quant.QUANTIZE (a test checks)
        if not 0 < self.port < 65536:
            raise ConfigError(f"serve.port must be in 1..65535, got {self.port}")
        low = {k: getattr(self, k) for k in ("max_batch", "max_tokens", "max_messages", "max_body_bytes")}
        low.update(max_stop_length=self.max_stop_length)
        for name, value in low.items():
            if value < 1:
                raise ConfigError(f"serve.{name} must be >= 1, got {value}")
        if self.max_stop < 0 or self.max_prompt_tokens < 0:
            raise ConfigError("serve.max_stop and serve.max_prompt_tokens must be >= 0")


@dataclass
class EvalConfig:
    """`pixiu eval`: the model, the tasks, and each task's options (a recipe's `eval:` section, or
    `--eval.field=value`; `--field value` is the same). 0 or '' means the task's default where it says so."""

    model: str = ""
    """The model to evaluate: checkpoint dir, HF dir, .gguf file or smollm2-135m ('' for tasks that need none,
    such as elo); the positional MODEL sets it."""
    tasks: str = ""
    """Comma-separated task names: mmlu, cmmlu, ceval, gsm8k, perplexity, rm-accuracy, reward, winrate, mtbench,
    elo, ... (an unknown name lists the valid ones)."""
    out: str = ""
    """Run dir: results.json, results.md and per-task item logs ('' = runs/eval/<model name>)."""
    limit: int = 0
    """Only the first N items of each task, a fixed subset (0 = all)."""
    seed: int = 0
    """Sampling seed."""
    force: bool = False
    """Re-run tasks already finished in OUT/results.json under the same options."""
    data: str = ""
    """Task data file or dir ('' = the task's folder under ../shared/data)."""
    dtype: str = "auto"
    """Compute dtype: 'auto', 'bf16' or 'fp32'."""
    max_new_tokens: int = 0
    """Generation budget per reply (0 = the task's default: gsm8k 256, reward 128, winrate 256, mtbench 1024,
    multiple choice in generate mode 16)."""
    shots: int = -1
    """Few-shot examples per prompt (-1 = the task's default: 0, or 5 for gsm8k with gsm8k_prompt=lm-eval).
    Multiple choice takes them from the dev split, gsm8k from the train split."""
    mode: str = "loglik"
    """Multiple choice scoring: 'loglik' (the likeliest answer letter) or 'generate' (the letter a reply gives)."""
    subjects: str = ""
    """Comma-separated subjects of mmlu / cmmlu / ceval ('' = all)."""
    gsm8k_prompt: str = "pixiu"
    """gsm8k's prompt: 'pixiu' (a user turn through the chat template, asking for '#### <number>'; shots are earlier
    turns) or 'lm-eval' (lm-evaluation-harness's gsm8k task byte for byte: raw text 'Question: ...\\nAnswer:',
    shots drawn from the train split by random.Random(1234), stop at 'Question:'), so the number compares with
    lm-eval's."""
    rag: str = ""
    """A `pixiu index build` folder: generation tasks that support retrieval (lawbench:*) put the top rag_k
    passages of each question in its prompt, numbered for citation ('' = no retrieval)."""
    rag_k: int = 3
    """Passages per question when rag is set."""
    reward_model: str = ""
    """Reward model that scores replies (task reward; the judge of winrate when no judge URL is given)."""
    against: str = ""
    """winrate: the baseline model, or a file of reference replies, that MODEL is compared with."""
    judge: str = ""
    """Judge endpoint URL (OpenAI-compatible, e.g. a `pixiu serve`) for winrate and mtbench."""
    judge_model: str = ""
    """The judge's model name at that endpoint."""
    judge_key: str = ""
    """Judge API key (never written to disk)."""
    judge_timeout: float = 600.0
    """Seconds per judge request."""
    judge_retries: int = 3
    """Retries of a judge request after a timeout, 429 or 5xx."""
    judge_backoff: float = 2.0
    """Seconds before the first retry, doubled after each."""
    judge_max_tokens: int = 0
    """The judge's reply budget (0 = the endpoint's default)."""
    judge_parallel: int = 16
    """Judge requests in flight."""
    judge_logprobs: bool = False
    """winrate: one-letter verdicts read from the judge's top_logprobs (for judges too small to write [[A]])."""
    parse_retries: int = 2
    """Re-asks after an unparsable verdict."""
    tie_eps: float = 1e-3
    """Reward-model judge: scores this close are a tie."""
    ref_model: str = "gpt-4"
    """mtbench: whose reference answers grade the math and reasoning questions."""
    bootstrap: int = 100
    """elo: bootstrap rounds of the 95% interval."""
    db: str = ""
    """elo: the feedback store with the arena votes (a SQLite file or postgresql://...)."""

    def __post_init__(self):
        _choice("eval.dtype", self.dtype, ("auto", "bf16", "fp32"))
        _choice("eval.mode", self.mode, ("loglik", "generate"))
        _choice("eval.gsm8k_prompt", self.gsm8k_prompt, ("pixiu", "lm-eval"))
        if self.limit < 0 or self.max_new_tokens < 0 or self.shots < -1:
            raise ConfigError("eval.limit and eval.max_new_tokens must be >= 0, eval.shots >= -1")

    def task_names(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]


# ---------------------------------------------------------------- building from dicts


def _build(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = _renamed(cls, values, where)
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


def _renamed(cls: type, values: dict, where: str) -> dict:
    """Old field names -> new ones (RENAMED), with a note; where both are given, the new one wins."""
    out = dict(values)
    for old, new in RENAMED.get(cls.__name__, {}).items():
        if old in out:
            _deprecated(f"{where}.{old}".strip("."), f"{where}.{new}".strip("."))
            value = out.pop(old)
            out.setdefault(new, value)
    return out


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


def from_dict(values: dict, cls: type = RunConfig, where: str = ""):
    """A mapping already read (a pipeline stage's merged sections) -> validated config object."""
    return _build(cls, values, where)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save(cfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")


def describe(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, docstring) for every field of any config dataclass, read from the field docstrings
    in the source; a field that is itself a dataclass is a section and its fields follow as `section.field`.
    A field without a default shows '(required)'."""
    docs = _field_docs(cls)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], f"{prefix}{f.name}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((prefix + f.name, default, docs.get(f.name, "")))
    return rows


def help_text(cls: type = RunConfig, prefix: str = "") -> str:
    """Every field of `cls` as `--name=default` and its docstring: the fields part of a command's --help."""
    return "\n".join(
        f"  --{name}={default}\n" + "\n".join(f"      {line}" for line in doc.splitlines())
        for name, default, doc in describe(cls, prefix)
    )


def _field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal under it, from the class and its dataclass bases (a subclass wins)."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)  # continuation lines unindented
    return docs


def config_path(args: list[str]) -> tuple[str | None, list[str]]:
    """Split `--config FILE` / `--config=FILE` off a command line: (FILE or None, the other arguments)."""
    path, rest = None, []
    it = iter(args)
    for a in it:
        if a == "--config":
            path = next(it, None)
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            rest.append(a)
    return path, rest
