"""Every PEFT method (`lora.method`): 20 SFT steps on the tiny model change every trained tensor, the saved
checkpoint reloads with the same logits, pixiu's forward matches peft's own, merging keeps the logits (or fails
clearly for prefix tuning); LoRA+ learning rates, AdaLoRA's rank allocation, and clear errors for the stages a
method cannot run in."""

import math

import pytest
import test_grpo
import test_ppo
import test_pref
import test_rm
import torch
import yaml
from interrupt import killed_after
from safetensors.torch import load_file
from test_ppo import reward_model  # noqa: F401 - the module's fixture: a LoRA reward model
from test_sft import make_cfg

from pixiu import config
from pixiu.batch import collate
from pixiu.chat import Conversation
from pixiu.chat.templates import Rendered
from pixiu.config import ConfigError, ModelConfig
from pixiu.data import load_data
from pixiu.data.records import Prompt
from pixiu.model import adapters, heads, io
from pixiu.model.forward import base_lm, hidden_states
from pixiu.model.heads import ScalarLM
from pixiu.model.reward import score_replies
from pixiu.train import ppo, pref, rm, sft
from pixiu.train.actors import build
from pixiu.train.loop import Optimizer
from pixiu.train.stages import get_stage

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


def probe_samples(tokenizer):
    """Two rendered conversations of different lengths."""
    convs = [
        Conversation.from_openai(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        ),
        Conversation.from_openai([{"role": "user", "content": "what is two plus two"}]),
    ]
    from pixiu.chat.templates import get_template

    template = get_template("default", tokenizer)
    return [template.render(c) for c in convs]


def probe(tokenizer):
    """Two right-padded rows of different lengths: padding and the prefix mask both matter."""
    return collate([[s] for s in probe_samples(tokenizer)], tokenizer.pad_token_id)


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
        peft_cfg = lm.peft_config["default"]  # the budget over the run's 20 steps: warm-up 2, final 4
        assert (peft_cfg.total_step, peft_cfg.tinit, peft_cfg.tfinal) == (20, 2, 4)
        ranks = [int(sum(mask)) for mask in peft_cfg.rank_pattern.values()]
        assert sum(ranks) == 2 * len(ranks) and max(ranks) > min(
            ranks
        )  # target_r on average, spread unevenly
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
    # fp32 rounding of W + s * B @ A grows with the update: loraplus's 16x learning rate on B leaves B ~13x larger
    # than plain LoRA's after 20 steps, and the merged logits ~2.5e-5 off (plain LoRA: 4e-7)
    tol = 1e-4 if name == "loraplus" else 1e-5
    assert (logits(merged.model, batch) - again).abs().max() <= tol, f"{name}: merging changed the logits"


def test_loraplus_param_groups(tiny_model_dir):
    lora = config.LoraConfig(r=4, loraplus_lr_ratio=16)
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), lora, for_training=True)
    params = [p for p in loaded.model.parameters() if p.requires_grad]
    opt = Optimizer(params, config.TrainConfig(lr=1e-3), accelerator=None)
    opt.lr = 2e-3
    names = {id(p): n for n, p in loaded.model.named_parameters()}
    lrs = {names[id(p)].split(".")[-3]: g["lr"] for g in opt.torch.param_groups for p in g["params"]}
    assert lrs == {"lora_A": 2e-3, "lora_B": 2e-3 * 16} and opt.lr == 2e-3


@pytest.mark.parametrize(
    ("method", "stage", "words"),
    [
        ("pissa", "ppo", "residual"),
        ("olora", "rloo", "residual"),
        ("adalora", "ppo", "one adapter per model"),
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


# ---------------------------------------------------------------- other stages


def test_dpo_reference_of_pissa_is_the_start_model(tmp_path, tiny_model_dir):
    """PiSSA leaves W - B0 A0 in the base, so its reference keeps the adapter on: at step 0 the policy is the
    reference and DPO's loss is exactly log 2 (with the adapter off it would not be)."""
    args = [
        "--lora.method=pissa",
        "--lora.r=4",
        "--lora.dropout=0",
        "--train.max_steps=1",
        "--data.eval_size=0",
    ]
    cfg = test_pref.make_cfg(tmp_path, tiny_model_dir, "dpo", *args)
    pref.run(cfg, "dpo")
    first = next(row for row in test_pref.metrics(tmp_path / "run") if "loss" in row)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_rm_with_ptuning_v2_reloads_with_the_same_scores(tmp_path, tiny_model_dir, capture):
    """A P-tuning v2 reward model: training moves the prefixes, and the saved model scores pairs (shared-prompt
    rows: the 4D mask path) exactly as the trained one did."""
    cfg = test_rm.make_cfg(
        tmp_path, tiny_model_dir, "--lora.method=ptuning_v2", "--lora.r=4", "--train.max_steps=4"
    )
    final = rm.run(cfg)
    lm = capture["lm"]
    assert all(not torch.equal(p, dict(lm.named_parameters())[n]) for n, p in capture["start"].items())
    trained = ScalarLM(lm, heads.load_scalar(ModelConfig(str(final), dtype="fp32"))[1].head)
    loaded, again = heads.load_scalar(ModelConfig(str(final), dtype="fp32"))
    convs = [
        Conversation.from_openai([{"role": "user", "content": "hi"}, {"role": "assistant", "content": reply}])
        for reply in ("hello there", "no")
    ]
    want = score_replies(trained, loaded.tokenizer, loaded.template, convs)
    assert score_replies(again, loaded.tokenizer, loaded.template, convs) == want


def test_ppo_with_ia3_trains_policy_and_critic_beside_a_lora_reward_model(tmp_path, tiny_model_dir, request):
    """peft holds one adapter type per model: a LoRA reward model under an IA3 policy is loaded on its own."""
    rm_path = request.getfixturevalue("reward_model")  # test_ppo's: a LoRA reward model over the tiny base
    cfg = test_ppo.make_cfg(
        tmp_path, tiny_model_dir, "--lora.method=ia3", "--lora.r=4", "--train.lr=3e-2", "--train.max_steps=2",
        f"--ppo.reward_model={rm_path}", "--ppo.critic_from_rm=false",
    )  # fmt: skip
    actors, loaded, _ = build(cfg)
    assert actors.reward.lm is not actors.lm  # its own model
    snap = {n: p.detach().clone() for n, p in actors.lm.named_parameters() if ".ia3_l." in n}
    prompts, _ = ppo.fit_prompts(load_data(cfg.data, want=Prompt).train, loaded.template, 64, 8)
    ppo.Trainer(actors, loaded, cfg, None, None, test_ppo.accelerator()).fit(prompts, tmp_path / "run")
    moved = {
        n.split(".ia3_l.")[1]
        for n, p in actors.lm.named_parameters()
        if n in snap and not torch.equal(p, snap[n])
    }
    assert moved == {"default", "critic"}  # both IA3 adapters trained


def test_ppo_with_adalora_and_a_shared_critic_allocates_ranks(tmp_path, tiny_model_dir, capture, request):
    """One AdaLoRA adapter (the critic a head on the policy): several updates per step pass the final allocation
    (peft clears its importance averages there) and keep the final ranks."""
    rm_path = request.getfixturevalue("reward_model")
    args = ["--lora.method=adalora", "--lora.r=4", "--train.max_steps=5", "--ppo.shared_critic=true"]
    get_stage("ppo").run(test_ppo.make_cfg(tmp_path, tiny_model_dir, *args, f"--ppo.reward_model={rm_path}"))
    peft_cfg = capture["lm"].peft_config["default"]
    assert (peft_cfg.total_step, peft_cfg.tfinal) == (5, 1) and peft_cfg.rank_pattern


def test_grpo_with_adalora_allocates_ranks(tmp_path, tiny_model_dir, capture):
    cfg = test_grpo.make_cfg(
        tmp_path, tiny_model_dir, "--lora.method=adalora", "--lora.r=4", "--train.max_steps=5"
    )
    get_stage("grpo").run(cfg)
    peft_cfg = capture["lm"].peft_config["default"]
    assert peft_cfg.total_step == 5 and peft_cfg.rank_pattern


def test_prefix_sees_packed_samples_as_separate_rows(tiny_model_dir):
    """Packed rows (positions restart per sample, no 2D mask) get a block-causal mask over the prefix + row: each
    sample's states equal those of the sample alone in a padded row."""
    torch.manual_seed(0)
    lora = config.LoraConfig(r=4, method="ptuning_v2", virtual_tokens=3)
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), lora, for_training=True)
    rendered = probe_samples(loaded.tokenizer)
    packed = collate([rendered], loaded.tokenizer.pad_token_id)
    alone = collate([[s] for s in rendered], loaded.tokenizer.pad_token_id)
    assert packed.attention_mask is None and alone.attention_mask is not None
    lm = loaded.model.eval()
    with torch.no_grad():
        got, want = hidden_states(lm, packed)[0], hidden_states(lm, alone)
    n = len(rendered[0].input_ids)
    torch.testing.assert_close(got[:n], want[0, :n], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        got[n : n + len(rendered[1].input_ids)], want[1, : len(rendered[1].input_ids)], atol=1e-5, rtol=0
    )
    with lm.disable_adapter(), torch.no_grad():  # adapters off: no prefix, as peft's switch promises
        assert not torch.allclose(hidden_states(lm, alone), want)


def test_engine_serves_a_prefix_adapter_as_trained(lively_dir, tmp_path):
    """The engine prefills the prefix key/values and offsets positions as training does: greedy tokens and their
    log-probs from the served checkpoint (batched, unequal prompt lengths) and from the live model (rollouts,
    evaluation) equal a greedy loop over pixiu's training forward."""
    from pixiu.engine import Sampling, load_engine, sample

    torch.manual_seed(0)
    lora = config.LoraConfig(r=4, method="ptuning_v2", virtual_tokens=3)
    loaded = io.load(ModelConfig(str(lively_dir), dtype="fp32"), lora, for_training=True)
    for p in loaded.model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 1.0)  # a prefix that changes the replies
    final = io.save(tmp_path / "final", loaded)
    convs = [
        Conversation.from_openai([{"role": "user", "content": q}]) for q in ("hi", "what is two plus two")
    ]
    greedy = Sampling(max_new_tokens=6, temperature=0, logprobs=0)
    engine = load_engine(str(final), dtype="fp32", max_batch=4)
    try:
        served = [[(t.token, t.logprob) for t in c.logprobs] for c in engine.generate(convs, greedy)]
    finally:
        engine.close()
    lm = io.load(ModelConfig(str(final), dtype="fp32")).model.eval()
    live = sample(lm, loaded.tokenizer, loaded.template, convs, greedy)
    for conv, got, rollout in zip(convs, served, live):
        ids, want = loaded.template.prompt_ids(conv), []
        for _ in got:
            row = logits(lm, collate([[Rendered(ids, [1] * len(ids))]], 0))[0, -1].log_softmax(-1)
            want.append((int(row.argmax()), float(row.max())))
            ids = ids + [want[-1][0]]
        assert [t for t, _ in got] == [t for t, _ in want] == rollout.reply_ids[: len(got)]
        assert max(abs(a[1] - b[1]) for a, b in zip(got, want)) < 1e-4
    with pytest.raises(io.ModelError, match="PREFIX_TUNING adapter cannot be merged"):
        io.merged(lm)


def test_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    """A run killed after step 4 and resumed ends with the weights of an uninterrupted one: the optimizer's LoRA+
    groups (and their lr scale) come back from the checkpoint, and PiSSA's seeded init gives the same residual."""
    args = ["--lora.method=pissa", "--lora.r=4", "--lora.loraplus_lr_ratio=16", "--lora.dropout=0"]
    args.append("--data.eval_size=0")
    full = sft.run(make_cfg(tmp_path, tiny_model_dir, *args, run="a"))
    with killed_after(4):
        sft.run(make_cfg(tmp_path, tiny_model_dir, *args, "--train.save_every=4", run="b"))
    resumed = sft.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]))
    a, b = load_file(full / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pt_with_prefix_tuning_lowers_held_out_loss(tmp_path, tiny_model_dir):
    """Continued pretraining packs every row: the prefix reaches each packed sample (block-causal mask)."""
    text = tmp_path / "corpus.jsonl"
    text.write_text(
        "".join(f'{{"text": "the quick brown fox {i} jumps over the lazy dog"}}\n' for i in range(40))
    )
    cfg = make_cfg(tmp_path, tiny_model_dir, f"--data.path={text}", "--lora.method=prefix", "--lora.r=4")
    sft.run(cfg, stage="pt")
    rows = test_pref.metrics(tmp_path / "run")
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"]


def test_pipeline_refuses_a_method_a_later_stage_cannot_train(tmp_path):
    """PiSSA in a recipe whose third stage is PPO: refused when the recipe loads, not after SFT and RM."""
    from pixiu import pipeline

    recipe = tmp_path / "r.yaml"
    stages = [{"name": "sft"}, {"name": "rm"}, {"name": "ppo"}]
    recipe.write_text(yaml.safe_dump({"lora": {"r": 8, "method": "pissa"}, "pipeline": {"stages": stages}}))
    with pytest.raises(ConfigError, match="lora.method=pissa does not work in `ppo`"):
        pipeline.load(recipe)
    recipe.write_text(
        yaml.safe_dump({"lora": {"r": 8, "method": "pissa"}, "pipeline": {"stages": stages[:2]}})
    )
    pipeline.load(recipe)  # sft and rm train PiSSA fine


@pytest.mark.parametrize("stage", ["ppo", "grpo"])
def test_prefix_tuning_trains_in_rollout_stages(stage, tmp_path, tiny_model_dir, capture, request):
    """P-tuning v2 in PPO (policy and critic prefixes over one base, a LoRA RM of its own) and GRPO: rollouts
    come from the engine with the prefix, the prefixes train."""
    args = ["--lora.method=ptuning_v2", "--lora.r=4", "--lora.virtual_tokens=4", "--train.max_steps=2"]
    if stage == "ppo":
        rm_path = request.getfixturevalue("reward_model")
        cfg = test_ppo.make_cfg(tmp_path, tiny_model_dir, *args, f"--ppo.reward_model={rm_path}")
    else:
        cfg = test_grpo.make_cfg(tmp_path, tiny_model_dir, *args)
    get_stage(stage).run(cfg)
    lm = capture["lm"]
    trained = dict(lm.named_parameters())
    moved = {n for n, p in capture["start"].items() if not torch.equal(p, trained[n])}
    assert "prompt_encoder.default.embedding.weight" in moved


def test_grpo_prompt_once_forward_equals_full_rows_with_a_prefix(tiny_model_dir):
    """GRPO's PrefixLM (the prompt once, K replies on its cache) puts the adapter's prefix before the prompt."""
    from pixiu.model import TargetLM
    from pixiu.train import grpo
    from pixiu.train.prefix import PrefixLM

    torch.manual_seed(0)
    lora = config.LoraConfig(r=4, method="prefix", virtual_tokens=3)
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), lora, for_training=True)
    prompt, replies = [5, 17, 42, 9, 33], [[7, 8, 9], [11], [12, 13]]
    group = grpo.Rollouts([prompt], replies, *(torch.zeros(1, 3),) * 2, torch.tensor([1.0, -1.0, 0.5]),
                          torch.tensor([3, 1, 2]), torch.ones(3))  # fmt: skip
    (batch,) = grpo.group_batches(group, pad_id=0, device="cpu")
    logits, targets = PrefixLM(loaded.model)(batch)
    rows = [Rendered(prompt + r, [0] * len(prompt) + [1] * len(r)) for r in replies]
    want, want_targets = TargetLM(loaded.model)(collate([[r] for r in rows], 0))
    assert targets.tolist() == want_targets.tolist()
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)


def test_grpo_with_pissa_needs_no_reference(tmp_path, tiny_model_dir, capture):
    """GRPO without a KL term has no reference, so PiSSA's residual base is no obstacle; its saved adapter (plain
    LoRA over the untouched base) reloads with the trained model's logits."""
    args = ["--lora.method=pissa", "--lora.r=4", "--train.max_steps=2"]
    with pytest.raises(ConfigError, match="set grpo.kl_coef=0"):
        adapters.check(test_grpo.make_cfg(tmp_path, tiny_model_dir, *args), "grpo")
    final = get_stage("grpo").run(test_grpo.make_cfg(tmp_path, tiny_model_dir, *args, "--grpo.kl_coef=0"))
    reloaded = io.load(ModelConfig(str(final), dtype="fp32"))
    batch = probe(reloaded.tokenizer)
    assert (logits(capture["lm"], batch) - logits(reloaded.model, batch)).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "extra, fused",
    [({}, True), ({"lora_alpha": 6}, True), ({"lora_dropout": 0.1}, False), ({"use_dora": True}, False)],
)
def test_fused_lora_forward_equals_peft_and_falls_back(extra, fused, monkeypatch):
    """adapters._lora_forward: outputs and gradients equal peft's forward (fp32; alpha 6 / r 4 is not a power of
    two); dropout and DoRA run peft's own forward, as does a disabled adapter."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    adapters.fuse_lora_forward()
    peft_calls = []
    peft_forward = adapters._PEFT_FORWARD
    monkeypatch.setattr(
        adapters, "_PEFT_FORWARD", lambda *a, **k: peft_calls.append(1) or peft_forward(*a, **k)
    )
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    config = PeftLoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": ["0", "2"], **extra})
    model = get_peft_model(base, config).eval()
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # B starts at zero: the adapter would add nothing
    x = torch.randn(2, 3, 8, requires_grad=True)

    def run(forward):
        model.zero_grad()
        x.grad = None
        with monkeypatch.context() as m:
            m.setattr(type(model.base_model.model[0]), "forward", forward)
            out = model(x)
            out.square().sum().backward()
        return out, [p.grad.clone() for p in [x, *model.parameters()] if p.requires_grad]

    out, grads = run(adapters._lora_forward)
    assert bool(peft_calls) != fused
    want, want_grads = run(peft_forward)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    for g, w in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    peft_calls.clear()
    with model.disable_adapter():
        run(adapters._lora_forward)
    assert peft_calls
