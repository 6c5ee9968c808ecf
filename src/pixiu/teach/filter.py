"""`pixiu data filter`: keep the good part of generated data, and say what was dropped and why.

Cheap rules run first, in `RULES` order (exact duplicates, near-duplicates by MinHash over character n-grams so
Chinese works too, length, repeated n-grams, language, refusals); the judge (AlpaGasus,
https://arxiv.org/abs/2307.08701: a 1-5 accuracy score, keep >= a threshold) rates only what survives them, in
parallel threads. The report counts each reason and keeps a few examples of it.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pixiu.degeneration import NGRAM, repeated_ngram_rate
from pixiu.teach.methods import read_items
from pixiu.teach.teacher import Teacher, TeacherError
from pixiu.teach.text import MinHash, exact_hash, is_refusal, language


@dataclass
class FilterConfig:
    """What `pixiu data filter` keeps."""

    inputs: str = ""
    """The data to filter (JSONL or JSON list in any pixiu format: alpaca, messages, pairs, rankings)."""
    out: str = ""
    """Where the kept rows go (default: INPUT with .filtered.jsonl); the report is OUT.report.json."""
    exact: bool = True
    """Drop exact duplicates (same prompt and reply after case, width and whitespace normalisation)."""
    near_dup: float = 0.8
    """Drop a row whose estimated Jaccard similarity (MinHash of character n-grams) to a kept one is >= this (0: off)."""
    ngram: int = 5
    """Character n-gram size of the MinHash shingles."""
    min_chars: int = 2
    """Drop replies shorter than this many characters."""
    max_chars: int = 20000
    """Drop replies longer than this many characters."""
    max_repeat: float = 0.6
    """Drop replies whose share of repeated 3-grams (words, Chinese characters and punctuation marks, as
    `pixiu.degeneration` counts them) is above this: a small teacher's loops (0: off). 0.6 drops 16 of Alpaca's
    first 9,000 outputs: 3 loops of a stray mark and 13 structured replies (HTML and markdown tables, forms,
    code, Morse), so data rich in tables wants a higher value."""
    lang: str = ""
    """en or zh: drop rows whose prompt or reply is in another language (empty: keep any)."""
    refusals: bool = True
    """Drop rows whose reply is a refusal ("I'm sorry, but", "as an AI", 抱歉, 作为一个人工智能...)."""
    judge: bool = False
    """Rate each surviving row by the teacher as a judge (AlpaGasus) and keep scores >= threshold."""
    threshold: float = 4.0
    """The judge's score to keep (1-5; AlpaGasus kept 4.5 and up of its 0-5 scale)."""
    examples: int = 3
    """Examples of each drop reason in the report."""


JUDGE_SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response to the "
                "instruction and the given input displayed following.")  # fmt: skip
JUDGE_USER = """Instruction: {instruction}
Input: {input}
Response: {response}

Please rate according to the accuracy of the response to the instruction and the input. Each assistant receives \
a score on a scale of 1 to 5, where a higher score indicates higher level of the accuracy. Please first output a \
single line containing the value indicating the score. In the subsequent line, please provide a comprehensive \
explanation of your evaluation, avoiding any potential bias."""
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def prompt_reply(row: dict) -> tuple[str, str]:
    """(prompt text, reply text) of a row in any pixiu format the generators write or the loaders read."""
    if "instruction" in row:
        return "\n\n".join(p for p in (row["instruction"], row.get("input") or "") if p), str(
            row.get("output", "")
        )
    if "messages" in row:
        turns = row["messages"]
        said = lambda role: "\n".join(m["content"] for m in turns if m.get("role") == role)  # noqa: E731
        return said("user"), said("assistant")
    prompt = row.get("prompt", "")
    prompt = prompt if isinstance(prompt, str) else "\n".join(m.get("content", "") for m in prompt)
    reply = row.get("chosen") or (row.get("responses") or [""])[0]
    return prompt, reply if isinstance(reply, str) else str(reply)


Rule = Callable[[FilterConfig, str, str, dict], str | None]
RULES: dict[str, Rule] = {}


def rule(name: str):
    def add(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return add


@rule("exact")
def _exact(cfg: FilterConfig, prompt: str, reply: str, state: dict) -> str | None:
    if not cfg.exact:
        return None
    h = exact_hash(prompt + "\x00" + reply)
    if h in state.setdefault("hashes", set()):
        return "exact duplicate"
    state["hashes"].add(h)
    return None


@rule("near_dup")
def _near(cfg: FilterConfig, prompt: str, reply: str, state: dict) -> str | None:
    if not cfg.near_dup:
        return None
    index = state.setdefault("minhash", MinHash(n=cfg.ngram))
    return (
        f"near duplicate (Jaccard >= {cfg.near_dup:g})"
        if index.add(prompt + "\n" + reply, cfg.near_dup)
        else None
    )


@rule("length")
def _length(cfg: FilterConfig, prompt: str, reply: str, state: dict) -> str | None:
    if len(reply.strip()) < cfg.min_chars:
        return f"reply shorter than {cfg.min_chars} characters"
    return f"reply longer than {cfg.max_chars} characters" if len(reply) > cfg.max_chars else None


@rule("repeat")
def _repeat(cfg: FilterConfig, prompt: str, reply: str, state: dict) -> str | None:
    if not cfg.max_repeat or repeated_ngram_rate(reply) <= cfg.max_repeat:
        return None
    return f"reply repeats itself ({NGRAM}-grams > {cfg.max_repeat:g})"


@rule("language")
def _language(cfg: FilterConfig, prompt: str, reply: str, state: dict) -> str | None:
    if not cfg.lang:
        return None
    wrong = [
        what
        for what, text in (("prompt", prompt), ("reply", reply))
        if text.strip() and language(text) != cfg.lang
    ]
    return f"{wrong[0]} not in {cfg.lang}" if wrong else None


@rule("refusal")
def _refusal(cfg: FilterConfig, prompt: str, reply: str, state: dict) -> str | None:
    return "refusal" if cfg.refusals and is_refusal(reply) else None


def judge_score(teacher: Teacher, row: dict) -> float | None:
    """AlpaGasus' rating: the first number of the judge's reply, if it is in 1..5."""
    instruction = row.get("instruction") or prompt_reply(row)[0]
    response = prompt_reply(row)[1]
    messages = [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": JUDGE_USER.format(instruction=instruction, input=row.get("input") or "",
                                                              response=response)}]  # fmt: skip
    text = teacher.chat(messages, temperature=0.0, max_tokens=64).text
    found = NUMBER.search(text)
    score = float(found.group()) if found else None
    return score if score is not None and 1 <= score <= 5 else None


def run_filter(cfg: FilterConfig, teacher: Teacher | None = None, concurrency: int = 8) -> dict:
    """Filter cfg.inputs into cfg.out; return (and write beside it) the report."""
    rows = read_items(cfg.inputs)
    out = Path(cfg.out or re.sub(r"(\.jsonl?)?$", ".filtered.jsonl", cfg.inputs, count=1))
    dropped: dict[str, list[str]] = defaultdict(list)
    kept, state = [], {}
    for row in rows:
        prompt, reply = prompt_reply(row)
        why = next((w for fn in RULES.values() if (w := fn(cfg, prompt, reply, state))), None)
        (dropped[why].append(prompt[:160]) if why else kept.append(row))
    scores: Counter = Counter()
    if cfg.judge:
        if teacher is None:
            raise ValueError("filter: --judge needs a teacher (--url)")
        kept = _judged(cfg, teacher, kept, dropped, scores, concurrency)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    report = {"input": str(cfg.inputs), "output": str(out), "rows": len(rows), "kept": len(kept),
              "dropped": {k: len(v) for k, v in sorted(dropped.items(), key=lambda kv: -len(kv[1]))},
              "examples": {k: v[: cfg.examples] for k, v in dropped.items()},
              "judge_scores": {str(k): v for k, v in sorted(scores.items(), key=lambda kv: str(kv[0]))}}  # fmt: skip
    Path(f"{out}.report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return report


def _judged(cfg, teacher, rows, dropped, scores, concurrency) -> list[dict]:
    def rate(row):
        try:
            return judge_score(teacher, row), ""
        except TeacherError as e:
            return None, str(e)

    kept = []
    with ThreadPoolExecutor(concurrency) as pool:
        for row, (score, error) in zip(rows, pool.map(rate, rows)):
            scores[score] += 1
            why = ("judge failed" if error else "judge gave no score 1-5") if score is None else None
            if why is None and score < cfg.threshold:
                why = f"judge score < {cfg.threshold:g}"
            if why:
                dropped[why].append(prompt_reply(row)[0][:160])
            else:
                kept.append(row | {"meta": {**row.get("meta", {}), "judge_score": score}})
    return kept


def format_report(report: dict) -> str:
    lines = [f"{report['input']}: {report['rows']} rows, kept {report['kept']} -> {report['output']}"]
    for reason, n in report["dropped"].items():
        lines.append(f"  dropped {n:6d}  {reason}")
        lines += [f"           e.g. {ex[:100]!r}" for ex in report["examples"][reason]]
    if report["judge_scores"]:
        lines.append(f"  judge scores: {report['judge_scores']}")
    return "\n".join(lines)
