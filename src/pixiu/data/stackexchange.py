"""Q&A with community votes -> SFT, reward-model and PPO data (StackLLaMA-style): `pixiu data stackexchange`.

Two inputs, one shape (`Question` with its `Answer`s):
- a Stack Exchange data dump's Posts.xml: `<row Id PostTypeId Score Body Title ParentId AcceptedAnswerId …/>`,
  PostTypeId 1 a question, 2 an answer (other types, such as tag wikis, are counted and left out); HTML bodies
  become markdown (data/html_md.py).
- a Zhihu-style export as JSON lines, one question per line:
  `{"id", "title", "body", "answers": [{"text", "votes", "accepted"}]}`. The mapping from Zhihu's own fields:
  question.title -> title, question.detail -> body (or one `question` field with both), answer.content ->
  text (HTML is converted when it holds tags), answer.voteup_count -> votes; `accepted` is optional (Zhihu has
  none). `content` and `voteup_count` are read as they are too.

From there on both are the same: each answer gets the preference-model score of Askell et al. 2021
(https://arxiv.org/abs/2112.00861, sec. 4.2, as in HuggingFaceH4/stack-exchange-preferences and StackLLaMA):
round(log2(1 + votes)), -1 for negative votes, +1 for the accepted answer. A question's answers sorted by it give
the SFT target (the first: the accepted or top-voted answer) and the reward-model pairs (every two answers with
different scores, the higher one chosen, `margin` = the score gap). Questions are split before any row is made,
so no held-out question is ever seen in training.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from pixiu.data.html_md import html_to_markdown
from pixiu.data.sources import DataError, rows_or_errors


@dataclass
class Answer:
    id: str
    text: str  # markdown
    votes: int  # the site's score: up minus down votes (Zhihu: upvotes)
    accepted: bool = False  # chosen by the asker
    source: str = ""  # "path:line" of its row

    @property
    def score(self) -> int:
        return pm_score(self.votes, self.accepted)


@dataclass
class Question:
    id: str
    title: str
    body: str  # markdown; may be empty (the title says it all)
    answers: list[Answer] = field(default_factory=list)
    source: str = ""

    @property
    def prompt(self) -> str:
        return f"{self.title}\n\n{self.body}".strip()

    def ranked(self) -> list[Answer]:
        """Best first: by preference-model score, then raw votes; ties keep the file's order."""
        return sorted(self.answers, key=lambda a: (-a.score, -a.votes))


@dataclass
class Dump:
    questions: list[Question]
    skipped: list[str] = field(default_factory=list)  # "path:line: why" of each row skipped (skip_bad_rows)
    other_posts: int = 0  # rows of other post types (tag wikis, moderator nominations...)


def pm_score(votes: int, accepted: bool = False) -> int:
    """Askell et al. 2021 sec. 4.2: round(log2(1 + votes)) (half up), -1 when votes < 0; +1 if accepted."""
    base = -1 if votes < 0 else math.floor(math.log2(1 + votes) + 0.5)
    return base + int(accepted)


# ---------------------------------------------------------------- Posts.xml


class _Bad(Exception):
    """A row that cannot be used; read_posts names its file and line."""


def xml_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line, attributes) of every <row>, streamed in 64 KiB chunks. pyexpat (what ElementTree.iterparse runs on)
    directly, because it tells the line each row starts on. A DOCTYPE is refused: a dump has none, and refusing it
    rules out entity declarations (no external entities, no entity expansion bombs)."""
    parser = expat.ParserCreate()
    found: list[tuple[int, dict]] = []

    def start(name: str, attrs: dict) -> None:
        if name == "row":
            found.append((parser.CurrentLineNumber, attrs))

    def doctype(*_) -> None:
        raise DataError(f"{path}:{parser.CurrentLineNumber}: a DOCTYPE is not allowed in a Posts.xml dump")

    parser.StartElementHandler, parser.StartDoctypeDeclHandler = start, doctype
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 16)
            try:
                parser.Parse(chunk, not chunk)
            except expat.ExpatError as e:
                raise DataError(
                    f"{path}:{e.lineno}: malformed XML at column {e.offset + 1}: {expat.ErrorString(e.code)}"
                    " (the rest of the file cannot be read past it, even with --skip_bad_rows)"
                ) from None
            yield from found
            found.clear()
            if not chunk:
                return


def _attr(attrs: dict, name: str, kind: str) -> str:
    if name not in attrs:
        have = ", ".join(sorted(attrs)) or "none"
        raise _Bad(f"{kind} row Id={attrs.get('Id', '?')} has no {name} attribute (it has {have})")
    return attrs[name]


def _int(attrs: dict, name: str, kind: str) -> int:
    value = _attr(attrs, name, kind)
    try:
        return int(value)
    except ValueError:
        raise _Bad(f"{kind} row Id={attrs.get('Id', '?')}: {name}={value!r} is not a whole number") from None


@dataclass
class _Posts:
    """What read_posts has gathered so far; answers wait for the end, as one may come before its question."""

    questions: dict[str, Question] = field(default_factory=dict)
    answers: list[tuple[str, Answer]] = field(default_factory=list)  # (ParentId, answer)
    accepted: dict[str, str] = field(default_factory=dict)  # question Id -> AcceptedAnswerId
    seen: set[str] = field(default_factory=set)

    def add(self, attrs: dict, source: str) -> bool:
        """File one row; False for a post of another type."""
        kind = _attr(attrs, "PostTypeId", "post")
        if kind not in ("1", "2"):
            return False
        what = "question" if kind == "1" else "answer"
        pid, votes = _attr(attrs, "Id", what), _int(attrs, "Score", what)
        if pid in self.seen:
            raise _Bad(f"{what} row Id={pid}: the Id appears twice")
        body = html_to_markdown(_attr(attrs, "Body", what))
        if kind == "1":
            self.questions[pid] = Question(pid, _attr(attrs, "Title", what).strip(), body, source=source)
            self.accepted[pid] = attrs.get("AcceptedAnswerId", "")
        elif not body:
            raise _Bad(f"answer row Id={pid} has an empty Body")
        else:
            self.answers.append((_attr(attrs, "ParentId", what), Answer(pid, body, votes, source=source)))
        self.seen.add(pid)
        return True


def read_posts(path: str | Path, skip_bad_rows: bool = False) -> Dump:
    """Posts.xml -> questions with their answers. A bad row (missing attribute, score that is not a number,
    answer to an unknown question) raises a DataError naming "path:line", or is skipped and listed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    posts, dump = _Posts(), Dump([])
    for line, attrs in xml_rows(path):
        source = f"{path}:{line}"
        try:
            dump.other_posts += not posts.add(attrs, source)
        except _Bad as e:
            _bad(dump, f"{source}: {e}", skip_bad_rows)
    for parent, answer in posts.answers:
        if parent not in posts.questions:
            why = f"{answer.source}: answer Id={answer.id} has ParentId={parent}, which is no question in the file"
            _bad(dump, why, skip_bad_rows)
            continue
        answer.accepted = posts.accepted[parent] == answer.id
        posts.questions[parent].answers.append(answer)
    dump.questions = list(posts.questions.values())
    return dump


def _bad(dump: Dump, why: str, skip: bool) -> None:
    if not skip:
        raise DataError(f"{why} (--skip_bad_rows skips such rows and counts them)")
    dump.skipped.append(why)


# ---------------------------------------------------------------- Zhihu-style JSON lines

_TAG = re.compile(r"</?(p|br|div|a|ul|ol|li|pre|code|b|i|em|strong|h\d|blockquote|img|span)\b", re.I)


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{what} must be text, got {type(value).__name__}")
    return html_to_markdown(value) if _TAG.search(value) else value.strip()


def _qa_row(row: dict, source: str) -> Question:
    if "question" in row:
        title, body = _text(row["question"], "question"), ""
    elif "title" in row:
        title, body = _text(row["title"], "title"), _text(row.get("body") or row.get("detail") or "", "body")
    else:
        raise _Bad(f"expected a question (or title and body) and answers; it has {', '.join(row)}")
    if not isinstance(row.get("answers"), list):
        raise _Bad("answers must be a list of {text, votes}")
    q = Question(str(row.get("id", source)), title, body, source=source)
    for i, a in enumerate(row["answers"], 1):
        if not isinstance(a, dict):
            raise _Bad(f"answer {i} must be an object {{text, votes}}")
        text, votes = a.get("text", a.get("content")), a.get("votes", a.get("voteup_count"))
        if not isinstance(votes, int) or isinstance(votes, bool):
            raise _Bad(f"answer {i}: votes must be a whole number, got {votes!r}")
        text = _text(text, f"answer {i} text")
        if not text:
            raise _Bad(f"answer {i} has no text")
        q.answers.append(Answer(f"{q.id}/{i}", text, votes, bool(a.get("accepted")), source))
    return q


def read_qa_jsonl(path: str | Path, skip_bad_rows: bool = False) -> Dump:
    """{question | title+body, answers: [{text, votes, accepted?}]} per line -> questions."""
    dump = Dump([])
    for source, row in rows_or_errors(str(path)):
        try:
            if isinstance(row, DataError):
                raise _Bad(str(row).removeprefix(f"{source}: "))
            dump.questions.append(_qa_row(row, source))
        except _Bad as e:
            _bad(dump, f"{source}: {e}", skip_bad_rows)
    return dump


def read_dump(path: str | Path, skip_bad_rows: bool = False) -> Dump:
    """A Posts.xml (by its .xml suffix) or Zhihu-style JSON lines."""
    reader = read_posts if Path(path).suffix.lower() == ".xml" else read_qa_jsonl
    return reader(path, skip_bad_rows)


# ---------------------------------------------------------------- questions -> pixiu's data formats


def clip(text: str, max_chars: int) -> str:
    """At most max_chars characters, cut at the last whitespace before the limit (0 = no limit)."""
    if not max_chars or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > max_chars // 2 else cut


def split(questions: list[Question], held_out: float, seed: int) -> tuple[list[Question], list[Question]]:
    """(train, held out) by question: a share (< 1) or a count (>= 1), drawn with `seed` from the ids."""
    n = round(len(questions) * held_out) if held_out < 1 else min(int(held_out), len(questions))
    ids = sorted(q.id for q in questions)
    held = set(random.Random(seed).sample(ids, n))
    return [q for q in questions if q.id not in held], [q for q in questions if q.id in held]


def sft_row(q: Question, max_chars: int = 0) -> dict | None:
    """The question and its best answer (the accepted or top-voted one) as an OpenAI `messages` row."""
    if not q.answers:
        return None
    best = q.ranked()[0]
    messages = [{"role": "user", "content": clip(q.prompt, max_chars)},
                {"role": "assistant", "content": clip(best.text, max_chars)}]  # fmt: skip
    return {"messages": messages, "question_id": q.id, "votes": best.votes}


def pair_rows(q: Question, max_pairs: int = 0, max_chars: int = 0) -> list[dict]:
    """Every two answers with different scores, the higher chosen, margin = the score gap. Over max_pairs, the
    pairs with the largest margins stay (the clearest preferences; StackLLaMA keeps 10 per question). Ordered by
    the chosen answer's rank, then the rejected one's."""
    ranked = q.ranked()
    found = [(i, j) for i in range(len(ranked)) for j in range(i + 1, len(ranked))
             if ranked[i].score > ranked[j].score]  # fmt: skip
    if max_pairs and len(found) > max_pairs:
        by_margin = sorted(found, key=lambda ij: ranked[ij[1]].score - ranked[ij[0]].score)
        found = sorted(by_margin[:max_pairs])
    prompt = clip(q.prompt, max_chars)
    rows = []
    for i, j in found:
        chosen, rejected = ranked[i], ranked[j]
        a, b = clip(chosen.text, max_chars), clip(rejected.text, max_chars)
        if a.strip() != b.strip():  # two posts with the same text prefer nothing
            rows.append({"prompt": prompt, "chosen": a, "rejected": b, "margin": chosen.score - rejected.score,
                         "question_id": q.id, "votes": [chosen.votes, rejected.votes]})  # fmt: skip
    return rows


def build(questions: list[Question], held_out: float, max_pairs: int, seed: int, max_chars: int) -> dict:
    """File name -> rows: SFT, pairs and PPO prompts, each for the training and the held-out questions."""
    train, held = split(questions, held_out, seed)
    out: dict[str, list[dict]] = {}
    for prefix, part in (("", train), ("heldout_", held)):
        out[f"{prefix}sft.jsonl"] = [r for q in part if (r := sft_row(q, max_chars))]
        out[f"{prefix}pairs.jsonl"] = [r for q in part for r in pair_rows(q, max_pairs, max_chars)]
        out[f"{prefix}prompts.jsonl"] = [
            {"prompt": clip(q.prompt, max_chars), "question_id": q.id} for q in part
        ]
    return out


def main(argv: list[str]) -> None:
    """pixiu data stackexchange Posts.xml|qa.jsonl --out DIR: SFT, reward-model pairs and PPO prompts."""
    p = argparse.ArgumentParser(prog="pixiu data stackexchange", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "file", help="a Stack Exchange Posts.xml, or Zhihu-style JSON lines (see the module docstring)"
    )
    p.add_argument("--out", required=True, help="directory for sft, pairs, prompts and their heldout_ twins")
    p.add_argument("--held_out", type=float, default=0.1, help="questions held out: a share (< 1) or a count")
    p.add_argument("--max_pairs_per_question", type=int, default=10, help="0 = every pair")
    p.add_argument(
        "--max_chars", type=int, default=0, help="cut questions and answers to this length (0 = no)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the question split")
    p.add_argument(
        "--skip_bad_rows", action="store_true", help="skip (and count) bad rows instead of stopping"
    )
    a = p.parse_args(argv)
    if a.held_out < 0:
        raise DataError(f"--held_out must be >= 0, got {a.held_out}")
    dump = read_dump(a.file, a.skip_bad_rows)
    files = build(dump.questions, a.held_out, a.max_pairs_per_question, a.seed, a.max_chars)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / name).write_text(text, encoding="utf-8")
    stats = {
        "questions": len(dump.questions),
        "answers": sum(len(q.answers) for q in dump.questions),
        "other_posts": dump.other_posts,
        "skipped_rows": len(dump.skipped),
        "rows": {name: len(rows) for name, rows in files.items()},
    }
    (out / "stats.json").write_text(
        json.dumps(stats | {"skipped": dump.skipped}, indent=2, ensure_ascii=False)
    )
    print(json.dumps(stats, ensure_ascii=False))
    for why in dump.skipped[:20]:
        print(f"  skipped {why}")
