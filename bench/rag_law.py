"""Retrieval on the law data: index build time, recall@5 of the right article, charge F1 with and without it.

    python bench/rag_law.py [--items 250] [--f1_items 50] [--model smollm2-135m] [--embed auto|none|DIR]

- Index: every file of ../shared/data/law/statutes (the Criminal Law and its amendments), one chunk per article.
- Recall@5 (LawBench 3-1, article prediction, items 0-249): the facts are the query; an item counts as found when a
  gold article (`法条:刑法第264条`) is among the top 5 chunks of 刑法.md; `all@5` asks for every gold article.
- Charge F1 (LawBench 3-3, charge prediction): the model's greedy reply to LawBench's own instruction, scored as
  LawBench scores it (charges named in the reply vs the gold ones, set F1), once plain and once with the top 3
  passages in the prompt with numbered citations. The charge vocabulary is the gold charges of the 250 dev items
  (LawBench's list has 189 CAIL2018 charges; a predicted charge outside the dev set's is not counted here).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.rag import Index, chunk_paths, cite_prompt, default_embedder

LAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "law"


def gold_articles(answer: str) -> set[int]:
    """'法条:刑法第266、385、383条' -> {266, 385, 383}."""
    return {int(n) for group in re.findall(r"第([\d、]+)条", answer) for n in group.split("、") if n}


def recall(index: Index, items: list[dict], mode: str, k: int = 5) -> tuple[float, float]:
    any_hit = all_hit = 0
    for it in items:
        gold = gold_articles(it["answer"])
        got = {
            h.chunk.meta.get("article")
            for h in index.search(it["question"], k, mode)
            if h.chunk.source == "刑法.md"
        }
        any_hit += bool(gold & got)
        all_hit += gold <= got
    return any_hit / len(items), all_hit / len(items)


def charges(answer: str) -> set[str]:
    return set(answer.replace("罪名:", "").split(";"))


def f1(gold: set[str], pred: set[str]) -> float:
    tp = len(gold & pred)
    if not tp:
        return 0.0
    p, r = tp / len(pred), tp / len(gold)
    return 2 * p * r / (p + r)


def charge_f1(
    model: str, index: Index, items: list[dict], vocab: list[str], rag: bool, mode: str
) -> tuple[float, float]:
    from pixiu.engine import Sampling, load_engine

    prompts = []
    for it in items:
        question = it["instruction"] + "\n" + it["question"]
        if rag:
            question = cite_prompt(question, index.search(it["question"], 3, mode))
        prompts.append(Conversation([Message("user", question)]))
    with load_engine(model) as engine:
        replies = [c.text for c in engine.generate(prompts, Sampling(48))]
    scores = [f1(charges(it["answer"]), {c for c in vocab if c in r}) for it, r in zip(items, replies)]
    abstain = sum(not any(c in r for c in vocab) for r in replies)
    return sum(scores) / len(scores), abstain / len(items)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=250)
    p.add_argument(
        "--f1_items", type=int, default=50, help="3-3 items generated with and without retrieval (0: skip)"
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--embed", default="auto")
    p.add_argument("--mode", default="bm25", help="retrieval mode for the charge-F1 prompts")
    a = p.parse_args()
    if not LAW.exists():
        print(f"skipped: {LAW} not found")
        return
    t0 = time.perf_counter()
    chunks = chunk_paths([str(LAW / "statutes")])
    embed = {"auto": default_embedder(), "none": ""}.get(a.embed, a.embed)
    index = Index.build(chunks, embed)
    build_s = time.perf_counter() - t0
    items = json.loads((LAW / "lawbench" / "3-1_article_prediction.dev250.json").read_text(encoding="utf-8"))
    items = items[: a.items]
    print(
        f"index: {len(chunks)} chunks in {build_s:.1f} s (embeddings: {embed or 'none'}); "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"\nLawBench 3-1, items 0-{len(items) - 1}: a gold article of 刑法.md in the top 5 chunks")
    print("| mode | any gold article @5 | all gold articles @5 | s/query |")
    print("|---|---:|---:|---:|")
    for mode in ("bm25", "embed", "hybrid") if embed else ("bm25",):
        t = time.perf_counter()
        hit, full = recall(index, items, mode)
        print(f"| {mode} | {hit:.3f} | {full:.3f} | {(time.perf_counter() - t) / len(items):.3f} |")
    if a.f1_items:
        cc = json.loads((LAW / "lawbench" / "3-3_charge_prediction.dev250.json").read_text(encoding="utf-8"))
        vocab = sorted({c for it in cc for c in charges(it["answer"])}, key=len, reverse=True)
        sub = cc[: a.f1_items]
        print(
            f"\nLawBench 3-3, items 0-{len(sub) - 1}, {a.model}, greedy 48 tokens; charge vocabulary {len(vocab)}"
        )
        print("| prompt | charge F1 | abstention | s |")
        print("|---|---:|---:|---:|")
        for rag in (False, True):
            t = time.perf_counter()
            score, abstain = charge_f1(a.model, index, sub, vocab, rag, a.mode)
            name = f"with retrieval ({a.mode}, top 3, cited)" if rag else "without retrieval"
            print(f"| {name} | {score:.3f} | {abstain:.2f} | {time.perf_counter() - t:.0f} |")


if __name__ == "__main__":
    main()
