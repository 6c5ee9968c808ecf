"""SFT / PT stage smoke tests on the tiny model: parameters change, loss drops, checkpoints reload, resume is exact."""

import json

import pytest
import torch
from interrupt import killed_after
from safetensors.torch import load_file

from pixiu import config
from pixiu.chat import Conversation
from pixiu.config import ModelConfig
from pixiu.engine import Sampling, generate
from pixiu.model import io
from pixiu.train import sft

QA = [
    ("hi", "hello there"),
    ("what is two plus two", "two plus two is four"),
    ("你好", "你好，我是一个助手。"),
    ("thanks", "you are welcome"),
    ("is it good", "yes it is good"),
    ("help me please", "sure, how can I help"),
]


def write_data(path, n=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in (QA * (n // len(QA) + 1))[:n]
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def make_cfg(tmp_path, model_dir, *extra, run="run"):
    data = write_data(tmp_path / "sft.jsonl")
    return config.load(
        None,
        [
            f"--model.name_or_path={model_dir}",
            "--model.dtype=fp32",
            f"--data.path={data}",
            "--data.eval_size=8",
            "--data.max_len=128",
            f"--train.output_dir={tmp_path / run}",
            "--train.lr=3e-3",
            "--train.batch_size=4",
            "--train.max_steps=8",
            "--train.warmup_ratio=0",
            "--train.eval_every=4",
            *extra,
        ],
    )


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("lora", [0, 8])
def test_sft_trains_saves_and_reloads(tmp_path, tiny_model_dir, lora):
    cfg = make_cfg(tmp_path, tiny_model_dir, f"--lora.r={lora}")
    final = sft.run(cfg)
    rows = metrics(tmp_path / "run")
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 8
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"]
    assert (final / ("adapter_model.safetensors" if lora else "model.safetensors")).exists()
    assert config.load(tmp_path / "run" / "config.yaml") == cfg
    before = load_file(tiny_model_dir / "model.safetensors")
    reloaded = io.load(ModelConfig(str(final), dtype="fp32"))
    changed = [
        n
        for n, p in io.unwrap(reloaded.model).named_parameters()
        if n in before and not torch.equal(p, before[n])
    ]
    assert changed if not lora else not changed  # LoRA leaves the base untouched
    conv = Conversation.from_openai([{"role": "user", "content": "hi"}])
    assert generate(reloaded, [conv], Sampling(max_new_tokens=5)) == generate(reloaded, [conv], Sampling(5))


def test_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    """Interrupt right after the step-4 checkpoint, resume: weights and loss curve equal the uninterrupted run's."""
    full = sft.run(make_cfg(tmp_path, tiny_model_dir, "--lora.r=4", "--lora.dropout=0.1", run="a"))
    cut = make_cfg(
        tmp_path, tiny_model_dir, "--lora.r=4", "--lora.dropout=0.1", "--train.save_every=4", run="b"
    )
    with killed_after(4):
        sft.run(cut)
    resumed = sft.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]))
    a, b = load_file(full / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [r["loss"] for r in metrics(tmp_path / "a") if "loss" in r]
    lb = [r["loss"] for r in metrics(tmp_path / "b") if "loss" in r]
    assert la == lb and len(la) == 8


def test_pt_trains_on_raw_text(tmp_path, tiny_model_dir):
    text = tmp_path / "corpus.jsonl"
    text.write_text(
        "".join(
            json.dumps({"text": f"the quick brown fox {i} jumps over the lazy dog"}) + "\n" for i in range(40)
        )
    )
    cfg = make_cfg(tmp_path, tiny_model_dir, f"--data.path={text}")
    sft.run(cfg, stage="pt")
    rows = metrics(tmp_path / "run")
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"]


def test_bf16_lora_saves_its_inputs_in_bf16(tiny_model_dir):
    """Under pixiu's autocast a LoRA layer's input stays bf16 for the backward: peft alone casts it up to the fp32
    adapter weights, so with LoRA dropout on (the default) every LoRA'd linear keeps fp32 tensors of its
    input. Without dropout the two paths compute the same loss and gradients."""
    from pixiu.config import LoraConfig
    from pixiu.data.collate import collate
    from pixiu.model import TargetLM
    from pixiu.model.forward import autocast

    conv = Conversation.from_openai(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    )

    def run(dropout: float, pixiu_autocast: bool):
        torch.manual_seed(0)  # the same LoRA init (and dropout masks) in every run
        lora = LoraConfig(r=4, dropout=dropout)
        loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="bf16"), lora, for_training=True)
        model = TargetLM(loaded.model).train()
        batch = collate([[loaded.template.render(conv)]] * 2, loaded.tokenizer.pad_token_id)
        cpu = torch.device("cpu")
        ctx = (
            autocast(torch.bfloat16, cpu, model) if pixiu_autocast else torch.autocast("cpu", torch.bfloat16)
        )
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t), ctx:
            loss = sft.sft_loss(model, batch)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        return loss, grads, sum(t.numel() for t in saved if t.dtype == torch.float32)

    assert run(0.1, True)[2] < run(0.1, False)[2] / 2  # fp32 elements kept for the backward
    loss, grads, _ = run(0.0, True)
    peft_loss, peft_grads, _ = run(0.0, False)
    assert loss.item() == pytest.approx(peft_loss.item(), rel=1e-3)
    for g, h in zip(grads, peft_grads):
        torch.testing.assert_close(g, h)


def test_chunked_target_logps_equal_one_pass(tiny_model_dir):
    """With the head frozen (LoRA), log p(target) computed in checkpointed chunks equals one pass over all
    targets, and so do the gradients it sends back."""
    from pixiu.config import LoraConfig
    from pixiu.data.collate import collate
    from pixiu.model import TargetLM
    from pixiu.model.forward import at_targets, hidden_states

    torch.manual_seed(0)
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), LoraConfig(r=4, dropout=0.0), True)
    model = TargetLM(loaded.model)
    for p in model.parameters():  # a trained-looking adapter, so its gradients are not all zero
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.1)
    conv = Conversation.from_openai(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there, how are you?"}]
    )
    batch = collate([[loaded.template.render(conv)]] * 3, loaded.tokenizer.pad_token_id)

    def run(chunk: int):
        states = at_targets(hidden_states(model.lm, batch), batch)
        logps = model.target_logps(states, model.targets(batch), chunk=chunk)
        logps.sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        return logps.detach(), grads

    one, one_grads = run(10_000)
    chunked, chunked_grads = run(2)
    assert len(one) > 2 and torch.allclose(one, chunked, atol=1e-6)
    assert len(one_grads) == len(chunked_grads) > 0
    for g, h in zip(one_grads, chunked_grads):
        torch.testing.assert_close(g, h, atol=1e-5, rtol=1e-4)  # fp32 summation order
