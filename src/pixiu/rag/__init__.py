"""Retrieval: documents -> structured chunks -> a BM25 + embedding index -> passages with numbered citations."""

from pixiu.rag.chunk import Chunk, chunk_paths, chunk_text
from pixiu.rag.index import Hit, Index, cite_prompt, default_embedder

__all__ = ["Chunk", "Hit", "Index", "chunk_paths", "chunk_text", "cite_prompt", "default_embedder"]
