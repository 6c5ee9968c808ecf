"""Degeneration metrics on hand-made replies, expected values worked out by hand in each comment."""

import pytest

from pixiu.degeneration import (
    ReplyStats,
    matches,
    off_language,
    repeated_ngram_rate,
    reply_stats,
    script,
    summarize,
    units,
)


def test_units_split_words_numbers_characters_and_marks():
    assert units("41 + 64 = 10.5.") == ["41", "+", "64", "=", "10.5", "."]
    assert units("The Cat, 猫。") == ["the", "cat", ",", "猫", "。"]


def test_repeated_ngram_rate_by_hand():
    # 雪 雨 雨 雨 雨 雨: trigrams 雪雨雨, 雨雨雨, 雨雨雨, 雨雨雨 -> 4, of which 2 repeat an earlier one -> 0.5
    assert repeated_ngram_rate("雪雨雨雨雨雨") == 0.5
    # 。 x 5: three trigrams, all the same -> 2 / 3
    assert repeated_ngram_rate("。。。。。") == pytest.approx(2 / 3)
    # the cat the cat the cat: (the cat the), (cat the cat) twice each -> 2 / 4
    assert repeated_ngram_rate("The cat the cat the cat") == 0.5
    # a right answer: 41 + 64 = 105 . -> 4 distinct trigrams
    assert repeated_ngram_rate("41 + 64 = 105.") == 0.0
    assert repeated_ngram_rate("hi") == 0.0  # fewer units than n: nothing to repeat
    assert repeated_ngram_rate("a b a b", n=2) == pytest.approx(1 / 3)  # ab, ba, ab


def test_script_and_off_language():
    assert script("What is the capital of Japan?") == "en"
    assert script("日本的首都是东京。") == "zh"
    assert script("7 × 10 = 70.") is None
    assert script("'door' in Chinese is 门.") == "en"  # 15 letters to 1 character
    assert off_language("What is the capital of Japan?", "日本的首都是东京。")  # a Chinese reply to English
    assert off_language("日本的首都是哪里？", "The capital of Japan is Tokyo.")
    assert not off_language("What is 7 times 10?", "7 × 10 = 70.")  # numbers alone are in no language
    assert not off_language("Translate 'door' into Chinese.", "'door' in Chinese is 门.")


def test_matches_whole_units_only():
    assert matches("105", "41 + 64 = 105.")
    assert not matches("105", "41 + 64 = 1050.")
    assert not matches("105", "41 + 64 = 105.5")
    assert not matches("10", "41 + 64 = 10.5")
    assert matches("8.5", "510 minutes = 8.5 hours.")
    assert not matches("8.5", "510 minutes = 510 hours.")
    assert matches("slow", "The antonym of 'fast' is 'Slow'.")
    assert not matches("slow", "Antonym of 'fast' is 'fast'.")
    assert not matches("slow", "It goes slowly.")
    assert matches("门", "'door' in Chinese is 门.")
    assert matches("New Delhi", "The capital of India is New Delhi.")
    assert not matches("", "anything")


def test_a_choice_reference_rules_out_the_wrong_choices():
    # "Is 380 odd or even?": the reference names the wrong choice after '|'
    assert matches("even|odd", "380 is even, because it is divisible by 2.")
    assert not matches("even|odd", "380 is odd, because it is not divisible by 2.")
    assert not matches("even|odd", "380 is odd or even.")  # the question echoed names both
    assert not matches("even|odd", "380 is a number.")
    assert matches("偶数|奇数", "380 是偶数，因为它能被 2 整除。")
    assert not matches("偶数|奇数", "380 是奇数还是偶数。")


def test_reply_stats_and_summary_by_hand():
    en = "What is 41 + 64?"
    replies = [
        reply_stats(en, "41 + 64 = 105.", True, "105"),  # right, clean
        reply_stats(en, "41 + 64 = 115.", True, "105"),  # wrong, clean
        reply_stats(en, "四十一加六十四等于一百零五。" * 3, False, "105"),  # Chinese, cut, repeated, no "105"
        reply_stats(en, "", True),  # empty, no reference
    ]
    assert replies[0] == ReplyStats(0.0, False, False, False, 1.0)
    assert replies[1] == ReplyStats(0.0, False, False, False, 0.0)
    cut = replies[2]
    # 14 characters said 3 times = 42 units, 40 trigrams; the 12 inside the first pass and the 2 across the
    # seam ("五。四", "。四十") are new, the other 26 repeat: 26 / 40 = 0.65
    assert cut.repeated == pytest.approx(26 / 40)
    assert (cut.cut, cut.off_language, cut.empty, cut.correct) == (True, True, False, 0.0)
    assert replies[3] == ReplyStats(0.0, False, False, True, None)
    s = summarize(replies)
    assert s == {
        "repeated_ngram": round(0.65 / 4, 4),  # (0 + 0 + 0.65 + 0) / 4
        "token_limit": 0.25,
        "off_language": 0.25,
        "empty": 0.25,
        "exact_match": round(1 / 3, 4),  # 1 right of the 3 replies with a reference
        "checked": 3,
    }
    assert summarize([]) == {}
    # the worst reply ranks first: 0.65 repeated + cut + off-language + 0.5 for wrong
    assert max(replies, key=ReplyStats.badness) is cut
    assert cut.badness() == pytest.approx(0.65 + 1 + 1 + 0.5)


def _route_inputs():
    from types import SimpleNamespace

    from pixiu.chat.messages import Conversation, Message
    from pixiu.eval import route

    prompts = [f"What is {i} + 1?" for i in range(10)]
    convs = [Conversation([Message("user", p)]) for p in prompts]
    answers = [str(i + 1) for i in range(10)]
    sample = lambda text, finished=True: SimpleNamespace(text=text, finished=finished)  # noqa: E731
    start = [sample(f"{i} + 1 = {i + 1}.") for i in range(10)]
    final = [sample(f"{i} + 1 = {i + 1}.") for i in range(10)]
    final[7] = sample("。" * 20, finished=False)  # repeated, cut, off-language, wrong
    start[2] = sample("2 + 1 = 4.")  # wrong only
    replies = {"start": start, "final": final}
    stats = {n: route.degeneration(convs, answers, r, 1) for n, r in replies.items()}
    ev = SimpleNamespace(samples=1, show=3, seed=0)
    return route, convs, replies, stats, ev


def test_route_shows_a_seeded_sample_then_the_worst_replies():
    import random

    route, convs, replies, stats, ev = _route_inputs()
    assert stats["final"][7] == ReplyStats(
        pytest.approx(17 / 18), True, False, False, 0.0
    )  # "。" has no script
    assert stats["start"][2].correct == 0.0 and stats["start"][3].correct == 1.0
    rows = route.side_by_side(convs, replies, {"start": [], "final": []}, stats, ev)
    sampled = sorted(random.Random(0).sample(range(10), 3))
    assert [r["prompt"] for r in rows if r["picked"] == "sample"] == [f"What is {i} + 1?" for i in sampled]
    # the worst outside the sample: prompt 7 (badness 17/18 + 1 + 0.5), then prompt 2 (wrong: 0.5); the rest clean
    worst = [r["prompt"] for r in rows if r["picked"] == "worst"]
    assert worst == [f"What is {i} + 1?" for i in (7, 2) if i not in sampled]
    bad = next(r for r in rows if r["prompt"] == "What is 7 + 1?")
    assert bad["final_metrics"] == {"repeated": 0.944, "cut": True, "off_language": False, "empty": False,
                                    "correct": 0.0}  # fmt: skip
    assert route.reply_flags(bad["final_metrics"]) == " [repeated 3-grams 0.94, hit token limit, wrong]"
    assert route.reply_flags(bad["start_metrics"]) == " [right]"


def test_summary_markdown_shows_degeneration_next_to_reward():
    route, convs, replies, stats, ev = _route_inputs()
    pol = {
        "prompts": 10,
        "samples_per_prompt": 1,
        "sampling": {"temperature": 1.0, "max_new_tokens": 20},
        "kl_final_to_start": 1.5,
        "side_by_side": route.side_by_side(convs, replies, {"start": [], "final": []}, stats, ev),
    }
    for name in ("start", "final"):
        pol[name] = {"path": name, "mean_length": 8.0, "degeneration": summarize(stats[name])}
    text = route.markdown(
        {"output_dir": "x", "stages": [], "eval_seconds": 1, "total_seconds": 2, "policies": pol}
    )
    # start: 9 of 10 right; final: prompt 7 cut, repeated 17/18 in one of 10 replies
    assert "| hit token limit | off-language | empty | exact match |" in text
    assert "| start | start | nan | nan | 8.0 | 0.000 | 0.000 | 0.000 | 0.000 | 0.900 |" in text
    assert "| final | final | nan | nan | 8.0 | 0.094 | 0.100 | 0.000 | 0.000 | 0.900 |" in text
    assert "A fixed random sample of the held-out prompts" in text and "The worst replies" in text


def test_pixiu_eval_degeneration_task(tmp_path, monkeypatch):
    import json

    from pixiu.config import EvalConfig
    from pixiu.engine.base import Completion
    from pixiu.eval import run
    from pixiu.eval.degeneration import degeneration

    rows = [
        {"prompt": "What is 2 + 3?", "answer": "5"},
        {"prompt": "Name the capital of Japan.", "answer": "Tokyo"},
        {"prompt": "写一首关于雪的俳句。"},
    ]
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    replies = {  # right; wrong and in Chinese; a loop cut at the limit
        "What is 2 + 3?": ("2 + 3 = 5.", "stop"),
        "Name the capital of Japan.": ("日本的首都是大阪。", "stop"),
        "写一首关于雪的俳句。": ("雪雨雨雨雨雨", "length"),
    }

    class Engine:
        def generate(self, prompts, sampling, n=1, stop=()):
            assert sampling.temperature == 0.0 and sampling.max_new_tokens == 6
            return [Completion(*replies[p.messages[-1].content], 5, 6) for p in prompts]

        def close(self):
            pass

    monkeypatch.setattr(run.EvalContext, "engine", lambda self, model=None: Engine())
    cfg = EvalConfig(model="m", tasks="degeneration", data=str(data), max_new_tokens=6)
    res = degeneration(run.EvalContext(cfg, tmp_path / "out"))
    # repeated: (0 + 0 + 2/4) / 3; cut 1/3; off-language 1/3 (Chinese to English); exact match 1 of 2
    assert res["metrics"] == {"repeated_ngram": round(0.5 / 3, 4), "token_limit": round(1 / 3, 4),
                              "off_language": round(1 / 3, 4), "empty": 0.0, "exact_match": 0.5,
                              "checked": 2.0, "prompts": 3.0}  # fmt: skip
    # worst first: off-language + wrong = 1.5 ties repeated 0.5 + cut = 1.5 (file order), then the clean one
    worst = [r["prompt"] for r in res["rows"]]
    assert worst == ["Name the capital of Japan.", "写一首关于雪的俳句。", "What is 2 + 3?"]
    assert "degeneration" in (run.load_modules() or run.EVALS)


def test_rm_accuracy_with_the_rule_reward_ppo_adds(tmp_path, monkeypatch):
    """Two held-out pairs the reward model gets wrong on the 'wrong' flaw (scores by hand: right 1.0 < wrong 1.5;
    right 0.2 > rude -1.0): RM accuracy 0.5, wrong 0.0. With `reference` x 2 (the row's answer '105' appears in
    the right reply only) the summed reward gives 3.0 > 1.5: accuracy 1.0, wrong 1.0. A row without an answer
    gets no bonus."""
    import json
    from types import SimpleNamespace

    from pixiu.data.tasks import reward_fn
    from pixiu.eval import route

    rows = [
        {"prompt": "41 + 64?", "chosen": "41 + 64 = 105.", "rejected": "41 + 64 = 96.", "kind": "wrong",
         "answer": "105"},
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "kind": "rude"},
    ]  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(route, "chunked", lambda *a, **k: [1.0, 1.5, 0.2, -1.0])
    ev = SimpleNamespace(pairs=str(path), max_pairs=0, batch_size=4)
    res = route.rm_accuracy((None, None), ev, ("reference", reward_fn("reference"), 2.0))
    assert res["accuracy"] == 0.5 and res["by_kind"] == {"rude": 1.0, "wrong": 0.0}
    assert res["with_rule"]["rule"] == "reference x 2"
    assert res["with_rule"]["accuracy"] == 1.0 and res["with_rule"]["by_kind"] == {"rude": 1.0, "wrong": 1.0}
    assert res["with_rule"]["margin"] == pytest.approx(((3.0 - 1.5) + (0.2 + 1.0)) / 2)
    assert "with_rule" not in route.rm_accuracy((None, None), ev)


def test_paired_difference_by_hand():
    from pixiu.degeneration import ReplyStats, paired_difference

    def stats(repeated, correct):
        return ReplyStats(repeated, False, False, False, correct)

    # 2 prompts, 1 reply each. Start repeats nothing; final repeats half of prompt 0's reply: +0.25. A bootstrap
    # draw of 2 prompts takes prompt 0 twice (1/4), once (1/2) or never (1/4): +0.5, +0.25 or 0, so the 95%
    # interval runs from 0 to +0.5. Exact match: prompt 1 has no reference; prompt 0 went from right to wrong: -1.
    start = [stats(0.0, 1.0), stats(0.0, None)]
    final = [stats(0.5, 0.0), stats(0.0, None)]
    got = paired_difference(start, final, k=1)
    assert got["repeated_ngram"] == [0.25, 0.0, 0.5]
    assert got["token_limit"] == [0.0, 0.0, 0.0] and got["off_language"] == [0.0, 0.0, 0.0]
    assert got["exact_match"][0] == -1.0  # draws that miss prompt 0 have no reference: left out
    assert "exact_match" not in paired_difference(start[1:], final[1:], k=1)  # no reference at all
    # k replies per prompt stay together: the same rates as above with each reply doubled
    doubled = paired_difference([s for s in start for _ in "ab"], [s for s in final for _ in "ab"], k=2)
    assert doubled["repeated_ngram"] == [0.25, 0.0, 0.5]
