"""LawBench tasks (https://github.com/open-compass/LawBench), zero-shot, scored as LawBench scores them:

- lawbench:1-1 statute recitation: ROUGE-L F between the reply and the article's text (LawBench segments words
  with jieba; here the units are characters, which needs no segmenter and ranks replies alike);
- lawbench:3-1 article prediction: F1 between the article numbers the reply names and the gold ones (the reply
  split at '、', '第...款' dropped, '第N条' and Chinese numerals read as numbers, the first number of each piece);
- lawbench:3-3 charge prediction: F1 between the charges the reply names and the gold ones (a charge counts when
  its name appears in the reply; the vocabulary is the gold charges of the task's file, where LawBench lists
  CAIL2018's 189).
Each item is LawBench's instruction and question as one user turn, answered greedily; a question over
MAX_QUESTION_CHARS (CAIL's case texts run to 9,800 characters, 17,000 SmolLM2 tokens) keeps its head and tail, the
same cut for every model so their numbers compare, and the cut items are counted (`cut_items`). With eval.rag the top
eval.rag_k passages of a retrieval index over the statutes go in the prompt with numbered citations, so the same
task measures the model with and without retrieval.
"""

from __future__ import annotations

import json
import re

from tqdm import tqdm

from pixiu.eval.run import SHARED, EvalContext, EvalError, register

FILES = {"1-1": "1-1_*.json", "3-1": "3-1_*.json", "3-3": "3-3_*.json"}
FIELDS = ("instruction", "question", "answer")
# 1,500 characters is ~2,300 SmolLM2 tokens: 94% of the 3-1 / 3-3 cases fit whole; one 17,000-token case
# would pass any small model's context window, and padding a batch to it costs minutes on a CPU.
MAX_QUESTION_CHARS = 1500
NUMERAL = re.compile("[〇零一二两三四五六七八九十百千]+")


def lcs(a: str, b: str) -> int:
    """Length of the longest common subsequence, O(len(a) * len(b)) with one row."""
    row = [0] * (len(b) + 1)
    for ca in a:
        prev = 0
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if ca == cb else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1 over characters (whitespace ignored)."""
    pred, ref = re.sub(r"\s", "", pred), re.sub(r"\s", "", ref)
    hit = lcs(pred, ref) if pred and ref else 0
    if not hit:
        return 0.0
    p, r = hit / len(pred), hit / len(ref)
    return 2 * p * r / (p + r)


def f1(gold: set, pred: set) -> float:
    tp = len(gold & pred)
    return 0.0 if not tp else 2 * tp / (len(gold) + len(pred))


def articles(reply: str) -> set[int]:
    """The article numbers a reply names, read as LawBench's ljp_article reads them."""
    from pixiu.rag.chunk import chinese_number

    found = set()
    for piece in reply.split("、"):
        piece = re.sub(r"第(.*?)款", "", piece.replace("万元", "元"))
        piece = re.sub(r"第(.*?)条", r"\1", piece)
        piece = NUMERAL.sub(lambda m: str(chinese_number(m.group())), piece)
        if numbers := re.findall(r"\d+", piece):
            found.add(int(numbers[0]))
    return found


def gold_articles(answer: str) -> set[int]:
    """'法条:刑法第266、385条' -> {266, 385}."""
    return {int(n) for n in answer.replace("法条:刑法第", "").rstrip("条").split("、") if n.isdigit()}


def charges(answer: str) -> set[str]:
    return set(answer.replace("罪名:", "").split(";"))


def load(ctx: EvalContext, task: str) -> list[dict]:
    """The task's items; a file that is not a JSON list of {instruction, question, answer} texts is an EvalError
    naming the file and the first bad item."""
    folder = ctx.data(SHARED / "law" / "lawbench", "LawBench data")
    files = sorted(folder.glob(FILES[task])) if folder.is_dir() else [folder]
    if not files:
        raise EvalError(f"lawbench:{task}: no {FILES[task]} in {folder}")
    try:
        items = json.loads(files[0].read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EvalError(f"{files[0]}: not LawBench JSON ({e})") from None
    if not isinstance(items, list):
        raise EvalError(f"{files[0]}: expected a JSON list of items, got {type(items).__name__}")
    for i, it in enumerate(items):
        missing = [k for k in FIELDS if not isinstance(it, dict) or not isinstance(it.get(k), str)]
        if missing:
            raise EvalError(f"{files[0]}: item {i} lacks a text {', '.join(missing)}")
    return items


def cut(question: str, limit: int = MAX_QUESTION_CHARS) -> str:
    """A question over `limit` characters -> its first 2/3 and last 1/3 of `limit` around '……': a case's
    facts open it and the prosecution's conclusion closes it."""
    if len(question) <= limit:
        return question
    head = limit * 2 // 3
    return question[:head] + "……" + question[len(question) - (limit - head) :]


def replies(ctx: EvalContext, task: str, items: list[dict], max_new: int) -> list[str]:
    """Greedy replies, logged per item so an interrupted run resumes; with eval.rag, cited passages."""
    from pixiu.chat.messages import Conversation, Message
    from pixiu.engine import Sampling

    index = None
    if ctx.cfg.rag:
        from pixiu.rag import Index, cite_prompt

        index = ctx.cached(("rag", ctx.cfg.rag), lambda: Index.load(ctx.cfg.rag))
    log = ctx.items(f"lawbench-{task}")
    todo = [i for i in range(len(items)) if log.get(i) is None]
    sampling = Sampling(ctx.cfg.max_new_tokens or max_new, 0.0, seed=ctx.seed)
    engine = ctx.engine() if todo else None
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=f"lawbench:{task}", unit="item")
    for start in range(0, len(todo), 16):
        part = todo[start : start + 16]
        prompts = []
        for i in part:
            text = items[i]["instruction"] + "\n" + cut(items[i]["question"])
            if index is not None:
                text = cite_prompt(text, index.search(items[i]["question"], ctx.cfg.rag_k))
            prompts.append(Conversation([Message("user", text)]))
        for i, c in zip(part, engine.generate(prompts, sampling)):
            log.put(i, {"reply": c.text})
        bar.update(len(part))
    bar.close()
    return [log.get(i)["reply"] for i in range(len(items))]


def result(task: str, items: list[dict], scores: list[float], abstain: int, name: str) -> dict:
    n = len(scores)
    cuts = sum(len(it["question"]) > MAX_QUESTION_CHARS for it in items)
    metrics = {
        name: sum(scores) / n,
        "abstention_rate": abstain / n,
        "items": float(n),
        "cut_items": float(cuts),
    }
    return {"metrics": metrics, "rows": [{"task": f"lawbench:{task}", **metrics}], "skipped": {}}


@register("lawbench:1-1")
def recitation(ctx: EvalContext) -> dict:
    items = ctx.take(load(ctx, "1-1"))
    got = replies(ctx, "1-1", items, 256)
    scores = [rouge_l(r, it["answer"].replace("答案:", "")) for r, it in zip(got, items)]
    return result("1-1", items, scores, sum(not r.strip() for r in got), "rouge_l")


@register("lawbench:3-1")
def article_prediction(ctx: EvalContext) -> dict:
    items = ctx.take(load(ctx, "3-1"))
    got = replies(ctx, "3-1", items, 64)
    preds = [articles(r) for r in got]
    scores = [f1(gold_articles(it["answer"]), p) for it, p in zip(items, preds)]
    return result("3-1", items, scores, sum(not p for p in preds), "f1")


@register("lawbench:3-3")
def charge_prediction(ctx: EvalContext) -> dict:
    all_items = load(ctx, "3-3")
    vocab = {c for it in all_items for c in charges(it["answer"])}
    items = ctx.take(all_items)
    got = replies(ctx, "3-3", items, 64)
    preds = [{c for c in vocab if c in r} for r in got]
    scores = [f1(charges(it["answer"]), p) for it, p in zip(items, preds)]
    return result("3-3", items, scores, sum(not p for p in preds), "f1")
