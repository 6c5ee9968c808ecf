"""Markdown tables: the one writer behind results.md (`pixiu eval`), summary.md (the pipeline) and report.md.

Cells can hold model text, so each is HTML-escaped and kept on one line with '|' escaped: nothing in a cell
renders as markup. A column whose filled cells all read as numbers is right-aligned (never the first, a label).
"""

from __future__ import annotations

import re
from html import escape

NUMBER = re.compile(r"[-+]?([\d.,]+(e[-+]?\d+)?|nan|inf)( \(earlier run\))?")


def cell(v) -> str:
    """A value as cell text: counts as integers, other floats with 4 decimals, anything else as str()."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) >= 1 else f"{v:.4f}"
    return str(v)


def md_table(head: list[str], rows: list[list]) -> list[str]:
    """The header, the alignment rule and one line per row."""
    texts = [[cell(x) for x in r] for r in rows]
    align = [
        "---:" if i and all(NUMBER.fullmatch(r[i]) for r in texts if r[i]) else "---"
        for i in range(len(head))
    ]
    return [
        "| " + " | ".join(_safe(h) for h in head) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(_safe(x) for x in r) + " |" for r in texts),
    ]


def md_records(rows: list[dict]) -> list[str]:
    """Rows of dicts -> a table over the union of their keys (first-seen order); no rows, no table."""
    if not rows:
        return []
    head = list(dict.fromkeys(k for r in rows for k in r))
    return md_table(head, [[r.get(k, "") for k in head] for r in rows])


def _safe(text: str) -> str:
    return escape(text, quote=False).replace("|", "\\|").replace("\n", " ")
