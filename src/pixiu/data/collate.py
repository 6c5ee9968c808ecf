"""Samples -> batch plans: truncation, packing, length-grouped batch order (padding: pixiu/batch.py, re-exported);
and the encoder-decoder (T5) side: source/target pairs, their padded batch and their rows for the loop.

The batch plan is a pure function of (lengths, seed, epoch), so a resumed run replays the exact same order, and
every process of a multi-process run can count the target tokens of the whole optimizer step without talking
to the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pixiu.batch import (  # noqa: F401  the batch types and padding live in pixiu/batch.py
    IGNORE,
    GroupBatch,
    Pair,
    Seq2SeqBatch,
    Shared,
    TokenBatch,
    collate,
    collate_groups,
    collate_pairs,
    collate_shared,
    flat,
    shared_length,
)
from pixiu.chat.templates import Rendered


@dataclass
class Overflow:
    """Counts of samples longer than max_len, so nothing is dropped or cut silently."""

    truncated: int = 0
    skipped: int = 0
    no_targets: int = 0  # samples whose targets were all cut off: skipped, they would train nothing


def fit(samples: list[Rendered], max_len: int, overflow: str) -> tuple[list[Rendered], Overflow]:
    """Truncate or skip samples longer than max_len; drop (and count) samples left with no target token."""
    kept, counts = [], Overflow()
    for s in samples:
        if len(s.input_ids) > max_len:
            if overflow == "skip":
                counts.skipped += 1
                continue
            counts.truncated += 1
            s = Rendered(s.input_ids[:max_len], s.loss_mask[:max_len])
        if not any(s.loss_mask[1:]):
            counts.no_targets += 1
            continue
        kept.append(s)
    return kept, counts


def pack(lengths: list[int], max_len: int, seed: int) -> list[list[int]]:
    """Greedy first-fit of shuffled samples into rows of at most max_len tokens -> sample indices per row."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(order, key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_len - lengths[i])
    return rows


def plan(
    lengths: list[int],
    batch_size: int,
    seed: int,
    epoch: int,
    group_by_length: bool,
    tokens: int = 0,
    world: int = 1,
) -> list[list[int]]:
    """Indices of each (global) batch for one epoch. Grouping sorts within shuffled windows of 64 batches,
    then shuffles the batches, so padding drops while the order stays random. With a token budget (`tokens`
    > 0) batches are cut by padded tokens instead of `batch_size` (see `budget_batches`)."""
    if tokens > 0:
        return budget_batches(lengths, tokens, world, seed, epoch)
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * 64
        order = [
            i
            for w in range(0, len(order), window)
            for i in sorted(order[w : w + window], key=lambda i: lengths[i])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def budget_batches(lengths: list[int], tokens: int, world: int, seed: int, epoch: int) -> list[list[int]]:
    """Global batches whose share on each of `world` processes (indices rank::world) pads to at most `tokens`
    tokens (rows x the longest row), so every micro-batch fills about the same memory whatever its lengths:
    many short rows or a few long ones. Rows are sorted by length (ties in seeded random order) and cut
    greedily; a row longer than the budget goes alone. The cut depends on `seed` only and each epoch shuffles
    the batches' order, so every epoch has the same number of batches (the loop's steps per epoch) and a
    resumed run replays the same plan."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending: the row being added is the longest so far
        per_process = -(-(len(current) + 1) // world)
        if len(current) >= world and per_process * lengths[i] > tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    random.Random(seed * 100_003 + epoch).shuffle(batches)
    return batches


# ---------------------------------------------------------------- encoder-decoder (T5) pairs: model/seq2seq.py


def fit_pairs(pairs: list[Pair], max_len: int, overflow: str) -> tuple[list[Pair], Overflow]:
    """`fit` for pairs: a source or target longer than max_len is cut to it (its end lost) or skipped."""
    kept, counts = [], Overflow()
    for p in pairs:
        if max(len(p.source_ids), len(p.target_ids)) > max_len:
            if overflow == "skip":
                counts.skipped += 1
                continue
            counts.truncated += 1
            p = Pair(p.source_ids[:max_len], p.target_ids[:max_len])
        if not p.target_ids:
            counts.no_targets += 1
            continue
        kept.append(p)
    return kept, counts


@dataclass
class PairRows:
    """Pairs batched for the training loop: the interface of train/loop.py `Rows` (epoch, batch, n_targets),
    with the same seeded batch plan, so resume and multi-process runs work as for causal rows."""

    pairs: list[Pair]
    pad_id: int
    batch_size: int  # pairs per micro-batch per process
    seed: int = 0
    group_by_length: bool = True
    tokens_per_batch: int = 0  # > 0: micro-batches cut by source + target tokens per process

    def epoch(self, epoch: int, world: int) -> list[list[int]]:
        lengths = [len(p.source_ids) + len(p.target_ids) for p in self.pairs]
        size = self.batch_size * world
        return plan(lengths, size, self.seed, epoch, self.group_by_length, self.tokens_per_batch, world)

    def batch(self, idx: list[int]) -> Seq2SeqBatch:
        return collate_pairs([self.pairs[i] for i in idx], self.pad_id)

    def n_targets(self, idx: list[int]) -> int:
        return sum(len(self.pairs[i].target_ids) for i in idx)
