"""The sections of the training methods (reward model, preference losses, PPO, GRPO, guards, distillation,
continued pretraining) and RunConfig, which holds every section."""

from __future__ import annotations

from dataclasses import dataclass, field

from pixiu.config.core import (
    ConfigError,
    DataConfig,
    GenConfig,
    LoraConfig,
    ModelConfig,
    TrainConfig,
    _choice,
    _deprecated,
)


@dataclass
class RewardConfig:
    margin: float = 0.0
    """Pairwise margin m: loss = -log sigmoid(r_chosen - r_rejected - m) (Llama 2's margin loss)."""
    pair_margins: bool = True
    """Add each pair's own `margin` column to m for that pair, as TRL's RewardTrainer does (Llama 2's rating gap,
    the vote-score gap `pixiu data stackexchange` writes); rows without one add 0. Rankings use rm.margin only."""


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


PROBE_METRICS = ("repeated_ngram", "token_limit", "off_language")  # what the guard's probe measures


@dataclass
class GuardConfig:
    """Guards against degeneration in PPO and GRPO (train/guards.py): RL optimises what the reward can see, and
    a reward model rarely sees a reply looping ("雪雨雨雨…") or running into the token limit. Off by default."""

    repeat_penalty: float = 0.0
    """Subtracted from a reply's reward times its share of repeated 3-grams (words, Chinese characters, marks):
    a reply that says one thing over and over loses up to this much (0 = off)."""
    no_eos_penalty: float = 0.0
    """Subtracted from the reward of a reply that hit gen.max_new_tokens without a stop token (0 = off)."""
    language_penalty: float = 0.0
    """Subtracted from the reward of a reply written in the other script than its prompt (Chinese vs Latin;
    a reply of digits and marks alone is never off; 0 = off)."""
    probe_size: int = 0
    """Training prompts (the last ones) answered greedily at step 0 and every train.eval_every steps; their
    degeneration is logged as probe_* (0 = no probe, no early stop)."""
    max_rise: float = 0.15
    """Stop training (the remaining steps do nothing) once the probe's repeated 3-gram share, token-limit rate
    or off-language rate rises more than this above its value at step 0; the trained weights then go back to
    the last probe that passed (a copy kept on the CPU), so the stage ends with the policy before the rise."""
    watch: list[str] = field(default_factory=lambda: list(PROBE_METRICS))
    """The probe metrics whose rise stops training (all three are logged either way). Leave token_limit out
    where good replies are longer than gen.max_new_tokens, so that being cut is no sign of degeneration."""

    def __post_init__(self):
        if (
            min(self.repeat_penalty, self.no_eos_penalty, self.language_penalty, self.probe_size) < 0
            or self.max_rise <= 0
        ):
            raise ConfigError("guard penalties and probe_size must be >= 0, guard.max_rise > 0")
        if unknown := [w for w in self.watch if w not in PROBE_METRICS]:
            raise ConfigError(
                f"guard.watch: unknown {', '.join(unknown)}; choose from {', '.join(PROBE_METRICS)}"
            )


@dataclass
class DistillConfig:
    """`pixiu train distill`: token-level distillation of a teacher's next-token distributions into the student
    (model.name_or_path) on the replies of data.path (train/distill.py). Both models must share one vocabulary.
    Sequence-level KD (Kim & Rush 2016) needs no stage of its own: it is SFT on the teacher's replies
    (`pixiu data generate --method answer`, then `pixiu train sft`)."""

    teacher: str = ""
    """The teacher model: a Hugging Face directory or name, or 'smollm2-135m'. Loaded frozen, with model.dtype.
    Or an OpenAI-compatible endpoint (http(s)://HOST/v1: `pixiu serve`, vLLM) whose echo-only completions give
    the top_k (1-20) log-probs of the rows' tokens, fetched once into teacher_logprobs (default
    output_dir/teacher_logprobs.safetensors); key from $OPENAI_API_KEY. May be empty when teacher_logprobs exists."""
    teacher_model: str = ""
    """The served model's id when teacher is an endpoint ('' = the only model it serves)."""
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
        if self.lmbda > 0 and (self.teacher_logprobs or self.endpoint):
            raise ConfigError(
                "distill.lmbda > 0 needs a live teacher: stored or endpoint log-probs cannot score new samples"
            )
        if self.endpoint and not (1 <= self.top_k <= 20 and self.temperature == 1):
            raise ConfigError(
                "an endpoint teacher gives its top 1-20 log-probs at temperature 1: set distill.top_k in 1..20 "
                f"and distill.temperature=1 (got {self.top_k} and {self.temperature})"
            )

    @property
    def endpoint(self) -> bool:
        """The teacher is an OpenAI-compatible endpoint, not a model to load."""
        return self.teacher.startswith(("http://", "https://"))


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
