"""gsm8k (greedy replies through the engine, exact match of the final number) and perplexity (any data file).

GSM8K (eval.gsm8k_prompt): 'pixiu' asks each test question as a user turn with the task's instruction (end with
'#### <number>'), --shots K putting the first K training problems with their worked solutions before it as
earlier turns; 'lm-eval' sends lm-evaluation-harness's own few-shot text prompt byte for byte (`lm_eval_prompts`),
so the numbers compare with lm-eval's. exact_match reads the answer with pixiu.data.tasks.extract_number: the
number after the last '####' (else '\\boxed{', else 'answer is'), else the last number of the reply; '1,234',
'$5', '12 dollars' and '-3' read as 1234, 5, 12 and -3. strict_match is lm-eval's strict-match filter.

Perplexity: exp of the mean negative log-likelihood per target token: assistant tokens of conversations (the
tokens SFT trains on), every token after the first of plain text. Texts longer than the context window are cut
into windows; a conversation longer than it is truncated and counted in `skipped`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from pathlib import Path

import torch
from tqdm import tqdm

from pixiu.config import EvalConfig
from pixiu.eval.run import SHARED, EvalContext, EvalError, register

# lm-evaluation-harness's gsm8k task (lm_eval/tasks/gsm8k/gsm8k.yaml, version 3.0): doc_to_text
# "Question: {{question}}\nAnswer:", target " {{answer}}" (the worked solution), shots joined and closed by
# "\n\n", num_fewshot 5 from the train split drawn by random.Random(1234).sample(train, k) once per test problem
# in order, greedy until one of these strings.
LM_EVAL_STOP = ("Question:", "</s>", "<|im_end|>")
LM_EVAL_SHOTS, LM_EVAL_SEED = 5, 1234
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")  # lm-eval's strict-match filter


def lm_eval_prompts(test: list, train: list, shots: int) -> list[str]:
    """lm-eval's gsm8k prompt of every test problem, as raw text (no chat template). `test` and `train` are
    data.tasks Examples read with an empty instruction: the question is the user turn, the solution the answer."""
    rng = random.Random(LM_EVAL_SEED)
    question = lambda ex: ex.prompt.messages[-1].content  # noqa: E731
    out = []
    for ex in test:
        drawn = rng.sample(train, shots) if shots else []
        context = "".join(f"Question: {question(s)}\nAnswer: {s.solution}\n\n" for s in drawn)
        out.append(f"{context}Question: {question(ex)}\nAnswer:")
    return out


def strict_match(reply: str, answer: str) -> bool:
    """lm-eval's strict-match: the first '#### N' of the reply equals the reference number once ',' and '$' and a
    final '.' are removed from both (its regexes_to_ignore), ignoring case."""
    found = STRICT.search(reply)
    clean = lambda t: re.sub(r"\.$", "", t.replace(",", "").replace("$", "")).lower()  # noqa: E731
    return found is not None and clean(found.group(1)) == clean(answer.split("#### ")[-1].strip())


def gsm8k_prompts(cfg: EvalConfig, path: Path, limit) -> tuple[list, list, tuple[str, ...]]:
    """(test examples, prompts, extra stop strings) for the prompt style cfg.gsm8k_prompt."""
    from pixiu.chat.messages import Conversation
    from pixiu.data.tasks import GSM8K

    if cfg.gsm8k_prompt == "lm-eval":
        task = GSM8K(str(path), instruction="")
        examples = task.examples("test")[:limit]
        shots = LM_EVAL_SHOTS if cfg.shots < 0 else cfg.shots
        return (
            examples,
            lm_eval_prompts(examples, task.examples("train") if shots else [], shots),
            LM_EVAL_STOP,
        )
    task = GSM8K(str(path))
    examples = task.examples("test")[:limit]
    shots = task.examples("train")[: cfg.shots] if cfg.shots > 0 else []
    context = [m for ex in shots for m in ex.prompt.add("assistant", ex.solution).messages]
    return examples, [Conversation([*context, *ex.prompt.messages]) for ex in examples], ()


@register("gsm8k")
def gsm8k(ctx: EvalContext) -> dict:
    from pixiu.data.tasks import extract_number
    from pixiu.engine import Sampling

    path = ctx.data(SHARED / "gsm8k", "gsm8k data")
    examples, prompts, stop = gsm8k_prompts(ctx.cfg, path, ctx.limit)
    if not examples:
        raise EvalError(f"gsm8k: no test problems in {path}")
    log = ctx.items("gsm8k")
    todo = [i for i in range(len(examples)) if log.get(i) is None]
    sampling = Sampling(ctx.cfg.max_new_tokens or 256, 0.0, seed=ctx.seed)
    engine = ctx.engine() if todo else None
    bar = tqdm(total=len(examples), initial=len(examples) - len(todo), desc="gsm8k", unit="q")
    for start in range(0, len(todo), 16):  # chunks: the engine batches each, the log saves it
        part = todo[start : start + 16]
        for i, c in zip(part, engine.generate([prompts[i] for i in part], sampling, stop=stop)):
            ex = examples[i]
            log.put(i, {"pred": extract_number(c.text), "answer": ex.answer, "reply": c.text,
                        "strict": strict_match(c.text, ex.solution), "tokens": c.completion_tokens})  # fmt: skip
        bar.update(len(part))
    bar.close()
    done = [log.get(i) for i in range(len(examples))]
    right = sum(d["pred"] == d["answer"] for d in done)
    metrics = {
        "exact_match": right / len(done),
        "strict_match": sum(d["strict"] for d in done) / len(done),
        "problems": float(len(done)),
        "mean_reply_tokens": sum(d["tokens"] for d in done) / len(done),
    }
    row = {
        "split": "test",
        "prompt": ctx.cfg.gsm8k_prompt,
        "problems": len(done),
        "correct": right,
        "no_number": sum(d["pred"] is None for d in done),
        "exact_match": right / len(done),
        "strict_match": metrics["strict_match"],
    }
    return {"metrics": metrics, "rows": [row], "skipped": {}}


# ---------------------------------------------------------------- perplexity


def targets(record, loaded, window: int) -> tuple[list, str]:
    """A record -> its rows to score (Rendered, each at most `window` tokens) and a skip reason ('' if none)."""
    from pixiu.chat.messages import Conversation
    from pixiu.chat.templates import Rendered
    from pixiu.data.records import Text

    if isinstance(record, Conversation):
        r = loaded.template.render(record)
        if not any(r.loss_mask[1:]):
            return [], "conversation without an assistant turn"
        why = (
            "conversation truncated to the context window (scored in part)"
            if len(r.input_ids) > window
            else ""
        )
        return [Rendered(r.input_ids[:window], r.loss_mask[:window])], why
    if isinstance(record, Text):
        ids = loaded.tokenizer(record.text, add_special_tokens=False)["input_ids"]
        if len(ids) < 2:
            return [], "text shorter than two tokens"
        return [
            Rendered(ids[i : i + window], [1] * len(ids[i : i + window])) for i in range(0, len(ids), window)
        ], ""
    return [], f"not a conversation or text ({type(record).__name__})"


@torch.no_grad()
def nll(loaded, rows: list, batch_size: int = 8) -> tuple[float, int]:
    """Summed negative log-likelihood of the rows' target tokens and their count."""
    from pixiu.data.collate import collate
    from pixiu.model.forward import TargetLM, autocast, sequence_logps

    model = TargetLM(loaded.model).eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = collate([[r] for r in rows[i : i + batch_size]], loaded.tokenizer.pad_token_id)
        batch = dataclasses.replace(
            batch, **{k: v.to(device) for k, v in vars(batch).items() if v is not None}
        )
        with autocast(loaded.dtype, device):
            logps, counts = sequence_logps(model, batch)
        total, count = total - float(logps.float().sum()), count + int(counts.sum())
    return total, count


@register("perplexity")
def perplexity(ctx: EvalContext) -> dict:
    from pixiu.config import DatasetSpec
    from pixiu.data import load_records

    path = ctx.data(SHARED / "llamafactory_demo" / "alpaca_en_demo.json", "perplexity data")
    records, bad = load_records(DatasetSpec(str(path)), skip_bad_rows=True)
    records = ctx.take(records)
    skipped: dict[str, int] = {"bad row": len(bad)} if bad else {}
    for line in bad[:5]:
        print(f"skipped {line}")
    loaded = ctx.loaded()
    window = min(getattr(loaded.model.config, "max_position_embeddings", 2048), 2048)
    log = ctx.items("perplexity")
    bar = tqdm(total=len(records), desc="perplexity", unit="rec")
    for i, record in enumerate(records):
        if log.get(i) is None:
            rows, why = targets(record, loaded, window)
            value, count = nll(loaded, rows) if rows else (0.0, 0)
            log.put(i, {"nll": value, "tokens": count, "skip": why})
        bar.update()
    bar.close()
    done = [log.get(i) for i in range(len(records))]
    for d in done:
        if d["skip"]:
            skipped[d["skip"]] = skipped.get(d["skip"], 0) + 1
    tokens = sum(d["tokens"] for d in done)
    if not tokens:
        raise EvalError(f"perplexity: {path} has no tokens to score (skipped: {skipped})")
    mean = sum(d["nll"] for d in done) / tokens
    scored = sum(d["tokens"] > 0 for d in done)
    metrics = {
        "perplexity": math.exp(mean),
        "nll_per_token": mean,
        "tokens": float(tokens),
        "records": float(scored),
    }
    return {
        "metrics": metrics,
        "rows": [{"data": str(path), "records": scored, "tokens": tokens, "perplexity": math.exp(mean)}],
        "skipped": skipped,
    }
