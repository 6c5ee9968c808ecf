"""Rendered rows -> padded token batches: the typed batches every forward takes (model/, train/, eval/); and an
encoder-decoder's (source, target) pairs -> their padded batch.

They sit below data/ and model/ so a model's forward can take a batch without importing the data pipeline;
`data/collate.py` plans which samples go together (truncation, packing, length grouping) and re-exports these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pixiu.chat.templates import Rendered


@dataclass
class Shared:
    """Where the replies of shared-prompt rows (`collate_shared`) sit, as flat indices row * T + col."""

    ends: torch.Tensor  # (R,) each reply's last token: a reward model reads its score there
    pred: torch.Tensor  # (N,) the position predicting each target token of every reply
    targets: torch.Tensor  # (N,) target token ids
    reply: torch.Tensor  # (N,) which reply each target belongs to, 0..R-1
    rendered: int  # tokens of the replies rendered one per row: the shared prompt counts once per reply

    def to(self, device) -> Shared:
        return Shared(
            *(t.to(device) for t in (self.ends, self.pred, self.targets, self.reply)), self.rendered
        )


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T) restart at 0 for every packed sample
    attention_mask: torch.Tensor | None  # (B, T) 1 = real token; None when packed (positions mark samples);
    # (B, 1, T, T) bool, True = the query sees the key, when `shared` describes the rows
    loss_mask: torch.Tensor  # (B, T) 1 where input_ids[:, t] is a target, predicted from position t-1
    shared: Shared | None = None  # rows of shared prompts and several replies each; then loss_mask is unused

    @property
    def n_targets(self) -> int:
        return len(self.shared.targets) if self.shared else int(self.loss_mask[:, 1:].sum())

    @property
    def n_tokens(self) -> int:
        if self.shared:
            return self.shared.rendered
        return int(self.input_ids.numel() if self.attention_mask is None else self.attention_mask.sum())

    def to(self, device) -> TokenBatch:
        return TokenBatch(*(None if t is None else t.to(device) for t in vars(self).values()))


def collate(rows: list[list[Rendered]], pad_id: int) -> TokenBatch:
    """Each row is one sample, or several packed samples that must not see each other."""
    packed = any(len(r) > 1 for r in rows)
    width = max(sum(len(s.input_ids) for s in r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    loss = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        t = 0
        for s in row:
            n = len(s.input_ids)
            ids[b, t : t + n] = torch.tensor(s.input_ids)
            loss[b, t : t + n] = torch.tensor(s.loss_mask)
            loss[b, t] = 0  # the first token of a sample has no prediction from its own context
            pos[b, t : t + n] = torch.arange(n)
            attn[b, t : t + n] = 1
            t += n
        if packed:
            pos[b, t:] = torch.arange(width - t)  # padding becomes its own sample: it sees no real token
    return TokenBatch(ids, pos, None if packed else attn, loss)


@dataclass
class GroupBatch:
    """Groups of replies to one prompt each, best first: a preference pair is a group of 2, a ranking of K."""

    tokens: TokenBatch  # (R, T): every reply of every group, group after group; R = sum(sizes)
    sizes: list[int]  # replies per group
    extra: dict[str, torch.Tensor]  # per-reply values aligned with the rows of tokens, e.g. ref_logps (R,)

    @property
    def n_tokens(self) -> int:
        return self.tokens.n_tokens

    def to(self, device) -> GroupBatch:
        return GroupBatch(
            self.tokens.to(device), self.sizes, {k: v.to(device) for k, v in self.extra.items()}
        )


def collate_groups(
    groups: list[list[Rendered]], pad_id: int, extra: dict[str, list] | None = None
) -> GroupBatch:
    """Flatten groups into one padded batch, one row per reply; `extra` values are nested like `groups`."""
    return GroupBatch(
        collate([[s] for g in groups for s in g], pad_id), [len(g) for g in groups], flat(extra)
    )


def flat(extra: dict[str, list] | None) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([x for g in v for x in g], dtype=torch.float32) for k, v in (extra or {}).items()}


def shared_length(group: list[Rendered]) -> int:
    """Tokens the replies of a group share from the start (the rendered prompt), leaving each reply >= 1 token."""
    rows = [s.input_ids for s in group]
    n = 0
    while n < min(map(len, rows)) - 1 and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def collate_shared(
    groups: list[list[Rendered]], pad_id: int, extra: dict[str, list] | None = None
) -> GroupBatch:
    """One row per group: the shared prompt once, then each reply's own tokens. The (G, 1, T, T) attention mask
    lets a reply see the prompt and itself, never another reply, and positions go on from the prompt, so each
    reply's hidden states equal those of its own row while the prompt runs once instead of K times (about 1/3
    fewer tokens on HH pairs). A target is read where its own reply predicts it (a reply's first token: at the
    prompt's last token). Padding sees the prompt and padding; nothing reads it."""
    rows, segs, pos = [], [], []
    ends, pred, targets, reply = [], [], [], []  # (row, col) pairs, then flat indices
    for g, group in enumerate(groups):
        n = shared_length(group)
        ids, seg, p = list(group[0].input_ids[:n]), [0] * n, list(range(n))
        for k, s in enumerate(group, 1):
            tail = s.input_ids[n:]
            cols = [*range(n), *range(len(ids), len(ids) + len(tail))]  # where this reply's tokens sit
            hits = [t for t in range(1, len(s.input_ids)) if s.loss_mask[t]]
            pred += [(g, cols[t - 1]) for t in hits]
            targets += [s.input_ids[t] for t in hits]
            reply += [len(ends)] * len(hits)
            ends.append((g, cols[-1]))
            ids += tail
            seg += [k] * len(tail)
            p += range(n, len(s.input_ids))
        rows.append(ids)
        segs.append(seg)
        pos.append(p)
    width = max(map(len, rows))

    def pad(xs: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([x + [value] * (width - len(x)) for x in xs])

    def index(at: list[tuple[int, int]]) -> torch.Tensor:
        return torch.tensor([g * width + c for g, c in at], dtype=torch.long)

    ids, seg, positions = pad(rows, pad_id), pad(segs, -1), pad(pos, 0)
    # (G, T, T): the key is in the prompt or in the query's own reply, and not after the query
    same = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
    mask = (same & torch.ones(width, width, dtype=torch.bool).tril())[:, None]
    rendered = sum(len(s.input_ids) for g in groups for s in g)
    shared = Shared(
        index(ends),
        index(pred),
        torch.tensor(targets, dtype=torch.long),
        torch.tensor(reply, dtype=torch.long),
        rendered,
    )
    tokens = TokenBatch(ids, positions, mask, torch.zeros_like(ids), shared)
    return GroupBatch(tokens, [len(g) for g in groups], flat(extra))


# ---------------------------------------------------------------- encoder-decoder (T5) pairs: model/seq2seq.py

IGNORE = -100  # a label position that is no target (padding): transformers' ignore index


@dataclass
class Pair:
    """An encoder-decoder sample: the prompt the encoder reads and the reply the decoder learns to write."""

    source_ids: list[int]  # (S,) the rendered prompt, EOS included for T5-style tokenizers
    target_ids: list[int]  # (T,) the reply and its EOS: every token is a target


@dataclass
class Seq2SeqBatch:
    input_ids: torch.Tensor  # (B, S) sources, right-padded
    attention_mask: torch.Tensor  # (B, S) 1 = a real source token
    labels: torch.Tensor  # (B, T) target ids, IGNORE after each reply's end

    @property
    def n_targets(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum()) + self.n_targets

    def to(self, device) -> Seq2SeqBatch:
        return Seq2SeqBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels)))


def collate_pairs(pairs: list[Pair], pad_id: int) -> Seq2SeqBatch:
    """Right-pad sources with pad_id (masked) and targets with IGNORE."""

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        width = max(map(len, rows))
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)

    sources = [p.source_ids for p in pairs]
    mask = pad([[1] * len(s) for s in sources], 0)
    return Seq2SeqBatch(pad(sources, pad_id), mask, pad([p.target_ids for p in pairs], IGNORE))
