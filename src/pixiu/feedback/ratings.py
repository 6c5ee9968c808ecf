"""Arena ratings and annotator agreement: pure functions over votes and rankings, no database.

Elo is the online rating chess uses, updated vote by vote (order matters: a recent vote moves ratings as much as
the first one). Bradley-Terry fits all votes at once (order-free) and a bootstrap over votes gives its interval,
as Chatbot Arena does (https://arxiv.org/abs/2403.04132 section 5). Ties count half a win; so does both_bad
(FastChat's "tie (bothbad)").
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass

ELO_K, ELO_START, ELO_SCALE = 32.0, 1000.0, 400.0
SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}  # what model_a scored


@dataclass(frozen=True)
class Game:
    model_a: str
    model_b: str
    winner: str  # a | b | tie | both_bad


def expected(r_a: float, r_b: float) -> float:
    """P(a beats b) under Elo: 1 / (1 + 10^((r_b - r_a) / 400))."""
    return 1.0 / (1.0 + 10 ** ((r_b - r_a) / ELO_SCALE))


def online_elo(games: list[Game], k: float = ELO_K, start: float = ELO_START) -> dict[str, float]:
    """r_a += K (S_a - E_a), r_b -= the same, one game after another from `start`."""
    rating: dict[str, float] = defaultdict(lambda: start)
    for g in games:
        if g.model_a == g.model_b:
            continue  # a model against itself says nothing about its rating
        delta = k * (SCORE[g.winner] - expected(rating[g.model_a], rating[g.model_b]))
        rating[g.model_a] += delta
        rating[g.model_b] -= delta
    return dict(rating)


def bradley_terry(games: list[Game], prior: float = 1.0, iters: int = 200) -> dict[str, float]:
    """Maximum-likelihood Bradley-Terry strengths by Hunter's MM update (https://doi.org/10.1214/aos/1079120141),
    on Elo's scale: 1000 + 400 log10(p_i / geometric mean of p).

    p_i <- W_i / sum_j n_ij / (p_i + p_j), W_i = wins (ties half). `prior` adds that many tied games against a
    virtual model of strength 1, so a model that never lost still gets a finite rating; prior=0 is the plain MLE.
    """
    wins: dict[str, float] = defaultdict(float)
    played: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))  # i -> j -> games
    for g in games:
        if g.model_a != g.model_b:
            wins[g.model_a] += SCORE[g.winner]
            wins[g.model_b] += 1.0 - SCORE[g.winner]
            played[g.model_a][g.model_b] += 1
            played[g.model_b][g.model_a] += 1
    models = sorted(wins)
    p = dict.fromkeys(models, 1.0)
    for _ in range(iters):
        new = {}
        for i in models:
            denom = sum(n / (p[i] + p[j]) for j, n in played[i].items()) + prior / (p[i] + 1.0)
            new[i] = max(wins[i] + prior / 2, 1e-9) / denom
        done = all(abs(math.log(new[m] / p[m])) < 1e-10 for m in models)
        p = new
        if done:
            break
    if not models:
        return {}
    log_mean = sum(math.log10(v) for v in p.values()) / len(p)
    return {m: ELO_START + ELO_SCALE * (math.log10(p[m]) - log_mean) for m in models}


def elo_table(games: list[Game], bootstrap: int = 100, seed: int = 0) -> list[dict]:
    """One row per model, best online Elo first: games, wins/ties/losses, online Elo, Bradley-Terry rating and its
    95% bootstrap interval (votes resampled with replacement `bootstrap` times; 0 skips it)."""
    online, bt = online_elo(games), bradley_terry(games)
    draws = [bradley_terry(random.Random(seed + s).choices(games, k=len(games))) for s in range(bootstrap)]
    tally = defaultdict(lambda: [0, 0, 0])  # wins, ties, losses
    for g in games:
        if g.model_a == g.model_b:
            continue
        s = SCORE[g.winner]
        tally[g.model_a][0 if s == 1 else 1 if s == 0.5 else 2] += 1
        tally[g.model_b][2 if s == 1 else 1 if s == 0.5 else 0] += 1
    rows = []
    for m in sorted(online, key=lambda m: -online[m]):
        w, t, lost = tally[m]
        low, high = _interval([d[m] for d in draws if m in d])
        rows.append({"model": m, "games": w + t + lost, "wins": w, "ties": t, "losses": lost,
                     "elo": round(online[m], 1), "bt": round(bt[m], 1), "bt_low": low, "bt_high": high})  # fmt: skip
    return rows


def _interval(values: list[float]) -> tuple[float | None, float | None]:
    if len(values) < 2:
        return None, None
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]  # noqa: E731
    return round(at(0.025), 1), round(at(0.975), 1)


# ---------------------------------------------------------------- agreement between annotators


def _by_item(labels: list[tuple[str, str, object]]) -> dict[str, dict[str, object]]:
    """item -> {annotator: label}; an annotator's later label replaces an earlier one; anonymous labels ("")
    are left out, since two of them may be the same person."""
    items: dict[str, dict[str, object]] = defaultdict(dict)
    for item, annotator, label in labels:
        if annotator:
            items[item][annotator] = label
    return {k: v for k, v in items.items() if len(v) >= 2}


def vote_agreement(labels: list[tuple[str, str, str]]) -> dict:
    """Pairwise agreement on votes: over items labelled by >= 2 annotators, the share of annotator pairs that
    gave the same label (the same winning reply, tie or both_bad). labels: (item, annotator, label)."""
    pairs = agree = 0
    multi = _by_item(labels)
    for per in multi.values():
        for x, y in itertools.combinations(sorted(per), 2):
            pairs += 1
            agree += per[x] == per[y]
    return {"items": len(multi), "pairs": pairs, "agreement": round(agree / pairs, 4) if pairs else None}


def ranking_agreement(labels: list[tuple[str, str, list[str]]]) -> dict:
    """Agreement on rankings: for each pair of annotators of an item, the share of reply pairs both put in the same
    order (1 = same ranking, 0 = reversed), averaged over annotator pairs; `exact` = share of identical rankings.
    labels: (item, annotator, replies best first)."""
    scores, exact = [], 0
    multi = _by_item(labels)
    for per in multi.values():
        for x, y in itertools.combinations(sorted(per), 2):
            rank_x = {t: i for i, t in enumerate(per[x])}
            rank_y = {t: i for i, t in enumerate(per[y])}
            both = list(itertools.combinations(per[x], 2))
            same = sum((rank_x[s] < rank_x[t]) == (rank_y[s] < rank_y[t]) for s, t in both)
            scores.append(same / len(both))
            exact += per[x] == per[y]
    n = len(scores)
    return {"items": len(multi), "pairs": n, "agreement": round(sum(scores) / n, 4) if n else None,
            "exact": round(exact / n, 4) if n else None}  # fmt: skip


# ---------------------------------------------------------------- printing


def format_stats(stats: dict) -> str:
    """The stats dict as the text `pixiu feedback stats` prints."""
    c = stats["counts"]
    winners = ", ".join(f"{w} {n}" for w, n in c["votes_by_winner"].items())
    lines = [
        f"chats {c['chats']}, votes {c['votes']} ({winners}), rankings {c['rankings']} "
        f"({c['edits']} edited), named annotators {c['annotators']}",
        "",
        "agreement between annotators (items labelled by >= 2 named annotators):",
    ]
    for kind, a in stats["agreement"].items():
        value = "n/a" if a["agreement"] is None else f"{a['agreement']:.3f}"
        lines.append(
            f"  {kind:9s} {a['items']} items, {a['pairs']} annotator pairs, pairwise agreement {value}"
        )
    lines += ["", f"{'model':24s} {'games':>5s} {'W-T-L':>11s} {'Elo':>7s} {'BT':>7s}  95% interval"]
    for r in stats["elo"]:
        ci = f"{r['bt_low']:.0f}..{r['bt_high']:.0f}" if r["bt_low"] is not None else "-"
        wtl = f"{r['wins']}-{r['ties']}-{r['losses']}"
        lines.append(f"{r['model'][:24]:24s} {r['games']:5d} {wtl:>11s} {r['elo']:7.1f} {r['bt']:7.1f}  {ci}")
    if not stats["elo"]:
        lines.append("(no arena votes yet)")
    return "\n".join(lines)


# ---------------------------------------------------------------- from store rows


def _item(prompt: list[dict], replies: list[str]) -> str:
    """Items two annotators can both label: the same prompt and the same set of replies, in any order."""
    key = json.dumps([prompt, sorted(replies)], ensure_ascii=False, sort_keys=True)
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def _vote_label(v) -> str:
    """The winning reply's text, not its side: the arena shuffles sides between annotators."""
    return {"a": "reply:" + v.reply_a, "b": "reply:" + v.reply_b}.get(v.winner, v.winner)


def feedback_stats(votes: list, rankings: list, bootstrap: int = 100) -> dict:
    """Agreement and the Elo table from the store's Vote and RankingRow records."""
    vote_labels = [(_item(v.prompt, [v.reply_a, v.reply_b]), v.annotator, _vote_label(v)) for v in votes]
    rank_labels = [
        (_item(r.prompt, r.replies), r.annotator, [r.replies[i] for i in r.order]) for r in rankings
    ]
    games = [Game(v.model_a, v.model_b, v.winner) for v in votes]
    return {
        "agreement": {"votes": vote_agreement(vote_labels), "rankings": ranking_agreement(rank_labels)},
        "elo": elo_table(games, bootstrap=bootstrap),
    }
