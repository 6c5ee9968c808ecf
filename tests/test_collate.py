import pytest
import torch

from pixiu.chat import Conversation, get_template
from pixiu.chat.templates import Rendered
from pixiu.data.collate import collate, collate_groups, collate_shared, fit, pack, plan, shared_length
from pixiu.model import TargetLM


def _conv(q, a):
    return Conversation.from_openai([{"role": "user", "content": q}, {"role": "assistant", "content": a}])


def test_fit_counts_truncation_skips_and_empty_targets():
    long = Rendered(list(range(20)), [0] * 10 + [1] * 10)
    prompt_only = Rendered(list(range(20)), [0] * 15 + [1] * 5)
    kept, counts = fit([long, prompt_only, Rendered([1, 2, 3], [0, 1, 1])], max_len=12, overflow="truncate")
    assert [len(s.input_ids) for s in kept] == [12, 3]
    assert (counts.truncated, counts.skipped, counts.no_targets) == (2, 0, 1)
    kept, counts = fit([long], max_len=12, overflow="skip")
    assert kept == [] and counts.skipped == 1


def test_pack_respects_max_len_and_keeps_every_sample():
    lengths = [5, 9, 3, 7, 2, 10]
    rows = pack(lengths, max_len=10, seed=0)
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)


def test_plan_is_deterministic_and_covers_the_epoch():
    lengths = list(range(1, 50))
    a, b = plan(lengths, 4, seed=1, epoch=0, group_by_length=True), plan(lengths, 4, 1, 0, True)
    assert a == b and sorted(i for x in a for i in x) == list(range(49))
    assert plan(lengths, 4, 1, 1, True) != a


def test_packed_rows_do_not_see_each_other(tokenizer, tiny_model_dir):
    """A sample's logits are the same alone, padded beside another, or packed after another."""
    from transformers import AutoModelForCausalLM

    tpl = get_template("default", tokenizer)
    a, b = tpl.render(_conv("hi", "hello there")), tpl.render(_conv("what is two plus two", "four"))
    lm = TargetLM(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    la, _ = lm(collate([[a]], tokenizer.pad_token_id))
    lb, _ = lm(collate([[b]], tokenizer.pad_token_id))
    packed, targets = lm(collate([[a, b], [b]], tokenizer.pad_token_id))
    torch.testing.assert_close(packed, torch.cat([la, lb, lb]), atol=1e-5, rtol=1e-4)
    padded, _ = lm(collate([[a], [b]], tokenizer.pad_token_id))
    torch.testing.assert_close(padded, torch.cat([la, lb]), atol=1e-5, rtol=1e-4)
    assert len(targets) == sum(a.loss_mask[1:]) + 2 * sum(b.loss_mask[1:])


def test_shared_length_leaves_every_reply_a_token():
    def r(ids):
        return Rendered(ids, [0] * len(ids))

    assert shared_length([r([1, 2, 3, 4]), r([1, 2, 5])]) == 2
    assert shared_length([r([1, 2, 3]), r([1, 2, 3, 4])]) == 2  # one reply is a prefix of the other
    assert shared_length([r([1, 2, 3]), r([1, 2, 3])]) == 2
    assert shared_length([r([7, 2]), r([1, 2]), r([1, 2])]) == 0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prompt_rows_match_one_row_per_reply(tokenizer, tiny_model_dir, attn):
    """A pair, a K=3 ranking (one reply a prefix of another) and a pair with nothing shared: reward scores,
    reply log-probs, target counts and gradients from one row per group (the prompt once) equal those from one
    padded row per reply."""
    from transformers import AutoModelForCausalLM

    from pixiu.model.forward import sequence_logps
    from pixiu.model.heads import ScalarLM

    tpl = get_template("default", tokenizer)
    groups = [
        [tpl.render(_conv("what is two plus two", a)) for a in ("four", "it is five, I think")],
        [tpl.render(_conv("hi", a)) for a in ("hello there", "hello", "go away now please")],
        [Rendered([5, 6, 7], [0, 1, 1]), Rendered([8, 6, 7, 9], [0, 1, 1, 1])],
    ]
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)
    torch.manual_seed(0)
    scorer, policy = ScalarLM(lm), TargetLM(lm)
    shared, plain = (
        collate_shared(groups, tokenizer.pad_token_id),
        collate_groups(groups, tokenizer.pad_token_id),
    )
    assert len(shared.tokens.input_ids) == 3 and shared.n_tokens == plain.n_tokens
    assert shared.tokens.n_targets == plain.tokens.n_targets
    assert shared.tokens.input_ids.numel() < plain.tokens.input_ids.numel()
    weights = torch.arange(1.0, 8.0)  # distinct per reply: a swapped reply would show in the gradients
    outs, grads = [], []
    for batch in (shared, plain):
        scorer.zero_grad()
        scores = scorer(batch.tokens)
        logps, counts = sequence_logps(policy, batch.tokens)
        ((scores + logps) * weights).sum().backward()
        outs.append((scores.detach(), logps.detach(), counts))
        grads.append([p.grad.clone() for p in scorer.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
