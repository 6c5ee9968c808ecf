"""`pixiu data extend-vocab`: a checkpoint whose tokenizer has new tokens for a corpus (model/vocab.py does the
work; this module reads the corpus and the command line).

    pixiu data extend-vocab smollm2-135m --corpus zh.json --add 8000 --out runs/smol-zh
    pixiu data extend-vocab ./llama2 --sp_model chinese_sp.model --out runs/llama2-zh

The output is a full checkpoint (weights, tokenizer, pixiu.json with a "vocab" record: method, base size, added
count, source) that `pixiu train pt` continues from.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from pixiu.data.sources import read_rows


def row_text(row: dict) -> str:
    """A row's text: its "text" field, else its string fields joined by newlines (alpaca: instruction, input,
    output)."""
    if isinstance(row.get("text"), str):
        return row["text"]
    return "\n".join(v for v in row.values() if isinstance(v, str) and v.strip())


def corpus(paths: list[str], max_records: int = 0) -> Iterator[str]:
    """The texts of every row of the files in order, the first `max_records` of all (0 = all)."""
    n = 0
    for path in paths:
        for _, row in read_rows(path):
            if max_records and n >= max_records:
                return
            text = row_text(row)
            if text:
                n += 1
                yield text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pixiu data extend-vocab",
        description="New tokens for a corpus (byte-level BPE bases) or another SentencePiece model's pieces "
        "(SentencePiece bases); embeddings resized, new rows at the mean of the old.\n\n"
        + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="checkpoint dir, HF dir, .gguf file or smollm2-135m (full weights)")
    p.add_argument("--out", required=True, help="where the extended checkpoint goes")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--corpus", nargs="+", help="text to learn new tokens from (.txt/.json/.jsonl/.csv/.parquet)"
    )
    src.add_argument("--sp_model", help="a SentencePiece model whose pieces are merged (SentencePiece bases)")
    p.add_argument("--add", type=int, default=8000, help="new tokens to learn from the corpus (BPE bases)")
    p.add_argument("--max_records", type=int, default=0, help="use the first N corpus rows (0 = all)")
    p.add_argument(
        "--max_vocab", type=int, default=0, help="fail if the vocabulary would pass this (0 = no cap)"
    )
    p.add_argument(
        "--noise_std", type=float, default=0.0, help="std of noise added to the new rows' mean init"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--template", default="default", help="chat template to record (a base without one needs a name)"
    )
    return p


def main(argv: list[str]) -> None:
    """pixiu data extend-vocab MODEL --out DIR (--corpus FILE... | --sp_model FILE)."""
    a = parser().parse_args(argv)
    from pathlib import Path

    from pixiu.config import ModelConfig
    from pixiu.model import io, vocab

    loaded = io.load(ModelConfig(a.model, dtype="fp32", template=a.template, device="cpu"))
    tok, base = loaded.tokenizer, len(loaded.tokenizer)
    where = str(Path(io.resolve(a.model)) / "tokenizer.json")
    if a.sp_model:
        new, added, merged = vocab.extend_sentencepiece(tok, Path(io.resolve(a.model)), Path(a.sp_model))
        vocab.check_size(str(Path(io.resolve(a.model)) / vocab.SP_FILE), base, len(added), a.max_vocab)
        info = vocab.Extension("sentencepiece", base, len(added), base, 0, [a.sp_model], "mean")
    else:
        vocab.check_size(where, base, a.add, a.max_vocab)  # before the minutes of training
        new, added, skipped = vocab.extend_bpe(tok, list(corpus(a.corpus, a.max_records)), a.add)
        info = vocab.Extension("bpe", base, len(added), base, 0, list(a.corpus), "mean", skipped)
    vocab.extend(loaded, new, info, a.noise_std, a.seed)
    out = io.save(a.out, loaded, meta={"vocab": info.to_json()})
    if a.sp_model:  # the merged SentencePiece model too, for tools that read tokenizer.model (llama.cpp)
        (out / vocab.SP_FILE).write_bytes(merged)
    print(f"{base} -> {len(new)} tokens (+{len(added)}; embedding rows {info.embedding_rows}); saved {out}")
    print("first new tokens: " + " ".join(repr(new.convert_tokens_to_string([t])) for t in added[:20]))
