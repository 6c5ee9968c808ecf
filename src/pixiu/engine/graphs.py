"""Fast decode: the engine's decode forward at static shapes, captured as CUDA graphs (or compiled).

Why: a decode step of a 1.7B model reads 3.4 GB of weights (~0.7 ms on an H200) but launches hundreds of small
kernels from Python; measured eager, the engine ran at 2-4% of the GPU's bandwidth ceiling (issue 16). A CUDA
graph replays all of a step's kernels with one launch (vLLM, SGLang and gpt-fast decode this way).

A graph fixes the shapes and addresses of its tensors, so a step runs at static shapes:
- the batch is padded up to a bucket (1, 2, 4, ... up to the cache's slot count): the rows past the running
  ones are free slots of the SlotCache, set to position 0 so that they write and read only their own row; their
  logits are ignored;
- attention covers a width bucket W (a power of two, at least MIN_WIDTH, at most the cache capacity) under a
  (Bb, 1, 1, W) length mask that the step computes from the cache's positions, so it is captured too;
- the KV cache keeps its tensors while the engine lives (never released when idle) and starts at RESERVE
  positions; a growth (a longer sequence) reallocates it and drops the graphs, which are captured again.
Inputs are written into static tensors before a replay (the tokens here, the positions in `SlotCache.pos`); the
output logits are a static tensor that sampling (engine/sampler.py) reads, on the GPU.

Modes (the engine's `decode=`): 'eager' (no fast path), 'graphs' (CUDA graphs over the eager kernels),
'compile' (torch.compile's inductor kernels at the same static shapes; on CUDA captured as graphs too), 'auto'
(graphs on CUDA, eager elsewhere). A graph is captured the first time its (batch, width) bucket runs; a capture
that fails is logged and the engine decodes eagerly from then on.
"""

from __future__ import annotations

import logging

import torch

from pixiu.engine.cache import SlotCache

log = logging.getLogger(__name__)
MODES = ("auto", "eager", "graphs", "compile")
MIN_WIDTH = 64  # the smallest attention width bucket
RESERVE = 512  # cache positions allocated up front, so that short chats never regrow it (and recapture)


def decoder(model, cache: SlotCache, cache_kw: str, mode: str, backend: str = "inductor") -> Decoder | None:
    """The fast decode path for an engine's model and cache, or None for eager decoding."""
    if mode not in MODES:
        raise ValueError(f"unknown decode mode {mode!r}; valid: {list(MODES)}")
    cuda = cache.pos.device.type == "cuda"
    if mode == "auto":
        mode = "graphs" if cuda else "eager"
    if mode == "eager":
        return None
    if mode == "graphs" and not cuda:
        raise ValueError("decode='graphs' needs a CUDA device; use 'compile' or 'eager' on this one")
    return Decoder(model, cache, cache_kw, graphs=cuda, backend=backend if mode == "compile" else None)


class Decoder:
    """Runs the engine's decode steps at bucketed static shapes; see the module docstring."""

    def __init__(self, model, cache: SlotCache, cache_kw: str, graphs: bool, backend: str | None):
        self.model, self.cache, self.cache_kw = model, cache, cache_kw
        device = cache.pos.device
        self.tokens = torch.zeros(cache.slots, 1, dtype=torch.long, device=device)  # (S, 1) step input
        self.positions = torch.arange(cache.max_len, device=device)  # (L,)
        self.batches = buckets(cache.slots)
        self.compiled = (
            None if backend is None else torch.compile(self._forward, backend=backend, dynamic=False)
        )
        self.use_graphs = graphs
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = None  # one memory pool for all graphs: they never run at the same time
        self.keys_at = None  # address of the cache's first key tensor when the graphs were captured
        self.shapes: set[tuple[int, int]] = set()  # (batch, width) buckets run so far
        cache.reserve(min(cache.max_len, RESERVE))

    def step(self, last: list[int], width: int) -> torch.Tensor:
        """One decode step of the running rows 0..B-1 (their latest tokens `last`, attending over `width`
        positions) -> (B, V) next-token logits; their positions advance, as in the eager step."""
        b, cache = len(last), self.cache
        batch = next(n for n in self.batches if n >= b)
        cache.reserve(width)
        w = min(max(MIN_WIDTH, 1 << (width - 1).bit_length()), cache.capacity)
        self.tokens[:b, 0] = torch.tensor(last, device=self.tokens.device)
        cache.pos[b:batch] = 0  # padding rows: free slots, each attending to its own position 0
        cache.bind(batch, w)
        self.shapes.add((batch, w))
        logits = self._run(batch, w)
        cache.pos[:b] += 1
        return logits[:b]

    def _run(self, batch: int, width: int) -> torch.Tensor:
        # autocast caches its casts of the weights outside the graph's memory: never capture under it
        if not self.use_graphs or torch.is_autocast_enabled("cuda"):
            return self._call(batch, width)
        if self.cache.layers[0].keys.data_ptr() != self.keys_at:  # the cache was reallocated
            self.graphs.clear()
            self.keys_at = self.cache.layers[0].keys.data_ptr()
        if (batch, width) not in self.graphs:
            try:
                self.graphs[(batch, width)] = self._capture(batch, width)
            except Exception:
                log.exception("capturing a CUDA graph failed: decoding without graphs from now on")
                self.use_graphs = False
                return self._call(batch, width)
        graph, logits = self.graphs[(batch, width)]
        graph.replay()
        return logits

    def _call(self, batch: int, width: int) -> torch.Tensor:
        if self.compiled is None:
            return self._forward(batch, width)
        # one compiled graph per (batch, width) bucket: allow more than dynamo's default 8 recompiles
        with torch._dynamo.config.patch(recompile_limit=64):
            return self.compiled(batch, width)

    def _capture(self, batch: int, width: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Warm up on a side stream (lazy initialisation cannot be captured), then record one step. Both runs
        write this step's keys and values at the current positions, as the replay will: the cache is unchanged."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._call(batch, width)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            logits = self._call(batch, width)
        return graph, logits

    def _forward(self, batch: int, width: int) -> torch.Tensor:
        """The decode forward of rows 0..batch-1 over `width` positions -> (batch, V) logits."""
        pos = self.cache.pos[:batch]  # (Bb,) where each row's token goes
        mask = (self.positions[:width] <= pos[:, None])[:, None, None, :]  # (Bb, 1, 1, W)
        out = self.model(
            input_ids=self.tokens[:batch],
            position_ids=pos[:, None],
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kw: self.cache},
        )
        return out.logits[:, -1]


def buckets(slots: int) -> list[int]:
    """Batch buckets: powers of two below the slot count, then the slot count (1, 2, 4, 8, 16, 32 for 32)."""
    out = [1 << i for i in range(slots.bit_length()) if 1 << i < slots]
    return [*out, slots]
