"""`pixiu feedback export|stats`: the collected feedback as training data, counts, agreement and Elo.

The store itself, its exporters and the ratings live below serve/ in pixiu/feedback/, so evaluation reads the same
store without importing the server; the store's names are re-exported here for the server's routes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pixiu.feedback import exports, ratings
from pixiu.feedback.store import KINDS, RankingRow, Store, Vote, default_path, model_version, open_store

__all__ = ["RankingRow", "Store", "Vote", "cli", "model_version", "open_store"]


# ---------------------------------------------------------------- pixiu feedback


def cli(argv: list[str]) -> None:
    """pixiu feedback export --db DB --as pairs|rankings|sft OUT.jsonl | pixiu feedback stats --db DB"""
    p = argparse.ArgumentParser(
        prog="pixiu feedback", description="Collected feedback as training data, and stats."
    )
    sub = p.add_subparsers(dest="action", required=True)
    ex = sub.add_parser("export", help="write pairs (rm, dpo), rankings (rm, rrhf) or sft rows as JSON lines")
    ex.add_argument("out", help="output .jsonl file")
    ex.add_argument("--as", dest="kind", required=True, choices=KINDS)
    ex.add_argument("--pairs-from", default="all", choices=["votes", "rankings", "all"],
                    help="pairs only: from arena votes, from rankings (every i < j pair), or both")  # fmt: skip
    st = sub.add_parser("stats", help="counts, agreement between annotators, Elo table of arena votes")
    st.add_argument("--json", action="store_true", help="print the stats as JSON")
    st.add_argument("--bootstrap", type=int, default=100, help="resamples for the Bradley-Terry interval")
    for sp in (ex, st):
        sp.add_argument(
            "--db", default=str(default_path()), help="SQLite file, sqlite:///PATH or postgresql://..."
        )
    a = p.parse_args(argv)
    if "://" not in a.db and not Path(a.db).exists():
        sys.exit(f"error: no feedback store at {a.db}")
    with open_store(a.db) as store:
        if a.action == "export":
            report = exports.export(store, a.kind, a.out, a.pairs_from)
            left = ", ".join(f"{why}: {n}" for why, n in report.skipped.items()) or "nothing"
            print(f"wrote {report.written} {a.kind} rows to {a.out}; left out {left}")
        else:
            stats = store.stats(a.bootstrap)
            if a.json:
                print(json.dumps(stats, indent=2, ensure_ascii=False))
            else:
                print(ratings.format_stats(stats))
