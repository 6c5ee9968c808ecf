"""`engine.sample`: rollouts through the torch engine's scheduler on the live training model.

Greedy replies equal HF `generate`, sampled log-probs equal a teacher-forced forward, a LoRA model samples with
its adapter and is left as it was, and seeds make replies reproducible without depending on batch neighbours."""

from __future__ import annotations

import pytest
import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.config import LoraConfig, ModelConfig
from pixiu.engine import Sampling, sample
from pixiu.engine.text import stop_token_ids
from pixiu.model import io

PROMPTS = [
    "Hello",
    "What is two plus two? Please help me.",
    "你好",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Thanks!",
]


def convs() -> list[Conversation]:
    return [Conversation([Message("user", p)]) for p in PROMPTS]


@pytest.fixture(scope="module")
def loaded(lively_dir):
    return io.load(ModelConfig(str(lively_dir), dtype="fp32"))


def hf_greedy(loaded, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """HF `generate` on the prompts batched with left padding; each row cut after its first stop token."""
    stops = sorted(stop_token_ids(loaded.tokenizer, loaded.template.stop))
    pad, width = loaded.tokenizer.pad_token_id, max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = loaded.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
            eos_token_id=stops, pad_token_id=pad,
        )  # fmt: skip
    rows = out[:, width:].tolist()
    return [row[: next((i + 1 for i, t in enumerate(row) if t in stops), len(row))] for row in rows]


def teacher_forced(model, s, temperature: float = 1.0) -> torch.Tensor:
    """(R,) log-probs of the reply tokens from one full forward of prompt + reply at `temperature`."""
    ids = torch.tensor([s.prompt_ids + s.reply_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1].float()
    return (logits / temperature).log_softmax(-1).gather(1, torch.tensor(s.reply_ids)[:, None])[:, 0]


def test_greedy_rollouts_equal_hf_generate(loaded):
    """Five prompts of different lengths in one call (one right-padded prefill, rows leaving at different
    steps): every reply equals HF's batched greedy `generate`, token for token, and its log-probs (greedy: the
    logits at temperature 1) equal a teacher-forced forward."""
    got = sample(loaded.model, loaded.tokenizer, loaded.template, convs(), Sampling(max_new_tokens=16))
    assert len({len(s.prompt_ids) for s in got}) == 4  # so rows are padded
    assert [s.reply_ids for s in got] == hf_greedy(loaded, [s.prompt_ids for s in got], 16)
    assert len({tuple(s.reply_ids[:4]) for s in got}) > 1  # the replies really depend on the prompt
    for s in got:
        assert len(s.logps) == len(s.reply_ids)
        torch.testing.assert_close(torch.tensor(s.logps), teacher_forced(loaded.model, s), atol=1e-4, rtol=0)


@pytest.mark.parametrize("top_k", [0, 20])
def test_sampled_logps_equal_a_teacher_forced_forward(loaded, top_k):
    """fp32, temperature 0.7, two replies per prompt: the log-prob the sampler reports for each token equals the
    full forward's log_softmax(z / T) within 1e-4 (top-k: renormalised over the k best, as it was drawn)."""
    s = Sampling(max_new_tokens=12, temperature=0.7, top_k=top_k, seed=3)
    got = sample(loaded.model, loaded.tokenizer, loaded.template, convs()[:3], s, n=2)
    assert len(got) == 6 and len({tuple(x.reply_ids) for x in got}) > 3
    for x in got:
        want = teacher_forced(loaded.model, x, 0.7)
        if top_k:
            ids = torch.tensor([x.prompt_ids + x.reply_ids])
            with torch.no_grad():
                z = loaded.model(input_ids=ids).logits[0, len(x.prompt_ids) - 1 : -1] / 0.7
            kth = z.topk(top_k, -1).values[:, -1:]
            want = want - z.masked_fill(z < kth, float("-inf")).logsumexp(-1) + z.logsumexp(-1)
        torch.testing.assert_close(torch.tensor(x.logps), want, atol=1e-4, rtol=0)


def test_seeds_make_rollouts_reproducible(loaded):
    """A seed gives the same replies again, whatever shares the batch; seed None draws from torch's global RNG,
    so the same global seed (a resumed run restores it) gives the same replies."""
    s = Sampling(max_new_tokens=10, temperature=1.0, seed=11)
    args = (loaded.model, loaded.tokenizer, loaded.template)
    first = sample(*args, convs()[:2], s, n=3)
    assert [x.reply_ids for x in sample(*args, convs()[:2], s, n=3)] == [x.reply_ids for x in first]
    assert len({tuple(x.reply_ids) for x in first[:3]}) == 3  # a prompt's n replies differ
    unseeded = Sampling(max_new_tokens=10, temperature=1.0)
    torch.manual_seed(0)
    a = sample(*args, convs(), unseeded)
    torch.manual_seed(0)
    assert [x.reply_ids for x in sample(*args, convs(), unseeded)] == [x.reply_ids for x in a]


def test_n_replies_to_a_prompt_prefill_it_once(loaded):
    """A group of n replies to one prompt (GRPO) runs its prompt through the model once, not n times; greedy,
    the n replies are the same and equal HF's."""
    shapes = []
    hook = loaded.model.model.register_forward_hook(lambda m, args, kw, out: shapes.append(kw["input_ids"].shape),
                                                    with_kwargs=True)  # fmt: skip
    try:
        got = sample(
            loaded.model, loaded.tokenizer, loaded.template, convs()[:2], Sampling(max_new_tokens=6), n=3
        )
    finally:
        hook.remove()
    assert shapes[0][0] == 2 and all(
        s[1] == 1 for s in shapes[1:]
    )  # one prefill of 2 rows, then decode steps
    assert got[0].reply_ids == got[1].reply_ids == got[2].reply_ids != got[3].reply_ids == got[5].reply_ids
    assert [s.reply_ids for s in got[::3]] == hf_greedy(loaded, [s.prompt_ids for s in got[::3]], 6)


def test_lora_model_samples_with_its_adapter_and_is_left_as_it_was(lively_dir):
    """A peft model being trained (train mode, eager attention): sampling uses the active adapter, unmerged,
    and leaves weights, adapters, mode and attention implementation as they were."""
    cfg = ModelConfig(str(lively_dir), dtype="fp32", attn_implementation="eager")
    lora = io.load(cfg, LoraConfig(r=4, dropout=0.0), for_training=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in lora.model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    lora.model.train()
    snapshot = {k: v.clone() for k, v in lora.model.state_dict().items()}
    args = (lora.model, lora.tokenizer, lora.template, convs())
    got = sample(*args, Sampling(max_new_tokens=12))
    lm = lora.model.get_base_model()
    assert lora.model.training and lm.config._attn_implementation == "eager"
    state = lora.model.state_dict()
    assert state.keys() == snapshot.keys() and all(torch.equal(state[k], snapshot[k]) for k in state)
    lora.model.eval()
    assert [s.reply_ids for s in got] == hf_greedy(lora, [s.prompt_ids for s in got], 12)
    with lora.model.disable_adapter():
        bare = sample(*args, Sampling(max_new_tokens=12))
    assert [s.reply_ids for s in bare] != [s.reply_ids for s in got]  # the adapter was on


def test_ppo_takes_old_logps_from_the_sampler_when_it_sampled_the_policy(tmp_path, tiny_model_dir):
    """PPO's rollout: with the sampler's log-probs (fp32, plain temperature sampling) no policy forward runs, and
    log π_old, log π_ref and values equal those of the rollout that recomputes log π_old by a forward."""
    from pixiu import config
    from pixiu.train.actors import build
    from pixiu.train.rollout import experience, reply_rows, reuse_reason

    cfg = config.load(None, [f"--model.name_or_path={tiny_model_dir}", "--model.dtype=fp32", "--lora.r=4",
                             f"--train.output_dir={tmp_path}", "--ppo.reward_fn=x:y"])  # fmt: skip
    actors, loaded, _ = build(cfg)
    actors.eval()
    with torch.no_grad():  # a policy adapter that differs from the reference (adapters off)
        for n, p in actors.named_parameters():
            if "lora_B" in n and ".default." in n:
                p.normal_(0, 0.3)
    plain = Sampling(max_new_tokens=8, temperature=0.8, seed=1)
    assert reuse_reason(plain, 0.8, torch.float32) is None
    with actors.use("policy"):
        samples = sample(actors.lm, loaded.tokenizer, loaded.template, convs(), plain)
    rows, pad = reply_rows(samples), loaded.tokenizer.pad_token_id
    want = experience(actors, rows, pad, 2, 0.8, torch.float32)
    calls = []
    policy_logits = actors.policy_logits
    actors.policy_logits = lambda batch: calls.append(1) or policy_logits(batch)
    got = experience(actors, rows, pad, 2, 0.8, torch.float32, old=[s.logps for s in samples])
    assert calls == []  # no policy forward
    torch.testing.assert_close(got[0], want[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(got[1:], want[1:], atol=0, rtol=0)
    assert (want[0] - want[1]).abs().max() > 1e-2  # the policy really differs from the reference
    for why, s, dtype in [("top-p", Sampling(8, 0.8, top_p=0.9), torch.float32), ("scored at", plain, None),
                          ("bfloat16", plain, torch.bfloat16), ("greedy", Sampling(8), torch.float32)]:  # fmt: skip
        assert why in reuse_reason(s, 1.0 if dtype is None else s.temperature or 1.0, dtype or torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_head_draw_picks_what_the_full_sort_picks(dtype):
    """A row that cuts nothing walks only its best tokens (sampler.head); for the same uniform it picks the token
    and log-prob the full sort would, ties in order of token id included (bf16 scores tie often), and a uniform
    past the head's mass goes to the full sort."""
    from pixiu.engine.sampler import Choice, draw, head, truncated

    torch.manual_seed(0)
    scores = (torch.randn(64, 5000) * 8).to(dtype).float()  # peaked: the head holds nearly all the mass
    scores[:4] = torch.randn(5000).to(dtype).float() * 0.01  # flat rows: a head of 256 holds ~5% of the mass
    u = torch.rand(64, dtype=torch.float64)
    plain = [Choice.new(Sampling(1, 1.0), [0], 5000) for _ in range(64)]
    tokens, logps, done = head(scores, u)
    full_tokens, full_logps = truncated(scores, u, plain)
    assert done[4:].all() and not done[:4].any()  # the flat rows' uniforms fall past their head
    assert torch.equal(tokens[done], full_tokens[done])
    torch.testing.assert_close(logps[done], full_logps[done], atol=1e-5, rtol=0)
    ties = [row for row in scores[4:] if row.topk(256).values.unique().numel() < 256]
    assert (len(ties) > 0) == (dtype == torch.bfloat16)  # the bf16 case does test ties
    for c in plain:  # draw() = head where it holds the uniform, the full sort elsewhere
        c.generator.manual_seed(0)
    drawn, _ = draw(scores, plain)
    u0 = torch.stack([torch.rand((), generator=torch.Generator().manual_seed(0), dtype=torch.float64)] * 64)
    assert torch.equal(drawn, truncated(scores, u0, plain)[0])
