"""Weight-only int8 serving: the layer's math against a hand computation, both of its paths, and an engine that
serves a quantized model with every linear layer replaced."""

from __future__ import annotations

import pytest
import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import Sampling, load_engine
from pixiu.engine.quant import KERNEL_MAX_ROWS, Int8Linear, quantize


def test_int8_linear_matches_hand_quantization():
    """Row 0 of W = [1.27, -0.5, 0.02]: scale 1.27/127 = 0.01, q = [127, -50, 2]; row 1 = [0, 0, -2.54]: scale
    0.02, q = [0, 0, -127]. x = [1, 2, 3]: y = [1.27 - 1.0 + 0.06, -7.62] + b = [0.33 + 1, -7.62 - 1]."""
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.27, -0.5, 0.02], [0.0, 0.0, -2.54]]))
        lin.bias.copy_(torch.tensor([1.0, -1.0]))
    q = Int8Linear(lin)
    assert q.qweight.tolist() == [[127, -50, 2], [0, 0, -127]]
    assert torch.allclose(q.scale, torch.tensor([0.01, 0.02]))
    y = q(torch.tensor([[1.0, 2.0, 3.0]]))
    assert y.dtype == torch.float32 and y.shape == (1, 2)
    assert torch.allclose(y, torch.tensor([[1.33, -8.62]]), atol=1e-5)  # width 3: the exact dequantized path


@pytest.mark.parametrize("rows", [1, KERNEL_MAX_ROWS, KERNEL_MAX_ROWS + 1, 40])
@pytest.mark.parametrize("width", [64, 72])
def test_kernel_and_dequantized_paths_agree_with_fp32(rows, width):
    """Few rows take the int8 kernel, many the dequantized GEMM: both stay within int8 + bf16 rounding of fp32.
    Width 72 is no multiple of the kernel's block of 16 (the kernel returns inf there): always dequantized."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(width, 96)
    x = torch.randn(2, rows, width)
    q = Int8Linear(lin)
    assert q.kernel == (width == 64)
    exact, got = lin(x), q(x)
    assert got.shape == exact.shape == (2, rows, 96)
    assert (got - exact).abs().max() < 0.02 * exact.abs().max()


def test_quantize_replaces_every_linear_and_rejects_unknown_kinds(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 5, 9, 20, 7]])
    with torch.no_grad():
        before = model(ids).logits
        quantize(model, "int8")
        after = model(ids).logits
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.get_output_embeddings(), Int8Linear)  # the tied head got its own int8 copy
    assert (after - before).abs().max() < 0.05 * before.abs().max()
    with pytest.raises(ValueError, match=r"unknown quantization 'int4'.*\['none', 'int8'\]"):
        quantize(model, "int4")


def test_int8_engine_serves_and_batches_like_alone(tiny_model_dir):
    """A quantized engine generates; a reply decoded in a batch of three equals the same prompt decoded alone."""
    convs = [Conversation([Message("user", t)]) for t in ("Hello", "What is two plus two?", "你好")]
    with load_engine(str(tiny_model_dir), dtype="fp32", max_batch=3, quantize="int8") as eng:
        assert isinstance(eng.model.get_output_embeddings(), Int8Linear)
        together = eng.generate(convs, Sampling(max_new_tokens=6))
        alone = [eng.generate([c], Sampling(max_new_tokens=6))[0] for c in convs]
    assert [c.text for c in together] == [c.text for c in alone]
    assert all(c.completion_tokens > 0 for c in together)


@pytest.mark.slow
def test_smollm2_int8_still_answers_and_loses_little():
    """Real weights: the int8 engine still knows the capital of France, and its next-token log-probs on a
    reply stay close to fp32's (bench/generate.py measures +0.2% perplexity on 64 Alpaca answers)."""
    conv = Conversation([Message("user", "What is the capital of France?")])
    with load_engine("smollm2-135m", dtype="fp32", max_batch=1, quantize="int8") as eng:
        assert "Paris" in eng.generate([conv], Sampling(max_new_tokens=24))[0].text
        ids = torch.tensor(
            [eng.template.prompt_ids(conv) + eng.tokenizer.encode("The capital of France is Paris.")]
        )
        with torch.inference_mode():
            int8 = torch.log_softmax(eng.model(ids).logits.float(), -1)
    from pixiu.config import ModelConfig
    from pixiu.model import io

    fp32 = io.load(ModelConfig("smollm2-135m", dtype="fp32")).model.eval()
    with torch.inference_mode():
        exact = torch.log_softmax(fp32(ids).logits.float(), -1)
    picked = ids[0, 1:]
    nll = [-lp[0, :-1].gather(-1, picked[:, None]).mean().item() for lp in (exact, int8)]
    assert abs(nll[1] - nll[0]) < 0.05 * nll[0]
