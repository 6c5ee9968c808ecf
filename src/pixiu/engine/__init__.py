"""Generation: one interface (`Engine`: submit / generate / stream) over backends in a registry.

    engine = load_engine("smollm2-135m")          # or a checkpoint dir, HF dir, .gguf file
    engine.generate([conv], Sampling(64))         # -> [Completion]
    for piece in engine.stream(conv, Sampling(64)): print(piece, end="")

`sample()` runs the same torch engine synchronously on a model being trained: the rollout path of PPO / GRPO
and evaluation.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from pixiu.engine.base import Completion, ContextError, Delta, Engine, EngineError, Request, Sampling
from pixiu.engine.generate import Sample, generate, sample

__all__ = [
    "BACKENDS",
    "Completion",
    "ContextError",
    "Delta",
    "Engine",
    "EngineError",
    "Request",
    "Sample",
    "Sampling",
    "generate",
    "load_engine",
    "sample",
]

BACKENDS: dict[str, Callable[..., Engine]] = {}


def register(name: str):
    def add(fn):
        BACKENDS[name] = fn
        return fn

    return add


@register("torch")
def _torch(
    model: str, dtype: str, template: str, name: str, max_batch: int, quantize: str, device: str, decode: str
) -> Engine:
    from pixiu.config import ModelConfig
    from pixiu.engine.generate import build
    from pixiu.model import io

    if quantize != "none" and device == "auto":
        device = "cpu"  # int8 weights are a CPU serving mode (engine/quant.py)
    cfg = ModelConfig(model, dtype=dtype, template=template, attn_implementation="sdpa", device=device)
    return build(io.load(cfg), name, max_batch, quantize, decode=decode)  # causal LM or encoder-decoder


@register("llamacpp")
def _llamacpp(
    model: str, dtype: str, template: str, name: str, max_batch: int, quantize: str, device: str, decode: str
) -> Engine:
    from pixiu.engine.llamacpp import LlamaCppEngine

    if quantize != "none":
        raise ValueError("--quantize is for the torch backend; a GGUF file carries its own quantization")

    return LlamaCppEngine.load(model, template=template, name=name)


def load_engine(
    model: str,
    backend: str = "auto",
    dtype: str = "auto",
    template: str = "default",
    name: str | None = None,
    max_batch: int = 16,
    quantize: str = "none",
    device: str = "auto",
    decode: str = "auto",
) -> Engine:
    """An engine over a pixiu checkpoint, HF directory or hub name, .gguf file or 'smollm2-135m'.

    backend 'auto': llama.cpp for a .gguf file when llama-cpp-python is installed, else torch. `name` is the
    model id clients use (default: the alias or the path's basename). quantize 'int8': int8 weights for
    faster CPU decoding (torch backend, see engine/quant.py). device: as `model.device` (auto = the first CUDA
    GPU, else the CPU; see pixiu/device.py). decode: how the torch backend runs a decode step, see
    engine/graphs.py ('auto' = captured CUDA graphs on a GPU, eager on a CPU)."""
    if backend == "auto":
        gguf = str(model).endswith(".gguf") and importlib.util.find_spec("llama_cpp") is not None
        backend = "llamacpp" if gguf else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown engine backend {backend!r}; valid: {['auto', *sorted(BACKENDS)]}")
    name = name or model_name(model)
    return BACKENDS[backend](str(model), dtype, template, name, max_batch, quantize, device, decode)


def model_name(model: str) -> str:
    path = Path(str(model).rstrip("/"))
    return path.stem if path.suffix == ".gguf" else path.name or str(model)
