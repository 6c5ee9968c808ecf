"""The law recipe's pieces: `pixiu data law-qa` on a hand-made statute (golden rows, held-out articles in no
training row), the statute perplexity by hand, and the recipe wired to the command's files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pixiu.config import EvalConfig
from pixiu.data import law
from pixiu.data.sources import DataError
from pixiu.eval.run import EvalContext

STATUTE = """# 中华人民共和国刑法

2020年12月26日 通过

<!-- INFO END -->

## 第一编 总则

### 第一章 任务

第一条 为了惩罚犯罪，制定本法。

第二条 刑法的任务，是保护人民。

第三条 法律明文规定为犯罪行为的，依照法律定罪处刑。

法律没有明文规定的，不得定罪处刑。

第三条之一　已满七十五周岁的人故意犯罪的，可以从轻处罚。

## 第二编 分则

第四条 盗窃公私财物的，处三年以下有期徒刑。
"""
AMENDMENT = """# 中华人民共和国刑法修正案

<!-- INFO END -->

一、将刑法第二条修改为：“刑法的任务，是保护全体人民。”

二、在刑法第三条后增加一条，作为第三条之一：“已满七十五周岁的人故意犯罪的，可以从轻处罚。”
"""
HIDDEN = ["第一条", "第二条"]  # sha256 of the label as a fraction: 0.014 and 0.038 < 0.05; the rest >= 0.45


def statutes(tmp_path: Path) -> Path:
    folder = tmp_path / "statutes"
    folder.mkdir()
    (folder / "刑法.md").write_text(STATUTE, encoding="utf-8")
    (folder / "刑法修正案.md").write_text(AMENDMENT, encoding="utf-8")
    return folder


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def test_derivation_golden_rows_and_held_out_articles(tmp_path):
    out = tmp_path / "out"
    law.main([str(statutes(tmp_path)), "--out", str(out), "--amendments"])
    assert json.loads((out / "stats.json").read_text())["held_out"] == HIDDEN
    assert rows(out / "heldout.jsonl") == [
        {"text": "第一条 为了惩罚犯罪，制定本法。"},
        {"text": "第二条 刑法的任务，是保护人民。"},
    ]
    # articles in file order, paragraphs one per line; then the amendment's change that names no held-out
    # article (change 一 rewrites 第二条, so it would carry held-out text)
    assert rows(out / "pt.jsonl") == [
        {"text": "第三条 法律明文规定为犯罪行为的，依照法律定罪处刑。\n法律没有明文规定的，不得定罪处刑。"},
        {"text": "第三条之一　已满七十五周岁的人故意犯罪的，可以从轻处罚。"},
        {"text": "第四条 盗窃公私财物的，处三年以下有期徒刑。"},
        {
            "text": "二、在刑法第三条后增加一条，作为第三条之一：“已满七十五周岁的人故意犯罪的，可以从轻处罚。”"
        },
    ]
    sft = rows(out / "sft.jsonl")
    assert len(sft) == 6 and sft[2:4] == [
        chat(f"{law.RECITE}\n刑法第三条之一的内容是什么？", "已满七十五周岁的人故意犯罪的，可以从轻处罚。"),
        chat(
            f"{law.LOCATE.format(law='刑法')}\n已满七十五周岁的人故意犯罪的，可以从轻处罚。",
            "[法条]刑法第3条之一<eoa>",
        ),
    ]
    assert sft[1]["messages"][1]["content"] == "[法条]刑法第3条<eoa>"
    assert [r["messages"][0]["content"].split("\n")[1] for r in rows(out / "heldout_sft.jsonl")[::2]] == [
        "刑法第一条的内容是什么？",
        "刑法第二条的内容是什么？",
    ]
    recite = json.loads((out / "heldout_1-1.json").read_text(encoding="utf-8"))  # LawBench 1-1's format
    assert recite == [
        {
            "instruction": law.RECITE,
            "question": "刑法第一条的内容是什么？",
            "answer": "答案:为了惩罚犯罪，制定本法。",
        },
        {
            "instruction": law.RECITE,
            "question": "刑法第二条的内容是什么？",
            "answer": "答案:刑法的任务，是保护人民。",
        },
    ]
    training = (out / "pt.jsonl").read_text(encoding="utf-8") + (out / "sft.jsonl").read_text(
        encoding="utf-8"
    )
    assert "制定本法" not in training and "保护人民" not in training and "全体人民" not in training


def test_rag_rows_put_the_asked_article_first_and_no_held_out_text(tmp_path):
    """--rag_k 2: each training article's recitation question again, with 2 passages in `pixiu eval --rag`'s
    prompt; neither held-out article (第一条, 第二条) nor the amendment that rewrites 第二条 is ever a passage."""
    out = tmp_path / "out"
    law.main([str(statutes(tmp_path)), "--out", str(out), "--rag_k", "2"])
    plain = rows(tmp_path / "out" / "sft.jsonl")[:6]
    cited = rows(out / "sft.jsonl")[6:]
    assert len(cited) == 3 and [r["messages"][1] for r in cited] == [r["messages"][1] for r in plain[::2]]
    first = cited[0]["messages"][0]["content"]
    assert first.startswith(
        "参考资料：\n\n[1] 中华人民共和国刑法 > 第一编 总则 > 第一章 任务 > 第三条\n第三条 法律明文"
    )
    assert first.endswith(f"问题：{law.RECITE}\n刑法第三条的内容是什么？") and "[2] " in first
    text = json.dumps(cited, ensure_ascii=False)
    assert "制定本法" not in text and "保护人民" not in text and "全体人民" not in text


def test_long_openings_are_cut_and_bad_input_is_named(tmp_path):
    article = law.Article("刑法", "第九条", "第九条 " + "甲" * 70, "x:1")
    assert (
        law.qa_rows(article, 60)[1]["messages"][0]["content"]
        == f"{law.LOCATE.format(law='刑法')}\n{'甲' * 60}……"
    )
    with pytest.raises(DataError, match="no such statute file or folder"):
        law.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    (tmp_path / "notes.md").write_text("# 说明\n\n没有条文。\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no `第N条` articles in .*notes.md"):
        law.main([str(tmp_path / "notes.md"), "--out", str(tmp_path / "o")])


def test_statute_perplexity_by_hand(tmp_path, tiny_model_dir):
    """perplexity over heldout.jsonl = exp(-(sum over articles of log p(token t | tokens < t), t >= 1) / count)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pixiu.eval import scores

    law.main([str(statutes(tmp_path)), "--out", str(tmp_path / "out")])
    data = tmp_path / "out" / "heldout.jsonl"
    cfg = EvalConfig(model=str(tiny_model_dir), tasks="perplexity", data=str(data), dtype="fp32")
    res = scores.perplexity(EvalContext(cfg, tmp_path / "eval"))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for row in rows(data):
        ids = tok(row["text"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        total += sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)))
        count += len(ids) - 1
    assert res["metrics"]["tokens"] == count and res["metrics"]["records"] == 2
    assert res["metrics"]["perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-4)


def test_the_recipe_reads_the_commands_files():
    """recipes/law-zh.yaml: `pixiu data law-qa` as a data stage, then continued pretraining and SFT on the files it
    writes, each with the held-out articles as its eval set."""
    from pixiu import pipeline
    from pixiu.cli import DATA_COMMANDS

    recipe = Path(__file__).parent.parent / "recipes" / "law-zh.yaml"
    _, shared, stages = pipeline.load(recipe, [], DATA_COMMANDS)
    assert [(s.name, s.kind) for s in stages] == [("data", "data"), ("pt", "pt"), ("sft", "sft")]
    assert stages[0].command is law.main and stages[0].sections["args"]["out"] == "{output_dir}/data"
    data = [s.sections["data"] for s in stages[1:]]
    assert [(d["path"], d["eval_path"]) for d in data] == [
        ("{output_dir}/data/pt.jsonl", "{output_dir}/data/heldout.jsonl"),
        ("{output_dir}/data/sft.jsonl", "{output_dir}/data/heldout_sft.jsonl"),
    ]
    assert shared["model"]["name_or_path"] == "smollm2-135m" and shared["data"]["max_len"] == 256


def test_flags_as_a_data_stage_passes_them(tmp_path):
    """A pipeline data stage passes --statutes=DIR --amendments=true: the same rows as the positional form."""
    folder = statutes(tmp_path)
    law.main([str(folder), "--out", str(tmp_path / "a"), "--amendments"])
    law.main([f"--statutes={folder}", f"--out={tmp_path / 'b'}", "--amendments=true"])
    for name in ("pt.jsonl", "sft.jsonl", "heldout.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    law.main([f"--statutes={folder}", f"--out={tmp_path / 'c'}", "--amendments=false"])
    assert len(rows(tmp_path / "c" / "pt.jsonl")) == 3


@pytest.mark.slow
def test_shared_statutes_hold_out_articles_from_every_training_row(tmp_path):
    folder = Path(__file__).parent.parent.parent / "shared" / "data" / "law" / "statutes"
    if not folder.is_dir():
        pytest.skip("../shared/data/law/statutes is absent")
    out = tmp_path / "out"
    law.main([str(folder), "--out", str(out), "--amendments"])
    held = rows(out / "heldout.jsonl")
    assert len(held) == 28 and len(rows(out / "sft.jsonl")) == 2 * 477
    training = (out / "pt.jsonl").read_text(encoding="utf-8") + (out / "sft.jsonl").read_text(
        encoding="utf-8"
    )
    # no held-out article's body (after its label) is in any training row, whole or by its first 30 characters
    assert not [r["text"] for r in held if r["text"].split(maxsplit=1)[1][:30] in training]
