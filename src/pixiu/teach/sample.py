"""`pixiu data sample`: a deterministic slice of a row file, so one recipe cuts disjoint seed, instruction and
held-out sets out of one source (the same --seed, offsets that do not overlap) with no script of its own.
Alpaca's and BELLE's seed tasks ({instruction, instances: [{input, output}]}) come out as alpaca rows, which
every training stage reads."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from pixiu.teach.methods import read_items


@dataclass
class SampleConfig:
    inputs: str = ""
    """The JSON or JSONL file (or plain text: one instruction a line)."""
    out: str = ""
    """Where the rows go (JSONL, replaced whole: a killed run leaves the old file or none)."""
    n: int = 0
    """Rows to take (0 = all from offset on)."""
    offset: int = 0
    """Rows to skip first, counted after the shuffle."""
    seed: int = 0
    """Shuffle seed; -1 keeps the file's order."""

    def __post_init__(self):
        if not self.out or self.n < 0 or self.offset < 0 or self.seed < -1:
            raise ValueError("sample: --out is required; n and offset must be >= 0 and seed >= -1")


def alpaca_row(row: dict) -> dict:
    """A seed task -> {instruction, input, output} from its first instance; any other row as it is."""
    if "instances" not in row:
        return row
    first = (row["instances"] or [{}])[0]
    return {
        "instruction": row["instruction"],
        "input": first.get("input", ""),
        "output": first.get("output", ""),
    }


def sample(cfg: SampleConfig) -> list[dict]:
    """Write rows[offset : offset + n] of the (shuffled) file to cfg.out; return them."""
    rows = [alpaca_row(r) for r in read_items(cfg.inputs)]
    if cfg.seed >= 0:
        random.Random(cfg.seed).shuffle(rows)
    picked = rows[cfg.offset : cfg.offset + cfg.n if cfg.n else None]
    if cfg.n and len(picked) < cfg.n:
        raise ValueError(
            f"sample: {cfg.inputs} has {len(rows)} rows, fewer than offset {cfg.offset} + n {cfg.n}"
        )
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")
    tmp.replace(out)
    return picked
