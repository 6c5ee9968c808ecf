"""PPO's four roles (policy, reference, critic, reward model) over one base with adapters, or as separate models.

With LoRA (lora.r > 0) the base is loaded ONCE and every role is a view of it: the policy is the adapter
"default" (so `io.save` writes it as an ordinary pixiu adapter), the critic the adapter "critic" plus a value
head, the reward model the RM checkpoint's adapter loaded as "reward" plus its head (when the RM was trained
over this same base), and the reference is the base with adapters disabled. One copy of the weights serves all
four. With full fine-tuning, or an RM over another base, the roles that cannot share are separate models.

peft's `set_adapter` marks the adapter it activates trainable and freezes every other one, so switching roles
naively would train the reward adapter and freeze the policy. `use` activates in inference mode and then
re-marks the fixed trainable set (policy and critic adapters, value head): what trains never depends on which
role ran last, and the reward adapter and the base never receive a gradient.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import torch
from torch import nn

from pixiu.chat.templates import Template, get_template
from pixiu.config import LoraConfig, ModelConfig, RunConfig
from pixiu.data.collate import TokenBatch
from pixiu.model import heads, io
from pixiu.model.forward import TargetLM, at_targets, hidden_states

POLICY, CRITIC, REWARD = "default", "critic", "reward"  # adapter names; the policy's is peft's default


class Actors(nn.Module):
    """The models of one PPO run. Parameters that require grad are exactly the trained ones (for checkpoints)."""

    def __init__(
        self,
        policy: nn.Module,
        critic: heads.ScalarLM,
        reference: nn.Module | None,
        reward: heads.ScalarLM | None,
        reward_template: Template | None,
        shared: bool,
        shared_critic: bool = False,
    ):
        super().__init__()
        self.shared_critic = shared_critic  # critic.lm is the policy's: only the head is the critic's own
        self.policy = TargetLM(policy)  # policy.lm: the causal LM (a peft model when shared)
        self.critic = critic
        self.reference = TargetLM(reference) if reference is not None else None  # None: adapters off
        self.reward = reward
        self.reward_template = reward_template
        self.shared = shared
        self._trainable = {id(p) for p in self.trained_parameters()}

    def trained_parameters(self) -> list[nn.Parameter]:
        if not self.shared:
            return [p for p in self.parameters() if p.requires_grad]
        lora = [p for n, p in self.policy.lm.named_parameters() if _adapter_of(n) in (POLICY, CRITIC)]
        return lora + list(self.critic.head.parameters())

    @property
    def lm(self) -> nn.Module:
        """The policy's causal LM, for sampling (`engine.sample`) and saving."""
        return self.policy.lm

    @contextlib.contextmanager
    def use(self, role: str):
        """Make `role` ('policy', 'critic', 'reward', 'reference') the one the shared base computes."""
        if not self.shared or (
            role == "reward" and self.reward is not None and self.reward.lm is not self.lm
        ):
            yield
            return
        if role == "reference":
            with self.lm.disable_adapter():
                yield
            return
        critic = POLICY if self.shared_critic else CRITIC
        self.lm.set_adapter({"policy": POLICY, "critic": critic, "reward": REWARD}[role], inference_mode=True)
        for p in self.parameters():
            p.requires_grad_(id(p) in self._trainable)
        yield

    def policy_logits(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (N, V) policy logits at the positions predicting a target token, (N,) those targets."""
        with self.use("policy"):
            return self.policy(batch)

    def policy_and_values(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """shared_critic: `policy_logits` and `values` from ONE forward (the head reads the policy's states)."""
        with self.use("policy"):
            states = at_targets(hidden_states(self.lm, batch), batch)  # (N, H)
        values = self.critic.head(states).squeeze(-1).float()
        return self.policy.head(states), self.policy.targets(batch), values

    @torch.no_grad()
    def reference_logits(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        with self.use("reference"):
            return (self.reference or self.policy)(batch)

    def values(self, batch: TokenBatch) -> torch.Tensor:
        """-> (N,) V(s_t) at the same positions as `policy_logits`: the state before each target token."""
        with self.use("critic"):
            v = self.critic.values(batch)  # (B, T)
        return v[:, :-1][batch.loss_mask[:, 1:].bool()]

    def scores(self, convs: list, tokenizer, batch_size: int, max_len: int) -> list[float]:
        """The reward model's score of each conversation (ending with the reply), read at its last token."""
        from pixiu.model.reward import score_replies

        with self.use("reward"):
            return score_replies(self.reward, tokenizer, self.reward_template, convs, batch_size, max_len)


def _adapter_of(name: str) -> str | None:
    """'...q_proj.lora_A.critic.weight' -> 'critic' (IA3's '...ia3_l.critic', prefix tuning's
    'prompt_encoder.critic.embedding.weight' too); None for base weights."""
    parts = name.split(".")
    hit = (i for i, p in enumerate(parts[:-1]) if p.startswith(("lora_", "ia3_")) or p == "prompt_encoder")
    return next((parts[i + 1] for i in hit), None)


def build(cfg: RunConfig) -> tuple[Actors, io.Loaded, bool]:
    """-> (actors, the policy's Loaded, whether the start checkpoint was an adapter merged into its base).

    A policy start that is itself an adapter (an unmerged SFT LoRA) is folded into its base first, so the
    reference is the SFT model; the PPO policy is then saved merged, since that base exists only in memory."""
    if cfg.lora.r > 0:
        return _shared(cfg)
    return _separate(cfg)


def _shared(cfg: RunConfig) -> tuple[Actors, io.Loaded, bool]:
    loaded = io.load(cfg.model)  # compute dtype, frozen below: only adapters train
    merged = fold(loaded)
    loaded.model.requires_grad_(False)
    lm = io.add_lora(loaded.model, cfg.lora)  # the policy adapter, named "default"
    loaded.model = lm
    rm_path = cfg.ppo.reward_model
    reward = template = None
    rm_base = _rm_base(rm_path) if rm_path else ""
    same_base = bool(rm_base) and not merged and rm_base == _canonical(loaded.base_path)
    same_base = same_base and _same_kind(rm_path, lm)
    if same_base:
        _check_tokenizer(rm_path, loaded.tokenizer)
        lm.load_adapter(io.resolve(rm_path), adapter_name=REWARD, is_trainable=False)
        reward = heads.ScalarLM(lm, _head(rm_path, trainable=False))
        template = _rm_template(rm_path, loaded.tokenizer)
    elif rm_path:
        reward, template = _separate_rm(cfg, loaded.tokenizer)
    if cfg.ppo.shared_critic:  # no adapter of its own: a head over the policy
        critic = heads.ScalarLM(
            lm, _head(rm_path, trainable=True) if cfg.ppo.critic_from_rm and rm_path else None
        )
    elif cfg.ppo.critic_from_rm and same_base:
        lm.load_adapter(io.resolve(rm_path), adapter_name=CRITIC, is_trainable=True)
        critic = heads.ScalarLM(lm, _head(rm_path, trainable=True))
    else:
        lm.add_adapter(CRITIC, copy.deepcopy(lm.peft_config[POLICY]))
        critic = heads.ScalarLM(lm)
    actors = Actors(lm, critic, None, reward, template, shared=True, shared_critic=cfg.ppo.shared_critic)
    with actors.use("policy"):  # leaves exactly the trained set requiring grad
        pass
    return actors, loaded, merged


def _separate(cfg: RunConfig) -> tuple[Actors, io.Loaded, bool]:
    full = LoraConfig(r=0)
    loaded = io.load(cfg.model, full, for_training=True)  # fp32 master weights
    merged = fold(loaded)
    loaded.model.requires_grad_(True)
    ref = io.load(cfg.model)
    fold(ref)
    ref.model.requires_grad_(False)
    rm_path = cfg.ppo.reward_model
    reward, template = _separate_rm(cfg, loaded.tokenizer) if rm_path else (None, None)
    if cfg.ppo.shared_critic:
        head = _head(rm_path, trainable=True) if cfg.ppo.critic_from_rm and rm_path else None
        critic = heads.ScalarLM(loaded.model, head)
    else:
        start = rm_path if cfg.ppo.critic_from_rm and rm_path else cfg.model.name_or_path
        _, critic = heads.load_scalar(_like(cfg.model, start), full, for_training=True)
        if hasattr(critic.lm, "merge_and_unload"):  # an RM adapter: fold it, the critic body trains in full
            critic.lm = critic.lm.merge_and_unload()
        critic.lm.requires_grad_(True)
    actors = Actors(loaded.model, critic, ref.model, reward, template, False, cfg.ppo.shared_critic)
    return actors, loaded, merged


def _separate_rm(cfg: RunConfig, tokenizer) -> tuple[heads.ScalarLM, Template]:
    _rm_base(cfg.ppo.reward_model)  # fails clearly unless it is a pixiu reward model
    _check_tokenizer(cfg.ppo.reward_model, tokenizer)
    rm_loaded, reward = heads.load_scalar(_like(cfg.model, cfg.ppo.reward_model))
    reward.requires_grad_(False)
    return reward, rm_loaded.template


def fold(loaded: io.Loaded) -> bool:
    """Merge an adapter checkpoint into its base in place; True when there was one."""
    if not hasattr(loaded.model, "merge_and_unload"):
        return False
    loaded.model = loaded.model.merge_and_unload()
    return True


def _like(model: ModelConfig, path: str) -> ModelConfig:
    return ModelConfig(path, model.dtype, "default", model.trust_remote_code, model.attn_implementation)


def _canonical(path: str) -> str:
    return str(Path(path).resolve()) if Path(path).exists() else path


def _rm_base(rm_path: str) -> str:
    meta = io.read_meta(io.resolve(rm_path))
    if not meta.get("head"):
        raise io.ModelError(
            f"{rm_path} is not a pixiu reward model (no score head); train one with `pixiu train rm`"
        )
    return _canonical(meta["base"]) if meta.get("adapter") else ""


def _same_kind(rm_path: str, lm) -> bool:
    """Whether the RM's adapter is of the policy's PEFT type: peft holds one type per model, so a LoRA reward model
    under an IA3 policy (lora.method) is loaded as a model of its own."""
    config = json.loads((Path(io.resolve(rm_path)) / "adapter_config.json").read_text())
    return config.get("peft_type") == lm.peft_config[POLICY].peft_type


def _head(rm_path: str, trainable: bool) -> nn.Linear:
    tensors = io.load_head(rm_path)
    head = nn.Linear(tensors["weight"].shape[1], 1, bias="bias" in tensors)
    head.load_state_dict(tensors)
    return head.requires_grad_(trainable)


def _rm_template(rm_path: str, tokenizer) -> Template:
    saved = io.read_meta(io.resolve(rm_path)).get("template", {})
    return get_template(saved.get("name", "default"), tokenizer, jinja=saved.get("jinja", ""))


def _check_tokenizer(rm_path: str, tokenizer) -> None:
    """PPO's reward must read the policy's replies token for token; another vocabulary would score other text."""
    rm_tok = io.load_tokenizer(io.resolve(rm_path))
    if rm_tok.get_vocab() != tokenizer.get_vocab():
        raise io.ModelError(
            f"the reward model {rm_path} uses a different tokenizer ({len(rm_tok)} tokens) than the policy "
            f"({len(tokenizer)} tokens); train the reward model from the policy's base (or its SFT model)"
        )
