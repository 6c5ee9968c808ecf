"""Multiple choice benchmarks from local CSVs: mmlu, cmmlu, ceval.

Prompts are lm-evaluation-harness's (tasks/mmlu, tasks/cmmlu, tasks/ceval), so numbers compare with published
ones: a description line naming the subject, K solved examples from the dev split (the first K, lm-eval's
`first_n` sampler), then the question with lettered choices and "Answer:". Scored two ways:
- loglik (default): the log-likelihood of each continuation " A", " B"... after the prompt; the prediction is
  the argmax (lm-eval's `acc`). Raw text, no chat template, as lm-eval runs it without --apply_chat_template.
- generate: the prompt as a user turn through the chat template, a short greedy reply, its first standalone
  letter A-D (for chat models that answer in words).
--limit takes the first N questions of each subject (lm-eval applies --limit per subtask too).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from pixiu.eval.run import SHARED, EvalContext, EvalError, register
from pixiu.eval.subjects import CEVAL_ZH, CMMLU_ZH

LETTERS = "ABCD"


@dataclass(frozen=True)
class Layout:
    """Where a benchmark's CSVs are and what their columns mean."""

    name: str
    default: Path  # data root under ../shared/data
    pattern: str  # relative path of one subject's file: {split} and {subject} are filled in
    eval_split: str
    shot_split: str
    columns: tuple[str, ...]  # question, four choices, answer: all must be in the header
    answer_is_index: bool  # answer column holds 0-3 (mmlu as reformatted) rather than a letter
    description: str  # first line of every prompt; {subject} is filled in
    cue: str  # what ends a question and precedes the answer letter
    names: dict[str, str]  # subject file name -> its name in the description

    def subject_name(self, subject: str) -> str:
        return self.names.get(subject, subject.replace("_", " "))


LAYOUTS = {
    "mmlu": Layout(
        "mmlu", SHARED / "mmlu", "{split}/{subject}_{split}.csv", "test", "dev",
        ("question", "choice0", "choice1", "choice2", "choice3", "answer"), True,
        "The following are multiple choice questions (with answers) about {subject}.\n\n", "Answer:", {},
    ),
    "cmmlu": Layout(
        "cmmlu", SHARED / "cmmlu" / "data", "{split}/{subject}.csv", "test", "dev",
        ("Question", "A", "B", "C", "D", "Answer"), False,
        "以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n", "答案：", CMMLU_ZH,
    ),
    # C-Eval's test answers are hidden: like lm-eval's ceval-valid, score the val split, shots from dev
    "ceval": Layout(
        "ceval", SHARED / "ceval", "{split}/{subject}_{split}.csv", "val", "dev",
        ("question", "A", "B", "C", "D", "answer"), False,
        "以下是中国关于{subject}的单项选择题，请选出其中的正确答案。\n\n", "答案：", CEVAL_ZH,
    ),
}  # fmt: skip


@dataclass
class Item:
    subject: str
    question: str
    choices: list[str]  # (4,)
    answer: int  # index of the right choice
    source: str  # "file:line"


# ---------------------------------------------------------------- data


def subjects(layout: Layout, root: Path) -> list[str]:
    """Subjects that have an eval-split file under root, sorted."""
    head, _, tail = layout.pattern.format(split=layout.eval_split, subject="\0").partition("\0")
    found = sorted(p.relative_to(root).as_posix() for p in root.glob(f"{head}*{tail}"))
    return [f[len(head) : len(f) - len(tail)] for f in found]


def read_items(layout: Layout, file: Path, subject: str, skipped: dict[str, int]) -> list[Item]:
    """One subject's CSV -> items; a missing column is an error, a bad row is counted in `skipped`."""
    with file.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in layout.columns if c not in (reader.fieldnames or [])]
        if missing:
            raise EvalError(
                f"{file}: missing column(s) {missing}; a {layout.name} CSV needs a header with "
                f"{list(layout.columns)} (found {reader.fieldnames})"
            )
        q, *opts, ans = layout.columns
        items = []
        for line, row in enumerate(reader, start=2):
            answer = parse_answer(row.get(ans), layout.answer_is_index)
            why = (
                "bad answer" if answer is None
                else "empty question" if not (row.get(q) or "").strip()
                else "missing choice" if any(row.get(c) is None for c in opts)
                else ""
            )  # fmt: skip
            if why:
                skipped[why] = skipped.get(why, 0) + 1
                if sum(skipped.values()) <= 5:
                    print(f"skipped {file}:{line}: {why} ({dict(row)})"[:300])
                continue
            items.append(Item(subject, row[q], [row[c] for c in opts], answer, f"{file}:{line}"))
    return items


def parse_answer(value: str | None, is_index: bool) -> int | None:
    value = (value or "").strip()
    if is_index:
        return int(value) if value in ("0", "1", "2", "3") else None
    return LETTERS.index(value.upper()) if len(value) == 1 and value.upper() in LETTERS else None


def load(layout: Layout, ctx: EvalContext) -> tuple[dict[str, list[Item]], dict[str, list[Item]], dict]:
    """-> ({subject: eval items (first --limit)}, {subject: shot items}, skipped counts)."""
    root = ctx.data(layout.default, f"{layout.name} data")
    found = subjects(layout, root)
    if not found:  # a single CSV, or a folder of another shape: say what the folder must look like
        example = layout.pattern.format(split=layout.eval_split, subject="SUBJECT")
        raise EvalError(
            f"{layout.name}: --data must be a folder with one CSV per subject, laid out as ROOT/{example} "
            f"(columns {', '.join(layout.columns)}); {root} has no such files"
        )
    wanted = [s.strip() for s in ctx.cfg.subjects.split(",") if s.strip()] or found
    unknown = sorted(set(wanted) - set(found))
    if unknown:
        raise EvalError(
            f"{layout.name}: no {layout.eval_split} file for subject(s) {unknown} under {root}; "
            f"found: {', '.join(found) or 'none (expected ' + layout.pattern + ')'}"
        )
    shots = max(ctx.cfg.shots, 0)
    skipped: dict[str, int] = {}
    evals, dev = {}, {}
    for s in wanted:
        evals[s] = ctx.take(
            read_items(layout, root / layout.pattern.format(split=layout.eval_split, subject=s), s, skipped)
        )
        dev_file = root / layout.pattern.format(split=layout.shot_split, subject=s)
        if shots:
            if not dev_file.is_file():
                raise EvalError(
                    f"{layout.name}: --shots {shots} needs the {layout.shot_split} file {dev_file}"
                )
            dev[s] = read_items(layout, dev_file, s, skipped)[:shots]
            if len(dev[s]) < shots:
                raise EvalError(f"{dev_file}: {len(dev[s])} usable examples, fewer than --shots {shots}")
    if not any(evals.values()):
        raise EvalError(f"{layout.name}: no questions to score under {root} (subjects {wanted})")
    return evals, dev, skipped


# ---------------------------------------------------------------- prompts


def question_text(layout: Layout, item: Item) -> str:
    """lm-eval's doc_to_text: the stripped question, 'A. choice' lines, then the answer cue."""
    lines = [item.question.strip()] + [f"{L}. {c}" for L, c in zip(LETTERS, item.choices)]
    return "\n".join(lines) + "\n" + layout.cue


def prompt(layout: Layout, item: Item, shots: list[Item]) -> str:
    """Description, solved shots ('... Answer: B'), the question: the context before ' A' / ' B' / ..."""
    solved = [f"{question_text(layout, s)} {LETTERS[s.answer]}" for s in shots]
    return layout.description.format(subject=layout.subject_name(item.subject)) + "\n\n".join(
        [*solved, question_text(layout, item)]
    )


def split_tokens(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's encoding (`_encode_pair`): trailing whitespace of the context moves to the continuation; the
    continuation's tokens are those of context+continuation after the context's own. Special tokens as the
    tokenizer adds them by default (a BOS for Llama-2-style tokenizers, none for SmolLM2), as lm-eval's HF model."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    ctx_ids = tokenizer(context)["input_ids"]
    return ctx_ids, whole[len(ctx_ids) :]


# ---------------------------------------------------------------- scoring


@dataclass
class Row:
    """One sequence of a forward: a request's context, plus all but the last token of a multi-token choice."""

    request: int
    choices: list[int]  # the request's choices scored from this row
    ids: list[int]
    first: int  # the position that predicts the first continuation token


def plan(requests: list[tuple[list[int], list[list[int]]]]) -> list[Row]:
    """When every continuation is one token (MMLU's ' A'...' D') one row over the context serves all choices;
    otherwise each choice gets its own row."""
    rows = []
    for r, (ctx, conts) in enumerate(requests):
        if all(len(c) == 1 for c in conts):
            rows.append(Row(r, list(range(len(conts))), ctx, len(ctx) - 1))
        else:
            rows += [Row(r, [i], ctx + c[:-1], len(ctx) - 1) for i, c in enumerate(conts)]
    return rows


@torch.no_grad()
def choice_logps(
    loaded, requests: list[tuple[list[int], list[list[int]]]], max_tokens: int = 4096
) -> list[list[float]]:
    """(context ids, [continuation ids per choice]) per request -> the summed log p of each continuation.

    Rows run longest first, right-padded, in batches of at most `max_tokens` tokens; only the positions that
    predict a continuation token go through the LM head (a (T, V) logit matrix per row would dominate memory).
    A row longer than the context window loses tokens on the left, as lm-eval truncates."""
    from pixiu.model.forward import base_lm

    model = base_lm(loaded.model)
    window = getattr(model.config, "max_position_embeddings", 1 << 30)
    device = next(model.parameters()).device
    rows = sorted(plan(requests), key=lambda row: -len(row.ids))
    out = [[0.0] * len(conts) for _, conts in requests]
    start = 0
    while start < len(rows):
        width = min(len(rows[start].ids), window)
        batch = rows[start : start + max(1, max_tokens // max(width, 1))]
        start += len(batch)
        ids = torch.full((len(batch), width), loaded.tokenizer.pad_token_id or 0)  # (B, T)
        mask = torch.zeros_like(ids)  # (B, T) 1 = real token
        for b, row in enumerate(batch):
            seq = row.ids[-width:]
            ids[b, : len(seq)], mask[b, : len(seq)] = torch.tensor(seq), 1
        hidden = model.get_decoder()(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).last_hidden_state  # (B, T, H)
        for b, row in enumerate(batch):
            conts = requests[row.request][1]
            first = row.first - max(len(row.ids) - width, 0)
            pos = torch.arange(first, first + max(len(conts[i]) for i in row.choices), device=device)
            logp = torch.log_softmax(model.get_output_embeddings()(hidden[b, pos]).float(), -1)  # (S, V)
            for i in row.choices:
                picked = logp[torch.arange(len(conts[i])), torch.tensor(conts[i], device=device)]
                out[row.request][i] = float(picked.sum())
    return out


LETTER = re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])")


def letter(reply: str) -> int | None:
    """The first standalone A-D in a reply ('B', 'B.', 'The answer is C', '答案：D'); None when there is none."""
    m = LETTER.search(reply)
    return LETTERS.index(m[1]) if m else None


def score_loglik(layout: Layout, ctx: EvalContext, todo: list[tuple[str, Item, str]]) -> None:
    if not todo:  # all scored earlier: no model to load
        return
    log, tok = ctx.items(layout.name), ctx.loaded().tokenizer
    todo = sorted(todo, key=lambda t: -len(t[2]))  # similar lengths share a batch: less padding
    chunk = 32
    bar = tqdm(total=len(todo), desc=f"{layout.name} loglik", unit="q")
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        reqs = []
        for _, _, text in part:
            splits = [split_tokens(tok, text, " " + L) for L in LETTERS]
            reqs.append((splits[0][0], [c for _, c in splits]))
        for (key, item, _), logps in zip(part, choice_logps(ctx.loaded(), reqs)):
            log.put(
                key, {"pred": max(range(4), key=lambda j: logps[j]), "answer": item.answer, "logps": logps}
            )
        bar.update(len(part))
    bar.close()


def score_generate(layout: Layout, ctx: EvalContext, todo: list[tuple[str, Item, str]]) -> None:
    if not todo:  # all scored earlier: no model to load
        return
    from pixiu.chat.messages import Conversation, Message
    from pixiu.engine import Sampling

    log, engine = ctx.items(layout.name), ctx.engine()
    sampling = Sampling(ctx.cfg.max_new_tokens or 16, 0.0, seed=ctx.seed)
    chunk = 16
    bar = tqdm(total=len(todo), desc=f"{layout.name} generate", unit="q")
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        done = engine.generate([Conversation([Message("user", text)]) for _, _, text in part], sampling)
        for (key, item, _), c in zip(part, done):
            log.put(key, {"pred": letter(c.text), "answer": item.answer, "reply": c.text})
        bar.update(len(part))
    bar.close()


def averages(correct: dict[str, list[bool]]) -> tuple[list[dict], dict[str, float]]:
    """Per-subject rows and the macro (mean over subjects) and micro (over all questions) accuracies."""
    rows = [{"subject": s, "n": len(v), "accuracy": sum(v) / len(v)} for s, v in correct.items() if v]
    total = sum(r["n"] for r in rows)
    metrics = {
        "accuracy_macro": sum(r["accuracy"] for r in rows) / len(rows),
        "accuracy_micro": sum(sum(v) for v in correct.values()) / total,
        "questions": float(total),
        "subjects": float(len(rows)),
    }
    return rows, metrics


def evaluate(layout: Layout, ctx: EvalContext) -> dict:
    evals, dev, skipped = load(layout, ctx)
    mode = ctx.cfg.mode
    log = ctx.items(layout.name)
    todo = [
        (f"{s}:{j}", item, prompt(layout, item, dev.get(s, [])))
        for s, items in evals.items()
        for j, item in enumerate(items)
        if log.get(f"{s}:{j}") is None
    ]
    if len(todo) < sum(map(len, evals.values())):
        print(
            f"{layout.name}: {sum(map(len, evals.values())) - len(todo)} questions scored earlier ({log.path})"
        )
    (score_generate if mode == "generate" else score_loglik)(layout, ctx, todo)
    correct = {
        s: [log.get(f"{s}:{j}")["pred"] == it.answer for j, it in enumerate(items)]
        for s, items in evals.items()
    }
    if mode == "generate":
        unanswered = sum(
            log.get(f"{s}:{j}")["pred"] is None for s, items in evals.items() for j in range(len(items))
        )
        if unanswered:
            skipped["reply without a letter (counted wrong)"] = unanswered
    rows, metrics = averages(correct)
    return {"metrics": metrics, "rows": rows, "skipped": skipped}


for _name, _layout in LAYOUTS.items():
    register(_name)(partial(evaluate, _layout))
