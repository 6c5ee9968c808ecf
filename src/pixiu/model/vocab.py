"""Vocabulary extension: new tokens for a language the base tokenizer splits into bytes, existing ids unchanged.

Two routes, as Chinese-LLaMA-Alpaca (https://github.com/ymcui/Chinese-LLaMA-Alpaca, scripts/merge_tokenizer)
and Linly did for Chinese:
- byte-level BPE (SmolLM2, Qwen, Llama 3): train a BPE with the base's own pre-tokenizer on a corpus and walk its
  merges in order; each token the base cannot reach in one piece, but can in two, becomes a new token with one
  new merge appended after the base's (lowest priority, so text the base already covers keeps its ids). Tokens
  the base splits into three or more pieces are skipped: their merge could never fire.
- SentencePiece (Llama 1/2 style `tokenizer.model`): append another SentencePiece model's pieces that the base
  lacks (score 0, as merge_tokenizers.py does) and rebuild the tokenizer from the merged model.
The model's embeddings (and an untied head) grow by the new ids; new rows start at the mean of the old token rows
(plus optional Gaussian noise), so a new token first predicts and reads like an average token.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

SP_FILE = "tokenizer.model"  # the SentencePiece model of a slow Llama-style tokenizer


class VocabError(ValueError):
    """An extension that cannot be made (too large, wrong tokenizer kind), naming the file and the sizes."""


@dataclass
class Extension:
    """What `extend` did, recorded under "vocab" in the checkpoint's pixiu.json."""

    method: str  # "bpe" (merges trained on a corpus) or "sentencepiece" (pieces of another model)
    base_vocab: int  # len(tokenizer) before: ids below it are unchanged
    added: int  # new tokens, ids base_vocab .. base_vocab + added - 1 (after any special ids)
    first_new_id: int
    embedding_rows: int  # the resized embedding's rows
    source: list[str]  # corpus files or the SentencePiece model
    init: str  # "mean" or "mean+noise(std)"
    skipped: int = 0  # BPE candidates the base splits into 3+ pieces (their merge could never fire)

    def to_json(self) -> dict:
        return asdict(self)


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """`word` (byte-level characters) split by BPE with these merge ranks: the lowest-ranked pair merges first,
    as the `tokenizers` library does."""
    parts = list(word)
    while len(parts) > 1:
        rank, i = min((ranks.get(pair, math.inf), i) for i, pair in enumerate(zip(parts, parts[1:])))
        if rank == math.inf:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def _pairs(merges: list) -> list[tuple[str, str]]:
    """tokenizer.json merges as pairs: newer files store ["a", "b"], older ones "a b"."""
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def add_bpe_tokens(doc: dict, candidates: Iterable[tuple[str, str]], limit: int) -> tuple[list[str], int]:
    """Append up to `limit` tokens and their merges to a tokenizer.json document (in place) -> (new tokens, skipped).

    A candidate (a, b) proposes the token a+b. Its split under the merges so far decides: one piece, it exists;
    two pieces (p, q), the merge (p, q) -> a+b is appended (and the token, if new); more, it is skipped."""
    model = doc["model"]
    vocab, merges = model["vocab"], _pairs(model["merges"])
    ranks = {pair: i for i, pair in enumerate(merges)}
    next_id = max([*vocab.values(), *(t["id"] for t in doc.get("added_tokens", []))]) + 1
    added, skipped = [], 0
    for a, b in candidates:
        if len(added) >= limit:
            break
        pieces = bpe(a + b, ranks)
        if len(pieces) != 2:
            skipped += len(pieces) > 2
            continue
        ranks[tuple(pieces)] = len(merges)
        merges.append(tuple(pieces))
        if a + b not in vocab:
            vocab[a + b] = next_id
            next_id += 1
            added.append(a + b)
    model["merges"] = [list(m) for m in merges]
    return added, skipped


def trained_merges(tokenizer, texts: Iterable[str], size: int) -> list[tuple[str, str]]:
    """Merges of a BPE of `size` tokens trained on `texts` with the tokenizer's own normaliser and
    pre-tokenizer, most frequent first."""
    new = tokenizer.train_new_from_iterator(texts, vocab_size=size)
    return _pairs(json.loads(new.backend_tokenizer.to_str())["model"]["merges"])


def extend_bpe(tokenizer, texts: list[str], add: int) -> tuple[object, list[str], int]:
    """A copy of a byte-level BPE fast tokenizer with up to `add` new tokens learned from `texts`
    -> (tokenizer, new tokens, skipped candidates)."""
    doc = json.loads(tokenizer.backend_tokenizer.to_str())
    if doc["model"].get("type") != "BPE":
        raise VocabError(
            f"the tokenizer's model is {doc['model'].get('type')!r}, not BPE: give --sp_model for SentencePiece"
        )
    # Train about twice what is wanted: many candidates exist in the base already or are skipped.
    candidates = trained_merges(tokenizer, texts, 256 + 2 * add + len(tokenizer.all_special_tokens))
    added, skipped = add_bpe_tokens(doc, candidates, add)
    return _rebuilt(tokenizer, lambda d: (d / "tokenizer.json").write_text(json.dumps(doc))), added, skipped


def _rebuilt(tokenizer, edit):
    """The tokenizer saved, its files edited by `edit(dir)`, and loaded again: class, special tokens and chat
    template carry over."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        edit(Path(tmp))
        return AutoTokenizer.from_pretrained(tmp)


def extend_sentencepiece(tokenizer, base_dir: Path, sp_model: Path) -> tuple[object, list[str], bytes]:
    """Append the pieces of `sp_model` that the base SentencePiece model lacks (score 0, NORMAL) and rebuild the
    tokenizer from the merged model -> (tokenizer, new pieces, the merged model's bytes for tokenizer.model).
    Needs `pip install sentencepiece protobuf`."""
    try:
        from sentencepiece import sentencepiece_model_pb2 as sp_pb2
    except ImportError as e:
        raise VocabError(
            f"merging SentencePiece models needs `pip install sentencepiece protobuf` ({e})"
        ) from None
    base_file = base_dir / SP_FILE
    if not base_file.is_file():
        raise VocabError(
            f"{base_dir} has no {SP_FILE}: it is not a SentencePiece tokenizer; use --corpus (BPE)"
        )
    base, extra = sp_pb2.ModelProto(), sp_pb2.ModelProto()
    base.ParseFromString(base_file.read_bytes())
    extra.ParseFromString(Path(sp_model).read_bytes())
    have = {p.piece for p in base.pieces}
    added = []
    for p in extra.pieces:
        if p.piece not in have and p.type == sp_pb2.ModelProto.SentencePiece.NORMAL:
            base.pieces.append(sp_pb2.ModelProto.SentencePiece(piece=p.piece, score=0.0))
            have.add(p.piece)
            added.append(p.piece)

    def write(d: Path) -> None:
        (d / SP_FILE).write_bytes(base.SerializeToString())
        (d / "tokenizer.json").unlink(missing_ok=True)  # rebuilt from the merged tokenizer.model

    return _rebuilt(tokenizer, write), added, base.SerializeToString()


def check_size(file: str, base: int, added: int, max_vocab: int) -> None:
    """A VocabError when base + added tokens pass `max_vocab` (0 = no limit)."""
    if max_vocab and base + added > max_vocab:
        raise VocabError(
            f"{file}: extending a vocabulary of {base} tokens by {added} gives {base + added}, over the maximum "
            f"of {max_vocab} (--max_vocab); add at most {max(0, max_vocab - base)}"
        )


@torch.no_grad()
def resize(model, base_vocab: int, new_vocab: int, noise_std: float = 0.0, seed: int = 0) -> int:
    """Grow the input embeddings (and an untied output head) to hold ids < new_vocab; rows base_vocab.. get the
    mean of rows 0..base_vocab-1 plus N(0, noise_std²) noise -> the embedding's rows."""
    rows = max(model.get_input_embeddings().weight.shape[0], new_vocab)
    model.resize_token_embeddings(rows, mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    out = model.get_output_embeddings()
    tables = [model.get_input_embeddings().weight]
    if out is not None and out.weight is not tables[0]:
        tables.append(out.weight)
    for w in tables:
        mean = w[:base_vocab].float().mean(0)
        noise = torch.randn((new_vocab - base_vocab, w.shape[1]), generator=gen) * noise_std
        w[base_vocab:new_vocab] = (mean + noise).to(w.dtype)
    return rows


def extend(loaded, tokenizer, info: Extension, noise_std: float = 0.0, seed: int = 0) -> Extension:
    """Put the extended `tokenizer` into `loaded` (a model/io.py Loaded, full weights) and resize its embeddings
    to match -> `info` with the embedding's rows filled in."""
    from pixiu.chat.templates import Template

    if hasattr(loaded.model, "peft_config"):
        raise VocabError("extend the vocabulary of full weights, not a LoRA adapter: merge it first")
    info.embedding_rows = resize(loaded.model, info.base_vocab, len(tokenizer), noise_std, seed)
    info.init = f"mean+noise({noise_std})" if noise_std else "mean"
    loaded.tokenizer = tokenizer
    loaded.template = Template(loaded.template.format, tokenizer)
    return info
