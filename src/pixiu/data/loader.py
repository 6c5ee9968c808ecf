"""Datasets -> one train/eval split: parse each dataset, hold out eval, mix by weight, shuffle, cap.

Nothing is dropped silently: every skipped row comes back as "path:line: why" for the caller to print, and a
dataset whose records do not fit the stage (pairs given to SFT) is an error, not an empty run.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from pixiu.config import DataConfig, DatasetSpec
from pixiu.data.formats import FORMATS, detect, parse, rename
from pixiu.data.sources import DataError, rows_or_errors


@dataclass
class DataSplit:
    train: list  # records after the eval split, weighting, shuffle and max_samples
    eval: list  # held-out records: from eval_path, or split off the training datasets
    skipped: list[str]  # "path:line: why" for every row skipped under skip_bad_rows
    counts: dict[str, int]  # dataset path -> records it put into the training mix (after weighting)


def load_records(spec: DatasetSpec, skip_bad_rows: bool = False) -> tuple[list, list[str]]:
    """All records of one dataset and the skipped-row messages; without skip_bad_rows the first bad row raises."""
    records, skipped, _ = _load(spec, skip_bad_rows)
    return records, skipped


def _load(spec: DatasetSpec, skip_bad_rows: bool) -> tuple[list, list[str], str]:
    """Records, skipped-row messages and the format used ("auto" resolves on the first good row)."""
    if spec.format != "auto" and spec.format not in FORMATS:
        raise DataError(f"{spec.path}: unknown format {spec.format!r}; valid: auto, {', '.join(FORMATS)}")
    records, skipped, fmt = [], [], spec.format
    for source, row in rows_or_errors(spec.path, spec.split):
        try:
            if isinstance(row, DataError):
                raise row
            row = rename(row, spec.columns)
            fmt = detect(row, source) if fmt == "auto" else fmt
            out = parse(fmt, row, source)
        except DataError as e:
            if not skip_bad_rows:
                raise
            skipped.append(str(e))
            continue
        if (
            not out
        ):  # a valid row with nothing to learn from (an oasst tree with no ranked replies): report it
            skipped.append(f"{source}: {fmt} row holds no records")
        records += out
    if not records:
        why = f"{len(skipped)} rows skipped, the first: {skipped[0]}" if skipped else "no rows"
        raise DataError(f"{spec.path}: no usable records ({why})")
    return records, skipped, fmt


def load_data(cfg: DataConfig, want: type | tuple[type, ...]) -> DataSplit:
    """Load, split, mix and shuffle the datasets of `cfg`; every record must be a `want` (the stage's type)."""
    specs = cfg.specs()
    if not specs:
        raise DataError("no training data: set data.path or data.datasets")
    pools, skipped = [], []
    for spec in specs:
        records, bad = _load_wanted(spec, want, cfg.skip_bad_rows)
        pools.append(records)
        skipped += bad
    if cfg.eval_path:
        held = []
        for spec in _eval_specs(cfg.eval_path, specs):
            records, bad = _load_wanted(spec, want, cfg.skip_bad_rows)
            held += records
            skipped += bad
    else:
        pools, held = _split_off(pools, cfg.eval_size, cfg.seed)
    train, counts = [], {}
    for spec, pool in zip(specs, pools, strict=True):
        part = _weighted(pool, spec.weight, f"{cfg.seed}:{spec.path}")
        counts[spec.path] = counts.get(spec.path, 0) + len(part)
        train += part
    random.Random(cfg.seed).shuffle(train)
    if cfg.max_samples:
        train = train[: cfg.max_samples]
    return DataSplit(train, held, skipped, counts)


def _load_wanted(
    spec: DatasetSpec, want: type | tuple[type, ...], skip_bad_rows: bool
) -> tuple[list, list[str]]:
    records, skipped, fmt = _load(spec, skip_bad_rows)
    wrong = next((r for r in records if not isinstance(r, want)), None)
    if wrong is not None:
        needs = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
        raise DataError(
            f"{spec.path}: format {fmt!r} gives {type(wrong).__name__} records, but this stage needs {needs}"
        )
    return records, skipped


def _eval_specs(eval_path: str, train_specs: list[DatasetSpec]) -> list[DatasetSpec]:
    # With one training dataset the held-out file is almost always the same layout: reuse its format and columns.
    like = train_specs[0] if len(train_specs) == 1 else DatasetSpec("")
    paths = [p.strip() for p in eval_path.split(",") if p.strip()]
    return [DatasetSpec(p, format=like.format, columns=like.columns, split=like.split) for p in paths]


def _split_off(pools: list[list], eval_size: float, seed: int) -> tuple[list[list], list]:
    """(train pools, eval records). A record is held out when its hash of (seed, source) is among the lowest.

    Hashing the source, not a position, keeps each record on the same side whatever the order or weights of the
    datasets; it runs before weighting, so an oversampled copy can never leak into eval. Records that share a
    source (the rankings of one oasst tree) sit next to each other in that order.
    """
    tagged = [(k, i) for k, pool in enumerate(pools) for i in range(len(pool))]
    n = _eval_count(len(tagged), eval_size)
    order = sorted(tagged, key=lambda t: (_hash(seed, pools[t[0]][t[1]].source), t))
    held = set(order[:n])
    train = [[r for i, r in enumerate(pool) if (k, i) not in held] for k, pool in enumerate(pools)]
    return train, [pools[k][i] for k, i in order[:n]]


def _eval_count(total: int, eval_size: float) -> int:
    """eval_size < 1 is a share (at least one record, never all); >= 1 is a count."""
    if eval_size <= 0 or total < 2:
        return 0
    if eval_size < 1:
        return min(max(1, round(eval_size * total)), total - 1)
    if eval_size >= total:
        raise DataError(
            f"data.eval_size={eval_size:g} would hold out all {total} records; nothing left to train on"
        )
    return int(eval_size)


def _hash(seed: int, source: str) -> int:
    """Hash of the file name and line, not the directory: moving the data keeps the same split."""
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    return int.from_bytes(hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest(), "big")


def _weighted(records: list, weight: float, seed_key: str) -> list:
    """round(weight * n) records: whole copies for the integer part, a seeded sample for the rest."""
    if not records:
        return []
    whole, rest = divmod(round(weight * len(records)), len(records))
    extra = sorted(random.Random(seed_key).sample(range(len(records)), rest))
    return records * whole + [records[i] for i in extra]
