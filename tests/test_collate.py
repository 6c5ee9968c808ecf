import torch

from pixiu.chat import Conversation, get_template
from pixiu.chat.templates import Rendered
from pixiu.data.collate import collate, fit, pack, plan
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
