"""Moderation hook: rules files (yaml, json, txt) and a reward model used as a harmful/harmless classifier."""

import json
import random
from pathlib import Path

import pytest
import torch

from pixiu import config
from pixiu.config import ModelConfig
from pixiu.model import heads, io
from pixiu.serve.moderation import (
    REFUSAL,
    RewardModeration,
    RulesModeration,
    Verdict,
    load_moderation,
    parse_rm_spec,
)
from pixiu.train import rm

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "moderation-rules.yaml"
RULES = """
message: "I will not help with that."
categories:
  weapons:
    - "pipe bomb"
    - 're:\\b(make|build)\\s+(a\\s+)?bomb\\b'
  insults: ["idiot"]
"""


def test_yaml_rules_flag_by_category_and_leave_innocent_text_alone(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    mod = load_moderation(str(path))
    assert isinstance(mod, RulesModeration) and mod.message == "I will not help with that."
    assert mod.check("how do I build a PIPE   Bomb?") == Verdict(
        True, "weapons: matched 'pipe bomb'", "weapons"
    )
    assert mod.check("Make a bomb now").category == "weapons"
    assert (
        mod.check("you ＩＤＩＯＴ").reason == "insults: matched 'idiot'"
    )  # full-width letters fold to ascii
    for fine in ("a bombastic speech", "idiotic plan? no: idiots", "the bomb squad made it safe", "hello"):
        assert mod.check(fine) == Verdict(False), fine


def test_txt_and_json_rules(tmp_path):
    txt = tmp_path / "rules.txt"
    txt.write_text("# one rule a line\nfree money\n\n[pii]\nre:\\b\\d{3}-\\d{2}-\\d{4}\\b\n")
    mod = load_moderation(str(txt))
    assert mod.check("FREE money inside") == Verdict(True, "blocked: matched 'free money'", "blocked")
    assert mod.check("ssn 123-45-6789").category == "pii" and not mod.check("call 123-456").flagged
    js = tmp_path / "rules.json"
    js.write_text(json.dumps({"spam": ["buy now"]}))
    mod = load_moderation(str(js))
    assert mod.message == REFUSAL and mod.check("Buy now!").flagged and not mod.check("buy later").flagged


def test_bad_specs_fail_clearly(tmp_path):
    assert load_moderation(None) is None and load_moderation("") is None
    with pytest.raises(ValueError, match="no rules file"):
        load_moderation(str(tmp_path / "absent.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("x: ['re:(unclosed']\n")
    with pytest.raises(ValueError, match="bad regex"):
        load_moderation(str(bad))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no moderation rules"):
        load_moderation(str(tmp_path / "empty.txt"))


def test_shipped_rules_recipe():
    mod = load_moderation(str(RECIPE))
    assert mod.check("Tell me how to make a pipe bomb").category == "weapons"
    assert mod.check("I want to kill myself").category == "self_harm"
    assert not mod.check("Write a bombastic poem about killing time").flagged


@pytest.mark.parametrize(
    "spec, want",
    [("rm:/ckpt/final:0.5", ("/ckpt/final", 0.5)), ("rm:/ckpt/final", ("/ckpt/final", 0.0)),
     ("rm:runs/x:-1.25", ("runs/x", -1.25)), ("rm:c:/models/rm", ("c:/models/rm", 0.0))],
)  # fmt: skip
def test_rm_spec(spec, want):
    assert parse_rm_spec(spec) == want


def test_rm_with_hand_set_head_thresholds_exactly(tmp_path, tiny_model_dir):
    """A zero head weight makes every score the bias, -0.75: below threshold 0 (flagged), above -1 (not)."""
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    head = torch.nn.Linear(loaded.model.config.hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.constant_(head.bias, -0.75)
    ckpt = io.save(tmp_path / "rm", loaded, head=head)
    strict = load_moderation(f"rm:{ckpt}")
    assert isinstance(strict, RewardModeration) and strict.threshold == 0.0
    assert strict.score("anything at all") == pytest.approx(-0.75, abs=1e-6)
    assert strict.check("hi") == Verdict(True, "reward model score -0.750 < threshold 0")
    assert load_moderation(f"rm:{ckpt}:-1").check("hi", [{"role": "user", "content": "yo"}]).flagged is False


# ---------------------------------------------------------------- a reward model trained to spot harm

HARM = ["kill", "bomb", "poison"]
FILLER = ["the", "quick", "brown", "fox", "lazy", "dog", "hello", "world", "yes", "maybe", "answer"]
CONTEXT = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "help me please"}]


def reply(rng: random.Random, harmful: bool) -> str:
    words = rng.sample(FILLER, rng.randint(3, 6))
    if harmful:  # not first: the tiny tokenizer spells a reply's first word without its leading space
        words.insert(rng.randint(1, len(words)), rng.choice(HARM))
    return " ".join(words)


def test_trained_reward_model_flags_the_harmful_side(tmp_path, tiny_model_dir):
    """A few LoRA steps on harmless (chosen) / harmful (rejected) pairs; the threshold halfway between the mean
    scores of a calibration set then flags held-out harmful replies and passes harmless ones."""
    rng = random.Random(0)
    rows = [{"prompt": CONTEXT, "chosen": reply(rng, False), "rejected": reply(rng, True)} for _ in range(64)]
    (tmp_path / "harm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config.load(
        None,
        [f"--model.name_or_path={tiny_model_dir}", "--model.dtype=fp32", "--lora.r=8",
         f"--data.path={tmp_path / 'harm.jsonl'}", '--data.eval_path=""', "--data.eval_size=0",
         "--data.max_len=128", f"--train.output_dir={tmp_path / 'run'}", "--train.lr=5e-3",
         "--train.batch_size=8", "--train.max_steps=20", "--train.warmup_ratio=0"],
    )  # fmt: skip
    final = rm.run(cfg)
    calib = RewardModeration(str(final)).load()
    low = [calib.score(reply(rng, True), CONTEXT) for _ in range(8)]
    high = [calib.score(reply(rng, False), CONTEXT) for _ in range(8)]
    threshold = (sum(low) / 8 + sum(high) / 8) / 2
    mod = load_moderation(f"rm:{final}:{threshold}")
    harmful = [mod.check(reply(rng, True), CONTEXT).flagged for _ in range(20)]
    harmless = [mod.check(reply(rng, False), CONTEXT).flagged for _ in range(20)]
    assert sum(harmful) >= 18 and sum(harmless) <= 2, (harmful, harmless)
    assert heads.load_scalar(ModelConfig(str(final)))[1].head.weight.abs().sum() > 0
