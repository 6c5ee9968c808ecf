"""Vocabulary extension (`pixiu data extend-vocab`, model/vocab.py) and continued pretraining of the new rows, on
the tiny tokenizer and model of conftest.py."""

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pixiu import config
from pixiu.config import ModelConfig
from pixiu.data import vocab as vocab_cli
from pixiu.model import io, vocab
from pixiu.train import sft

WORDS = ["我们", "今天", "学习", "中文", "天气", "很好", "朋友", "喜欢", "北京", "工作", "时间", "问题"]
# Every ordered pair of words, in sentences of four: the corpus and held-out text share words, not sentences.
PAIRS = ["".join(p) for p in itertools.permutations(WORDS, 2)]
SENTENCES = ["".join(PAIRS[i : i + 2]) + "。" for i in range(0, len(PAIRS), 2)]
TRAIN, HELD = SENTENCES[::2], SENTENCES[1::2]
ZH = Path(__file__).resolve().parents[2] / "shared/data/alpaca_zh/alpaca_data_zh_0-9407_translated.json"


def tokens_per_char(tok, texts) -> float:
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) / sum(map(len, texts))


def test_bpe_merge_split_matches_the_tokenizers_library(tokenizer):
    """`vocab.bpe` reproduces the tokenizer's own split of a pre-token: the rule that decides what gets added."""
    doc = json.loads(tokenizer.backend_tokenizer.to_str())
    ranks = {p: i for i, p in enumerate(vocab._pairs(doc["model"]["merges"]))}
    for word in ["Hello", "ĠHello", "ä½łå¥½", "Ġquick", "twofour"]:
        assert vocab.bpe(word, ranks) == [t.value for t in tokenizer.backend_tokenizer.model.tokenize(word)]


def test_bpe_extension_keeps_ids_and_cuts_tokens_per_char(tokenizer):
    new, added, _ = vocab.extend_bpe(tokenizer, TRAIN * 3, 60)
    assert 0 < len(added) <= 60 and len(new) == len(tokenizer) + len(added)
    old = tokenizer.get_vocab()
    assert {t: new.get_vocab()[t] for t in old} == old  # every existing id unchanged
    assert sorted(new.get_vocab()[t] for t in added) == list(range(len(tokenizer), len(new)))
    before, after = tokens_per_char(tokenizer, HELD), tokens_per_char(new, HELD)
    assert after < 0.6 * before, (before, after)
    english = "The quick brown fox jumps over the lazy dog."
    assert new(english)["input_ids"] == tokenizer(english)["input_ids"]  # text the base covers: same ids
    assert all(new.decode(new(t)["input_ids"]) == t for t in HELD)  # lossless


def extended(tiny_model_dir, tmp_path, *extra):
    corpus = tmp_path / "zh.jsonl"
    corpus.write_text("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in TRAIN * 3))
    out = tmp_path / "ext"
    vocab_cli.main([str(tiny_model_dir), "--corpus", str(corpus), "--add", "40", "--out", str(out), *extra])
    return out


def test_extend_vocab_checkpoint_new_rows_mean_and_record(tiny_model_dir, tmp_path):
    out = extended(tiny_model_dir, tmp_path)
    old = load_file(tiny_model_dir / "model.safetensors")["model.embed_tokens.weight"]
    new = load_file(out / "model.safetensors")["model.embed_tokens.weight"]
    meta = io.read_meta(str(out))["vocab"]
    n = old.shape[0]
    assert meta["method"] == "bpe" and meta["base_vocab"] == n and meta["first_new_id"] == n
    assert meta["added"] == new.shape[0] - n > 0 and meta["source"] == [str(tmp_path / "zh.jsonl")]
    assert torch.equal(new[:n], old)
    assert torch.allclose(new[n:], old.mean(0).expand(new.shape[0] - n, -1), atol=1e-6)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == new.shape[0]


def test_noise_spreads_the_new_rows(tiny_model_dir, tmp_path):
    out = extended(tiny_model_dir, tmp_path, "--noise_std", "0.01")
    w = load_file(out / "model.safetensors")["model.embed_tokens.weight"]
    n = io.read_meta(str(out))["vocab"]["base_vocab"]
    spread = (w[n:] - w[:n].mean(0)).std().item()
    assert 0.007 < spread < 0.013


def test_save_reload_keeps_the_vocab_and_logits(tiny_model_dir, tmp_path):
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32", device="cpu"))
    new, added, _ = vocab.extend_bpe(loaded.tokenizer, TRAIN * 3, 40)
    info = vocab.Extension("bpe", len(loaded.tokenizer), len(added), len(loaded.tokenizer), 0, ["x"], "mean")
    vocab.extend(loaded, new, info, noise_std=0.02)
    ids = torch.tensor([new(HELD[0])["input_ids"]])
    assert ids.max() >= info.base_vocab  # the sample uses new tokens
    with torch.no_grad():
        before = loaded.model(ids).logits
    io.save(tmp_path / "ckpt", loaded, meta={"vocab": info.to_json()})
    again = io.load(ModelConfig(str(tmp_path / "ckpt"), dtype="fp32", device="cpu"))
    assert len(again.tokenizer) == len(new) and again.tokenizer(HELD[0])["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        assert torch.equal(again.model(ids).logits, before)


def test_too_large_a_vocabulary_is_refused_naming_file_and_sizes(tiny_model_dir, tmp_path):
    with pytest.raises(vocab.VocabError) as e:
        extended(tiny_model_dir, tmp_path, "--max_vocab", "420")
    n = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    assert str(tiny_model_dir / "tokenizer.json") in str(e.value)
    assert f"{n} tokens by 40 gives {n + 40}, over the maximum of 420" in str(e.value)
    assert not (tmp_path / "ext").exists()


def test_pt_with_modules_to_save_trains_the_new_rows(tiny_model_dir, tmp_path):
    ext = extended(tiny_model_dir, tmp_path)
    n = io.read_meta(str(ext))["vocab"]["base_vocab"]
    text = tmp_path / "pt.jsonl"
    text.write_text("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in SENTENCES * 2))
    cfg = config.load(
        None,
        [f"--model.name_or_path={ext}", "--model.dtype=fp32", f"--data.path={text}", "--data.eval_size=4",
         "--data.max_len=64", f"--train.output_dir={tmp_path / 'pt'}", "--train.lr=1e-2", "--train.batch_size=4",
         "--train.max_steps=4", "--train.warmup_ratio=0", "--lora.r=4",
         "--lora.modules_to_save=embed_tokens,lm_head"],
    )  # fmt: skip
    final = sft.run(cfg, stage="pt")
    start = load_file(ext / "model.safetensors")["model.embed_tokens.weight"]
    loaded = io.load(ModelConfig(str(final), dtype="fp32", device="cpu"))
    trained = loaded.model.get_input_embeddings().weight.detach()
    assert not torch.allclose(trained[n:], start[n:], atol=1e-4)  # the new rows moved off their mean
    assert io.read_meta(str(final))["vocab"]["base_vocab"] == n  # the record carries over to the adapter
    assert len(loaded.tokenizer) == trained.shape[0]
    merged = loaded.model.merge_and_unload()
    assert torch.equal(
        merged.get_input_embeddings().weight, merged.get_output_embeddings().weight
    )  # still tied


def test_sentencepiece_merge_appends_pieces(tmp_path):
    if (
        importlib.util.find_spec("sentencepiece") is None
        or importlib.util.find_spec("google.protobuf") is None
    ):
        pytest.skip("needs `pip install sentencepiece protobuf` (the [vocab] extra)")
    import sentencepiece as spm
    from transformers import AutoTokenizer

    def train(name, texts, size):
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=str(tmp_path / name), vocab_size=size,
            model_type="bpe", character_coverage=1.0, byte_fallback=True, minloglevel=2,
        )  # fmt: skip
        return tmp_path / f"{name}.model"

    english = ["the quick brown fox jumps over the lazy dog", "hello world, hello there"] * 20
    (tmp_path / "base").mkdir()  # a Llama 2 style tokenizer: tokenizer.model, converted on load
    (tmp_path / "base" / vocab.SP_FILE).write_bytes(train("base", english + SENTENCES[:2], 300).read_bytes())
    (tmp_path / "base" / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    base = AutoTokenizer.from_pretrained(tmp_path / "base")
    assert len(base) == 300
    zh = train("zh", SENTENCES * 5, 400)
    new, added, merged = vocab.extend_sentencepiece(base, tmp_path / "base", zh)
    assert added and len(new) == len(base) + len(added)
    old = base.get_vocab()
    assert {t: new.get_vocab()[t] for t in old} == old
    assert tokens_per_char(new, HELD) < 0.6 * tokens_per_char(base, HELD)
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / vocab.SP_FILE).write_bytes(merged)
    (tmp_path / "merged" / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    again = AutoTokenizer.from_pretrained(tmp_path / "merged")  # the written tokenizer.model alone
    assert again.get_vocab() == new.get_vocab() and again(HELD[0])["input_ids"] == new(HELD[0])["input_ids"]
    with pytest.raises(vocab.VocabError, match="has no tokenizer.model"):
        vocab.extend_sentencepiece(base, tmp_path, zh)

    from transformers import LlamaConfig, LlamaForCausalLM  # the command on a tiny Llama with that tokenizer

    cfg = LlamaConfig(vocab_size=len(base), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "base")
    run = [str(tmp_path / "base"), "--sp_model", str(zh), "--template", "llama2", "--out"]
    with pytest.raises(
        vocab.VocabError, match="base/tokenizer.model: extending a vocabulary of 300 tokens by"
    ):
        vocab_cli.main([*run, str(tmp_path / "o"), "--max_vocab", "400"])
    vocab_cli.main([*run, str(tmp_path / "out")])
    assert (tmp_path / "out" / vocab.SP_FILE).read_bytes() == merged
    assert io.read_meta(str(tmp_path / "out"))["vocab"]["method"] == "sentencepiece"
    head = load_file(tmp_path / "out" / "model.safetensors")["lm_head.weight"]  # untied: resized, mean-filled
    assert head.shape[0] == len(new) and torch.allclose(head[300:], head[:300].mean(0).expand(len(added), -1))


def pt_cfg(tmp_path, model, run, *extra):
    text = tmp_path / "pt.jsonl"
    text.write_text("".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in SENTENCES * 2))
    return config.load(
        None,
        [f"--model.name_or_path={model}", "--model.dtype=fp32", f"--data.path={text}", "--data.eval_size=0",
         "--data.max_len=64", f"--train.output_dir={tmp_path / run}", "--train.lr=1e-2", "--train.batch_size=4",
         "--train.warmup_ratio=0", "--train.log_every=1", *extra],
    )  # fmt: skip


def test_new_rows_first_then_everything(tiny_model_dir, tmp_path):
    """pt.new_rows_first_steps=2: after 2 steps only the added rows moved; after 4 the rest has moved too."""
    ext = extended(tiny_model_dir, tmp_path)
    n = io.read_meta(str(ext))["vocab"]["first_new_id"]
    start = load_file(ext / "model.safetensors")
    key = "model.embed_tokens.weight"
    for steps, rest_moved in ((2, False), (4, True)):
        cfg = pt_cfg(tmp_path, ext, f"s{steps}", f"--train.max_steps={steps}", "--pt.new_rows_first_steps=2")
        final = load_file(sft.run(cfg, stage="pt") / "model.safetensors")
        assert torch.equal(final[key][:n], start[key][:n]) != rest_moved
        assert not torch.equal(final[key][n:], start[key][n:])
        moved = [k for k in start if k != key and not torch.equal(final[k], start[k])]
        assert bool(moved) == rest_moved, moved
    rows = [json.loads(line) for line in (tmp_path / "s4" / "metrics.jsonl").read_text().splitlines()]
    assert [r["new_rows_only"] for r in rows] == [1, 1, 0, 0]


def test_new_rows_first_needs_an_extended_checkpoint(tiny_model_dir, tmp_path):
    cfg = pt_cfg(tmp_path, tiny_model_dir, "x", "--train.max_steps=1", "--pt.new_rows_first_steps=1")
    with pytest.raises(config.ConfigError, match="has none"):
        sft.run(cfg, stage="pt")


@pytest.mark.slow
def test_smollm2_tokenizer_extended_on_alpaca_zh():
    """SmolLM2's tokenizer, +8000 tokens learned on alpaca_zh rows 0-7999: held-out rows 8000+ take 1.527 tokens
    per character before, 0.583 after (bench/vocab.py measures the same)."""
    if not ZH.is_file():
        pytest.skip("shared alpaca_zh data absent")
    tok = io.load_tokenizer(io.resolve("smollm2-135m"))
    rows = json.loads(ZH.read_text())
    train, held = [vocab_cli.row_text(r) for r in rows[:8000]], [vocab_cli.row_text(r) for r in rows[8000:]]
    new, added, _ = vocab.extend_bpe(tok, train, 8000)
    assert len(added) == 8000
    assert tokens_per_char(tok, held) == pytest.approx(1.5266, abs=1e-3)
    assert tokens_per_char(new, held) == pytest.approx(0.5834, abs=1e-3)


@pytest.mark.slow
def test_shared_chinese_sp_model_merges_into_a_sentencepiece_base(tmp_path):
    """../shared/data/tokenizers/chinese_sp.model merged into a 4,000-piece English SentencePiece base (trained
    here on Alpaca rows 0-2999; no Llama 2 is at hand): 19,442 pieces added, held-out alpaca_zh rows 8000+ take
    0.684 tokens per character instead of 2.510."""
    sp_file = ZH.parents[1] / "tokenizers" / "chinese_sp.model"
    if not (sp_file.is_file() and ZH.is_file()) or importlib.util.find_spec("sentencepiece") is None:
        pytest.skip("needs ../shared/data and `pip install sentencepiece protobuf`")
    import sentencepiece as spm
    from transformers import AutoTokenizer

    english = [
        vocab_cli.row_text(r) for r in json.loads((ZH.parents[1] / "alpaca" / "alpaca_data.json").read_text())
    ]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(english[:3000]), model_prefix=str(tmp_path / "base"), vocab_size=4000,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / vocab.SP_FILE).write_bytes((tmp_path / "base.model").read_bytes())
    (tmp_path / "b" / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    base = AutoTokenizer.from_pretrained(tmp_path / "b")
    new, added, _ = vocab.extend_sentencepiece(base, tmp_path / "b", sp_file)
    assert len(added) == 19442 and len(new) == 4000 + 19442
    assert {t: new.get_vocab()[t] for t in base.get_vocab()} == base.get_vocab()
    held = [vocab_cli.row_text(r) for r in json.loads(ZH.read_text())[8000:]]
    assert tokens_per_char(base, held) == pytest.approx(2.5101, abs=1e-3)
    assert tokens_per_char(new, held) == pytest.approx(0.6844, abs=1e-3)
