"""Statutes -> continued-pretraining text and statute Q&A for SFT, with articles held out: `pixiu data law-qa`.

A statute file is Markdown with one article per `第N条 ...` line (`第一百三十三条之一` is an article of its own),
its paragraphs following until the next article or heading, as in ../shared/data/law/statutes/刑法.md. Each
article is held out or not by a hash of its label (`第二百六十四条`), so the split depends on nothing else: not
on the file order, the other articles or a seed. Held-out articles appear in no training row; they are the text
the statute perplexity is measured on (`pixiu eval MODEL --tasks perplexity --data OUT/heldout.jsonl`).

Files written to --out:
- pt.jsonl: {"text"} one training article per row (`第N条 ...` and its paragraphs), for `pixiu train pt`;
  with --amendments also the numbered changes of the amendment files (`一、将刑法第十七条修改为：...`), except
  any that names a held-out article (the change carries that article's text).
- heldout.jsonl: {"text"} the held-out articles, the same shape.
- sft.jsonl / heldout_sft.jsonl: {"messages"} two Q&A pairs per article, in LawBench's formats: the article
  number -> its content (1-1's instruction, "刑法第二百六十四条的内容是什么？"), and the article's opening ->
  its number in 3-1's answer format ("[法条]刑法第264条<eoa>").
- heldout_1-1.json: the held-out articles as LawBench 1-1 items (a JSON list of {instruction, question, answer}),
  for statute recitation on articles never trained on, with and without retrieval:
  `pixiu eval MODEL --tasks lawbench:1-1 --data OUT/heldout_1-1.json [--rag INDEX]`.
- with --rag_k N, sft.jsonl also holds each training article's recitation question with the top N passages of a
  BM25 index of the same statutes in the prompt, as `pixiu eval --rag` words it (rag.cite_prompt), no held-out
  article's text among them: a model that never saw passages in training ignores them (measured in
  docs/benchmarks.md). Evaluate with `--rag INDEX --rag_k N`, INDEX from `pixiu index build ... --embed none`.
- stats.json: counts and the held-out labels.
Charge prediction (LawBench 3-3) gets no rows: the only charge-labelled items in ../shared/data are LawBench's own
evaluation items 0-249, which are never trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pixiu.data.sources import DataError
from pixiu.rag.chunk import ARTICLE, HEADING, NUM, chinese_number, chunk_paths, chunk_text
from pixiu.rag.index import Hit, Index, cite_prompt

RECITE = "回答以下问题，只需直接给出法条内容:"  # LawBench 1-1's instruction
LOCATE = "这段条文出自{law}第几条？请将答案填在[法条]与<eoa>之间。"  # 3-1's answer format, a shorter ask
MENTION = re.compile(rf"第([{NUM}]+)条(之[{NUM}]+)?")


@dataclass(frozen=True)
class Article:
    law: str  # short name: "刑法" for "# 中华人民共和国刑法"
    label: str  # "第一百三十三条之一"
    text: str  # the article as written: "第一百三十三条之一 ..." and its paragraphs, one per line
    source: str  # "file:line" of its first line

    @property
    def content(self) -> str:
        """The text without its leading label."""
        return self.text[len(self.label) :].lstrip(" \u3000")

    @property
    def question(self) -> str:
        """LawBench 1-1's question for this article: '刑法第二百六十四条的内容是什么？'."""
        return f"{self.law}{self.label}的内容是什么？"

    @property
    def cite(self) -> str:
        """The label with an Arabic number, as LawBench's answers write it: '第一百三十三条之一' -> '第133条之一'."""
        m = MENTION.fullmatch(self.label)
        return f"第{chinese_number(m.group(1))}条{m.group(2) or ''}"


def held_out(label: str, share: float) -> bool:
    """Whether the article `label` is held out: the first 8 hex digits of its SHA-256 as a fraction < share."""
    return int(hashlib.sha256(label.encode("utf-8")).hexdigest()[:8], 16) / 16**8 < share


def read_articles(path: Path) -> list[Article]:
    """The articles of one statute file, in order (none for a file without `第N条` lines)."""
    law, out, cur = path.stem, [], None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if m := HEADING.match(line):
            if len(m.group(1)) == 1:
                law = m.group(2).strip().removeprefix("中华人民共和国")
            cur = None
        elif m := ARTICLE.match(line):
            cur = [line[: m.end()].strip(), [line], f"{path}:{n}"]
            out.append(cur)
        elif line and cur is not None and not line.startswith("<!--"):
            cur[1].append(line)
    return [Article(law, label, "\n".join(lines), src) for label, lines, src in out]


def mentions(text: str) -> set[str]:
    """Article labels a text names: '将刑法第十七条修改为' -> {'第十七条'}."""
    return {m.group(0) for m in MENTION.finditer(text)}


def qa_rows(a: Article, max_chars: int) -> list[dict]:
    """The two SFT conversations of one article (the opening cut to max_chars so the prompt fits max_len)."""
    opening = a.content if len(a.content) <= max_chars else a.content[:max_chars] + "……"
    pairs = [
        (f"{RECITE}\n{a.question}", a.content),
        (f"{LOCATE.format(law=a.law)}\n{opening}", f"[法条]{a.law}{a.cite}<eoa>"),
    ]
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": r}]} for q, r in pairs
    ]


def files_of(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix == ".md" and f.name != "SOURCE_README.md")
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such statute file or folder")
    return files


def carries(text: str, hidden: set[str]) -> bool:
    """Whether a chunk holds a held-out article's text: it is that article, or it names one (an amendment)."""
    m = ARTICLE.match(text)
    return bool(m and text[: m.end()].strip() in hidden) or bool(mentions(text) & hidden)


def with_passages(a: Article, index: Index, k: int, hidden: set[str]) -> dict:
    """The recitation question of a training article with the top k passages that carry no held-out text."""
    hits = [h for h in index.search(a.question, k + 20, "bm25") if not carries(h.chunk.text, hidden)][:k]
    prompt = cite_prompt(
        f"{RECITE}\n{a.question}", [Hit(i + 1, h.chunk, h.score) for i, h in enumerate(hits)]
    )
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": a.content}]}


def build(
    files: list[Path], share: float, amendments: bool, max_chars: int, rag_k: int = 0
) -> tuple[dict, list[str]]:
    """Statute files -> ({file name: rows}, the held-out labels): see the module docstring."""
    articles = [a for f in files for a in read_articles(f)]
    if not articles:
        raise DataError(f"no `第N条` articles in {', '.join(map(str, files))}")
    out = {k: [] for k in ("pt.jsonl", "heldout.jsonl", "sft.jsonl", "heldout_sft.jsonl", "heldout_1-1.json")}
    hidden = [a.label for a in articles if held_out(a.label, share)]
    for a in articles:
        keep = a.label not in hidden
        out["pt.jsonl" if keep else "heldout.jsonl"].append({"text": a.text})
        out["sft.jsonl" if keep else "heldout_sft.jsonl"] += qa_rows(a, max_chars)
        if not keep:
            out["heldout_1-1.json"].append(
                {"instruction": RECITE, "question": a.question, "answer": f"答案:{a.content}"}
            )
    if rag_k:
        index = Index.build(chunk_paths([str(f) for f in files]))
        out["sft.jsonl"] += [
            with_passages(a, index, rag_k, set(hidden)) for a in articles if a.label not in hidden
        ]
    if amendments:
        for f in files:
            if read_articles(f):
                continue  # the code itself, read above
            for c in chunk_text(f.read_text(encoding="utf-8"), f.name):
                if not mentions(c.text) & set(hidden):
                    out["pt.jsonl"].append({"text": c.text})
    return out, hidden


def main(argv: list[str]) -> None:
    """pixiu data law-qa STATUTES... --out DIR: pretraining text, statute Q&A, held-out articles."""
    p = argparse.ArgumentParser(prog="pixiu data law-qa", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "statutes", nargs="*", help="statute Markdown files or folders (../shared/data/law/statutes)"
    )
    # the same as a flag, for a pipeline data stage (it passes its args as --name=value)
    p.add_argument("--statutes", action="append", default=[], dest="more", help="a statute file or folder")
    p.add_argument("--out", required=True, help="directory for pt, heldout, sft, heldout_sft and stats")
    p.add_argument("--held_out", type=float, default=0.05, help="share of articles held out (by label hash)")
    p.add_argument(
        "--amendments",
        nargs="?",
        const="true",
        default="false",
        help="add the amendments' changes to pt.jsonl",
    )
    p.add_argument("--max_chars", type=int, default=60, help="article opening shown in content -> number")
    p.add_argument(
        "--rag_k", type=int, default=0, help="also recitation rows with N retrieved passages (0: none)"
    )
    a = p.parse_args(argv)
    if not a.statutes + a.more:
        p.error("give the statute files or folders")
    if not 0 <= a.held_out < 1:
        raise DataError(f"--held_out must be in [0, 1), got {a.held_out}")
    amendments = a.amendments.lower() in ("true", "1", "yes")
    files, hidden = build(files_of(a.statutes + a.more), a.held_out, amendments, a.max_chars, a.rag_k)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        if name.endswith(".json"):  # LawBench's own format: one JSON list
            text = json.dumps(rows, ensure_ascii=False, indent=1)
        else:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / name).write_text(text, "utf-8")
    stats = {"rows": {k: len(v) for k, v in files.items()}, "held_out": hidden}
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(stats["rows"]), f"held out: {len(hidden)} articles")
