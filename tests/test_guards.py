"""Degeneration guards of PPO / GRPO (train/guards.py): the reward penalty and the probe's early stop, by hand."""

import json
from types import SimpleNamespace

import pytest
import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.config import ConfigError, GuardConfig
from pixiu.train import guards


def test_penalty_by_hand():
    prompts = ["Say abc.", "What is 41 + 64?", "Say nothing.", "Translate 'snow' into Chinese."]
    texts = ["a b c a b c a b c", "41 + 64 = 105.", "", "雪是白的。"]
    finished = [False, True, False, True]
    on = GuardConfig(repeat_penalty=1.0, no_eos_penalty=0.5, language_penalty=2.0)
    # 9 units, 7 trigrams (abc bca cab abc bca cab abc), 3 distinct: 4/7 repeat, and cut: -(4/7 + 0.5);
    # a Chinese reply to an English prompt: -2 ("'snow' in Chinese is 雪." would be English: 13 letters, 1 hanzi)
    got = guards.penalty(prompts, texts, finished, on)
    assert got.tolist() == pytest.approx([-(4 / 7 + 0.5), 0.0, -0.5, -2.0])
    assert guards.penalty(prompts, texts, finished, GuardConfig()).tolist() == [0.0] * 4  # off: no change
    right = guards.penalty(prompts[3:], ["'snow' in Chinese is 雪."], [True], on)
    assert right.tolist() == [0.0]


def test_risen_names_the_metrics_past_the_threshold():
    start = {"probe_repeated_ngram": 0.1, "probe_token_limit": 0.2, "probe_off_language": 0.0}
    now = {"probe_repeated_ngram": 0.3, "probe_token_limit": 0.3, "probe_off_language": 0.2}
    # +0.2 > 0.15, +0.1 is not, +0.2 > 0.15
    assert guards.risen(start, now, 0.15) == ["repeated_ngram", "off_language"]
    assert guards.risen(start, start, 0.15) == []
    assert guards.risen(start, now, 0.15, ["token_limit", "off_language"]) == ["off_language"]  # guard.watch
    with pytest.raises(
        ConfigError, match="guard.watch: unknown length; choose from repeated_ngram, token_limit"
    ):
        GuardConfig(watch=["length"])


def test_probe_stops_for_good_once_a_metric_rises(monkeypatch):
    convs = [Conversation([Message("user", q)]) for q in ("What is 2 + 2?", "Write a haiku.")]
    replies = iter(
        [
            ["2 + 2 = 4.", "Snow falls on the hill."],  # step 0: clean
            ["2 + 2 = 4.", "雪雨雨雨雨雨雨雨雨雨"],  # a loop to the limit, in Chinese
            ["2 + 2 = 4.", "Snow falls on the hill."],  # clean again: the stop stays
        ]
    )
    cut = iter([[True, True], [True, False], [True, True]])

    def fake_sample(model, tokenizer, template, convs, sampling):
        assert sampling.temperature == 0.0 and sampling.max_new_tokens == 10  # greedy, the stage's budget
        return [SimpleNamespace(text=t, finished=f) for t, f in zip(next(replies), next(cut))]

    monkeypatch.setattr(guards, "sample", fake_sample)
    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    probe = guards.Probe(convs, max_new_tokens=10, guard=GuardConfig(max_rise=0.15), params=[weight])
    first = probe.measure(None, None, None)
    assert first == {"probe_repeated_ngram": 0.0, "probe_token_limit": 0.0, "probe_off_language": 0.0,
                     "guard_stopped": 0.0}  # fmt: skip
    with torch.no_grad():
        weight.add_(10.0)  # training moved the weights, and the policy began to loop
    second = probe.measure(None, None, None)
    # 雪 + 9 x 雨: 8 trigrams, 2 distinct -> 6/8 repeated; mean over 2 replies 0.375; 1 of 2 cut; 1 of 2 off
    assert second == {"probe_repeated_ngram": 0.375, "probe_token_limit": 0.5, "probe_off_language": 0.5,
                      "guard_stopped": 1.0, "guard_restored": 1.0}  # fmt: skip
    assert probe.stopped == ["repeated_ngram", "token_limit", "off_language"]
    assert weight.tolist() == [1.0, 2.0]  # back to the weights of the probe that passed
    assert probe.measure(None, None, None)["guard_stopped"] == 1.0
    restored = guards.Probe(convs, 10, GuardConfig(), [weight])
    restored.load_state(probe.state())
    assert restored.start == {k: v for k, v in first.items() if k != "guard_stopped"}
    assert restored.stopped == probe.stopped


def test_rollout_penalty_is_off_by_default_and_logs_when_on():
    samples = [
        SimpleNamespace(text="a b c a b c a b c", finished=False),
        SimpleNamespace(text="好的。", finished=True),
    ]
    prompts = ["Say abc.", "Say ok."]
    pen, logged = guards.rollout_penalty(GuardConfig(), prompts, samples)
    assert pen.tolist() == [0.0, 0.0] and logged == {}
    on = GuardConfig(repeat_penalty=1.0, no_eos_penalty=0.5, language_penalty=2.0)
    pen, logged = guards.rollout_penalty(on, prompts, samples)
    assert pen.tolist() == pytest.approx([-(4 / 7 + 0.5), -2.0])
    assert logged == pytest.approx(
        {"guard_penalty": -(4 / 7 + 2.5) / 2, "repeated_ngram": (4 / 7) / 2, "off_language": 0.5}
    )


def short_reward(conversation, reply: str) -> float:
    return -0.01 * len(reply)


def test_ppo_logs_the_guards_and_stops_when_the_probe_rises(tmp_path, tiny_model_dir, monkeypatch):
    """Guards on: every step logs the penalty and the rollouts' repeated 3-gram share, the probe logs probe_*
    at step 0 and every eval_every steps. A probe that has risen past max_rise stops the updates: the remaining
    steps log guard_stopped and leave the policy as it was."""
    import json

    from tests.test_ppo import write_prompts

    from pixiu import config
    from pixiu.train import ppo

    def run(name, *extra):
        cfg = config.load(None, [
            f"--model.name_or_path={tiny_model_dir}", "--model.dtype=fp32", "--lora.r=4",
            f"--data.path={write_prompts(tmp_path / 'p.jsonl', 8)}", "--data.eval_size=0", "--data.max_len=64",
            f"--train.output_dir={tmp_path / name}", "--train.max_steps=2", "--train.eval_every=1",
            "--train.batch_size=4", "--gen.max_new_tokens=8", "--ppo.rollout_prompts=4", "--ppo.minibatch=4",
            f"--ppo.reward_fn={__name__}:short_reward", "--guard.repeat_penalty=1", "--guard.no_eos_penalty=0.5",
            "--guard.probe_size=3", *extra])  # fmt: skip
        ppo.run(cfg)
        return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    rows = run("on")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert {"probe_repeated_ngram", "probe_token_limit", "probe_off_language"} <= rows[0].keys()
    for r in rows[1:]:
        assert r["guard_penalty"] <= 0 and 0 <= r["repeated_ngram"] < 1 and "probe_token_limit" in r
        # reward = the function's value + the penalty, both logged
        assert r["reward"] == pytest.approx(r["fn_reward"] + r["guard_penalty"], abs=1e-5)
    monkeypatch.setattr(guards, "risen", lambda start, now, max_rise, watch: ["token_limit"])
    stopped = run("stopped")
    assert stopped[0]["guard_stopped"] == 1.0  # tripped at the first probe: no update ran
    assert all(r["guard_stopped"] == 1.0 and "reward" not in r for r in stopped[1:])


def test_ppo_ends_with_the_policy_of_the_last_probe_that_passed(tmp_path, tiny_model_dir, monkeypatch):
    """The probe passes at step 0 and trips at step 1, after an update: the saved policy is step 0's. Its LoRA B
    matrices start at zero, so every one of them is zero again (the update at step 1 had moved them)."""
    from safetensors.torch import load_file
    from tests.test_ppo import write_prompts

    from pixiu import config
    from pixiu.train import ppo

    calls = iter([[], ["token_limit"]])
    monkeypatch.setattr(guards, "risen", lambda start, now, max_rise, watch: next(calls, ["token_limit"]))
    out = tmp_path / "run"
    cfg = config.load(None, [
        f"--model.name_or_path={tiny_model_dir}", "--model.dtype=fp32", "--lora.r=4",
        f"--data.path={write_prompts(tmp_path / 'p.jsonl', 8)}", "--data.eval_size=0", "--data.max_len=64",
        f"--train.output_dir={out}", "--train.max_steps=2", "--train.eval_every=1", "--train.batch_size=4",
        "--train.lr=1e-2", "--gen.max_new_tokens=8", "--ppo.rollout_prompts=4", "--ppo.minibatch=4",
        f"--ppo.reward_fn={__name__}:short_reward", "--guard.probe_size=3"])  # fmt: skip
    ppo.run(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["guard_stopped"] for r in rows] == [0.0, 1.0, 1.0] and rows[1]["guard_restored"] == 1.0
    assert "reward" in rows[1] and "reward" not in rows[2]  # step 1 updated, step 2 did not
    lora_b = {
        k: v for k, v in load_file(out / "final" / "adapter_model.safetensors").items() if "lora_B" in k
    }
    assert lora_b and all(not v.any() for v in lora_b.values())


def test_grpo_ends_with_the_policy_of_the_last_probe_that_passed(tmp_path, tiny_model_dir, monkeypatch):
    """GRPO's probe does the same: it trips at step 1, after an update, and the saved adapter is step 0's."""
    from safetensors.torch import load_file
    from tests.test_grpo import make_cfg

    from pixiu.train import grpo

    calls = iter([[], ["token_limit"]])
    monkeypatch.setattr(guards, "risen", lambda start, now, max_rise, watch: next(calls, ["token_limit"]))
    cfg = make_cfg(
        tmp_path, tiny_model_dir, "--train.max_steps=2", "--train.eval_every=1", "--guard.probe_size=2"
    )
    final = grpo.run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["guard_stopped"] for r in rows] == [0.0, 1.0, 1.0] and rows[1]["guard_restored"] == 1.0
    lora_b = {k: v for k, v in load_file(final / "adapter_model.safetensors").items() if "lora_B" in k}
    assert lora_b and all(not v.any() for v in lora_b.values())
