"""The engine's fast decode path (engine/graphs.py) on the CPU: bucketed static shapes and torch.compile give
the same greedy tokens as the eager engine, with mixed prompt lengths and a request joining mid-decode."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import Sampling, graphs, load_engine

PROMPTS = [
    "Hello",
    "What is two plus two? Please help me.",
    "The quick brown fox jumps over the lazy dog. " * 2,
]
# torch.compile's default backend (inductor) builds C++ kernels on the CPU; without a C compiler the test
# falls back to dynamo's eager backend (same tracing and static shapes, no generated kernels)
BACKEND = "inductor" if shutil.which("cc") or shutil.which("gcc") else "eager"
CPU = (
    "cpu"  # these tests check the CPU paths, also on a GPU host; test_cuda_graphs_equal_eager checks the GPU
)


def conv(text: str) -> Conversation:
    return Conversation([Message("user", text)])


def run_joined(engine, lengths: tuple[int, int, int]) -> list[list[int]]:
    """Prompts 0 and 1 start together; prompt 2 is submitted once prompt 0 has 3 tokens (it joins mid-decode)."""
    joined: list = []
    seen = [0]

    def on_delta(delta):
        seen[0] += len(delta.token_ids)
        if seen[0] >= 3 and not joined:
            joined.append(engine.submit(conv(PROMPTS[2]), Sampling(max_new_tokens=lengths[2])))

    with engine._wake:  # the scheduler admits both at once (the lock is reentrant: submit takes it too)
        first = engine.submit(conv(PROMPTS[0]), Sampling(max_new_tokens=lengths[0]), on_delta=on_delta)
        second = engine.submit(conv(PROMPTS[1]), Sampling(max_new_tokens=lengths[1]))
    out = [[t for d in r for t in d.token_ids] for r in (first, second)]
    while not joined:  # set on the engine thread by the time `first` is done
        threading.Event().wait(0.01)
    return [*out, [t for d in joined[0] for t in d.token_ids]]


def reference(lively_dir, lengths, device: str = "cpu") -> list[list[int]]:
    """Each prompt alone on the eager engine (which equals HF generate, see test_engine.py)."""
    with load_engine(str(lively_dir), dtype="fp32", max_batch=1, decode="eager", device=device) as eng:
        requests = [eng.submit(conv(p), Sampling(max_new_tokens=n)) for p, n in zip(PROMPTS, lengths)]
        return [[t for d in r for t in d.token_ids] for r in requests]


def test_buckets_and_modes(lively_dir):
    assert graphs.buckets(32) == [1, 2, 4, 8, 16, 32]
    assert graphs.buckets(3) == [1, 2, 3]
    assert graphs.buckets(1) == [1]
    with load_engine(str(lively_dir), dtype="fp32", max_batch=2, device=CPU) as eng:
        assert eng.fast is None  # 'auto' on a CPU: eager
    with load_engine(str(lively_dir), dtype="fp32", max_batch=2, decode="compile", device=CPU) as eng:
        assert eng.fast.compiled is not None and not eng.fast.use_graphs  # compiled, no graphs on a CPU
        with pytest.raises(ValueError, match="needs a CUDA device"):
            graphs.decoder(eng.model, eng.cache, "cache", "graphs")
        with pytest.raises(ValueError, match=r"valid: \['auto', 'eager', 'graphs', 'compile'\]"):
            graphs.decoder(eng.model, eng.cache, "cache", "fast")


def test_static_decode_equals_eager(lively_dir):
    """The bucketed, padded, masked step run eagerly: exactly what a CUDA graph records on a GPU."""
    lengths = (12, 9, 7)
    with load_engine(str(lively_dir), dtype="fp32", max_batch=4, decode="eager", device=CPU) as eng:
        eng.fast = graphs.Decoder(eng.model, eng.cache, eng._cache_kw, graphs=False, backend=None)
        got = run_joined(eng, lengths)
        shapes = eng.fast.shapes
    assert [len(t) for t in got] == list(lengths)
    assert got == reference(lively_dir, lengths)
    # three rows ran padded to the bucket of 4, two rows in the bucket of 2, the last row alone
    assert {b for b, _ in shapes} == {1, 2, 4}, shapes
    assert all(w >= graphs.MIN_WIDTH and w & (w - 1) == 0 for _, w in shapes)  # powers of two


def test_compiled_decode_equals_eager(lively_dir):
    """`decode='compile'` on the CPU: torch.compile's kernels give the eager engine's greedy tokens. One batch
    bucket (4) keeps it to one compilation (~20 s here with a warm inductor cache, a few minutes cold on a busy
    2-core machine): rows of mixed lengths, one joining mid-decode, padding rows as the batch empties."""
    lengths = (12, 9, 7)
    with load_engine(str(lively_dir), dtype="fp32", max_batch=4, decode="eager", device=CPU) as eng:
        eng.fast = graphs.Decoder(eng.model, eng.cache, eng._cache_kw, graphs=False, backend=BACKEND)
        eng.fast.batches = [4]
        got = run_joined(eng, lengths)
        shapes = eng.fast.shapes
    assert got == reference(lively_dir, lengths)
    assert {b for b, _ in shapes} == {4}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_equal_eager(lively_dir):
    """On a GPU, decode='auto' captures CUDA graphs; fp32 greedy tokens equal the eager engine's."""
    lengths = (12, 9, 7)
    with load_engine(str(lively_dir), dtype="fp32", max_batch=4, device="cuda") as eng:
        assert eng.fast is not None and eng.fast.use_graphs
        got = run_joined(eng, lengths)
        captured, still = set(eng.fast.graphs), eng.fast.use_graphs
    assert still and {b for b, _ in captured} == {1, 2, 4}  # no capture failed
    assert got == reference(lively_dir, lengths, device="cuda")


class FakeGraph:
    """Stands in for torch.cuda.CUDAGraph on the CPU: replay() reruns the step into the same output tensor."""

    def __init__(self, decoder, batch, width):
        self.run = lambda: decoder._call(batch, width)
        self.out = self.run().clone()

    def replay(self):
        self.out.copy_(self.run())


@pytest.mark.parametrize("fail", [False, True], ids=["captured", "capture-fails"])
def test_graph_bookkeeping(lively_dir, monkeypatch, fail):
    """The CUDA-graph control flow on the CPU: one capture per (batch, width) bucket, replays read the static
    output, a regrown cache drops the graphs; a failed capture falls back to uncaptured steps for good."""
    captured = []

    def capture(self, batch, width):
        captured.append((batch, width))
        if fail:
            raise RuntimeError("capture failed")
        graph = FakeGraph(self, batch, width)
        return graph, graph.out

    monkeypatch.setattr(graphs.Decoder, "_capture", capture)
    monkeypatch.setattr(graphs, "RESERVE", 64)  # 76 prompt + 90 new tokens outgrow 128 positions mid-decode
    lengths = (90, 9, 7)
    with load_engine(str(lively_dir), dtype="fp32", max_batch=4, decode="eager", device=CPU) as eng:
        eng.fast = graphs.Decoder(eng.model, eng.cache, eng._cache_kw, graphs=True, backend=None)
        got = run_joined(eng, lengths)
        kept, use_graphs = set(eng.fast.graphs), eng.fast.use_graphs
    assert got == reference(lively_dir, lengths)
    if fail:
        assert captured == [(2, 128)] and not use_graphs
    else:  # the regrowth to 256 positions dropped the three graphs of the 128-position cache
        assert captured == [(2, 128), (4, 128), (1, 128), (1, 256)] and kept == {(1, 256)}


def bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", Path(__file__).parents[1] / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_bench_without_cuda_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu().main([]) == 0
    assert "no CUDA GPU here, nothing measured" in capsys.readouterr().out


@pytest.mark.slow
def test_gpu_bench_cpu_smoke(tmp_path):
    """Every measurement of bench/gpu.py on the tiny shape on the CPU: the GPU run will not die of a typo."""
    out = tmp_path / "gpu.md"
    assert (
        bench_gpu().main(["--cpu-smoke", "--skip-train", "--out", str(out), "--models", str(tmp_path)]) == 0
    )
    rows = json.loads(out.with_suffix(".json").read_text())
    sides = {(r["case"], r["side"].split(" (")[0]) for r in rows if r.get("tok_s", 0) > 0}
    assert sides == {
        ("1 stream", "pixiu engine"),
        ("32 streams", "pixiu engine"),
        ("64 streams", "pixiu serve job layer"),
        ("1 stream", "HF generate, static cache"),
        ("1 stream", "HF generate, dynamic cache"),
        ("32 streams", "HF batched generate, dynamic cache"),
    }
    assert next(r for r in rows if r["case"] == "64 streams")["completed"] == 64
    assert "| 64 streams | pixiu serve job layer" in out.read_text()
