"""Retrieval: structure-aware chunks, BM25 over words and CJK n-grams, embeddings, fusion, citations."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pixiu.rag import Index, chunk_text, cite_prompt
from pixiu.rag.chunk import chinese_number
from pixiu.rag.index import BM25, asked_articles, terms

STATUTE = """# 中华人民共和国刑法

1997年3月14日 通过

## 第二编 分则

### 第五章 侵犯财产罪

第二百六十三条 以暴力、胁迫或者其他方法抢劫公私财物的，处三年以上十年以下有期徒刑。
有下列情形之一的，处十年以上有期徒刑：

（一）入户抢劫的；

第二百六十四条 盗窃公私财物，数额较大的，处三年以下有期徒刑、拘役或者管制。

第一百三十三条之一 在道路上驾驶机动车，追逐竞驶，情节恶劣的，处拘役。

# 刑法修正案（九）

一、在刑法第三十七条后增加一条。

二、将刑法第五十条第一款修改为：死刑缓期执行。
"""


def test_chinese_numbers():
    assert [chinese_number(s) for s in ["十", "十二", "二十", "一百零三", "二百六十四", "三百五十"]] == [
        10,
        12,
        20,
        103,
        264,
        350,
    ]


def test_statute_chunks_are_articles_with_heading_paths():
    chunks = chunk_text(STATUTE, "刑法.md")
    arts = [c for c in chunks if "article" in c.meta]
    assert [c.meta["article"] for c in arts] == [263, 264, 133]
    # an article keeps its continuation lines and numbered cases; the next article starts a new chunk
    assert arts[0].text.startswith("第二百六十三条") and "（一）入户抢劫的；" in arts[0].text
    assert "盗窃" not in arts[0].text
    assert arts[1].title == "中华人民共和国刑法 > 第二编 分则 > 第五章 侵犯财产罪 > 第二百六十四条"
    items = [c for c in chunks if c.title == "刑法修正案（九）"]
    assert [c.text[:2] for c in items] == ["一、", "二、"]
    assert chunks[0].text == "1997年3月14日 通过"


def test_plain_paragraphs_are_grouped_up_to_max_chars():
    text = "\n\n".join(f"Paragraph {i} " + "word " * 20 for i in range(6))
    chunks = chunk_text(text, "notes.md", max_chars=300)
    assert len(chunks) > 1 and all(len(c.text) <= 300 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()  # nothing lost, nothing repeated


def test_terms_split_cjk_into_characters_and_bigrams():
    assert terms("盗窃 Phone 12") == ["盗", "窃", "盗窃", "phone", "12"]


def test_bm25_matches_hand_computed_score():
    """Two docs, query 'a': df=1, N=2 -> idf = ln(1 + 1.5/1.5) = ln 2; doc0 = [a, b]: len 2 = avg 1.5 * 4/3,
    norm = 1.5 (1 - 0.75 + 0.75 * 4/3) = 1.875; score = ln2 * 1 * 2.5 / (1 + 1.875)."""
    bm = BM25([["a", "b"], ["c"]])
    s = bm.scores(["a"])
    assert s[1] == 0.0
    assert s[0] == pytest.approx(math.log(2) * 2.5 / 2.875, rel=1e-9)


def test_bm25_finds_the_article_and_index_round_trips(tmp_path):
    index = Index.build(chunk_text(STATUTE, "刑法.md"))
    hits = index.search("他秘密盗窃了别人的财物", k=2, mode="hybrid")  # no embeddings: falls back to BM25
    assert hits[0].chunk.meta == {"article": 264} and hits[0].rank == 1
    again = Index.load(index.save(tmp_path / "idx")).search("他秘密盗窃了别人的财物", k=2)
    assert [h.chunk for h in again] == [h.chunk for h in hits]


def test_a_named_article_comes_first():
    assert asked_articles("刑法第八十五条和第133条之一") == {(85, ""), (133, "之一")}
    assert asked_articles("盗窃罪怎么判") == set()
    index = Index.build(chunk_text(STATUTE, "刑法.md"))
    query = (
        "请问刑法第264条规定了什么？"  # "264" is no term of the text: BM25 alone ranks by 刑法 / 规定 / 什么
    )
    bm25 = torch.tensor(index.bm25.scores(terms(query)))
    assert index.chunks[int(bm25.argmax())].meta != {"article": 264}
    assert [h.chunk.meta for h in index.search(query, k=2, mode="bm25")][0] == {"article": 264}
    hits = index.search("第二百六十三条和第二百六十四条的内容", k=3, mode="bm25")
    assert {h.chunk.meta.get("article") for h in hits[:2]} == {263, 264}
    hits = index.search("第一百三十三条之一是什么", k=1, mode="bm25")
    assert hits[0].chunk.meta == {"article": 133, "part": "之一"}


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory, tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    path = tmp_path_factory.mktemp("embedder")
    BertModel(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_embeddings_are_unit_vectors_and_fusion_is_reciprocal_rank(embedder_dir, tmp_path):
    chunks = chunk_text(STATUTE, "刑法.md")
    index = Index.build(chunks, embedder_dir)
    assert index.vectors.shape[0] == len(chunks)
    assert torch.allclose(index.vectors.norm(dim=-1), torch.ones(len(chunks)), atol=1e-5)
    q = "盗窃公私财物"
    bm = torch.tensor(index.bm25.scores(terms(q)))
    emb = index.vectors @ index.embed([q])[0]
    rank = lambda s: {int(j): r for r, j in enumerate(s.argsort(descending=True))}  # noqa: E731
    rb, re_ = rank(bm), rank(emb)
    want = {j: 1 / (61 + rb[j]) + 1 / (61 + re_[j]) for j in range(len(chunks))}
    hits = index.search(q, k=3, mode="hybrid")
    assert [h.score for h in hits] == pytest.approx(sorted(want.values(), reverse=True)[:3])
    saved = Index.load(index.save(tmp_path / "idx"))
    assert torch.equal(saved.vectors, index.vectors) and saved.embedder_path == embedder_dir
    assert [h.chunk for h in saved.search(q, 3, "embed")] == [h.chunk for h in index.search(q, 3, "embed")]


def test_cite_prompt_numbers_sources_in_the_question_language():
    index = Index.build(chunk_text(STATUTE, "刑法.md"))
    hits = index.search("盗窃", k=2)
    zh = cite_prompt("盗窃怎么判？", hits)
    assert zh.startswith("参考资料：\n\n[1] ") and "[2] " in zh and zh.endswith("问题：盗窃怎么判？")
    en = cite_prompt("What is theft?", hits)
    assert en.startswith("Sources:\n\n[1] ") and "cite them as [n]" in en
    with pytest.raises(ValueError, match="valid"):
        index.search("x", mode="dense")


def test_serve_with_rag_cites_passages_and_returns_sources(tmp_path):
    from fake_engine import FakeEngine
    from fastapi.testclient import TestClient

    from pixiu.config import ServeConfig
    from pixiu.serve import api

    Index.build(chunk_text(STATUTE, "刑法.md")).save(tmp_path / "idx")
    engine = FakeEngine("fake", context_len=4096)
    app = api.create_app({"fake": engine}, config=ServeConfig(rag=str(tmp_path / "idx"), rag_k=2))
    tc = TestClient(app)
    body = {"model": "fake", "messages": [{"role": "user", "content": "盗窃财物怎么判？"}]}
    r = tc.post("/v1/chat/completions", json=body).json()
    assert [s["index"] for s in r["sources"]] == [1, 2]
    assert r["sources"][0]["title"].endswith("第二百六十四条") and r["sources"][0]["source"] == "刑法.md"
    reply = r["choices"][0]["message"]["content"]  # the fake engine echoes the prompt it got
    assert reply.startswith("fake says: 参考资料：\n\n[1] 中华人民共和国刑法") and reply.endswith(
        "问题：盗窃财物怎么判？"
    )
    stream = tc.post("/v1/chat/completions", json={**body, "stream": True}).text.split("\n\n")
    first = json.loads(stream[0][len("data: ") :])
    assert [s["index"] for s in first["sources"]] == [1, 2]
    assert all("sources" not in json.loads(e[6:]) for e in stream[1:] if e.startswith("data: {"))
    plain = TestClient(api.create_app({"fake": engine})).post("/v1/chat/completions", json=body).json()
    assert (
        "sources" not in plain and plain["choices"][0]["message"]["content"] == "fake says: 盗窃财物怎么判？"
    )


def test_length_ordered_batches_give_each_text_its_own_vector(embedder_dir):
    """Batches go in length order; each vector still belongs to its own text, as embedding it alone gives."""
    from pixiu.rag.index import Embedder

    texts = [
        "第二百六十四条 盗窃公私财物，数额较大的，处三年以下有期徒刑。" * 3,
        "盗窃",
        "第一条 为了惩罚犯罪",
        "a b",
    ]
    embed = Embedder(embedder_dir)
    together = embed(texts, batch=2)
    alone = torch.cat([embed([t]) for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
