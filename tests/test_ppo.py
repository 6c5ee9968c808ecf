"""PPO: loss and advantage math by hand, a token-favouring reward raising that token, one base with adapters
(only policy and critic change), checkpoint reload, exact resume, and bad input. Tiny model, no network."""

import json
import math

import pytest
import torch
from interrupt import killed_after
from safetensors.torch import load_file

from pixiu import config, losses
from pixiu.chat.messages import Conversation
from pixiu.config import ConfigError, LoraConfig, ModelConfig
from pixiu.data import DataError, load_data
from pixiu.data.collate import collate
from pixiu.data.records import Prompt
from pixiu.model import ModelError, TargetLM, heads, io
from pixiu.train import ppo
from pixiu.train.actors import build
from pixiu.train.rollout import RunningMoments, adapt_kl, gae, reply_rows, token_rewards, whiten

TARGET = "今"  # one token of the tiny tokenizer (id 341), about 0.35% likely under the untrained model


def count_target(conversation, reply: str) -> float:
    """The reward of the rise test: how often the reply writes TARGET."""
    return float(reply.count(TARGET))


# ---------------------------------------------------------------- math, by hand


def test_ppo_policy_loss_hand_derived():
    """ε = 0.2. ρ = 1.5, A = +1: max(-1.5, -1.2) = -1.2 (gain capped at 1+ε). ρ = 0.5, A = +2: max(-1.0, -1.6)
    = -1.0 (the unclipped, worse term). ρ = 1.5, A = -1: max(1.5, 1.2) = 1.5. ρ = 0.5, A = -1: max(0.5, 0.8) = 0.8
    (a drop below 1-ε earns nothing more). Sum = -1.2 - 1.0 + 1.5 + 0.8 = 0.1."""
    old = torch.log(torch.tensor([0.2, 0.4, 0.2, 0.4]))
    new = old + torch.log(torch.tensor([1.5, 0.5, 1.5, 0.5]))
    adv = torch.tensor([1.0, 2.0, -1.0, -1.0])
    assert losses.ppo_policy(new, old, adv, 0.2).item() == pytest.approx(0.1, abs=1e-6)
    assert losses.get_loss("ppo_policy") is losses.ppo_policy


def test_ppo_value_loss_hand_derived():
    """ε = 0.2, V_old = 0, R = 1. V = 0.5: (0.5-1)^2 = 0.25, clipped V = 0.2: (0.2-1)^2 = 0.64, max 0.64.
    V = -0.1 (inside the clip): (-1.1)^2 = 1.21 both ways. Loss = 0.5 * (0.64 + 1.21) = 0.925."""
    v, old, ret = torch.tensor([0.5, -0.1]), torch.zeros(2), torch.ones(2)
    assert losses.ppo_value(v, old, ret, 0.2).item() == pytest.approx(0.925, abs=1e-6)


def test_entropy_and_kl_estimates_hand_derived():
    """Entropy: logits (0, 0) -> ln 2; (0, ln 3) -> p = (1/4, 3/4), H = 1/4 ln 4 + 3/4 ln(4/3).
    KL: log π = ln 1/2, log π_ref = ln 1/4, so log r = ln 1/2: k1 = ln 2, k2 = (ln 2)^2 / 2, k3 = (1/2 - 1) + ln 2."""
    h = losses.entropy(torch.tensor([[0.0, 0.0], [0.0, math.log(3)]]))
    assert h.tolist() == pytest.approx([math.log(2), 0.25 * math.log(4) + 0.75 * math.log(4 / 3)], abs=1e-6)
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    ln2 = math.log(2)
    for kind, want in (("k1", ln2), ("k2", ln2**2 / 2), ("k3", -0.5 + ln2)):
        assert losses.kl_estimate(logp, ref, kind).item() == pytest.approx(want, abs=1e-6)


def test_gae_three_tokens_by_hand():
    """Row 1, γ = 0.9, λ = 0.5, r = (0, 0, 1), V = (0.5, 0.6, 0.7), V = 0 after the end:
    δ2 = 1 - 0.7 = 0.3, δ1 = 0.9*0.7 - 0.6 = 0.03, δ0 = 0.9*0.6 - 0.5 = 0.04;
    A2 = 0.3, A1 = 0.03 + 0.45*0.3 = 0.165, A0 = 0.04 + 0.45*0.165 = 0.11425; returns = A + V.
    Row 2 has two tokens, r = (0, 2), V = (1, 1) and garbage in its padding: δ1 = 2 - 1 = 1, δ0 = 0.9 - 1 = -0.1,
    A1 = 1, A0 = -0.1 + 0.45 = 0.35, padding 0."""
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 1.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert adv.tolist() == [pytest.approx([0.11425, 0.165, 0.3]), pytest.approx([0.35, 1.0, 0.0])]
    assert ret.tolist() == [pytest.approx([0.61425, 0.765, 1.0]), pytest.approx([1.35, 2.0, 0.0])]


def test_token_rewards_whitening_moments_and_kl_controller():
    """KL penalty β = 0.5 on per-token k1 = (0.2, 0.4 | 0.6, pad) -> (-0.1, -0.2 | -0.3, 0); score at the last
    real token: row 1 + 1, row 2 + 3. Whitening (1, 2, 3) -> (-1, 0, 1) (mean 2, sample std 1). Moments of
    (1, 2, 3) then (5): mean 11/4, population variance 8.75/4. Controller: KL 9 vs target 6 -> error clipped to
    +0.2 -> β 0.1 * 1.02; KL 3 -> -0.2 -> 0.098."""
    logps = torch.tensor([[0.2, 0.4], [0.6, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    r = token_rewards(torch.tensor([1.0, 3.0]), logps, torch.zeros(2, 2), mask, kl_coef=0.5)
    assert r.tolist() == [pytest.approx([-0.1, 0.8]), pytest.approx([2.7, 0.0])]
    w = whiten(torch.tensor([[1.0, 2.0, 3.0, 7.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert w.tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    m = RunningMoments()
    m.update(torch.tensor([1.0, 2.0, 3.0]))
    m.update(torch.tensor([5.0]))
    assert (m.count, m.mean, m.var) == (4, pytest.approx(2.75), pytest.approx(8.75 / 4))
    assert adapt_kl(0.1, 9.0, 6.0) == pytest.approx(0.102) and adapt_kl(0.1, 3.0, 6.0) == pytest.approx(0.098)


# ---------------------------------------------------------------- stage runs

QA = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
PROMPTS = [
    "hi",
    "what is two plus two",
    "你好",
    "thanks",
    "is it good",
    "help me please",
    "hello world",
    "no",
]


def write_prompts(path, n=32):
    rows = [
        {"prompt": [{"role": "system", "content": "hi"}, {"role": "user", "content": q}]} for q in PROMPTS
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (rows * n)[:n]))
    return path


def make_cfg(tmp_path, model_dir, *extra, run="run"):
    data = write_prompts(tmp_path / "prompts.jsonl")
    return config.load(
        None,
        [
            f"--model.name_or_path={model_dir}",
            "--model.dtype=fp32",
            f"--data.path={data}",
            "--data.eval_size=0",
            "--data.max_len=64",
            f"--train.output_dir={tmp_path / run}",
            "--train.warmup_ratio=0",
            "--train.batch_size=8",
            "--gen.max_new_tokens=8",
            "--ppo.rollout_prompts=8",
            "--ppo.minibatch=4",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def reward_model(tiny_model_dir, tmp_path_factory):
    """A LoRA reward model over the tiny base whose adapter is not a no-op (lora_B nonzero)."""
    torch.manual_seed(1)
    loaded, scalar = heads.load_scalar(ModelConfig(str(tiny_model_dir), dtype="fp32"), LoraConfig(r=4), True)
    with torch.no_grad():
        for n, p in loaded.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return io.save(tmp_path_factory.mktemp("rm") / "final", loaded, head=scalar.head)


def prompt_convs() -> list[Conversation]:
    return [
        Conversation.from_openai([{"role": "system", "content": "hi"}, {"role": "user", "content": q}])
        for q in PROMPTS
    ]


@pytest.fixture(scope="module")
def leaning_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with TARGET at ~5% as a first reply token instead of ~0.35%.

    The random model is near-uniform over 400 tokens, so a few rollouts would hardly ever write TARGET and
    the test would measure luck. Adding c * u / |u|^2 to TARGET's output embedding, u the mean final hidden
    state at the prompts' last position, raises its logit by about c = 2.5 there."""
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    (tid,) = loaded.tokenizer(TARGET, add_special_tokens=False)["input_ids"]
    lm = loaded.model
    with torch.no_grad():
        hidden = [
            lm.model(torch.tensor([loaded.template.prompt_ids(c)])).last_hidden_state[0, -1]
            for c in prompt_convs()
        ]
        u = torch.stack(hidden).mean(0)
        lm.get_output_embeddings().weight[tid] += 2.5 * u / u.norm() ** 2
    return io.save(tmp_path_factory.mktemp("leaning") / "model", loaded)


def p_target(model_dir) -> float:
    """Mean probability of TARGET as the first reply token over the prompts."""
    loaded = io.load(ModelConfig(str(model_dir), dtype="fp32"))
    (tid,) = loaded.tokenizer(TARGET, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ids = [torch.tensor([loaded.template.prompt_ids(c)]) for c in prompt_convs()]
        return float(torch.stack([torch.softmax(loaded.model(x).logits[0, -1], -1)[tid] for x in ids]).mean())


def test_reward_for_a_token_raises_its_probability(tmp_path, leaning_model_dir):
    """Full fine-tuning (separate policy, reference and critic): rewarding TARGET makes it clearly likelier.
    One-token replies, so the reward is exactly the event whose probability is measured (with 8 tokens the rare
    TARGET anywhere in a reply gave a noisy signal: the result depended on the sampling stream).
    A chance test: with train.seed 0, 3, 4, 5 and 6 TARGET went 0.037 -> 0.08-0.27 after 4 steps, with 1, 2 and 7 it
    fell to 0.002-0.003 (seen 2026-12-05, the same with the sampler before and after its head draw); the bar is 2x."""
    cfg = make_cfg(
        tmp_path, leaning_model_dir, "--train.lr=1e-2", "--train.max_steps=4", "--train.batch_size=32",
        "--gen.max_new_tokens=1",
        "--ppo.rollout_prompts=32", "--ppo.minibatch=32", "--ppo.kl_coef=0.01",
        f"--ppo.reward_fn={__name__}:count_target",
    )  # fmt: skip
    before = p_target(leaning_model_dir)
    final = ppo.run(cfg)
    after = p_target(final)
    assert after > 2 * before, (before, after)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert (
        len(rows) == 4
        and {"reward", "kl", "kl_coef", "entropy", "clip_frac", "value_loss"} <= rows[-1].keys()
    )
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the first rollout comes from the reference itself
    assert rows[-1]["reward"] > rows[0]["reward"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["models"] == "separate models" and summary["time"]["gen_s"] > 0


def test_first_update_starts_at_ratio_one(tmp_path, tiny_model_dir, reward_model):
    """The rollout's log-probs (the sampler's own, fp32) equal the first update's forward up to float rounding
    (dropout off), so with one update over the whole batch no ratio is clipped and the loss is -mean(whitened
    advantages) = 0. Full fine-tuning with the RM as a separate model; micro-batches of 3 in the minibatch of 8."""
    cfg = make_cfg(tmp_path, tiny_model_dir, "--train.max_steps=1", "--ppo.ppo_epochs=1", "--ppo.minibatch=8",
                   "--train.batch_size=3", f"--ppo.reward_model={reward_model}")  # fmt: skip
    ppo.run(cfg)
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["clip_frac"] == 0 and row["policy_loss"] == pytest.approx(0, abs=1e-6)
    assert row["kl"] == pytest.approx(0, abs=1e-5)  # sampled from the reference itself (seen: 2.4e-7 nats)
    assert row["updates"] == 1 and row["response_length"] > 1


def test_lora_one_base_only_policy_and_critic_adapters_change(tmp_path, tiny_model_dir, reward_model):
    """Policy, critic and reward model are adapters on ONE base; training moves policy and critic only."""
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"messages": [{"role": "system", "content": "hi"}, *QA]}) + "\n")
    cfg = make_cfg(
        tmp_path, tiny_model_dir, "--lora.r=4", "--train.lr=1e-2", "--train.max_steps=2",
        f"--ppo.reward_model={reward_model}", f"--ppo.reward_fn={__name__}:count_target",
        "--ppo.ptx_coef=0.5", f"--ppo.ptx_path={sft}", "--ppo.adaptive_kl",
    )  # fmt: skip
    actors, loaded, merged = build(cfg)
    actors.eval()
    assert actors.shared and not merged and actors.reward.lm is actors.lm and actors.critic.lm is actors.lm
    assert sum(n.endswith("embed_tokens.weight") for n, _ in actors.named_parameters()) == 1  # one copy
    snap = {n: p.detach().clone() for n, p in actors.named_parameters()}
    prompts, _ = ppo.fit_prompts(load_data(cfg.data, want=Prompt).train, loaded.template, 64, 8)
    ptx = ppo.ptx_rows(cfg, loaded)
    rows = ppo.Trainer(actors, loaded, cfg, count_target, ptx, accelerator()).fit(prompts, tmp_path / "run")
    changed = {n for n, p in actors.named_parameters() if not torch.equal(p, snap[n])}
    trained = {
        n for n, p in actors.named_parameters() if ".default." in n or ".critic." in n or "critic.head" in n
    }
    assert changed == trained  # every policy/critic weight moved; base and reward adapter did not
    assert {"rm_score", "fn_reward", "ptx_loss"} <= rows[-1].keys() and rows[-1]["kl_coef"] != 0.05
    assert rows[-1]["kl"] != 0  # the reference (adapters off) is not the trained policy
    batch = collate(
        [[r] for r in reply_rows(_samples(loaded, [p.prompt for p in prompts[:2]]))],
        loaded.tokenizer.pad_token_id,
    )
    with torch.no_grad():
        want = actors.policy_logits(batch)[0]
    final = ppo.save_policy(tmp_path / "run", actors, loaded, merged, cfg)
    assert sorted(p.name for p in final.iterdir() if p.is_dir()) == []  # no critic/ or reward/ adapter inside
    assert io.read_meta(str(final))["base"] == str(tiny_model_dir.resolve())
    reloaded = io.load(ModelConfig(str(final), dtype="fp32"))
    with torch.no_grad():
        got = TargetLM(reloaded.model)(batch)[0]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("lora", ["--lora.r=4", "--lora.r=0"])
def test_shared_critic_is_a_head_on_the_policy(tmp_path, tiny_model_dir, reward_model, lora):
    """ppo.shared_critic: no critic body of its own; one forward gives exactly the policy's logits and the
    values the critic head reads off the policy's states; training moves the policy and that head only."""
    cfg = make_cfg(tmp_path, tiny_model_dir, lora, "--train.lr=1e-2", "--train.max_steps=2",
                   f"--ppo.reward_model={reward_model}", "--ppo.shared_critic")  # fmt: skip
    actors, loaded, _ = build(cfg)
    actors.eval()
    assert actors.shared_critic and actors.critic.lm is actors.lm
    assert not any(".critic." in n for n, _ in actors.named_parameters())
    head = io.load_head(str(reward_model))  # critic_from_rm: the head starts as the reward model's
    torch.testing.assert_close(
        actors.critic.head.weight.detach(), head["weight"].to(actors.critic.head.weight)
    )
    prompts, _ = ppo.fit_prompts(load_data(cfg.data, want=Prompt).train, loaded.template, 64, 8)
    batch = collate(
        [[r] for r in reply_rows(_samples(loaded, [p.prompt for p in prompts[:3]]))],
        loaded.tokenizer.pad_token_id,
    )
    with torch.no_grad():
        logits, targets, values = actors.policy_and_values(batch)
        torch.testing.assert_close((logits, targets), actors.policy_logits(batch))
        torch.testing.assert_close(values, actors.values(batch))
    snap = {n: p.detach().clone() for n, p in actors.named_parameters()}
    rows = ppo.Trainer(actors, loaded, cfg, None, None, accelerator()).fit(prompts, tmp_path / "run")
    changed = {n for n, p in actors.named_parameters() if not torch.equal(p, snap[n])}
    if lora == "--lora.r=4":
        assert changed == {n for n in snap if ".default." in n or n.startswith("critic.head")}
    else:
        assert changed == {n for n in snap if n.startswith(("policy.", "critic.head"))}
    assert rows[-1]["value_loss"] > 0 and rows[-1]["kl"] != 0


def test_adapter_start_is_folded_so_the_reference_is_the_sft_model(tmp_path, tiny_model_dir, reward_model):
    """An unmerged SFT adapter as the start: folded into its base, so the reference (adapters off) is the SFT
    model and the first rollout's KL is 0; the RM, recorded over the raw base, runs as its own model; the policy
    is saved merged (its base exists only in memory)."""
    sft = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), LoraConfig(r=4), for_training=True)
    with torch.no_grad():
        for n, p in sft.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    start = io.save(tmp_path / "sft", sft)
    cfg = make_cfg(tmp_path, start, "--lora.r=4", "--train.max_steps=1", f"--ppo.reward_model={reward_model}")
    actors, _, merged = build(cfg)
    assert merged and actors.shared and actors.reward.lm is not actors.lm
    final = ppo.run(cfg)
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["kl"] == pytest.approx(0.0, abs=1e-5)
    assert (final / "model.safetensors").exists() and not io.read_meta(str(final)).get("adapter")


def _samples(loaded, convs):
    from pixiu.engine import Sampling, sample

    return sample(loaded.model, loaded.tokenizer, loaded.template, convs, Sampling(4, 1.0, seed=0))


def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def test_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir, reward_model):
    """Killed after the step-2 checkpoint and resumed: adapter weights and every metric equal an uninterrupted
    run's (reward statistics and the adaptive KL coefficient travel in the checkpoint)."""
    args = ("--lora.r=4", "--train.lr=1e-2", "--train.max_steps=4", f"--ppo.reward_model={reward_model}",
            "--ppo.adaptive_kl")  # fmt: skip
    full = ppo.run(make_cfg(tmp_path, tiny_model_dir, *args, run="a"))
    cut = make_cfg(tmp_path, tiny_model_dir, *args, "--train.save_every=2", run="b")
    with killed_after(2):
        ppo.run(cut)
    extra = json.loads((tmp_path / "b" / "checkpoints" / "step-2" / "state.json").read_text())["extra"]
    assert extra["kl_coef"] != 0.05 and extra["moments"]["count"] == 16  # the controller moved; 2 x 8 scores
    resumed = ppo.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]))
    a, b = load_file(full / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = ("gen_s", "score_s", "exp_s", "train_s")
    ra, rb = ([{k: v for k, v in json.loads(line).items() if k not in strip}
               for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in "ab")  # fmt: skip
    assert ra == rb and len(ra) == 4


def test_bad_input_fails_clearly(tmp_path, tiny_model_dir, reward_model, tokenizer):
    with pytest.raises(ConfigError, match="needs a reward"):
        ppo.run(make_cfg(tmp_path, tiny_model_dir))
    cfg = make_cfg(tmp_path, tiny_model_dir, "--data.max_len=20", f"--ppo.reward_fn={__name__}:count_target")
    with pytest.raises(DataError, match="no prompt fits"):
        ppo.run(cfg)
    other = tmp_path / "rm-other-tokenizer"
    other.mkdir()
    for f in reward_model.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    tok = type(tokenizer).from_pretrained(reward_model)
    tok.add_tokens(["<only-here>"])
    tok.save_pretrained(other)
    with pytest.raises(ModelError, match="different tokenizer"):
        ppo.run(make_cfg(tmp_path, tiny_model_dir, "--lora.r=4", f"--ppo.reward_model={other}"))
    with pytest.raises(ModelError, match="not a pixiu reward model"):
        ppo.run(make_cfg(tmp_path, tiny_model_dir, "--lora.r=4", f"--ppo.reward_model={tiny_model_dir}"))


def test_reward_fn_sees_the_prompts_reference_answer_times_its_weight():
    """A prompts row's `answer` reaches the reward function as the reference turn (tasks.py's shape), so the
    `reference` task scores 41 + 64 = 105 right and 96 wrong; ppo.reward_fn_weight scales it; no answer, no
    signal."""
    from types import SimpleNamespace

    from pixiu.data.formats import prompts as prompt_row
    from pixiu.data.tasks import reward_fn

    cfg = config.load(None, ["--ppo.reward_fn=reference", "--ppo.reward_fn_weight=3"])
    trainer = object.__new__(ppo.Trainer)
    trainer.cfg, trainer.actors, trainer.fn = cfg, SimpleNamespace(reward=None), reward_fn("reference")
    rows = [{"prompt": "41 + 64?", "answer": 105}, {"prompt": "41 + 64?", "answer": "105"}, {"prompt": "Hi"}]
    records = [prompt_row(r, f"f:{i}") for i, r in enumerate(rows, 1)]
    assert [r.answer for r in records] == ["105", "105", ""]
    replies = [SimpleNamespace(text=t, finished=True) for t in ("41 + 64 = 105.", "41 + 64 = 96.", "Hello!")]
    scores, _ = trainer.score(records, replies)
    assert scores.tolist() == [3.0, 0.0, 0.0]
