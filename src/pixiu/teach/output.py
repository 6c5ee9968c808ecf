"""Append-as-it-arrives output with provenance, and resume after a kill -9.

Three files per run, all JSONL:
  OUT                   the kept items in a pixiu format, each with `meta` {teacher, method, prompt_hash, job}
  OUT.failed.jsonl      jobs the teacher failed after its retries: {job, error, prompt_hash, asked} (never a row
                        in OUT: an empty row would teach silence, and a None filled in crashes a later stage)
  OUT.journal.jsonl     one line per finished job: {job, asked, kept, dropped: [[reason, example]], failed}

A job's rows go to OUT first, its journal line last, each flushed and fsynced. A job is finished iff its journal
line is complete, so on resume rows of unfinished jobs (and a torn last line) are cut from OUT and the job runs
again: no duplicate, no lost item.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tally:
    """Item counts of a run; kept + dropped + failed == asked for every finished job, so for the run."""

    asked: int = 0
    kept: int = 0
    dropped: int = 0
    failed: int = 0
    jobs: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, entry: dict) -> None:
        self.jobs += 1
        self.asked += entry["asked"]
        self.kept += entry["kept"]
        self.dropped += len(entry["dropped"])
        self.failed += entry["failed_items"]
        self.reasons.update(reason for reason, _ in entry["dropped"])


class Output:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.failed_path = Path(f"{self.path}.failed.jsonl")
        self.journal_path = Path(f"{self.path}.journal.jsonl")
        self.tally = Tally()
        self.done: set[str] = set()
        for entry in _read(self.journal_path, rewrite=True):
            self.done.add(entry["job"])
            self.tally.add(entry)
        self.rows = [r for r in _read(self.path) if r.get("meta", {}).get("job") in self.done]
        _rewrite_if_changed(self.path, self.rows)
        _rewrite_if_changed(self.failed_path, [r for r in _read(self.failed_path) if r["job"] in self.done])
        self._files = {
            p: open(p, "a", encoding="utf-8") for p in (self.path, self.failed_path, self.journal_path)
        }

    def finish(
        self, key: str, asked: int, rows: list[dict], dropped: list, failed: str, prompt_hash: str
    ) -> None:
        """Record one finished job: its kept rows, a failure record if it failed, then its journal line."""
        failed_items = asked - len(rows) - len(dropped) if failed else 0
        _append(self._files[self.path], rows)
        if failed:
            record = {"job": key, "error": failed, "prompt_hash": prompt_hash, "asked": failed_items}
            _append(self._files[self.failed_path], [record])
        entry = {"job": key, "asked": asked, "kept": len(rows), "dropped": dropped, "failed": failed or None,
                 "failed_items": failed_items}  # fmt: skip
        _append(self._files[self.journal_path], [entry])
        self.done.add(key)
        self.tally.add(entry)

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _append(f, rows: list[dict]) -> None:
    if not rows:
        return
    f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    f.flush()
    os.fsync(f.fileno())


def _read(path: Path, rewrite: bool = False) -> list[dict]:
    """Complete JSON lines of a file; a torn last line (a kill mid-write) is left out (and cut when `rewrite`).
    Split on "\n" only: str.splitlines also breaks at U+2028 and friends, which JSON text may hold unescaped."""
    if not path.exists():
        return []
    *lines, tail = path.read_text(encoding="utf-8").split("\n")
    out, good = [], not tail  # a last line without its newline is torn
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            good = False
    if rewrite and not good:
        _rewrite(path, out)
    return out


def _rewrite_if_changed(path: Path, rows: list[dict]) -> None:
    if path.exists() and path.read_text(encoding="utf-8") != "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in rows
    ):
        _rewrite(path, rows)


def _rewrite(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a kill during resume leaves the old or the new file, never half of one
