"""`pixiu export MODEL --format gguf|safetensors`: a trained model out of the trainer, for llama.cpp and Ollama.

GGUF is written with the `gguf` package (the writer llama.cpp's own converter uses): merged weights (a LoRA adapter
is folded into its base first), the byte-level BPE tokenizer (tokens, types, merges, special ids) and the chat
template in the metadata, so `llama-cli -m model.gguf` and pixiu's own GGUF loader need nothing else.

Tensor names and the q/k row order follow llama.cpp's convert_hf_to_gguf.py: for the `llama` architecture the
query and key rows are permuted from HF's rotate-half layout to GGML's interleaved one (transformers' GGUF loader
undoes it). Quantizations are those the `gguf` package can write in Python: f16, bf16, q8_0, q4_0. The k-quants
(q4_k_m ...) need llama.cpp's `llama-quantize` on the f16 file: a clear error says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pixiu.model import io
from pixiu.model.io import Loaded, ModelError, unwrap


@dataclass(frozen=True)
class Arch:
    gguf: str  # general.architecture
    permute_qk: bool  # llama.cpp's q/k row permutation (rotate-half -> interleaved)


# HF architecture -> how llama.cpp names it. Mistral shares llama's graph in llama.cpp.
ARCHS = {
    "LlamaForCausalLM": Arch("llama", True),
    "MistralForCausalLM": Arch("llama", True),
    "Qwen2ForCausalLM": Arch("qwen2", False),
}
QUANTS = ("f16", "bf16", "q8_0", "q4_0")
TEMPLATE_KEY = "pixiu.template"  # GGUF metadata: the checkpoint's template, as pixiu.json holds it
# tokenizer.ggml.pre: llama.cpp picks the pre-tokenizer regex by this name (it hashes a test string in
# convert_hf_to_gguf.py); pixiu knows the ones of the models it ships and names, else llama.cpp's default.
PRE = {("llama", 49152): "smollm", ("llama", 128256): "llama-bpe", ("qwen2", None): "qwen2"}
LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
TOP = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}


def merged(loaded: Loaded) -> torch.nn.Module:
    """The plain causal LM with any LoRA adapter folded in, fp32 on the CPU."""
    model = io.merged(unwrap(loaded.model))  # a clear error for adapters that cannot fold (prefix tuning)
    return model.float().cpu().eval()


def gguf_name(hf_name: str) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'blk.3.attn_q.weight'."""
    stem, kind = hf_name.rsplit(".", 1)
    if stem in TOP:
        return f"{TOP[stem]}.{kind}"
    parts = stem.split(".")
    if parts[:2] == ["model", "layers"] and ".".join(parts[3:]) in LAYER:
        return f"blk.{parts[2]}.{LAYER['.'.join(parts[3:])]}.{kind}"
    raise ModelError(f"export: no GGUF name for tensor {hf_name!r}")


def permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotate-half row order of a q/k projection -> GGML's interleaved pairs (convert_hf_to_gguf.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensors(model, arch: Arch) -> Iterator[tuple[str, torch.Tensor]]:
    """(GGUF name, fp32 tensor) for every weight; a tied head is written once, as the embedding."""
    cfg = model.config
    tied = getattr(cfg, "tie_word_embeddings", False)
    for name, t in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        if arch.permute_qk and name.endswith("q_proj.weight"):
            t = permute(t, cfg.num_attention_heads)
        elif arch.permute_qk and name.endswith("k_proj.weight"):
            t = permute(t, cfg.num_key_value_heads)
        yield gguf_name(name), t.detach().float()


def encode(t: torch.Tensor, quant: str, name: str) -> tuple[np.ndarray, object]:
    """A tensor in the file's type: norms and biases stay f32 (as llama.cpp keeps them); 2-D weights whose rows
    fit the quant's block take it, the others fall back to f16."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    data = t.numpy()
    if data.ndim == 1:
        return data.astype(np.float32), Q.F32
    qtype = {"f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[quant]
    block = quants.GGML_QUANT_SIZES[qtype][0]
    if data.shape[-1] % block:
        qtype = Q.F16
    if quant == "q4_0" and name == "token_embd.weight":
        qtype = Q.Q8_0  # as llama.cpp's q4_0 default: the (tied) embedding keeps 8 bits
    return quants.quantize(data, qtype), qtype


def tokenizer_meta(writer, tokenizer, arch: str, vocab_size: int) -> None:
    """A byte-level BPE tokenizer (SmolLM2, Llama 3, Qwen2) as GGUF's 'gpt2' tokenizer model."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE" or spec.get("decoder", {}).get("type") != "ByteLevel":
        raise ModelError(
            "export to GGUF supports byte-level BPE tokenizers (SmolLM2, Llama 3, Qwen2); this one is "
            f"{spec['model']['type']} with a {spec.get('decoder', {}).get('type')} decoder"
        )
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    special = {a["id"] for a in spec.get("added_tokens", []) if a.get("special")}
    added = {a["id"] for a in spec.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):  # the embedding may be padded past the tokenizer: llama.cpp wants one per row
        tokens.append(vocab.get(i, f"[PAD{i}]"))
        types.append(3 if i in special else 4 if i in added or i not in vocab else 1)
    merges = spec["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE.get((arch, vocab_size)) or PRE.get((arch, None)) or "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, tid in (
        ("bos", tokenizer.bos_token_id),
        ("eos", tokenizer.eos_token_id),
        ("pad", tokenizer.pad_token_id),
        ("unk", tokenizer.unk_token_id),
    ):
        if tid is not None:
            getattr(writer, f"add_{key}_token_id")(tid)
    writer.add_add_bos_token(False)
    writer.add_add_space_prefix(False)


def write_gguf(loaded: Loaded, out: Path, quant: str = "f16", name: str = "") -> Path:
    """Write the model as one GGUF file; returns its path."""
    from gguf import GGUFWriter, LlamaFileType

    if quant not in QUANTS:
        hint = " (k-quants: export f16, then run llama.cpp's `llama-quantize model.gguf out.gguf Q4_K_M`)"
        raise ModelError(
            f"unknown GGUF quantization {quant!r}; valid: {list(QUANTS)}" + hint * ("_k" in quant)
        )
    model = merged(loaded)
    cfg = model.config
    arch = ARCHS.get((cfg.architectures or [type(model).__name__])[0]) or ARCHS.get(type(model).__name__)
    if arch is None:
        raise ModelError(
            f"export to GGUF supports {sorted(ARCHS)}; this model is {type(model).__name__} "
            "(use --format safetensors and llama.cpp's convert_hf_to_gguf.py)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = GGUFWriter(str(tmp), arch.gguf)
    writer.add_name(name or out.stem)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or rope_theta(cfg)))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    vocab_size = model.get_input_embeddings().weight.shape[0]
    writer.add_vocab_size(vocab_size)
    writer.add_file_type(
        {
            "f16": LlamaFileType.MOSTLY_F16,
            "bf16": LlamaFileType.MOSTLY_BF16,
            "q8_0": LlamaFileType.MOSTLY_Q8_0,
            "q4_0": LlamaFileType.MOSTLY_Q4_0,
        }[quant]
    )
    tokenizer_meta(writer, loaded.tokenizer, arch.gguf, vocab_size)
    jinja = loaded.template.to_json().get("jinja") or getattr(loaded.tokenizer, "chat_template", None)
    if jinja:
        writer.add_chat_template(jinja)
    # pixiu's own template (a named format such as chatml renders unlike the tokenizer's Jinja): io reads it back
    writer.add_string(TEMPLATE_KEY, json.dumps(loaded.template.to_json(), ensure_ascii=False))
    for gname, t in tensors(model, arch):
        data, qtype = encode(t, quant, gname)
        writer.add_tensor(gname, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out


def rope_theta(cfg) -> float:
    """transformers 5 keeps rope_theta inside rope_parameters."""
    params = getattr(cfg, "rope_parameters", None) or {}
    return params.get("rope_theta", 10000.0)


def modelfile(gguf: Path, loaded: Loaded) -> Path:
    """An Ollama Modelfile beside the GGUF: FROM, the chat template in Go-template form, stop strings."""
    lines = [f"FROM ./{gguf.name}", f'TEMPLATE """{ollama_template(loaded.template)}"""']
    lines += [f'PARAMETER stop "{s}"' for s in loaded.template.stop]
    path = gguf.with_name("Modelfile")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ollama_template(template) -> str:
    """Ollama's Go template for one turn, cut from pixiu's own rendering of placeholder turns, so every
    template family (a default system prompt included) comes out as the model was trained on it."""
    from pixiu.chat.messages import Conversation, Message

    s, u = "\x00SYSTEM\x00", "\x00PROMPT\x00"
    with_system, _ = template.text(Conversation([Message("system", s), Message("user", u)]), True)
    without, _ = template.text(Conversation([Message("user", u)]), True)
    head_s, rest = with_system.split(u)
    head_u = without.split(u)[0]
    return (
        f"{{{{ if .System }}}}{head_s.replace(s, '{{ .System }}')}{{{{ else }}}}{head_u}{{{{ end }}}}"
        f"{{{{ .Prompt }}}}{rest}{{{{ .Response }}}}"
    )


def cli(argv: list[str]) -> None:
    """pixiu export MODEL --format gguf|safetensors [--quant q8_0] [--ollama] --out PATH"""
    import argparse

    from pixiu.config import ModelConfig
    from pixiu.model import io

    p = argparse.ArgumentParser(prog="pixiu export", description=cli.__doc__)
    p.add_argument(
        "model", help="checkpoint dir (LoRA adapters are merged), HF dir, .gguf file, or smollm2-135m"
    )
    p.add_argument("--format", default="gguf", choices=["gguf", "safetensors"])
    p.add_argument("--quant", default="f16", help=f"GGUF tensor type: one of {list(QUANTS)}")
    p.add_argument("--out", required=True, help="the .gguf file, or the directory for safetensors")
    p.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile beside the GGUF")
    p.add_argument("--template", default="default", help="chat template name (default: the model's own)")
    a = p.parse_args(argv)
    loaded = io.load(ModelConfig(a.model, dtype="fp32", template=a.template))
    if a.format == "safetensors":
        print(f"saved {io.save(a.out, loaded, merge=True)}")
        return
    out = write_gguf(loaded, Path(a.out), a.quant)
    print(f"saved {out} ({out.stat().st_size / 2**20:.1f} MiB, {a.quant})")
    if a.ollama:
        print(f"saved {modelfile(out, loaded)}  (then: ollama create NAME -f {out.with_name('Modelfile')})")
