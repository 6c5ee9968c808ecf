"""Degeneration guards of PPO / GRPO (train/guards.py): the reward penalty and the probe's early stop, by hand."""

from types import SimpleNamespace

import pytest

from pixiu.chat.messages import Conversation, Message
from pixiu.train import guards


def test_penalty_by_hand():
    texts = ["a b c a b c a b c", "41 + 64 = 105.", ""]
    got = guards.penalty(texts, [False, True, False], repeat=1.0, no_eos=0.5)
    # 9 units, 7 trigrams (abc bca cab abc bca cab abc), 3 distinct: 4/7 repeat, and cut: -(4/7 + 0.5)
    assert got.tolist() == pytest.approx([-(4 / 7 + 0.5), 0.0, -0.5])
    assert guards.penalty(texts, [False, True, False], 0.0, 0.0).tolist() == [0.0, 0.0, 0.0]  # off: no change


def test_risen_names_the_metrics_past_the_threshold():
    start = {"probe_repeated_ngram": 0.1, "probe_token_limit": 0.2, "probe_off_language": 0.0}
    now = {"probe_repeated_ngram": 0.3, "probe_token_limit": 0.3, "probe_off_language": 0.2}
    # +0.2 > 0.15, +0.1 is not, +0.2 > 0.15
    assert guards.risen(start, now, 0.15) == ["repeated_ngram", "off_language"]
    assert guards.risen(start, start, 0.15) == []


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
    probe = guards.Probe(convs, max_new_tokens=10, max_rise=0.15)
    first = probe.measure(None, None, None)
    assert first == {"probe_repeated_ngram": 0.0, "probe_token_limit": 0.0, "probe_off_language": 0.0,
                     "guard_stopped": 0.0}  # fmt: skip
    second = probe.measure(None, None, None)
    # 雪 + 9 x 雨: 8 trigrams, 2 distinct -> 6/8 repeated; mean over 2 replies 0.375; 1 of 2 cut; 1 of 2 off
    assert second == {"probe_repeated_ngram": 0.375, "probe_token_limit": 0.5, "probe_off_language": 0.5,
                      "guard_stopped": 1.0}  # fmt: skip
    assert probe.stopped == ["repeated_ngram", "token_limit", "off_language"]
    assert probe.measure(None, None, None)["guard_stopped"] == 1.0
    restored = guards.Probe(convs, 10, 0.15)
    restored.load_state(probe.state())
    assert restored.start == {k: v for k, v in first.items() if k != "guard_stopped"}
    assert restored.stopped == probe.stopped
