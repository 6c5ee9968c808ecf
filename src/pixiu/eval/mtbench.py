"""`mtbench`: MT-bench single-answer grading as FastChat's llm_judge does it (https://arxiv.org/abs/2306.05685).

The model answers both turns of each question (the second turn sees its own first answer), sampled at FastChat's
per-category temperature. An LLM judge behind an OpenAI-compatible endpoint grades each turn 1-10 with the judge
prompts shipped with the data: single-v1 for turn 1 and single-v1-multi-turn for turn 2, and their -math-
variants with the reference answers for math, reasoning and coding. The grade is the first "[[N]]" in the
judgement (else the first "[N]"), FastChat's parsing; a grade outside 1..10 counts as unparsable. Reported: the
mean grade, per turn and per category; grades that never parsed are counted under `skipped`.

Data: FastChat's layout, DIR/question.jsonl or DIR/mt_bench/question.jsonl, with judge_prompts.jsonl beside the
question file or one folder up, and reference_answer/gpt-4.jsonl beside the question file.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import Sampling
from pixiu.eval.judge import CHUNK, ask, ask_settings, client_from, parallel_map, reply_all
from pixiu.eval.run import SHARED, EvalContext, EvalError, register

NEED_REF = ("math", "reasoning", "coding")  # FastChat's NEED_REF_CATS
# FastChat's answer-sampling temperatures (gen_model_answer.py); other categories get 0.7. 0 = greedy.
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0, "reasoning": 0.0,
               "stem": 0.1, "humanities": 0.1}  # fmt: skip
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
JUDGES = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")


@dataclass
class Bench:
    questions: list[dict]  # {question_id, category, turns: [q1, q2]}
    prompts: dict[str, dict]  # judge prompt name -> {system_prompt, prompt_template, ...}
    refs: dict[int, list[str]]  # question_id -> the reference answer of each turn


def load_bench(path: Path, ref_model: str = "gpt-4") -> Bench:
    """Read FastChat's llm_judge files; a malformed line is an EvalError naming file and line."""
    qfile = next(
        (p for p in (path / "question.jsonl", path / "mt_bench" / "question.jsonl") if p.is_file()), None
    )
    if qfile is None:
        raise EvalError(
            f"{path}: no question.jsonl (or mt_bench/question.jsonl) in FastChat's llm_judge layout"
        )
    pfile = next(
        (p for p in (qfile.parent, qfile.parent.parent) if (p / "judge_prompts.jsonl").is_file()), None
    )
    if pfile is None:
        raise EvalError(f"{qfile.parent}: no judge_prompts.jsonl beside it or one folder up")
    questions = _jsonl(qfile)
    for source, q in questions:
        turns = q.get("turns")
        if not (isinstance(turns, list) and len(turns) == 2 and all(isinstance(t, str) for t in turns)):
            raise EvalError(f"{source}: a question needs question_id, category and two turns of text")
        if "question_id" not in q or not isinstance(q.get("category"), str):
            raise EvalError(f"{source}: a question needs question_id, category and two turns of text")
    prompts = {p.get("name"): p for _, p in _jsonl(pfile / "judge_prompts.jsonl")}
    missing = [n for n in JUDGES if n not in prompts]
    if missing:
        raise EvalError(
            f"{pfile / 'judge_prompts.jsonl'}: no judge prompt {missing}; it has {sorted(prompts)}"
        )
    refs = {}
    ref_file = qfile.parent / "reference_answer" / f"{ref_model}.jsonl"
    for source, r in _jsonl(ref_file) if ref_file.is_file() else []:
        try:
            refs[r["question_id"]] = list(r["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            raise EvalError(f"{source}: a reference answer needs question_id and choices[0].turns") from None
    return Bench([q for _, q in questions], prompts, refs)


def _jsonl(path: Path) -> list[tuple[str, dict]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise EvalError(f"{path}:{n}: expected a JSON object")
            rows.append((f"{path}:{n}", row))
    return rows


def parse_rating(text: str) -> float | None:
    """The grade as FastChat reads it: the first [[N]], else the first [N]; None without one."""
    match = ONE_SCORE.search(text) or ONE_SCORE_BACKUP.search(text)
    return float(match.group(1)) if match else None


def grade(text: str) -> float | None:
    """parse_rating, kept only inside the 1..10 scale the prompt asks for."""
    rating = parse_rating(text)
    return rating if rating is not None and 1 <= rating <= 10 else None


def judge_messages(bench: Bench, q: dict, answers: list[str], turn: int) -> list[dict] | None:
    """FastChat's single-answer judge prompt for `turn` (1 or 2) of question `q`; None when the question's
    category needs a reference answer and there is none."""
    ref = q["category"] in NEED_REF
    name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
    fields = {}
    if ref:
        if q["question_id"] not in bench.refs:
            return None
        fields = {
            "ref_answer_1": bench.refs[q["question_id"]][0],
            "ref_answer_2": bench.refs[q["question_id"]][1],
        }
    if turn == 1:
        fields |= {"question": q["turns"][0], "answer": answers[0]}
    else:
        fields |= {"question_1": q["turns"][0], "question_2": q["turns"][1], "answer_1": answers[0],
                   "answer_2": answers[1]}  # fmt: skip
    p = bench.prompts[name]
    return [{"role": "system", "content": p["system_prompt"]},
            {"role": "user", "content": p["prompt_template"].format(**fields)}]  # fmt: skip


def answer(engine, questions: list[dict], sampling: dict) -> list[list[str | None]]:
    """Both turns of each question; turn 2 sees the model's own turn-1 answer. None: it did not fit the context."""
    samplings = [Sampling(**sampling, temperature=TEMPERATURE.get(q["category"], 0.7)) for q in questions]
    first = reply_all(engine, [Conversation([Message("user", q["turns"][0])]) for q in questions], samplings)
    second_convs, second_idx = [], []
    for i, (q, a1) in enumerate(zip(questions, first)):
        if a1 is not None:
            second_convs.append(Conversation([Message("user", q["turns"][0]), Message("assistant", a1),
                                              Message("user", q["turns"][1])]))  # fmt: skip
            second_idx.append(i)
    second = dict(zip(second_idx, reply_all(engine, second_convs, [samplings[i] for i in second_idx])))
    return [[a1, second.get(i)] for i, a1 in enumerate(first)]


def grade_all(client, bench: Bench, questions: list[dict], answers: list, parse_retries: int, workers: int):
    """-> one {scores, judgments, skips} per question, two judge calls each, `workers` in flight."""
    calls, where = [], []
    out = [{"scores": [None, None], "judgments": ["", ""], "skips": ["", ""]} for _ in questions]
    for i, (q, ans) in enumerate(zip(questions, answers)):
        for turn in (1, 2):
            if ans[turn - 1] is None:
                out[i]["skips"][turn - 1] = "context_too_long"
                continue
            messages = judge_messages(bench, q, ans, turn)
            if messages is None:
                out[i]["skips"][turn - 1] = "no_reference"
                continue
            calls.append(messages)
            where.append((i, turn - 1))
    results = parallel_map(lambda m: ask(client, m, grade, parse_retries), calls, workers)
    for (i, t), r in zip(where, results):
        out[i]["scores"][t], out[i]["judgments"][t] = r.value, r.text
        out[i]["skips"][t] = "unparsable_grade" if r.error == "unparsable" else r.error
    return out


def summarize(rows: list[dict]) -> dict[str, float]:
    """Mean grade over all graded turns, per turn and per category (both turns), as FastChat's show_result."""
    graded = [(r["category"], t, s) for r in rows for t, s in enumerate(r["scores"], 1) if s is not None]
    metrics = {"graded": float(len(graded))}
    if not graded:
        return metrics
    metrics["score"] = statistics.mean(s for _, _, s in graded)
    for turn in (1, 2):
        scores = [s for _, t, s in graded if t == turn]
        if scores:
            metrics[f"turn{turn}"] = statistics.mean(scores)
    for cat in sorted({c for c, _, _ in graded}):
        metrics[f"category/{cat}"] = statistics.mean(s for c, _, s in graded if c == cat)
    return metrics


@register("mtbench")
def mtbench(ctx: EvalContext) -> dict:
    """MODEL answers MT-bench's two-turn questions; the --judge endpoint grades each turn 1-10."""
    from tqdm.auto import tqdm

    if not ctx.cfg.judge:
        raise EvalError(
            "mtbench needs a judge: --judge URL [--judge-model NAME] (any OpenAI-compatible server)"
        )
    bench = load_bench(ctx.data(SHARED / "mt_bench", "MT-bench data"), ctx.cfg.ref_model)
    client = client_from(ctx)
    retries, workers = ask_settings(ctx.cfg)
    sampling = {"max_new_tokens": ctx.cfg.max_new_tokens or 1024, "seed": ctx.seed}
    questions, log = ctx.take(bench.questions), ctx.items("mtbench")
    # questions whose judge failed in this run: reported, not logged, so a re-run asks again
    fresh: dict[str, dict] = {}
    todo = [q for q in questions if log.get(q["question_id"]) is None]
    bar = tqdm(total=len(questions), initial=len(questions) - len(todo), desc="mtbench", unit="question")
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        answers = answer(ctx.engine(), chunk, sampling)
        for q, ans, g in zip(chunk, answers, grade_all(client, bench, chunk, answers, retries, workers)):
            row = {"question_id": q["question_id"], "category": q["category"], "answers": ans, **g}
            if any(s in ("judge_error", "judge_rejected") for s in g["skips"]):
                fresh[str(q["question_id"])] = row
            else:
                log.put(q["question_id"], row)
        bar.update(len(chunk))
    bar.close()
    rows = [fresh.get(str(q["question_id"])) or log.get(q["question_id"]) for q in questions]
    skipped = Counter(s for r in rows for s in r["skips"] if s)
    shown = [{"question_id": r["question_id"], "category": r["category"], "score_1": r["scores"][0],
              "score_2": r["scores"][1], **({"skip": ",".join(s for s in r["skips"] if s)} if any(r["skips"]) else {})}
             for r in rows]  # fmt: skip
    return {"metrics": summarize(rows), "rows": shown, "skipped": dict(skipped)}
