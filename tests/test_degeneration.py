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
