"""Every PEFT method (`lora.method`): 20 SFT steps on the tiny model change every trained tensor, the saved
checkpoint reloads with the same logits, pixiu's forward matches peft's own, merging keeps the logits (or fails
clearly for prefix tuning); LoRA+ learning rates, AdaLoRA's rank allocation, and clear errors for the stages a
method cannot run in."""

import pytest
import torch
from test_sft import make_cfg

from pixiu import config
from pixiu.batch import collate
from pixiu.chat import Conversation
from pixiu.config import ConfigError, ModelConfig
from pixiu.model import adapters, io
from pixiu.model.forward import base_lm, hidden_states
from pixiu.train import sft
from pixiu.train.loop import Optimizer

RUNS = {  # name -> overrides
    "lora": ["--lora.method=lora"],
    "rslora": ["--lora.method=rslora"],
    "dora": ["--lora.method=dora"],
    "pissa": ["--lora.method=pissa"],
    "olora": ["--lora.method=olora"],
    "loraplus": ["--lora.method=lora", "--lora.loraplus_lr_ratio=16"],
    "adalora": ["--lora.method=adalora", "--lora.adalora_target_r=2"],
    "ia3": ["--lora.method=ia3", "--train.lr=3e-2"],
    "prefix": ["--lora.method=prefix", "--lora.virtual_tokens=4"],
    "ptuning_v2": ["--lora.method=ptuning_v2", "--lora.virtual_tokens=4"],
}
PROMPT = ("prefix", "ptuning_v2")


def test_registry_matches_config():
    assert set(adapters.METHODS) == set(config.PEFT_METHODS)


def probe(tokenizer):
    """Two right-padded rows of different lengths: padding and the prefix mask both matter."""
    convs = [
        Conversation.from_openai(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        ),
        Conversation.from_openai([{"role": "user", "content": "what is two plus two"}]),
    ]
    from pixiu.chat.templates import get_template

    template = get_template("default", tokenizer)
    return collate([[template.render(c)] for c in convs], tokenizer.pad_token_id)


def logits(lm, batch) -> torch.Tensor:
    """(B, T, V) through pixiu's forward (hidden_states + head), as every stage computes them."""
    lm.eval()
    with torch.no_grad():
        return base_lm(lm).get_output_embeddings()(hidden_states(lm, batch))


def peft_logits(lm, batch) -> torch.Tensor:
    with torch.no_grad():
        return lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


@pytest.fixture
def capture(monkeypatch):
    """The adapter model the stage builds, with a copy of its trainable tensors at birth."""
    seen = {}
    build = io.add_lora

    def add_lora(model, lora):
        lm = build(model, lora)
        seen["lm"] = lm
        seen["start"] = {n: p.detach().clone() for n, p in lm.named_parameters() if p.requires_grad}
        return lm

    monkeypatch.setattr(io, "add_lora", add_lora)
    return seen


@pytest.mark.parametrize("name", list(RUNS))
def test_method_trains_saves_reloads_merges(name, tmp_path, tiny_model_dir, capture):
    args = [
        "--lora.r=4",
        "--lora.dropout=0",
        "--train.max_steps=20",
        "--data.eval_size=0",
        "--train.batch_size=4",
    ]
    cfg = make_cfg(tmp_path, tiny_model_dir, *args, *RUNS[name])
    final = sft.run(cfg)
    lm = capture["lm"]
    trained = dict(lm.named_parameters())
    same = [n for n, p in capture["start"].items() if torch.equal(p, trained[n].detach())]
    if name == "adalora":  # pruned singular values are zero, as they started: most still moved
        assert len(same) < len(capture["start"]) / 2, same
    else:
        assert not same, f"{name}: tensors unchanged after 20 steps: {same[:4]}"
    reloaded = io.load(ModelConfig(str(final), dtype="fp32"))
    batch = probe(reloaded.tokenizer)
    mine, again = logits(lm, batch), logits(reloaded.model, batch)
    assert (mine - again).abs().max() <= 1e-5, f"{name}: reload changed the logits"
    if name not in ("pissa", "olora", "adalora"):  # saved in another form: plain LoRA over the untouched
        assert torch.equal(mine, again)  # base (PiSSA, OLoRA), pruned ranks cut out (AdaLoRA)
    mask = batch.attention_mask.bool()  # padded positions differ by design (peft lets them see the prefix)
    assert torch.allclose(mine[mask], peft_logits(reloaded.model, batch)[mask], atol=1e-5)
    if name in PROMPT:
        with pytest.raises(io.ModelError, match="cannot be merged"):
            io.save(tmp_path / "merged", reloaded, merge=True)
        return
    io.save(tmp_path / "merged", reloaded, merge=True)
    merged = io.load(ModelConfig(str(tmp_path / "merged"), dtype="fp32"))
    assert not hasattr(merged.model, "peft_config")
    assert (logits(merged.model, batch) - again).abs().max() <= 1e-5, f"{name}: merging changed the logits"


def test_loraplus_param_groups(tiny_model_dir):
    lora = config.LoraConfig(r=4, loraplus_lr_ratio=16)
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), lora, for_training=True)
    params = [p for p in loaded.model.parameters() if p.requires_grad]
    opt = Optimizer(params, config.TrainConfig(lr=1e-3), accelerator=None)
    opt.lr = 2e-3
    names = {id(p): n for n, p in loaded.model.named_parameters()}
    lrs = {names[id(p)].split(".")[-3]: g["lr"] for g in opt.torch.param_groups for p in g["params"]}
    assert lrs == {"lora_A": 2e-3, "lora_B": 2e-3 * 16} and opt.lr == 2e-3


def test_adalora_allocates_ranks(tmp_path, tiny_model_dir, capture):
    cfg = make_cfg(
        tmp_path,
        tiny_model_dir,
        "--lora.method=adalora",
        "--lora.r=4",
        "--lora.adalora_target_r=2",
        "--train.max_steps=20",
        "--data.eval_size=0",
    )
    sft.run(cfg)
    peft_cfg = capture["lm"].peft_config["default"]
    assert peft_cfg.total_step == 20 and peft_cfg.tinit == 2 and peft_cfg.tfinal == 4
    ranks = [int(sum(mask)) for mask in peft_cfg.rank_pattern.values()]
    assert sum(ranks) == 2 * len(ranks)  # the budget: target_r per module on average, spread unevenly
    assert max(ranks) > min(ranks) or set(ranks) == {2}


@pytest.mark.parametrize(
    ("method", "stage", "words"),
    [
        ("prefix", "ppo", "KV cache"),
        ("ptuning_v2", "grpo", "KV cache"),
        ("pissa", "ppo", "residual"),
        ("olora", "rloo", "residual"),
        ("adalora", "ppo", "optimizer updates"),
    ],
)
def test_unsupported_stage_is_a_clear_error(method, stage, words):
    cfg = config.load(None, [f"--lora.method={method}", "--lora.r=4"])
    with pytest.raises(ConfigError, match=rf"lora.method={method} does not work in `{stage}`: .*{words}"):
        adapters.check(cfg, stage)
    adapters.check(cfg, "sft")  # and fine where it works
    adapters.check(cfg, "rm")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--lora.method=ia3"], "lora.method=ia3 trains adapters: set lora.r > 0"),
        (["--lora.method=qlora", "--lora.r=4"], r"lora.method='qlora' is not one of \['lora', 'rslora'"),
        (["--lora.method=ia3", "--lora.r=4", "--lora.loraplus_lr_ratio=16"], "needs a LoRA-family method"),
    ],
)
def test_bad_lora_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.load(None, overrides)


def test_prefix_cannot_merge_or_use_flash():
    cfg = config.load(None, ["--lora.method=prefix", "--lora.r=4", "--train.merge_lora=true"])
    with pytest.raises(ConfigError, match="lora.method=prefix cannot merge"):
        adapters.check(cfg, "sft")
    cfg = config.load(
        None, ["--lora.method=prefix", "--lora.r=4", "--model.attn_implementation=flash_attention_2"]
    )
    with pytest.raises(ConfigError, match="attn_implementation=sdpa"):
        adapters.check(cfg, "dpo")
