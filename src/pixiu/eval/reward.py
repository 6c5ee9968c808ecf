"""Reward-model scores: rm-accuracy (MODEL is the reward model), reward (MODEL's replies under --reward-model),
and `pixiu score` (a reward model's score of every reply in a file).

All reuse the scorer that reward-model training reports with (pixiu.model.reward: `replies`, `score_replies`,
`ranking_stats`) and its loader (pixiu.model.heads.load_scalar), so a score here is the score training reported.
- rm-accuracy: pairwise accuracy and mean margin on pairs or rankings (every pair i < j of a ranking).
- reward: MODEL answers each prompt greedily through the engine; the reward model scores every reply.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from tqdm import tqdm

from pixiu.eval.run import SHARED, EvalContext, EvalError, register

PAIRS = SHARED / "hh_rlhf" / "harmless-base_train_first5000_lastturn_derived.json"


def records_of(ctx: EvalContext, default, kinds: tuple[type, ...], what: str) -> tuple[list, dict[str, int]]:
    """The first --limit records of the data file that are `kinds`; bad rows and other records are counted."""
    from pixiu.config import DatasetSpec
    from pixiu.data import load_records

    path = ctx.data(default, f"{what} data")
    records, bad = load_records(DatasetSpec(str(path)), skip_bad_rows=True)
    skipped = {"bad row": len(bad)} if bad else {}
    for line in bad[:5]:
        print(f"skipped {line}")
    kept = [r for r in records if isinstance(r, kinds)]
    if len(kept) < len(records):
        skipped[f"not {' / '.join(k.__name__ for k in kinds)}"] = len(records) - len(kept)
    if not kept:
        raise EvalError(f"{what}: {path} has no {' or '.join(k.__name__ for k in kinds)} records")
    return ctx.take(kept), skipped


def scorer(ctx: EvalContext, model: str):
    """-> (Loaded, ScalarLM) of a reward model, loaded once per run."""
    from pixiu.config import ModelConfig
    from pixiu.model import heads

    def build():
        loaded, scalar = heads.load_scalar(ModelConfig(model, dtype=ctx.dtype))
        return loaded, scalar.eval()

    return ctx.cached(("reward-model", model), build)


@register("rm-accuracy")
def rm_accuracy(ctx: EvalContext) -> dict:
    from pixiu.data.records import PreferencePair, Ranking
    from pixiu.model.reward import ranking_stats, replies, score_replies

    records, skipped = records_of(ctx, PAIRS, (PreferencePair, Ranking), "rm-accuracy")
    log = ctx.items("rm-accuracy")
    todo = [i for i in range(len(records)) if log.get(i) is None]
    loaded, scalar = scorer(ctx, ctx.need()) if todo else (None, None)
    bar = tqdm(total=len(records), initial=len(records) - len(todo), desc="rm-accuracy", unit="pair")
    for start in range(0, len(todo), 8):
        part = todo[start : start + 8]
        convs = [(i, records[i].prompt.add("assistant", t)) for i in part for t in replies(records[i])]
        scores = score_replies(scalar, loaded.tokenizer, loaded.template, [c for _, c in convs])
        for i in part:
            log.put(i, {"scores": [s for (j, _), s in zip(convs, scores) if j == i]})
        bar.update(len(part))
    bar.close()
    groups = [log.get(i)["scores"] for i in range(len(records))]
    stats = ranking_stats([s for g in groups for s in g], [len(g) for g in groups])
    pairs = max(stats["pairs"], 1)
    metrics = {
        "accuracy": stats["correct"] / pairs,
        "margin": stats["margin"] / pairs,
        "pairs": stats["pairs"],
    }
    row = {
        "groups": len(groups),
        "pairs": int(stats["pairs"]),
        **{k: metrics[k] for k in ("accuracy", "margin")},
    }
    return {"metrics": metrics, "rows": [row], "skipped": skipped}


@register("reward")
def reward(ctx: EvalContext) -> dict:
    from pixiu.data.records import Labelled, PreferencePair, Prompt, Ranking
    from pixiu.engine import Sampling
    from pixiu.model.reward import score_replies

    rm_path = ctx.cfg.reward_model
    if not rm_path:
        raise EvalError("task reward needs --reward-model PATH (a reward model from `pixiu train rm`)")
    records, skipped = records_of(ctx, PAIRS, (Prompt, PreferencePair, Ranking, Labelled), "reward")
    prompts = [r.prompt for r in records]
    log = ctx.items("reward")
    todo = [i for i in range(len(prompts)) if log.get(i) is None]
    sampling = Sampling(ctx.cfg.max_new_tokens or 128, 0.0, seed=ctx.seed)
    engine = ctx.engine() if todo else None
    loaded, scalar = scorer(ctx, rm_path) if todo else (None, None)
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc="reward", unit="prompt")
    for start in range(0, len(todo), 16):
        part = todo[start : start + 16]
        done = engine.generate([prompts[i] for i in part], sampling)
        convs = [prompts[i].add("assistant", c.text) for i, c in zip(part, done)]
        scores = score_replies(scalar, loaded.tokenizer, loaded.template, convs)
        for i, c, s in zip(part, done, scores):
            log.put(i, {"reply": c.text, "reward": s, "tokens": c.completion_tokens})
        bar.update(len(part))
    bar.close()
    done = [log.get(i) for i in range(len(prompts))]
    rewards = [d["reward"] for d in done]
    metrics = {
        "mean_reward": statistics.mean(rewards),
        "std_reward": statistics.pstdev(rewards),
        "mean_reply_tokens": statistics.mean(d["tokens"] for d in done),
        "prompts": float(len(done)),
    }
    rows = [
        {"prompt": prompts[i].messages[-1].content[:60], "reply": d["reply"][:80], "reward": d["reward"]}
        for i, d in enumerate(done[:5])
    ]
    return {"metrics": metrics, "rows": rows, "skipped": skipped}


# ---------------------------------------------------------------- pixiu score


def score_cli(argv: list[str]) -> None:
    """pixiu score MODEL --data FILE [--out scores.jsonl] [--batch_size N]"""
    from pixiu.config import DatasetSpec, ModelConfig
    from pixiu.data import load_records
    from pixiu.model import heads
    from pixiu.model.reward import ranking_stats, score_replies

    p = argparse.ArgumentParser(prog="pixiu score", description="Score replies with a pixiu reward model.")
    p.add_argument("model", help="a reward model saved by `pixiu train rm`")
    p.add_argument(
        "--data", required=True, help="pairs, rankings or conversations (json, jsonl, csv, parquet)"
    )
    p.add_argument("--out", default="", help="write one JSON line per row here (default: stdout)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--format", default="auto", help="row format, as data.datasets[].format")
    p.add_argument("--max_len", type=int, default=0, help="cut rows longer than this (0 = no limit)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--skip_bad_rows", action="store_true", help="skip (and report) malformed rows")
    a = p.parse_args(argv)
    records, skipped = load_records(DatasetSpec(a.data, format=a.format), a.skip_bad_rows)
    loaded, model = heads.load_scalar(ModelConfig(a.model, dtype=a.dtype))
    convs, sizes = scored_conversations(records)
    scores = score_replies(model, loaded.tokenizer, loaded.template, convs, a.batch_size, a.max_len)
    per_row, start = [], 0
    for k in sizes:
        per_row.append(scores[start : start + k])
        start += k
    lines = [
        json.dumps({"source": r.source, "scores": [round(x, 6) for x in s]}, ensure_ascii=False) + "\n"
        for r, s in zip(records, per_row)
    ]
    if a.out:
        Path(a.out).write_text("".join(lines), encoding="utf-8")
    else:
        sys.stdout.write("".join(lines))
    ranked = [s for s in per_row if len(s) > 1]
    stats = ranking_stats([x for s in ranked for x in s], [len(s) for s in ranked])
    summary = f"scored {len(convs)} replies in {len(records)} rows" + (f" -> {a.out}" if a.out else "")
    if stats["pairs"]:
        summary += (
            f"\npairwise accuracy {stats['correct'] / stats['pairs']:.4f} over {int(stats['pairs'])} pairs, "
            f"mean margin {stats['margin'] / stats['pairs']:.4f}"
        )
    for line in skipped:
        summary += f"\nskipped bad row: {line}"
    print(summary, file=sys.stdout if a.out else sys.stderr)  # stdout may be the scores themselves


def scored_conversations(records: list) -> tuple[list, list[int]]:
    """Records -> (every conversation to score, replies per record): each reply of a pair or ranking, or a
    conversation that ends with a reply."""
    from pixiu.chat.messages import TARGET_ROLES, Conversation
    from pixiu.data import DataError
    from pixiu.data.records import PreferencePair, Ranking
    from pixiu.model.reward import replies

    convs, sizes = [], []
    for rec in records:
        if isinstance(rec, (PreferencePair, Ranking)):
            texts = replies(rec)
            convs += [rec.prompt.add("assistant", t) for t in texts]
            sizes.append(len(texts))
        elif isinstance(rec, Conversation) and rec.messages[-1].role in TARGET_ROLES:
            convs.append(rec)
            sizes.append(1)
        else:
            raise DataError(f"{rec.source}: a {type(rec).__name__} that does not end with a reply to score")
    return convs, sizes
