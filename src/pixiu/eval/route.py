"""The route's evaluation: what the last stage gained over the policy it started from, under the reward model.

- Reward model: pairwise accuracy on held-out pairs or rankings (every pair i < j of a ranking), also per flaw
  when the rows name one in a `kind` column (the demo data does).
- Policies: the starting policy (the SFT model) and the final one (PPO, DPO...) answer the same held-out prompts,
  sampled with the same seed and the final stage's gen settings; the reward model scores every reply. Reported:
  mean rewards, the gain in units of the starting policy's reward std (and Cohen's d, over the pooled std), and
  the mean KL(π_final || π_start) per reply in nats, estimated on the final policy's own replies as
  Σ_t log π_final(y_t) - log π_start(y_t) (the unbiased k1 estimator, http://joschu.net/blog/kl-approx.html).
- Degeneration (pixiu/degeneration.py) of both policies' replies: repeated 3-grams, replies cut by the token limit,
  replies in the other language than the prompt, empty ones, and exact-match correctness where a held-out row
  names its reference `answer`. A reward gain that comes with more of these is the policy gaming the reward model.
  Each rate's change comes with a 95% paired bootstrap interval over the prompts (degeneration.paired_difference).
- Replies side by side, both policies with their metrics per reply: a fixed random sample of the prompts (seeded
  by eval.seed, not picked for looks) plus the three prompts with the worst replies by degeneration; and the wall
  time of every stage: OUTPUT/summary.json and summary.md; every reply and its numbers: OUTPUT/replies.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pixiu import degeneration as dg
from pixiu.chat.messages import Conversation
from pixiu.chat.templates import Rendered
from pixiu.config import DatasetSpec, ModelConfig, RunConfig
from pixiu.data import load_records, read_rows
from pixiu.data.collate import collate
from pixiu.data.records import PreferencePair, Prompt, Ranking
from pixiu.engine import Sampling, sample
from pixiu.eval.table import md_table
from pixiu.model import heads, io
from pixiu.model.forward import TargetLM, autocast, sequence_logps


def evaluate(ev, state, out: Path) -> dict:
    """Score what `state` (pipeline.State) made; write and print OUTPUT/summary.json and summary.md."""
    path = out / "summary.json"
    cfg: RunConfig | None = state.final_cfg
    inputs = {
        "eval": dataclasses.asdict(ev),
        "start": state.start_policy,
        "final": state.policy,
        "reward_model": state.reward_model,
        "gen": dataclasses.asdict(cfg.gen) if cfg else {},
    }
    if not state.ran and path.exists() and json.loads(path.read_text()).get("inputs") == inputs:
        print((out / "summary.md").read_text(encoding="utf-8"))  # nothing changed since it was written
        return json.loads(path.read_text())
    print(
        f"\n== evaluation: reward model on {ev.pairs or 'no pairs'}; policies on {ev.prompts or 'no prompts'}"
    )
    t0 = time.perf_counter()
    summary: dict = {"output_dir": str(out), "inputs": inputs, "stages": state.stages}
    model_cfg = cfg.model if cfg else None
    rm = None
    if state.reward_model:
        like = model_cfg or ModelConfig()
        rm = heads.load_scalar(dataclasses.replace(like, name_or_path=state.reward_model, template="default"))
    if rm and ev.pairs:
        summary["reward_model"] = {"path": state.reward_model, **rm_accuracy(rm, ev, rule_of(cfg))}
    if cfg and ev.prompts and state.start_policy:
        summary["policies"] = compare_policies(cfg, state.start_policy, state.policy, rm, ev)
        rows = summary["policies"].pop("replies")  # every reply, for a person to read: OUTPUT/replies.jsonl
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / "replies.jsonl").write_text(text, encoding="utf-8")
    summary["eval_seconds"] = round(time.perf_counter() - t0, 1)
    summary["total_seconds"] = round(sum(s["seconds"] for s in state.stages) + summary["eval_seconds"], 1)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    text = markdown(summary)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return summary


# ---------------------------------------------------------------- reward model


def rule_of(cfg: RunConfig | None) -> tuple | None:
    """(name, function, weight) of the final stage's PPO reward function, when it has one."""
    if cfg is None or not cfg.ppo.reward_fn:
        return None
    from pixiu.data.tasks import reward_fn

    return cfg.ppo.reward_fn, reward_fn(cfg.ppo.reward_fn), cfg.ppo.reward_fn_weight


def rm_accuracy(rm, ev, rule: tuple | None = None) -> dict:
    """Pairwise accuracy and mean margin of the reward model on the held-out pairs / rankings, per flaw where
    pairs name it; with `rule` = (name, reward function, weight), also of the reward PPO optimised: the score
    plus weight x the rule's reward, which sees a row's `answer` as the reference turn (data/tasks.py)."""
    from pixiu.model.reward import replies, score_replies

    loaded, scalar = rm
    records, _ = load_records(DatasetSpec(ev.pairs))
    rows = [row for _, row in read_rows(ev.pairs)]
    keep = ev.max_pairs or len(records)
    rows = rows[:keep] if len(rows) == len(records) else []
    records = [r for r in records if isinstance(r, (PreferencePair, Ranking))][:keep]
    texts = [replies(r) for r in records]
    convs = [r.prompt.add("assistant", t) for r, ts in zip(records, texts) for t in ts]
    scores = chunked(score_replies, scalar, loaded, convs, ev.batch_size, "reward model: held-out pairs")
    sizes = [len(ts) for ts in texts]
    result = pair_accuracy(scores, sizes, [row.get("kind", "") for row in rows])
    if rule and any(row.get("answer") for row in rows):
        name, fn, weight = rule
        refs = [r.prompt.add("assistant", str(row["answer"])) if row.get("answer") else r.prompt
                for r, row in zip(records, rows)]  # fmt: skip
        bonus = [weight * fn(ref, t) for ref, ts in zip(refs, texts) for t in ts]
        summed = pair_accuracy(
            [a + b for a, b in zip(scores, bonus)], sizes, [row.get("kind", "") for row in rows]
        )
        result["with_rule"] = {"rule": f"{name} x {weight:g}", **summed}
    return result


def pair_accuracy(scores: list[float], sizes: list[int], kinds: list[str]) -> dict:
    """Pairs, accuracy and mean margin of scores over groups of `sizes` replies (best first); by the rejected
    reply's flaw when every group is a pair that names one."""
    from pixiu.model.reward import ranking_stats

    stats = ranking_stats(scores, sizes)
    result = {
        "groups": len(sizes),
        "pairs": int(stats["pairs"]),
        "accuracy": round(stats["correct"] / max(stats["pairs"], 1), 4),
        "margin": round(stats["margin"] / max(stats["pairs"], 1), 4),
    }
    if kinds and all(k and n == 2 for k, n in zip(kinds, sizes)):
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        right: dict[str, list[bool]] = {}
        for kind, s in zip(kinds, starts):
            right.setdefault(kind, []).append(scores[s] > scores[s + 1])
        result["by_kind"] = {k: round(sum(v) / len(v), 4) for k, v in sorted(right.items())}
    return result


# ---------------------------------------------------------------- policies


def chunked(score_replies, scalar, loaded, convs: list, batch_size: int, desc: str) -> list[float]:
    """score_replies over convs in chunks of four batches, with a progress bar (counts, rate, ETA)."""
    out, step = [], 4 * batch_size
    with tqdm(total=len(convs), desc=desc, unit="reply") as bar:
        for i in range(0, len(convs), step):
            part = convs[i : i + step]
            out += score_replies(scalar, loaded.tokenizer, loaded.template, part, batch_size)
            bar.update(len(part))
    return out


def references(path: str, n: int) -> list[str | None]:
    """The `answer` column of the held-out prompt rows (None where a row has none); all None when the rows do not
    line up with the n records."""
    rows = [row for _, row in read_rows(path)]
    if len(rows) < n:
        return [None] * n
    return [row.get("answer") if isinstance(row.get("answer"), str) else None for row in rows[:n]]


def compare_policies(cfg: RunConfig, start: str, final: str, rm, ev) -> dict:
    """Sample both policies on the held-out prompts, score the replies, estimate KL(final || start)."""
    records, _ = load_records(DatasetSpec(ev.prompts))
    prompts = [r for r in records if isinstance(r, Prompt)]
    answers = references(ev.prompts, len(records)) if len(prompts) == len(records) else [None] * len(prompts)
    convs = [r.prompt for r in prompts][: ev.max_prompts or None]
    answers = answers[: len(convs)]
    sampling = Sampling(cfg.gen.max_new_tokens, cfg.gen.temperature, cfg.gen.top_p, cfg.gen.top_k)
    policies = {}
    for name, path in (("start", start), ("final", final)):
        policies[name] = io.load(dataclasses.replace(cfg.model, name_or_path=path))
    replies = {name: draw(p, convs, sampling, ev, name) for name, p in policies.items()}
    out: dict = {
        "prompts": len(convs),
        "samples_per_prompt": ev.samples,
        "sampling": dataclasses.asdict(sampling),
    }
    rewards, stats = {}, {}
    for name, samples in replies.items():
        rewards[name] = score(rm, convs, samples, ev, name) if rm else []
        lengths = [len(s.reply_ids) for s in samples]
        stats[name] = degeneration(convs, answers, samples, ev.samples)
        out[name] = {
            "path": start if name == "start" else final,
            "mean_length": round(statistics.mean(lengths), 2),
            "degeneration": dg.summarize(stats[name]),
        }
        if rewards[name]:
            out[name] |= {
                "mean_reward": round(statistics.mean(rewards[name]), 4),
                "std_reward": round(statistics.pstdev(rewards[name]), 4),
            }
    if rm:
        s, f = out["start"], out["final"]
        pooled = ((s["std_reward"] ** 2 + f["std_reward"] ** 2) / 2) ** 0.5
        out["gain_in_start_std"] = round(
            (f["mean_reward"] - s["mean_reward"]) / max(s["std_reward"], 1e-8), 4
        )
        out["cohens_d"] = round((f["mean_reward"] - s["mean_reward"]) / max(pooled, 1e-8), 4)
    out["change"] = dg.paired_difference(stats["start"], stats["final"], ev.samples)  # with 95% intervals
    kl = reply_kl(policies["final"], policies["start"], replies["final"], ev.batch_size)
    out["kl_final_to_start"] = round(statistics.mean(kl), 4)
    out["side_by_side"] = side_by_side(convs, replies, rewards, stats, ev)
    k = ev.samples
    out["replies"] = [
        {"policy": name, "prompt": convs[i // k].messages[-1].content, "reply": s.text,
         "reward": round(rewards[name][i], 3) if rewards[name] else None, **dg.as_dict(stats[name][i])}
        for name, samples in replies.items() for i, s in enumerate(samples)
    ]  # fmt: skip
    return out


def degeneration(convs: list[Conversation], answers: list, samples: list, k: int) -> list[dg.ReplyStats]:
    """Each reply's degeneration numbers; sample i answers prompt i // k."""
    return [
        dg.reply_stats(convs[i // k].messages[-1].content, s.text, s.finished, answers[i // k])
        for i, s in enumerate(samples)
    ]


def draw(loaded: io.Loaded, convs: list[Conversation], sampling: Sampling, ev, name: str = "") -> list:
    """ev.samples replies per prompt, in chunks of ev.batch_size prompts; chunk i is seeded ev.seed + i, so both
    policies see the same random stream."""
    out = []
    with tqdm(total=len(convs), desc=f"sampling: {name} policy", unit="prompt") as bar:
        for i in range(0, len(convs), ev.batch_size):
            chunk = dataclasses.replace(sampling, seed=ev.seed + i)
            part = convs[i : i + ev.batch_size]
            out += sample(loaded.model, loaded.tokenizer, loaded.template, part, chunk, ev.samples)
            bar.update(len(part))
    return out


def score(rm, convs: list[Conversation], samples: list, ev, name: str = "") -> list[float]:
    from pixiu.model.reward import score_replies

    loaded, scalar = rm
    k = ev.samples
    scored = [convs[i // k].add("assistant", s.text) for i, s in enumerate(samples)]
    return chunked(score_replies, scalar, loaded, scored, ev.batch_size, f"reward model: {name} replies")


@torch.no_grad()
def reply_kl(policy: io.Loaded, ref: io.Loaded, samples: list, batch_size: int) -> list[float]:
    """Σ_t log π(y_t) - log π_ref(y_t) over each reply's tokens (stop token included): one k1 sample per reply."""
    rows = [
        [Rendered(s.prompt_ids + s.reply_ids, [0] * len(s.prompt_ids) + [1] * len(s.reply_ids))]
        for s in samples
    ]
    logps = {}
    for name, loaded in (("policy", policy), ("ref", ref)):
        model = TargetLM(loaded.model).eval()
        device = next(model.parameters()).device
        values = []
        for i in tqdm(range(0, len(rows), batch_size), desc=f"KL: {name} log-probs", unit="batch"):
            batch = collate(rows[i : i + batch_size], loaded.tokenizer.pad_token_id)
            batch = dataclasses.replace(
                batch, **{k: v.to(device) for k, v in vars(batch).items() if v is not None}
            )
            with autocast(loaded.dtype, device):
                values += sequence_logps(model, batch)[0].float().cpu().tolist()
        logps[name] = values
    return [p - q for p, q in zip(logps["policy"], logps["ref"])]


WORST = 3  # prompts shown for their worst replies, after the random sample


def side_by_side(convs, replies: dict, rewards: dict, stats: dict, ev) -> list[dict]:
    """The first reply of each policy to ev.show prompts drawn at random (seeded by ev.seed, so the same prompts
    every run: not chosen for looks), then to the WORST other prompts whose worse reply degenerates most."""
    firsts = range(0, len(convs) * ev.samples, ev.samples)
    sampled = sorted(random.Random(ev.seed).sample(range(len(convs)), min(ev.show, len(convs))))
    worst = sorted(
        (i for i in range(len(convs)) if i not in sampled),
        key=lambda i: -max(stats[n][firsts[i]].badness() for n in ("start", "final")),
    )
    worst = [i for i in worst if max(stats[n][firsts[i]].badness() for n in ("start", "final")) > 0][:WORST]
    rows = []
    for why, picked in (("sample", sampled), ("worst", worst)):
        for i in picked:
            j = firsts[i]
            row = {"prompt": convs[i].messages[-1].content, "picked": why}
            for name in ("start", "final"):
                row[name] = replies[name][j].text
                row[f"{name}_metrics"] = dg.as_dict(stats[name][j])
                if rewards[name]:
                    row[f"{name}_reward"] = round(rewards[name][j], 3)
            rows.append(row)
    return rows


# ---------------------------------------------------------------- report


def markdown(summary: dict) -> str:
    stages = [[s["name"], s["kind"], f"{s['seconds']:.0f}" + (" (earlier run)" if s["skipped"] else ""), s["output"]]
              for s in summary["stages"]]  # fmt: skip
    stages += [[name, "", f"{summary[key]:.0f}", ""] for name, key in (("evaluation", "eval_seconds"), ("total", "total_seconds"))]  # fmt: skip
    lines = [
        f"# pixiu pipeline: {summary['output_dir']}",
        "",
        *md_table(["stage", "kind", "seconds", "output"], stages),
        "",
    ]
    rm = summary.get("reward_model")
    if rm:
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in rm.get("by_kind", {}).items())
        lines.append(
            f"Reward model {rm['path']}: held-out pairwise accuracy **{rm['accuracy']:.3f}** on {rm['pairs']} pairs, "
            f"mean margin {rm['margin']:.2f}" + (f"; by flaw of the rejected reply: {kinds}" if kinds else "")
        )
        ruled = rm.get("with_rule")
        if ruled:
            kinds = ", ".join(f"{k} {v:.2f}" for k, v in ruled.get("by_kind", {}).items())
            lines.append(
                f"\nThe reward PPO optimised (the score + {ruled['rule']}, which checks a held-out row's `answer`): "
                f"accuracy **{ruled['accuracy']:.3f}**" + (f"; by flaw: {kinds}" if kinds else "")
            )
        lines.append("")
    pol = summary.get("policies")
    if pol:
        sp = pol["sampling"]
        lines.append(
            f"Policies on {pol['prompts']} held-out prompts ({pol['samples_per_prompt']} reply each, temperature "
            f"{sp['temperature']}, at most {sp['max_new_tokens']} new tokens):"
        )
        keys = [k for k in dg.LABELS if any(k in pol[n].get("degeneration", {}) for n in ("start", "final"))]
        head = [
            "policy",
            "path",
            "mean reward",
            "reward std",
            "mean reply tokens",
            *(dg.LABELS[k] for k in keys),
        ]
        rows = []
        for name in ("start", "final"):
            p, deg = pol[name], pol[name].get("degeneration", {})
            numbers = [f"{p.get(k, float('nan')):.3f}" for k in ("mean_reward", "std_reward")]
            numbers += [f"{p['mean_length']:.1f}", *(f"{deg[k]:.3f}" if k in deg else "" for k in keys)]
            rows.append([name, p["path"], *numbers])
        lines += ["", *md_table(head, rows), ""]
        if keys:
            checked = pol["final"].get("degeneration", {}).get("checked")
            lines += [
                "Degeneration: mean share of a reply's 3-grams (words, numbers, Chinese characters, marks) seen "
                "earlier in it; shares of replies that hit the token limit, are in the other language than the "
                "prompt, or are empty"
                + (
                    f"; exact match: the reference answer in the reply, over {checked} replies."
                    if checked
                    else "."
                ),
                "",
            ]
        if pol.get("change"):
            changes = ", ".join(
                f"{dg.LABELS[k]} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for k, (d, lo, hi) in pol["change"].items()
            )
            lines += [f"Final minus start, with 95% paired bootstrap intervals over the prompts (one that holds 0 is "
                      f"within this many prompts' noise): {changes}.", ""]  # fmt: skip
        if "gain_in_start_std" in pol:
            lines.append(
                f"Gain: **{pol['gain_in_start_std']:+.2f}** reward std of the start policy (Cohen's d "
                f"{pol['cohens_d']:+.2f}); mean KL(final || start) **{pol['kl_final_to_start']:.2f}** nats per reply."
            )
        else:
            lines.append(
                f"Mean KL(final || start): {pol['kl_final_to_start']:.2f} nats per reply (no reward model)."
            )
        lines += ["", "## Replies side by side", ""]
        heads = {"sample": "A fixed random sample of the held-out prompts", "worst": "The worst replies"}
        shown = set()
        for row in pol["side_by_side"]:
            why = row.get("picked", "sample")
            if why not in shown:
                shown.add(why)
                lines += [f"{heads.get(why, why)} (first reply of each policy):", ""]
            lines.append(f"**{row['prompt']}**")
            for name in ("start", "final"):
                r = f" (reward {row[name + '_reward']:+.2f})" if f"{name}_reward" in row else ""
                m = reply_flags(row.get(f"{name}_metrics"))
                lines.append(f"- {name}{r}{m}: {row[name]!r}")
            lines.append("")
    return "\n".join(lines) + "\n"


def reply_flags(m: dict | None) -> str:
    """' [repeated 3-grams 0.50, hit token limit, wrong]': one reply's metrics in words ('' when none)."""
    words = dg.flags(m)
    return f" [{', '.join(words)}]" if words else ""
