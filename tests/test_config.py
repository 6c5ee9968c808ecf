from dataclasses import dataclass, field

import pytest

from pixiu import config
from pixiu.config import ConfigError, RunConfig


def test_yaml_plus_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {dtype: fp32}\ntrain: {lr: 1.0e-3, batch_size: 4}\n")
    cfg = config.load(recipe, ["--train.lr=5e-5", "--data.packing", "--lora.r=8"])
    assert cfg.model.dtype == "fp32"
    assert cfg.train.lr == 5e-5 and cfg.train.batch_size == 4
    assert cfg.data.packing is True and cfg.lora.r == 8


def test_datasets_list_and_roundtrip(tmp_path):
    cfg = config.load(
        None, ["--data.datasets=[{path: a.jsonl, weight: 2}, {path: b.csv, columns: {q: instruction}}]"]
    )
    assert [d.path for d in cfg.data.specs()] == ["a.jsonl", "b.csv"]
    assert cfg.data.datasets[1].columns == {"q": "instruction"}
    config.save(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("--train.lr=fast", "train.lr must be float"),
        ("--model.dtype=fp16", "model.dtype='fp16' is not one of"),
        ("--train.bogus=1", "unknown field(s) ['bogus'] in train"),
        ("--data.overflow=drop", "data.overflow='drop'"),
        ("--lora.qlora", "lora.qlora needs lora.r > 0"),
        ("train.lr=1", "must look like --section.field=value"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=None) as e:
        config.load(None, [override])
    assert message in str(e.value)


def test_every_field_has_a_docstring():
    rows = config.describe(RunConfig)
    assert len(rows) > 30
    assert [name for name, _, doc in rows if not doc] == []


def test_shared_prompt_rows_only_where_the_attention_takes_a_4d_mask():
    assert config.load(None, []).shared_prefix
    assert not config.load(None, ["--data.shared_prefix=false"]).shared_prefix
    assert not config.load(None, ["--model.attn_implementation=flash_attention_2"]).shared_prefix
    assert config.load(None, ["--model.attn_implementation=eager"]).shared_prefix


@dataclass
class _Section:
    path: str
    """Where it is."""
    n: int = 3
    """How many."""


@dataclass
class _Outer:
    section: _Section = field(default_factory=lambda: _Section("x"))
    flag: bool = False
    """On or off."""


def test_describe_reads_any_dataclass():
    assert config.describe(_Section) == [("path", "(required)", "Where it is."), ("n", "3", "How many.")]
    assert config.describe(_Outer, "top.") == [
        ("top.section.path", "(required)", "Where it is."),
        ("top.section.n", "3", "How many."),
        ("top.flag", "False", "On or off."),
    ]
    assert config.help_text(_Section).splitlines() == [
        "  --path=(required)",
        "      Where it is.",
        "  --n=3",
        "      How many.",
    ]
