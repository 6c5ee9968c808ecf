"""pixiu data filter: exact and MinHash near-duplicates (English and Chinese), length, repeats, language, refusals, the
AlpaGasus judge against a fake teacher, and the report of what was dropped and why."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fake_teacher import FakeTeacher  # noqa: E402

from pixiu.teach.filter import FilterConfig, format_report, prompt_reply, run_filter  # noqa: E402
from pixiu.teach.teacher import HTTPTeacher, TeacherConfig  # noqa: E402
from pixiu.teach.text import MinHash, is_refusal, language, shingles  # noqa: E402

EN = "Explain how photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen in green plants."
ZH = "请解释光合作用如何利用阳光、水和二氧化碳，在绿色植物中产生糖和氧气，并说明叶绿体的作用。"


def test_minhash_finds_near_duplicates_in_english_and_chinese():
    index = MinHash()
    assert index.add(EN, 0.8) is None and index.add(ZH, 0.8) is None
    hit = index.add(EN.replace("green plants", "green plant"), 0.8)  # one letter less: Jaccard ~0.97
    assert hit is not None and hit[0] == 0 and hit[1] > 0.85
    hit = index.add(ZH.replace("并说明", "并且说明"), 0.8)  # one character more
    assert hit is not None and hit[0] == 1
    assert (
        index.add("A completely different sentence about the history of Rome and its emperors.", 0.8) is None
    )
    assert index.add("完全不同的句子：罗马帝国的历史和它的皇帝们。", 0.8) is None
    assert len(shingles("你好世界", 2)) == 3  # character n-grams: Chinese needs no word splitting


def test_language_and_refusal():
    assert language(EN) == "en" and language(ZH) == "zh" and language("Здравствуйте, как дела") == "other"
    assert is_refusal("I'm sorry, but I can't help with that.") and is_refusal("抱歉，我无法回答这个问题。")
    assert not is_refusal("Photosynthesis happens in chloroplasts.")


def test_prompt_reply_of_each_format():
    assert prompt_reply({"instruction": "a", "input": "b", "output": "c"}) == ("a\n\nb", "c")
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]
    assert prompt_reply({"messages": msgs}) == ("q", "r")
    assert prompt_reply({"prompt": "p", "chosen": "c", "rejected": "r"}) == ("p", "c")
    assert prompt_reply({"prompt": "p", "responses": ["best", "worst"]}) == ("p", "best")


def rows() -> list[dict]:
    def a(instruction, output):
        return {"instruction": instruction, "input": "", "output": output}

    return [a(EN, "Plants use light."), a(EN, "Plants use light."),  # exact copy
            a(EN.upper(), "plants use  LIGHT."),  # exact after normalisation
            a(EN.replace("green plants", "green plant"), "Plants use light."),  # near copy
            a(ZH, "植物利用光能。"), a(ZH.replace("并说明", "并且说明"), "植物利用光能。"),  # near copy, Chinese
            a("Name a prime number.", ""),  # empty reply
            a("Name an even number.", "I'm sorry, but I cannot answer that."),
            a("Name a pet.", "the cat the cat the cat the cat the cat"),  # 6 of 8 trigrams repeat
            a("说一种天气。", "雪雨雨雨雨雨雨雨雨雨雨雨"),  # 8 of 10
            a("Name an odd number.", "Three."), a("Name a colour.", "Blue."), a("Name a metal.", "Iron.")]  # fmt: skip


def test_filter_report(tmp_path):
    src = tmp_path / "gen.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()))
    report = run_filter(FilterConfig(inputs=str(src)))
    assert report["rows"] == 13 and report["kept"] == 5
    assert report["dropped"] == {"exact duplicate": 2, "near duplicate (Jaccard >= 0.8)": 2,
                                 "reply repeats itself (3-grams > 0.6)": 2,
                                 "reply shorter than 2 characters": 1, "refusal": 1}  # fmt: skip
    assert (
        run_filter(FilterConfig(inputs=str(src), out=str(tmp_path / "all.jsonl"), max_repeat=0))["kept"] == 7
    )
    assert report["examples"]["refusal"] == ["Name an even number."]
    kept = [json.loads(x) for x in Path(report["output"]).read_text().splitlines()]
    assert [r["output"] for r in kept] == ["Plants use light.", "植物利用光能。", "Three.", "Blue.", "Iron."]
    assert json.loads(Path(report["output"] + ".report.json").read_text())["kept"] == 5
    assert "refusal" in format_report(report)
    zh = run_filter(FilterConfig(inputs=str(src), out=str(tmp_path / "zh.jsonl"), lang="zh"))
    assert zh["kept"] == 1 and zh["dropped"]["prompt not in zh"] == 5  # language runs before refusal


def test_judge_keeps_scores_at_threshold(tmp_path):
    """The fake judge scores by the reply's content: 5 for Iron, 4 for Blue, 2 for Three, no number otherwise."""

    def verdict(text):
        for reply, score in (("Iron.", "5"), ("Blue.", "4\nAccurate."), ("Three.", "Score: 2")):
            if f"Response: {reply}" in text:
                return score
        return "It is fine."

    server = FakeTeacher(reply=verdict)
    try:
        src = tmp_path / "gen.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows()[10:] + [rows()[0]]))
        teacher = HTTPTeacher(TeacherConfig(url=server.url, model="judge", retries=0))
        report = run_filter(FilterConfig(inputs=str(src), judge=True, threshold=4), teacher)
        assert report["kept"] == 2 and report["judge_scores"] == {"2.0": 1, "4.0": 1, "5.0": 1, "None": 1}
        assert report["dropped"] == {"judge score < 4": 1, "judge gave no score 1-5": 1}
        kept = [json.loads(x) for x in Path(report["output"]).read_text().splitlines()]
        assert [r["meta"]["judge_score"] for r in kept] == [4.0, 5.0]
    finally:
        server.close()
