"""Typed configuration: one dataclass per concern, YAML recipes, `--section.field=value` overrides.

A recipe is a YAML mapping whose top-level keys are the sections of `RunConfig` (model, lora, data, train,
gen, rm, pref, ppo, grpo, guard, distill, pt); a stage reads the sections it needs. `pixiu serve` and
`pixiu eval` read `ServeConfig` and `EvalConfig` the same way. Every field carries a docstring (the string
literal under it); `describe()` reads them back for `--help`. The resolved config is written into every run
directory as `config.yaml`.

core.py: ConfigError and the model / lora / data / train / gen sections; methods.py: the training methods'
sections and RunConfig; apps.py: serve and eval; loading.py: YAML and overrides to configs and back.
"""

from pixiu.config.apps import EvalConfig, ServeConfig
from pixiu.config.core import (
    PEFT_METHODS,
    RENAMED,
    ConfigError,
    DataConfig,
    DatasetSpec,
    GenConfig,
    LoraConfig,
    ModelConfig,
    TrainConfig,
)
from pixiu.config.loading import (
    config_path,
    describe,
    from_dict,
    help_text,
    load,
    merge,
    parse_overrides,
    save,
    to_dict,
)
from pixiu.config.methods import (
    DistillConfig,
    GRPOConfig,
    GuardConfig,
    PPOConfig,
    PrefConfig,
    PTConfig,
    RewardConfig,
    RunConfig,
)

__all__ = [
    "PEFT_METHODS", "RENAMED", "ConfigError", "DataConfig", "DatasetSpec", "DistillConfig", "EvalConfig",
    "GRPOConfig", "GenConfig", "GuardConfig", "LoraConfig", "ModelConfig", "PPOConfig", "PTConfig", "PrefConfig",
    "RewardConfig", "RunConfig", "ServeConfig", "TrainConfig", "config_path", "describe", "from_dict",
    "help_text", "load", "merge", "parse_overrides", "save", "to_dict",
]  # fmt: skip
