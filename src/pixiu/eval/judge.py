"""Judged evaluations: `winrate` (model A against model B or reference replies) and `elo` (arena votes).

The judge of `winrate` is a reward model (`--reward-model`: the higher score wins, scores within `tie_eps` tie) or
an LLM behind any OpenAI-compatible endpoint (`--judge URL --judge-model NAME`, a `pixiu serve` included) asked
FastChat's pairwise question. LLM judges favour whichever answer comes first (or second) often enough to swamp a
real difference (Zheng et al. 2023, https://arxiv.org/abs/2306.05685 section 3.3), so every pair is judged twice
with the answers swapped: A wins only when both orders say so, and any disagreement is a tie. The share of pairs
whose two verdicts agree is reported as `consistency`. With `--judge-logprobs` the judge is asked for one letter
and the verdict is the likeliest of A / B / C among its first token's `top_logprobs` (as AlpacaEval 2 reads its
judge): no reply format to follow, so even a small judge gives a verdict.

A long run survives a flaky judge: timeouts and 5xx are retried with exponential backoff, a verdict without
[[A]] / [[B]] / [[C]] is asked again (sampled, so the retry can differ), and what still fails is counted under
`skipped` instead of stopping the run. Only a wrong URL, model name or key (401 / 403 / 404) stops it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pixiu.chat.messages import Conversation, Message
from pixiu.config import EvalConfig
from pixiu.engine import ContextError, Sampling
from pixiu.eval.endpoint import JudgeClient, JudgeRejected, JudgeUnavailable
from pixiu.eval.run import EvalContext, EvalError, register

DEFAULT_PROMPTS = "pixiu:demo/heldout_prompts.jsonl"
CHUNK = 16  # prompts generated (and judged) together: the engine's default batch
RETRY_TEMPERATURE = 0.7  # a re-asked verdict is sampled: at temperature 0 the judge would repeat itself
SHOW = 200  # characters of each text kept in the result rows (the item log keeps them whole)

# FastChat's "pair-v2" judge prompt (lm-sys/FastChat, fastchat/llm_judge/data/judge_prompts.jsonl, Apache-2.0).
PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    'possible. After providing your explanation, output your final verdict by strictly following this format: "[[A]]" '
    'if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
# The same question for a one-letter verdict read from log-probabilities (--judge-logprobs).
LETTER_SYSTEM = PAIR_SYSTEM.split(" Begin your evaluation")[0] + (
    " Avoid any position biases: the order of the responses must not influence your decision. Answer with one "
    'letter only: "A" if assistant A is better, "B" if assistant B is better, "C" for a tie.'
)
LETTERS = {"A": "A", "B": "B", "C": "tie"}
PAIR_TEMPLATE = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's "
    "Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)


def client_from(ctx: EvalContext) -> JudgeClient:
    """The judge of --judge / --judge-model / --judge-key; with one model served, --judge-model may be left out."""
    c = ctx.cfg
    key = c.judge_key or os.environ.get("PIXIU_JUDGE_KEY")
    client = JudgeClient(c.judge, c.judge_model, key, c.judge_timeout, c.judge_retries, c.judge_backoff,
                         c.judge_max_tokens or None)  # fmt: skip
    if not client.model:
        try:
            served = client.models()
        except Exception as e:
            raise EvalError(f"cannot list the models of judge {c.judge} ({e}); give --judge-model") from None
        if len(served) != 1:
            raise EvalError(f"judge {c.judge} serves {served}; pick one with --judge-model")
        client.model = served[0]
    return client


# ---------------------------------------------------------------- asking, parsing, combining


def parse_verdict(text: str) -> str | None:
    """'A' | 'B' | 'tie' from [[A]] / [[B]] / [[C]], checked in that order as FastChat does; None without one."""
    for mark, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if mark in text:
            return verdict
    return None


@dataclass
class Asked:
    value: object  # what `parse` made of the reply; None when nothing usable came back
    text: str  # the judge's last reply, or why there was none
    tries: int  # times the judge was asked (each ask retries timeouts and 5xx on its own)
    error: str = ""  # "" | unparsable | judge_error | judge_rejected


def ask(client, messages: list[dict], parse: Callable[[str], object], parse_retries: int = 2) -> Asked:
    """Ask until `parse` finds an answer: first at temperature 0, then `parse_retries` sampled retries.
    `client` is anything with chat(messages, temperature, seed) -> str (a JudgeClient, or a script in tests)."""
    text = ""
    for attempt in range(parse_retries + 1):
        temperature = 0.0 if attempt == 0 else RETRY_TEMPERATURE
        try:
            text = client.chat(messages, temperature=temperature, seed=attempt)
        except JudgeRejected as e:
            return Asked(None, str(e), attempt + 1, "judge_rejected")
        except JudgeUnavailable as e:
            return Asked(None, str(e), attempt + 1, "judge_error")
        value = parse(text)
        if value is not None:
            return Asked(value, text, attempt + 1)
    return Asked(None, text, parse_retries + 1, "unparsable")


def ask_letter(client, messages: list[dict]) -> Asked:
    """A verdict from the judge's first-token log-probabilities: the likeliest of A / B / C (a token's
    probability counts for its letter when the token is that letter with spaces or brackets around it)."""
    try:
        top = client.first_token(messages)
    except JudgeRejected as e:
        return Asked(None, str(e), 1, "judge_rejected")
    except JudgeUnavailable as e:
        return Asked(None, str(e), 1, "judge_error")
    mass = Counter()
    for token, logprob in top:
        if (letter := token.strip(" [\n")) in LETTERS:
            mass[letter] += math.exp(logprob)
    text = (
        " ".join(f"{k} {v:.3f}" for k, v in sorted(mass.items())) or f"no letter in {[t for t, _ in top[:8]]}"
    )
    if not mass:
        return Asked(None, text, 1, "unparsable")
    return Asked(LETTERS[mass.most_common(1)[0][0]], text, 1)


def pair_messages(question: str, first: str, second: str, system: str = PAIR_SYSTEM) -> list[dict]:
    user = PAIR_TEMPLATE.format(question=question, answer_a=first, answer_b=second)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def combine(g1: str, g2: str) -> tuple[str, bool]:
    """(A's outcome: win | tie | loss, consistent) from g1, the verdict with A shown first, and g2, the verdict
    with B shown first. Consistent = both name the same model (or both a tie); anything else counts as a tie."""
    first = {"A": "a", "B": "b", "tie": "tie"}[g1]
    second = {"A": "b", "B": "a", "tie": "tie"}[g2]
    if first != second:
        return "tie", False
    return {"a": "win", "b": "loss", "tie": "tie"}[first], True


def tally(rows: list[dict]) -> dict[str, float]:
    """Win rate (ties count half) over the judged rows; with swapped verdicts also consistency and the share of
    decisive verdicts that picked the answer shown first (0.5 = no position bias)."""
    judged = [r for r in rows if r.get("outcome")]
    n = len(judged)
    count = Counter(r["outcome"] for r in judged)
    out = {"pairs": float(n), "wins": float(count["win"]), "ties": float(count["tie"]),
           "losses": float(count["loss"])}  # fmt: skip
    if n:
        out["win_rate"] = (count["win"] + 0.5 * count["tie"]) / n
    swapped = [r for r in judged if "consistent" in r]
    if swapped:
        out["consistency"] = sum(r["consistent"] for r in swapped) / len(swapped)
        decisive = [v for r in swapped for v in (r["g1"], r["g2"]) if v != "tie"]
        if decisive:
            out["first_position_rate"] = decisive.count("A") / len(decisive)
    return out


# ---------------------------------------------------------------- judges


@dataclass
class PairItem:
    key: str
    conv: Conversation  # the prompt, ending with a user turn
    a: str  # model A's reply
    b: str  # model B's reply (or the reference reply)


class LLMJudge:
    """Each pair judged A/B and B/A by an LLM endpoint; `parallel` requests in flight (a server batches them).
    `letters`: read one-letter verdicts from log-probabilities instead of parsing [[A]] from a written reply."""

    def __init__(self, client, parse_retries: int = 2, parallel: int = 16, letters: bool = False):
        self.client, self.parse_retries, self.parallel = client, parse_retries, parallel
        self.letters = letters

    def judge(self, items: list[PairItem]) -> list[dict]:
        system = LETTER_SYSTEM if self.letters else PAIR_SYSTEM
        calls = [
            pair_messages(question_text(it.conv), *ab, system)
            for it in items
            for ab in ((it.a, it.b), (it.b, it.a))
        ]
        if self.letters:
            asker = lambda m: ask_letter(self.client, m)  # noqa: E731
        else:
            asker = lambda m: ask(self.client, m, parse_verdict, self.parse_retries)  # noqa: E731
        answers = parallel_map(asker, calls, self.parallel)
        rows = []
        for i, it in enumerate(items):
            g1, g2 = answers[2 * i], answers[2 * i + 1]
            row = {"key": it.key, "prompt": question_text(it.conv), "a": it.a, "b": it.b, "g1": g1.value,
                   "g2": g2.value, "judge_1": g1.text, "judge_2": g2.text, "tries": g1.tries + g2.tries}  # fmt: skip
            if g1.error or g2.error:
                row["skip"] = g1.error or g2.error
            else:
                row["outcome"], row["consistent"] = combine(g1.value, g2.value)
            rows.append(row)
        return rows


class RewardJudge:
    """A reward model scores both replies; position plays no part, so each pair is scored once."""

    def __init__(self, path: str, dtype: str = "auto", eps: float = 1e-3, batch_size: int = 8):
        from pixiu.config import ModelConfig
        from pixiu.model import heads

        self.loaded, self.scalar = heads.load_scalar(ModelConfig(path, dtype=dtype))
        self.eps, self.batch_size = eps, batch_size

    def judge(self, items: list[PairItem]) -> list[dict]:
        from pixiu.model.reward import score_replies

        convs = [it.conv.add("assistant", reply) for it in items for reply in (it.a, it.b)]
        t = self.loaded
        scores = score_replies(self.scalar, t.tokenizer, t.template, convs, self.batch_size) if convs else []
        rows = []
        for i, it in enumerate(items):
            sa, sb = scores[2 * i], scores[2 * i + 1]
            outcome = "tie" if abs(sa - sb) <= self.eps else "win" if sa > sb else "loss"
            rows.append({"key": it.key, "prompt": question_text(it.conv), "a": it.a, "b": it.b,
                         "score_a": round(sa, 4), "score_b": round(sb, 4), "outcome": outcome})  # fmt: skip
        return rows


def ask_settings(cfg: EvalConfig) -> tuple[int, int]:
    """(parse_retries, judge requests in flight); the default 16 in flight fill a `pixiu serve` batch."""
    return cfg.parse_retries, cfg.judge_parallel


def make_judge(ctx: EvalContext):
    c = ctx.cfg
    if c.reward_model and c.judge:
        raise EvalError("give one judge: --reward-model PATH or --judge URL, not both")
    if c.reward_model:
        return RewardJudge(c.reward_model, ctx.dtype, c.tie_eps)
    if c.judge:
        return LLMJudge(client_from(ctx), *ask_settings(c), letters=c.judge_logprobs)
    raise EvalError("winrate needs a judge: --reward-model PATH or --judge URL [--judge-model NAME]")


# ---------------------------------------------------------------- prompts and replies


def question_text(conv: Conversation) -> str:
    """The user's question as the judge reads it: the message itself, or the dialogue turn by turn."""
    turns = [m for m in conv.messages if m.role != "system"]
    if len(turns) == 1:
        return turns[0].content
    return "\n\n".join(f"### {m.role.capitalize()}:\n{m.content}" for m in turns)


def load_prompts(path: str) -> list[Conversation]:
    """Prompts from any format the data loader reads: prompt rows, conversations (cut before the last reply),
    pairs and rankings (their prompt)."""
    from pixiu.config import DatasetSpec
    from pixiu.data import DataError, load_records

    try:
        records, _ = load_records(DatasetSpec(path))
    except DataError as e:
        raise EvalError(str(e)) from None
    convs = []
    for r in records:
        conv = r if isinstance(r, Conversation) else getattr(r, "prompt", None)
        if conv is None:
            raise EvalError(f"{r.source}: a {type(r).__name__} record holds no prompt")
        last_user = max((i for i, m in enumerate(conv.messages) if m.role == "user"), default=-1)
        if last_user < 0:
            raise EvalError(f"{r.source}: the conversation has no user turn to answer")
        convs.append(Conversation(conv.messages[: last_user + 1], conv.tools, conv.source))
    return convs


def load_references(path: str) -> tuple[list[Conversation], list[str]]:
    """AlpacaEval-style reference replies: rows {instruction (+ input) or prompt (text or messages), output}."""
    from pixiu.data import DataError, read_rows

    convs, outputs = [], []
    try:
        for source, row in read_rows(path):
            if isinstance(row.get("prompt"), list):
                conv = Conversation.from_openai(row["prompt"])
            else:
                parts = [row.get("prompt") or row.get("instruction") or "", row.get("input") or ""]
                conv = Conversation([Message("user", "\n\n".join(p for p in parts if p))])
            if not isinstance(row.get("output"), str) or not conv.messages[-1].content.strip():
                raise EvalError(f"{source}: a reference row needs instruction (or prompt) and output text")
            convs.append(conv)
            outputs.append(row["output"])
    except (DataError, KeyError, TypeError, ValueError) as e:
        raise EvalError(f"{path}: {e}") from None
    return convs, outputs


def reply_all(engine, convs: list[Conversation], samplings: list[Sampling]) -> list[str | None]:
    """One reply per prompt, all submitted at once so the engine batches them; None where the prompt does not fit
    the model's context window."""
    requests = []
    for conv, sampling in zip(convs, samplings, strict=True):
        try:
            requests.append(engine.submit(conv, sampling))
        except ContextError:
            requests.append(None)
    return [r.completion().text if r is not None else None for r in requests]


def parallel_map(fn: Callable, xs: list, workers: int) -> list:
    if workers <= 1 or len(xs) <= 1:
        return [fn(x) for x in xs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, xs))


def item_key(i: int, conv: Conversation) -> str:
    text = json.dumps(conv.to_openai(), ensure_ascii=False)
    return f"{i}:{hashlib.blake2b(text.encode(), digest_size=6).hexdigest()}"


def is_reference_file(path: str | None) -> bool:
    return bool(path) and Path(path).is_file() and Path(path).suffix.lower() in (".jsonl", ".json")


# ---------------------------------------------------------------- tasks


@register("winrate")
def winrate(ctx: EvalContext) -> dict:
    """MODEL against --against (a model, or a file of reference replies) on --data prompts, by one judge."""
    from tqdm.auto import tqdm

    against = ctx.cfg.against
    if not against:
        raise EvalError(
            "winrate needs --against: a second model, or a JSONL file of {instruction, output} replies"
        )
    judge = make_judge(ctx)
    if is_reference_file(against):
        if ctx.cfg.data:
            raise EvalError(f"--against {against} brings its own prompts; leave out --data")
        convs, refs = load_references(against)
    else:
        convs, refs = load_prompts(ctx.cfg.data or DEFAULT_PROMPTS), None
    convs = ctx.take(convs)
    sampling = Sampling(ctx.cfg.max_new_tokens or 256, temperature=0.0, seed=ctx.seed)
    log, keys = ctx.items("winrate"), [item_key(i, c) for i, c in enumerate(convs)]
    # judge failures of this run: reported, not logged, so a re-run asks again
    fresh: dict[str, dict] = {}
    todo = [i for i, k in enumerate(keys) if log.get(k) is None]
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc="winrate", unit="pair")
    for start in range(0, len(todo), CHUNK):
        idx = todo[start : start + CHUNK]
        chunk = [convs[i] for i in idx]
        a = reply_all(ctx.engine(), chunk, [sampling] * len(idx))
        b = [refs[i] for i in idx] if refs else reply_all(ctx.engine(against), chunk, [sampling] * len(idx))
        items = []
        for i, ra, rb in zip(idx, a, b):
            if ra is None or rb is None:
                log.put(
                    keys[i], {"key": keys[i], "prompt": question_text(convs[i]), "skip": "context_too_long"}
                )
            else:
                items.append(PairItem(keys[i], convs[i], ra, rb))
        for row in judge.judge(items):
            if row.get("skip") in ("judge_error", "judge_rejected"):
                fresh[row["key"]] = row
            else:
                log.put(row["key"], row)
        bar.update(len(idx))
    bar.close()
    rows = [fresh.get(k) or log.get(k) for k in keys]
    skipped = Counter(r["skip"] for r in rows if r.get("skip"))
    return {"metrics": tally(rows), "rows": [_shown(r) for r in rows], "skipped": dict(skipped)}


def _shown(row: dict) -> dict:
    cut = lambda s: s if not isinstance(s, str) or len(s) <= SHOW else s[:SHOW] + "…"  # noqa: E731
    return {k: cut(v) for k, v in row.items() if k != "key"}


@register("elo")
def elo(ctx: EvalContext) -> dict:
    """Elo and Bradley-Terry ratings (95% bootstrap interval) of the arena votes in the feedback store --db."""
    from pixiu.feedback import open_store, ratings

    db = ctx.cfg.db
    if not db:
        raise EvalError("elo needs --db: the feedback store with the arena votes (pixiu serve --db)")
    if "://" not in str(db) and not Path(db).is_file():
        raise EvalError(f"no feedback store at {db}")
    with open_store(db) as store:
        votes = store.votes()
    if not votes:
        raise EvalError(f"{db} holds no arena votes")
    games = [ratings.Game(v.model_a, v.model_b, v.winner) for v in votes]
    rows = ratings.elo_table(games, bootstrap=ctx.cfg.bootstrap, seed=ctx.seed)
    metrics = {"votes": float(len(votes))}
    for r in rows:
        metrics[f"elo/{r['model']}"] = float(r["elo"])
        metrics[f"bt/{r['model']}"] = float(r["bt"])
    same = sum(g.model_a == g.model_b for g in games)
    return {"metrics": metrics, "rows": rows, "skipped": {"same_model": same} if same else {}}
