"""Weight-only int8 for serving on CPU (`pixiu serve --quantize int8`).

Decoding reads every weight once per step to make one token per sequence: a matrix-vector product per layer,
with 4 bytes per parameter in fp32 and 1 in int8. On the CPUs measured, torch's int8 kernel also does that
product faster than its fp32 one (SmolLM2 on one thread: 1.5x the decode tokens/s, bench/generate.py). Each
output row of a linear layer keeps its own scale (symmetric, absmax / 127); activations, norms, attention and the
residual stream stay in the model's dtype. The decode matmul is torch's CPU kernel `_weight_int8pack_mm` (the one
gpt-fast and torchao use), which takes bf16 activations. For many rows at once (a long prompt's prefill) that kernel is slower
than a plain GEMM, so those rows multiply with the weight dequantized on the fly instead (measured on SmolLM2:
200-token prefill 0.71 s through the kernel vs 0.39 s in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUANTIZE = ("none", "int8")
HELP = "int8: int8 weights, faster CPU decoding (torch backend; see pixiu.engine.quant)"
KERNEL_MAX_ROWS = 16  # above this many rows the dequantized GEMM beats the int8 kernel on this kind of CPU
# The kernel reads the input dimension in blocks of 16 with no tail: other widths give garbage (torch 2.13,
# checked in tests/test_quant.py), so those layers always take the dequantized path.
KERNEL_BLOCK = 16


class Int8Linear(torch.nn.Module):
    """y = x @ (q * s)ᵀ + b with q int8 (out, in) and s (out,) per output row."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        self.register_buffer("qweight", torch.round(w / scale[:, None]).to(torch.int8))  # (out, in)
        self.register_buffer("scale", scale)  # (out,) fp32
        self.register_buffer("scale_bf16", scale.to(torch.bfloat16))
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.kernel = self.in_features % KERNEL_BLOCK == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (N, in)
        if self.kernel and rows.shape[0] <= KERNEL_MAX_ROWS:
            y = torch.ops.aten._weight_int8pack_mm(rows.to(torch.bfloat16), self.qweight, self.scale_bf16)
            y = y.to(x.dtype)
        else:
            y = F.linear(rows, (self.qweight.to(x.dtype) * self.scale.to(x.dtype)[:, None]))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


def quantize(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Replace every nn.Linear of `model` (the output head included) in place; 'none' leaves it as it is."""
    if kind not in QUANTIZE:
        raise ValueError(f"unknown quantization {kind!r}; valid: {list(QUANTIZE)}")
    if kind == "none":
        return model
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("--quantize int8 is a CPU serving mode (torch's int8 kernel here is the CPU one)")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, Int8Linear(child))  # a tied output head gets its own int8 copy
    return model
