"""LawBench tasks: LawBench's own scoring on hand-made replies, and retrieval on and off."""

from __future__ import annotations

import json

import pytest

from pixiu.config import EvalConfig
from pixiu.engine import Completion
from pixiu.eval import lawbench
from pixiu.eval.run import EvalContext, EvalError
from pixiu.rag import Index, chunk_text


def test_rouge_l_by_hand():
    """pred 'abcd', ref 'abxd': LCS 'abd' = 3, P = R = 3/4, F = 0.75; whitespace is ignored."""
    assert lawbench.rouge_l("a b c d", "abxd") == pytest.approx(0.75)
    assert lawbench.rouge_l("", "abc") == 0.0 and lawbench.rouge_l("abc", "abc") == 1.0


def test_article_numbers_are_read_as_lawbench_reads_them():
    reply = "[法条]刑法第二百六十四条、第133条、刑法第三百八十五条<eoa>"
    assert lawbench.articles(reply) == {264, 133, 385}
    # LawBench drops '第...款' non-greedily from the first 第, so '第264条第一款' loses its article too
    assert lawbench.articles("刑法第264条第一款、第二十条") == {20}
    assert lawbench.gold_articles("法条:刑法第266、385、383条") == {266, 385, 383}
    assert lawbench.f1({264, 266}, {264}) == pytest.approx(2 / 3)  # P = 1, R = 1/2


class Stub:
    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def generate(self, prompts, sampling, n=1, stop=()):
        self.prompts += prompts
        return [Completion(self.reply, "stop", 1, 3) for _ in prompts]


def write(tmp_path, name, items):
    folder = tmp_path / "lawbench"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(items, ensure_ascii=False))
    return folder


def test_charge_f1_with_and_without_retrieval(tmp_path, monkeypatch):
    items = [
        {"instruction": "给出罪名。", "question": "被告人秘密窃取手机。", "answer": "罪名:盗窃"},
        {"instruction": "给出罪名。", "question": "被告人骗取财物。", "answer": "罪名:诈骗;盗窃"},
    ]
    folder = write(tmp_path, "3-3_charge_prediction.dev250.json", items)
    engine = Stub("[罪名]盗窃<eoa>")
    monkeypatch.setattr(EvalContext, "engine", lambda self, model=None: engine)
    plain = lawbench.charge_prediction(EvalContext(EvalConfig(model="m", data=str(folder)), tmp_path / "a"))
    assert (
        plain["metrics"]["f1"] == pytest.approx((1 + 2 / 3) / 2) and plain["metrics"]["abstention_rate"] == 0
    )
    assert engine.prompts[0].messages[-1].content == "给出罪名。\n被告人秘密窃取手机。"
    Index.build(chunk_text("第二百六十四条 盗窃公私财物的，处三年以下有期徒刑。\n", "刑法.md")).save(
        tmp_path / "idx"
    )
    cfg = EvalConfig(model="m", data=str(folder), rag=str(tmp_path / "idx"), rag_k=1)
    lawbench.charge_prediction(EvalContext(cfg, tmp_path / "b"))
    cited = engine.prompts[-1].messages[-1].content
    assert cited.startswith("参考资料：\n\n[1] 第二百六十四条\n第二百六十四条 盗窃")


def test_a_broken_item_names_the_file_and_item(tmp_path):
    folder = write(tmp_path, "3-1_article_prediction.dev250.json", [{"instruction": "x", "question": "y"}])
    with pytest.raises(EvalError, match=r"3-1_article_prediction.dev250.json: item 0 lacks"):
        lawbench.article_prediction(EvalContext(EvalConfig(model="m", data=str(folder)), tmp_path / "o"))


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"instruction": "x", "question": "y"', r"1-1_statute_recitation.dev250.json: not LawBench JSON"),
        (
            '{"instruction": "x"}',
            r"1-1_statute_recitation.dev250.json: expected a JSON list of items, got dict",
        ),
        (
            '[{"instruction": "x", "question": "y", "answer": "z"}, "text"]',
            r"\.json: item 1 lacks a text instr",
        ),
        (
            '[{"instruction": "x", "question": 3, "answer": null}]',
            r"\.json: item 0 lacks a text question, answer",
        ),
    ],
)
def test_a_broken_file_names_the_file_and_the_item(tmp_path, text, message):
    folder = tmp_path / "lawbench"
    folder.mkdir()
    (folder / "1-1_statute_recitation.dev250.json").write_text(text)
    with pytest.raises(EvalError, match=message):
        lawbench.recitation(EvalContext(EvalConfig(model="m", data=str(folder)), tmp_path / "o"))


def test_a_long_case_keeps_its_head_and_tail_and_is_counted(tmp_path, monkeypatch):
    """1,500 characters: the first 1,000 and the last 500 around '……'; cut_items counts the cut questions."""
    assert lawbench.cut("甲" * 1000 + "乙" * 2000 + "丙" * 500) == "甲" * 1000 + "……" + "丙" * 500
    assert lawbench.cut("短") == "短"
    items = [
        {"instruction": "给出罪名。", "question": "事实:" + "很长" * 800, "answer": "罪名:盗窃"},
        {"instruction": "给出罪名。", "question": "事实:短", "answer": "罪名:盗窃"},
    ]
    folder = write(tmp_path, "3-3_charge_prediction.dev250.json", items)
    engine = Stub("[罪名]盗窃<eoa>")
    monkeypatch.setattr(EvalContext, "engine", lambda self, model=None: engine)
    res = lawbench.charge_prediction(EvalContext(EvalConfig(model="m", data=str(folder)), tmp_path / "o"))
    assert res["metrics"]["cut_items"] == 1 and res["metrics"]["f1"] == 1.0
    assert len(engine.prompts[0].messages[-1].content) == len("给出罪名。\n") + 1502
