"""`pixiu export`: GGUF files that load back with the source's logits and replies; Ollama Modelfiles."""

from __future__ import annotations

import pytest
import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.config import ModelConfig
from pixiu.model import export, io

PROMPTS = ["Hello world, what is two plus two?", "你好，世界。", "The quick brown fox", "Please help me."]


@pytest.fixture(scope="module")
def source(tiny_model_dir):
    return io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))


def reload(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXIU_CACHE", str(tmp_path / "cache"))
    return io.load(ModelConfig(str(path), dtype="fp32"))


def logits(loaded, text):
    ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return loaded.model(ids).logits[0]


@pytest.mark.parametrize("quant,tol", [("f16", 1e-2), ("q8_0", 0.1), ("q4_0", 1.0)])
def test_gguf_round_trip_keeps_logits_and_tokenizer(source, tmp_path, monkeypatch, quant, tol):
    path = export.write_gguf(source, tmp_path / f"m-{quant}.gguf", quant)
    back = reload(path, tmp_path, monkeypatch)
    for text in PROMPTS:
        assert back.tokenizer(text)["input_ids"] == source.tokenizer(text)["input_ids"]
        diff = (logits(back, text) - logits(source, text)).abs().max().item()
        assert diff < tol, (quant, text, diff)
    # the chat template travels in the metadata: the reloaded model renders prompts identically
    conv = Conversation([Message("user", "hi")])
    assert back.template.prompt_ids(conv) == source.template.prompt_ids(conv)


def test_gguf_f16_greedy_replies_identical(source, tmp_path, monkeypatch):
    from pixiu.engine import Sampling, generate

    back = reload(export.write_gguf(source, tmp_path / "m.gguf", "f16"), tmp_path, monkeypatch)
    convs = [Conversation([Message("user", p)]) for p in PROMPTS]
    assert generate(back, convs, Sampling(12)) == generate(source, convs, Sampling(12))


def test_lora_adapter_is_merged_before_export(source, tiny_model_dir, tmp_path, monkeypatch):
    from pixiu.config import LoraConfig

    torch.manual_seed(0)  # peft draws lora_A from the global generator
    lora = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), LoraConfig(r=4), for_training=True)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in lora.model.named_parameters():
            if "lora_B" in name:  # a trained adapter: B is no longer zero (seeded: the test does not
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)  # depend on the tests before it)
    lora.model.eval()  # loaded for training: LoRA dropout would be on
    want = logits(lora, PROMPTS[0])
    assert (want - logits(source, PROMPTS[0])).abs().max() > 0.05
    back = reload(export.write_gguf(lora, tmp_path / "lora.gguf", "f16"), tmp_path, monkeypatch)
    assert (logits(back, PROMPTS[0]) - want).abs().max() < 1e-2


def test_permute_matches_llama_cpp_row_order():
    """Two heads of head_dim 4: HF's rotate-half rows (0,1 | 2,3) become GGML's interleaved pairs (0,2,1,3)."""
    w = torch.arange(8).float()[:, None]
    assert export.permute(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_bad_quant_and_architecture_are_clear_errors(source, tmp_path):
    with pytest.raises(io.ModelError, match="llama-quantize"):
        export.write_gguf(source, tmp_path / "m.gguf", "q4_k_m")
    with pytest.raises(io.ModelError, match="valid"):
        export.write_gguf(source, tmp_path / "m.gguf", "q3")
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = io.Loaded(
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)),
        source.tokenizer,
        source.template,
        "",
        torch.float32,
    )
    with pytest.raises(io.ModelError, match="supports"):
        export.write_gguf(gpt2, tmp_path / "g.gguf", "f16")
    assert not list(tmp_path.glob("*.tmp"))


def test_ollama_modelfile_has_template_and_stops(source, tmp_path):
    path = export.write_gguf(source, tmp_path / "m.gguf", "q8_0")
    text = export.modelfile(path, source).read_text()
    assert text.startswith("FROM ./m.gguf\n")
    assert "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ else }}" in text
    assert "{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}" in text
    assert 'PARAMETER stop "<|im_end|>"' in text


def test_a_named_template_travels_in_the_gguf(tiny_model_dir, tmp_path, monkeypatch):
    """A checkpoint trained with a named format (the quickstart's chatml) renders unlike the tokenizer's Jinja: the
    GGUF carries pixiu's template, so the reloaded model builds the same prompts."""
    src = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32", template="chatml"))
    back = reload(export.write_gguf(src, tmp_path / "m.gguf", "f16"), tmp_path, monkeypatch)
    conv = Conversation([Message("user", "hi")])
    assert back.template.name == "chatml"
    assert back.template.prompt_ids(conv) == src.template.prompt_ids(conv)
    plain = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    assert plain.template.prompt_ids(conv) != src.template.prompt_ids(conv)  # the test can fail


def test_the_gguf_runs_in_llama_cpp(tiny_model_dir, tmp_path):
    """llama.cpp (where llama-cpp-python is installed) reads the exported file: the same token ids for text, the
    source's logits within f16's tolerance, and pixiu's llama.cpp backend picks the recorded template."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from pixiu.engine import load_engine

    src = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32", template="chatml"))
    path = export.write_gguf(src, tmp_path / "m.gguf", "f16")
    llm = llama_cpp.Llama(str(path), n_ctx=128, logits_all=True, verbose=False)
    for text in PROMPTS:
        ids = src.tokenizer(text)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
        llm.reset()
        llm.eval(ids)
        got = torch.from_numpy(llm.scores[: len(ids)].copy())
        assert (got - logits(src, text)).abs().max().item() < 1e-2, text
    llm.close()
    conv = Conversation([Message("user", "hi")])
    with load_engine(str(path), backend="llamacpp") as engine:
        assert engine.template.name == "chatml"
        assert engine.prompt_ids(conv) == src.template.prompt_ids(conv)
