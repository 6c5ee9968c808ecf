"""Parity with TRL: pixiu's DPO loss, chosen / rejected rewards, margin and reward accuracy equal TRL `DPOTrainer`'s
on the same tiny model and batch. TRL runs its own code end to end: its tokenization and collator, its reference
model forward and its `_compute_loss`; pixiu runs its stage code: cached reference pass, `Groups` batch, policy
forward and judge. TRL is a dev dependency; the test skips where it is absent."""

import pytest
import torch

from pixiu.chat.templates import Rendered
from pixiu.config import ModelConfig, PrefConfig
from pixiu.model import TargetLM, io
from pixiu.train import pref

trl = pytest.importorskip("trl")

PAIRS = [
    ("hi", "hello there", "no. maybe. no."),
    ("what is two plus two", "two plus two is four", "five"),
    ("thanks", "you are welcome", "no"),
    ("help me please", "sure, how can I help", "I will not help you with that today"),
]


def nudge(model, seed=0, scale=0.05) -> None:
    """Move the policy off the reference the same way on both sides, so rewards differ from 0 in both signs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(io.unwrap(model).named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize("shared", [False, True], ids=["row-per-reply", "shared-prompt"])
def test_dpo_matches_trl_dpo_trainer(tmp_path, tiny_model_dir, tokenizer, shared):
    from accelerate import Accelerator
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    beta = 0.1
    rows = [
        {
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
        }
        for q, c, r in PAIRS
    ]
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl"),
        beta=beta,
        per_device_train_batch_size=len(rows),
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
    )
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trainer = trl.DPOTrainer(
        model=policy, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    examples = [trainer.train_dataset[i] for i in range(len(rows))]
    inputs = trainer.data_collator(examples)
    nudge(trainer.model)  # TRL's reference model was loaded separately from the same directory: it stays put
    trainer.model.train()
    trl_loss = trainer._compute_loss(trainer.model, inputs, return_outputs=False).item()
    got = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    # pixiu on the very same token ids: prompt + reply, loss on the reply (TRL's completion mask)
    groups = [
        [
            Rendered(e["prompt_ids"] + e[k], [0] * len(e["prompt_ids"]) + [1] * len(e[k]))
            for k in ("chosen_ids", "rejected_ids")
        ]
        for e in examples
    ]
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    model, acc, pad = TargetLM(loaded.model), Accelerator(cpu=True), tokenizer.pad_token_id
    data = pref.Groups(groups, pad, batch_size=len(groups), shared_prefix=shared)
    ref = pref.reference_logps(model, data, acc, torch.float32, adapter_off=False)
    data.extra["ref_logps"] = pref.nest(ref, groups)
    nudge(loaded.model)
    method = pref.METHODS["dpo"](PrefConfig(loss="sigmoid", beta=beta), lambda t: t)
    batch = data.batch(list(range(len(groups))))
    logps, counts = method.forward(model, batch.tokens)
    judged = method.judge(logps, counts, batch.extra, batch.sizes)
    ours = pref.metrics(judged, prefix="")

    assert 0 < got["rewards/accuracies"] < 1  # a batch where some pairs are ranked right and some wrong
    assert judged.loss.mean().item() == pytest.approx(trl_loss, abs=1e-6)
    assert ours["loss"] == pytest.approx(trl_loss, abs=1e-4)
    assert judged.chosen.mean().item() == pytest.approx(got["rewards/chosen"], abs=1e-6)
    assert judged.rejected.mean().item() == pytest.approx(got["rewards/rejected"], abs=1e-6)
    assert ours["margin"] == pytest.approx(got["rewards/margins"], abs=1e-4)
    assert ours["reward_accuracy"] == pytest.approx(got["rewards/accuracies"], abs=1e-4)
    assert logps.view(-1, 2)[:, 0].mean().item() == pytest.approx(got["logps/chosen"], abs=1e-4)
