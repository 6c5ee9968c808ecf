"""GRPO / RLOO: hand-derived loss and advantages, a reward that favours tokens raises their probability, the
checkpoint reloads as the trained policy, and resume replays the uninterrupted run exactly."""

import json
import math

import pytest
import torch
from interrupt import killed_after
from safetensors.torch import load_file

from pixiu import config, losses
from pixiu.chat.messages import Conversation, Message
from pixiu.config import ModelConfig
from pixiu.data import tasks
from pixiu.data.tasks import Example
from pixiu.model import io
from pixiu.train import grpo, prefix

FAVOURED = set("abcdefghijklm")  # a reply that starts with one of these letters earns 1


@tasks.register("toy_first_letter")
class FirstLetter(tasks.Task):
    """One-token replies; reward 1 when the reply starts with a favoured letter: P(reward) is exactly the policy's
    probability mass on the favoured tokens after the prompt, so the test can measure it without sampling."""

    questions = ["hello there", "what is two plus two", "thanks", "help me please", "is it good", "hi"]

    def examples(self, split: str) -> list[Example]:
        return [
            Example(Conversation([Message("system", "be brief"), Message("user", q)]), "")
            for q in self.questions
        ]

    def evaluate(self, conversation: Conversation, reply: str) -> float:
        return float(reply[:1] in FAVOURED)


# ---------------------------------------------------------------- the math


def test_grpo_loss_hand_derived():
    """Four reply tokens, clip ε = 0.2, β = 0.1:
    t1: ρ = 0.5/0.25 = 2, A = +1 -> min(2, 1.2) = 1.2          -> -1.2   (clipped: no gain past 1+ε)
    t2: ρ = 2,            A = -1 -> min(-2, -1.2) = -2          -> +2.0   (a bad token made likelier pays in full)
    t3: ρ = 1,            A = 0.5                               -> -0.5
    t4: ρ = 0.25/0.5=0.5, A = +1 -> min(0.5, 0.8) = 0.5         -> -0.5
    policy term = -1.2 + 2.0 - 0.5 - 0.5 = -0.2.
    k3 with log r = log π_ref - log π: t1 (ref 0.25, π 0.5): r = 0.5, 0.5 - 1 - ln 0.5 = 0.193147; t2 same;
    t3, t4 (ref = π): 0. KL term = 0.1 * 2 * 0.193147 = 0.0386294.  Total = -0.1613706."""
    logps = torch.log(torch.tensor([0.5, 0.5, 0.3, 0.25]))
    old = torch.log(torch.tensor([0.25, 0.25, 0.3, 0.5]))
    ref = torch.log(torch.tensor([0.25, 0.25, 0.3, 0.25]))
    adv = torch.tensor([1.0, -1.0, 0.5, 1.0])
    assert losses.get_loss("grpo") is losses.grpo
    assert losses.grpo(logps, old, adv, clip=0.2).item() == pytest.approx(-0.2, abs=1e-6)
    kl = 0.5 - 1 - math.log(0.5)
    total = losses.grpo(logps, old, adv, ref, clip=0.2, beta=0.1)
    assert total.item() == pytest.approx(-0.2 + 0.1 * 2 * kl, abs=1e-6)


def test_one_update_gradient_is_advantage_times_score():
    """With π_old = π (one update per rollout) the ratio is 1 and d loss / d logp_t = -A_t exactly."""
    logps = torch.log(torch.tensor([0.5, 0.2, 0.9])).requires_grad_()
    adv = torch.tensor([1.0, -2.0, 0.5])
    losses.grpo(logps, logps.detach(), adv, clip=0.2).backward()
    assert torch.allclose(logps.grad, -adv)


def test_advantages_worked_example():
    """Group 1 rewards [1, 0, 0, 1]: mean 0.5, unbiased std sqrt((4 * 0.25) / 3) = 0.57735, so GRPO gives
    ±0.5 / (0.57735 + 1e-4) = ±0.86588; Dr GRPO (no std) ±0.5; RLOO: 1 - (0 + 0 + 1)/3 = 2/3, 0 - 2/3 = -2/3.
    Group 2, all 1: every estimator gives 0 (no signal from a group that agrees)."""
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert torch.allclose(grpo.advantages(r, "grpo", True), torch.tensor([[a, -a, -a, a], [0.0] * 4]))
    assert torch.allclose(
        grpo.advantages(r, "grpo", False), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4])
    )
    two = 2 / 3
    assert torch.allclose(grpo.advantages(r, "rloo", True), torch.tensor([[two, -two, -two, two], [0.0] * 4]))
    # RLOO is K/(K-1) times the centred reward, for any rewards
    x = torch.tensor([[3.0, -1.0, 0.5]])
    assert torch.allclose(losses.rloo_advantages(x), 1.5 * (x - x.mean()))


def test_step_prompts_cover_each_epoch_once():
    seen = [i for s in range(5) for i in grpo.step_prompts(10, 2, seed=3, step=s)]
    assert sorted(seen) == list(range(10))
    assert grpo.step_prompts(10, 4, 3, 7) == grpo.step_prompts(10, 4, 3, 7)


# ---------------------------------------------------------------- the stage


def make_cfg(tmp_path, model_dir, *extra, run="run"):
    return config.load(
        None,
        [
            f"--model.name_or_path={model_dir}",
            "--model.dtype=fp32",
            "--lora.r=8",
            "--lora.alpha=16",
            "--lora.dropout=0",
            "--data.max_len=160",
            f"--train.output_dir={tmp_path / run}",
            "--train.lr=3e-2",
            "--train.schedule=constant",
            "--train.warmup_ratio=0",
            "--train.batch_size=16",
            "--train.max_steps=6",
            "--grpo.task=toy_first_letter",
            "--grpo.group_size=8",
            "--grpo.prompts_per_step=4",
            "--grpo.kl_coef=0.02",
            "--grpo.eval_size=6",
            "--gen.max_new_tokens=1",
            "--gen.temperature=1.0",
            *extra,
        ],
    )


def favoured_mass(model_dir) -> float:
    """Mean probability, over the toy prompts, that the first reply token starts with a favoured letter."""
    loaded = io.load(ModelConfig(str(model_dir), dtype="fp32"))
    tok = loaded.tokenizer
    ids = [i for i in range(len(tok)) if tok.decode([i]).strip()[:1] in FAVOURED]
    total = 0.0
    with torch.no_grad():
        for ex in FirstLetter().examples("train"):
            prompt = torch.tensor([loaded.template.prompt_ids(ex.prompt)])
            probs = loaded.model(input_ids=prompt).logits[0, -1].softmax(-1)
            total += probs[ids].sum().item()
    return total / len(FirstLetter.questions)


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_reward_favouring_tokens_raises_their_probability(tmp_path, tiny_model_dir, stage):
    """Full fine-tuning (a random tiny model's near-uniform head moves too slowly through LoRA for a fast test)
    with kl_coef > 0: the frozen reference is a second model, and KL to it is logged. Seen with the engine's
    sampling, train.seed 0-3: favoured mass 0.125 -> 0.44-0.99 after 16 steps (after 8 it was 0.18-0.53, too close
    to the bar for some seeds); the bar is +0.15."""
    before = favoured_mass(tiny_model_dir)
    cfg = make_cfg(tmp_path, tiny_model_dir, "--lora.r=0", "--train.lr=1e-2", "--train.max_steps=16")
    final = grpo.run(cfg, stage)
    after = favoured_mass(final)  # through the saved checkpoint: it reloads as the trained policy
    assert before < 0.2 and after > before + 0.15, (before, after)
    rows = metrics(tmp_path / "run")
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 16
    assert rows[0]["eval_reward"] < rows[-1]["eval_reward"] == 1.0  # greedy replies all start favoured
    for key in ("reward", "accuracy", "kl", "reply_len", "gen_s", "train_s", "loss", "lr", "flat_groups"):
        assert key in rows[-1], key
    assert rows[1]["kl"] == 0 < rows[-1]["kl"] and rows[1]["reply_len"] == 1.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stage"] == stage and summary["prompts"]["train"] == 6
    assert config.load(tmp_path / "run" / "config.yaml") == cfg


def test_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    """Kill right after the step-2 checkpoint and resume: same replies sampled (same rewards), same weights."""
    extra = ("--train.max_steps=3", "--grpo.eval_size=0", "--grpo.epochs=2", "--grpo.prompts_per_step=2")
    full = grpo.run(make_cfg(tmp_path, tiny_model_dir, *extra, run="a"))
    cut = make_cfg(tmp_path, tiny_model_dir, *extra, "--train.save_every=2", run="b")
    with killed_after(2):
        grpo.run(cut)
    resumed = grpo.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]))
    a, b = load_file(full / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keys = ("step", "reward", "loss", "kl", "clip_frac")
    ra = [{k: r[k] for k in keys} for r in metrics(tmp_path / "a")]
    rb = [{k: r[k] for k in keys} for r in metrics(tmp_path / "b")]
    assert ra == rb and len(ra) == 3
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in a.items())  # B starts at 0
    assert any(r["clip_frac"] > 0 for r in ra)  # the second update per rollout moves past the clip


def test_prompts_from_data_and_bad_settings(tmp_path, tiny_model_dir):
    """Prompt records from data.path are scored by the task (answers recomputed); too-long prompts are counted."""
    data, held = tmp_path / "prompts.jsonl", tmp_path / "held.jsonl"
    rows = [{"prompt": f"What is {a} + {a}?"} for a in range(10, 22)] + [
        {"prompt": "What is 1 + 1?" + " x" * 80}
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    held.write_text("".join(json.dumps({"prompt": f"What is {a} - 3?"}) + "\n" for a in range(4)))
    cfg = make_cfg(tmp_path, tiny_model_dir, "--grpo.task=arithmetic", f"--data.path={data}",
                   f"--data.eval_path={held}", "--train.max_steps=1", "--gen.max_new_tokens=4")  # fmt: skip
    grpo.run(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["prompts"] == {"train": 13, "held_out": 4, "skipped_too_long": 1}
    assert summary["first"]["eval_n"] == 4
    with pytest.raises(config.ConfigError, match="temperature"):
        grpo.run(make_cfg(tmp_path, tiny_model_dir, "--gen.temperature=0"))
    with pytest.raises(config.ConfigError, match="group_size"):
        make_cfg(tmp_path, tiny_model_dir, "--grpo.group_size=1")


def test_kl_weight_is_kl_coef_and_beta_still_reads(tmp_path, capsys):
    """One name for the KL weight in PPO and GRPO (kl_coef); grpo.beta, from recipes before, still sets it, with a
    note, from the command line and from a recipe; the new name wins when both are given."""
    assert config.load(None, ["--grpo.beta=0.3"]).grpo.kl_coef == 0.3
    assert "grpo.beta is deprecated, use grpo.kl_coef" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("grpo:\n  beta: 0.2\n")
    assert config.load(recipe).grpo.kl_coef == 0.2
    assert config.load(recipe, ["--grpo.kl_coef=0.1"]).grpo.kl_coef == 0.1
    assert "beta" not in config.to_dict(config.load(recipe))["grpo"]  # saved configs use the new name


def test_prefix_forward_equals_full_rows(tiny_model_dir):
    """Running the prompt once and sharing its cache gives the logits and gradients of K full-row forwards."""
    from pixiu.chat.templates import Rendered
    from pixiu.config import LoraConfig
    from pixiu.data.collate import collate
    from pixiu.model import TargetLM

    loaded = io.load(
        ModelConfig(str(tiny_model_dir), dtype="fp32"), LoraConfig(r=4, dropout=0.0), for_training=True
    )
    torch.manual_seed(0)
    for n, p in loaded.model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)  # B starts at 0: make the adapter matter
    prompt, replies = [5, 17, 42, 9, 33], [[7, 8, 9], [11], [12, 13]]
    group = grpo.Rollouts([prompt], replies, *(torch.zeros(1, 3),) * 2, torch.tensor([1.0, -1.0, 0.5]),
                          torch.tensor([3, 1, 2]), torch.ones(3))  # fmt: skip
    (batch,) = grpo.group_batches(group, pad_id=0, device="cpu")
    assert prefix.token_advantages(batch).tolist() == [1.0, 1.0, 1.0, -1.0, 0.5, 0.5]
    assert batch.sizes == [3] and batch.tokens.input_ids.shape == (3, 8)  # one group: 3 rows of 5 + up to 3
    logits, targets = prefix.PrefixLM(loaded.model)(batch)
    rows = [Rendered(prompt + r, [0] * len(prompt) + [1] * len(r)) for r in replies]
    ref_logits, ref_targets = TargetLM(loaded.model)(collate([[r] for r in rows], pad_id=0))
    assert targets.tolist() == ref_targets.tolist() == [7, 8, 9, 11, 12, 13]
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    lora = [p for n, p in loaded.model.named_parameters() if "lora_A" in n and "layers.0." in n]
    (g1,) = torch.autograd.grad(logits.logsumexp(-1).sum(), lora[:1])
    (g2,) = torch.autograd.grad(ref_logits.logsumexp(-1).sum(), lora[:1])
    assert torch.allclose(g1, g2, atol=1e-5)
