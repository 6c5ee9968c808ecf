"""Feedback -> training rows the data loader reads without conversion (`pixiu feedback export`).

pairs {prompt, chosen, rejected} -> `pixiu train rm | dpo`; rankings {prompt, responses best first} -> `pixiu
train rm | rrhf`; sft {messages} -> `pixiu train sft`. The prompt is OpenAI messages ending with the user turn.
Each row also carries `meta` (record id, annotator, models), a column no format reads. Rows the loader would
reject (empty replies, a pair that prefers nothing, a repeated reply in a ranking) are left out and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pixiu.feedback.store import RankingRow, Store, Vote

PAIRS_FROM = ("votes", "rankings", "all")


@dataclass
class ExportReport:
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # why -> rows left out (ties, duplicates, ...)

    def skip(self, why: str, n: int = 1) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + n


def export(store: Store, kind: str, out: str | Path, pairs_from: str = "all") -> ExportReport:
    """The store's `kind` rows (pairs | rankings | sft) as JSON lines in `out`, with an ExportReport counting
    everything left out and why. pairs_from: votes | rankings | all (which records pairs come from)."""
    return write(kind, store.votes(), store.rankings(), out, pairs_from)


def write(
    kind: str, votes: list[Vote], rankings: list[RankingRow], out: str | Path, pairs_from: str = "all"
) -> ExportReport:
    """Write `kind` rows as JSON lines; the file appears whole or not at all (written aside, then renamed)."""
    if kind not in EXPORTS:
        raise ValueError(f"unknown export {kind!r}; valid: {', '.join(EXPORTS)}")
    if pairs_from not in PAIRS_FROM:
        raise ValueError(f"pairs_from must be one of {', '.join(PAIRS_FROM)}, got {pairs_from!r}")
    report = ExportReport()
    rows = list(EXPORTS[kind](votes, rankings, report, pairs_from))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)
    report.written = len(rows)
    return report


# ---------------------------------------------------------------- export kinds


def _vote_pairs(votes: list[Vote], report: ExportReport) -> Iterator[dict]:
    for v in votes:
        if v.winner in ("tie", "both_bad"):
            report.skip(v.winner)
            continue
        chosen, rejected = (v.reply_a, v.reply_b) if v.winner == "a" else (v.reply_b, v.reply_a)
        models = (v.model_a, v.model_b) if v.winner == "a" else (v.model_b, v.model_a)
        if _usable(chosen, rejected, report):
            meta = {
                "vote": v.id,
                "annotator": v.annotator,
                "chosen_model": models[0],
                "rejected_model": models[1],
            }
            yield {"prompt": v.prompt, "chosen": chosen, "rejected": rejected, "meta": meta}


def _usable(chosen: str, rejected: str, report: ExportReport) -> bool:
    """The loader rejects empty replies and pairs that prefer nothing; count them here instead."""
    if not chosen.strip() or not rejected.strip():
        report.skip("empty reply")
        return False
    if chosen.strip() == rejected.strip():
        report.skip("identical replies")
        return False
    return True


def _clean_ranking(r: RankingRow, report: ExportReport) -> list[str] | None:
    """Best-first replies without empty ones or repeats (the loader rejects both); None if under two remain."""
    kept, seen = [], set()
    for text in r.best_first():
        if text.strip() and text.strip() not in seen:
            kept.append(text)
            seen.add(text.strip())
        else:
            report.skip("empty or repeated reply dropped from a ranking")
    if len(kept) < 2:
        report.skip("ranking with fewer than two distinct replies")
        return None
    return kept


def _meta(r: RankingRow) -> dict:
    return {"ranking": r.id, "annotator": r.annotator, "model": r.model, "model_version": r.model_version,
            "edited": r.edited is not None}  # fmt: skip


def export_pairs(
    votes: list[Vote], rankings: list[RankingRow], report: ExportReport, pairs_from: str = "all"
) -> Iterator[dict]:
    """Votes a/b -> one pair each; rankings -> every pair i < j of the best-first list (InstructGPT's K choose 2)."""
    if pairs_from in ("votes", "all"):
        yield from _vote_pairs(votes, report)
    if pairs_from in ("rankings", "all"):
        for r in rankings:
            ranked = _clean_ranking(r, report) or []
            for i in range(len(ranked)):
                for j in range(i + 1, len(ranked)):
                    yield {"prompt": r.prompt, "chosen": ranked[i], "rejected": ranked[j], "meta": _meta(r)}


def export_rankings(
    votes: list[Vote], rankings: list[RankingRow], report: ExportReport, pairs_from: str = "all"
) -> Iterator[dict]:
    """Rankings -> K-wise rows, best first, the edited reply (when given) in front."""
    for r in rankings:
        ranked = _clean_ranking(r, report)
        if ranked:
            yield {"prompt": r.prompt, "responses": ranked, "meta": _meta(r)}


def export_sft(
    votes: list[Vote], rankings: list[RankingRow], report: ExportReport, pairs_from: str = "all"
) -> Iterator[dict]:
    """The best reply of each ranking (its edit when given) and each decided vote, as a conversation."""
    for r in rankings:
        best = r.best_first()[0]
        if best.strip():
            yield {"messages": [*r.prompt, {"role": "assistant", "content": best}], "meta": _meta(r)}
        else:
            report.skip("empty reply")
    for v in votes:
        if v.winner in ("tie", "both_bad"):
            report.skip(v.winner)
            continue
        best, model = (v.reply_a, v.model_a) if v.winner == "a" else (v.reply_b, v.model_b)
        if best.strip():
            meta = {"vote": v.id, "annotator": v.annotator, "model": model}
            yield {"messages": [*v.prompt, {"role": "assistant", "content": best}], "meta": meta}
        else:
            report.skip("empty reply")


EXPORTS = {"pairs": export_pairs, "rankings": export_rankings, "sft": export_sft}
