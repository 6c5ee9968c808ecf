"""Documents -> chunks that respect their structure: one statute article, one numbered item, or a run of
paragraphs under one markdown heading, never a window cut through a sentence.

A chunk carries its source file, its heading path (shown as the citation's title) and, for a statute article, the
article number (`第二百六十四条` -> 264), so retrieval can be scored against LawBench's answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DIGITS = {
    "〇": 0,
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
UNITS = {"十": 10, "百": 100, "千": 1000}
NUM = "〇零一二两三四五六七八九十百千"
ARTICLE = re.compile(rf"^第([{NUM}]+)条(之[{NUM}]+)?[\s　]")  # 第二百六十四条 / 第一百三十三条之一
ITEM = re.compile(rf"^[{NUM}]+、")  # 一、 (an amendment's numbered change)
HEADING = re.compile(r"^(#{1,6})\s+(.*)")
SENTENCE_END = re.compile(r"(?<=[。！？.!?])\s*")
SUFFIXES = (".md", ".markdown", ".txt")


@dataclass
class Chunk:
    source: str  # file name
    title: str  # heading path, plus the article when there is one: "中华人民共和国刑法 > 第五章 ... 第二百六十四条"
    text: str
    # {"article": 264} for 第二百六十四条; {"article": 133, "part": "之一"} for 第一百三十三条之一
    meta: dict = field(default_factory=dict)


def chinese_number(s: str) -> int:
    """'二百六十四' -> 264, '十' -> 10, '一百零三' -> 103 (numbers below 10,000, as statute articles are)."""
    total, digit = 0, 0
    for ch in s:
        if ch in DIGITS:
            digit = DIGITS[ch]
        else:
            total += (digit or 1) * UNITS[ch]
            digit = 0
    return total + digit


def chunk_text(text: str, source: str, max_chars: int = 800) -> list[Chunk]:
    """Split one document. A new chunk starts at every heading, article (第N条) and numbered item (一、); a run of
    plain paragraphs is cut at max_chars on a paragraph boundary, and a longer paragraph at sentence ends."""
    chunks: list[Chunk] = []
    headings: list[str] = []
    buf: list[str] = []
    meta: dict = {}
    title_extra = ""

    def flush():
        nonlocal buf, meta, title_extra
        body = "\n".join(buf).strip()
        if body:
            title = " > ".join([*headings, *([title_extra] if title_extra else [])]) or Path(source).stem
            chunks.extend(Chunk(source, title, piece, dict(meta)) for piece in split_long(body, max_chars))
        buf, meta, title_extra = [], {}, ""

    for line in text.splitlines():
        line = line.rstrip()
        if line.startswith("<!--"):
            continue
        if m := HEADING.match(line):
            flush()
            level = len(m.group(1))
            headings = [*headings[: level - 1], m.group(2).strip()]
            continue
        if m := ARTICLE.match(line):
            flush()
            title_extra = line[: m.end()].strip()
            meta = {"article": chinese_number(m.group(1)), **({"part": m.group(2)} if m.group(2) else {})}
        elif ITEM.match(line) or (line and buf and len("\n".join(buf)) + len(line) > max_chars and not meta):
            flush()
        if line or buf:
            buf.append(line)
    flush()
    return chunks


def split_long(body: str, max_chars: int) -> list[str]:
    """A body over max_chars -> pieces cut at sentence ends (an article is kept whole up to 3x max_chars)."""
    if len(body) <= 3 * max_chars:
        return [body]
    pieces, cur = [], ""
    for sentence in SENTENCE_END.split(body):
        if cur and len(cur) + len(sentence) > max_chars:
            pieces.append(cur.strip())
            cur = ""
        cur += sentence
    return [*pieces, cur.strip()] if cur.strip() else pieces


def chunk_paths(paths: list[str], max_chars: int = 800) -> list[Chunk]:
    """Every markdown/text file under the given files or folders, sorted, chunked."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    out: list[Chunk] = []
    for f in files:
        out += chunk_text(f.read_text(encoding="utf-8", errors="replace"), f.name, max_chars)
    return out
