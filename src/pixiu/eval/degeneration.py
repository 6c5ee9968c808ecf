"""`pixiu eval MODEL --tasks degeneration [--data prompts.jsonl]`: how a model's replies degenerate.

The model answers each prompt once, greedily (the settings where loops show most), with --max-new-tokens tokens
at most (default 64); pixiu/degeneration.py measures every reply: repeated 3-grams, replies that hit the token
limit, replies in the other language than the prompt, empty replies, and exact match where a prompt row names
its reference `answer`. The default prompts are the quickstart's held-out ones (bilingual, with answers).
"""

from __future__ import annotations

from tqdm.auto import tqdm

from pixiu import degeneration as dg
from pixiu.eval.run import EvalContext, EvalError, register

DEFAULT = "pixiu:demo/heldout_prompts.jsonl"
SHOWN = 12  # per-reply rows in the results, worst first


@register("degeneration")
def degeneration(ctx: EvalContext) -> dict:
    from pixiu.config import DatasetSpec
    from pixiu.data import load_records, read_rows
    from pixiu.data.records import Prompt
    from pixiu.engine import Sampling

    path = ctx.cfg.data or DEFAULT
    records = [r for r in load_records(DatasetSpec(path))[0] if isinstance(r, Prompt)]
    if not records:
        raise EvalError(f"degeneration: no prompt rows in {path} (rows like {{'prompt': ...}})")
    rows = [row for _, row in read_rows(path)]
    answers = [r.get("answer") if len(rows) == len(records) else None for r in rows][: len(records)]
    convs = ctx.take([r.prompt for r in records])
    limit = ctx.cfg.max_new_tokens or 64
    sampling = Sampling(limit, 0.0, seed=ctx.seed)
    log = ctx.items("degeneration")
    todo = [i for i in range(len(convs)) if log.get(i) is None]
    engine = ctx.engine() if todo else None
    bar = tqdm(total=len(convs), initial=len(convs) - len(todo), desc="degeneration", unit="prompt")
    for start in range(0, len(todo), 16):  # chunks: the engine batches each, the log saves it
        part = todo[start : start + 16]
        for i, c in zip(part, engine.generate([convs[i] for i in part], sampling)):
            log.put(i, {"reply": c.text, "finished": c.finish_reason != "length"})
        bar.update(len(part))
    bar.close()
    done = [log.get(i) for i in range(len(convs))]
    prompts = [c.messages[-1].content for c in convs]
    stats = [
        dg.reply_stats(p, d["reply"], d["finished"], a if isinstance(a, str) else None)
        for p, d, a in zip(prompts, done, answers)
    ]
    metrics = {k: float(v) for k, v in dg.summarize(stats).items()} | {"prompts": float(len(stats))}
    worst = sorted(range(len(stats)), key=lambda i: -stats[i].badness())[:SHOWN]
    shown = [{"prompt": prompts[i], "reply": done[i]["reply"], **dg.as_dict(stats[i])} for i in worst]
    return {"metrics": metrics, "rows": shown, "skipped": {}}
