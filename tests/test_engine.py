"""The torch engine on a tiny model: continuous batching is exact, sampling is seeded, stops, cancel, context."""

from __future__ import annotations

import re
import threading
import time

import pytest
import torch

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import ContextError, Sampling, load_engine, torch_engine
from pixiu.engine.base import TokenLogprob
from pixiu.engine.text import TextStream, held_back, token_bytes
from pixiu.serve.protocol import TextLogprobs

PROMPTS = [
    "Hello",
    "What is two plus two? Please help me.",
    "你好",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Thanks!",
]


@pytest.fixture(scope="module")
def engine(lively_dir):
    # 3 slots for 5 prompts: the last two wait and take the slots of the first to finish
    with load_engine(str(lively_dir), dtype="fp32", max_batch=3, name="tiny") as eng:
        yield eng


def conv(text: str) -> Conversation:
    return Conversation([Message("user", text)])


def token_ids(request) -> list[int]:
    return [t for d in request for t in d.token_ids]


def idle(engine, seconds: float = 10) -> bool:
    """True once no sequence runs or waits: a reply's last Delta goes out just before its row is retired."""
    deadline = time.monotonic() + seconds
    while (engine.running or engine.waiting) and time.monotonic() < deadline:
        time.sleep(0.01)
    return engine.running == 0 and engine.waiting == 0


def hf_greedy(engine, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    with torch.inference_mode():
        out = engine.model.generate(
            torch.tensor([prompt_ids]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(engine.stop_ids),
            pad_token_id=engine.tokenizer.pad_token_id,
        )
    return out[0, len(prompt_ids) :].tolist()


def test_concurrent_greedy_equals_hf_generate_alone(engine):
    # different lengths and budgets: rows join and leave the batch at different steps
    requests = [engine.submit(conv(p), Sampling(max_new_tokens=6 + 4 * i)) for i, p in enumerate(PROMPTS)]
    got = [token_ids(r) for r in requests]
    for i, (request, ids) in enumerate(zip(requests, got)):
        assert ids == hf_greedy(engine, request.prompt_ids, 6 + 4 * i)
        assert request.completion_tokens == len(ids) and request.finish_reason == "length"
    assert len({tuple(ids[:6]) for ids in got}) == len(PROMPTS)  # the model really depends on the prompt
    assert idle(engine)


def test_prompts_admitted_together_prefill_in_one_padded_batch(engine, monkeypatch):
    """Prompts of different lengths that arrive together share one right-padded prefill; each reply still
    equals HF's greedy on its prompt alone (the padding comes after a prompt, so it never sees it)."""
    batches = []
    prefill = engine._prefill
    monkeypatch.setattr(
        engine, "_prefill", lambda requests: batches.append(len(requests)) or prefill(requests)
    )
    with engine._wake:  # the scheduler takes nothing until all three are queued
        requests = [engine.submit(conv(p), Sampling(max_new_tokens=8)) for p in PROMPTS[1:4]]
    got = [token_ids(r) for r in requests]
    assert batches == [3]
    assert len({len(r.prompt_ids) for r in requests}) == 3  # so two rows are padded
    for request, ids in zip(requests, got):
        assert ids == hf_greedy(engine, request.prompt_ids, 8)
    monkeypatch.setattr(torch_engine, "PREFILL_TOKENS", 1)  # the token cap splits them: one prompt a forward
    with engine._wake:
        again = [engine.submit(conv(p), Sampling(max_new_tokens=8)) for p in PROMPTS[1:4]]
    assert [token_ids(r) for r in again] == got and batches == [3, 1, 1, 1]


def test_raw_prompt_and_metadata(engine):
    (c,) = engine.generate(["The quick brown"], Sampling(max_new_tokens=5))
    ids = engine.tokenizer("The quick brown")["input_ids"]
    assert c.prompt_tokens == len(ids) and c.completion_tokens == 5 and c.finish_reason == "length"
    assert c.text == engine.tokenizer.decode(hf_greedy(engine, ids, 5))
    assert engine.name == "tiny" and engine.context_len == 512


def test_seeded_sampling_is_reproducible(engine):
    s = Sampling(max_new_tokens=12, temperature=1.0, top_p=0.9, top_k=50, repetition_penalty=1.2, seed=7)
    alone = engine.generate([conv("Hello")], s)[0].text
    # the same request again, now sharing the batch with two others
    crowd = engine.generate([conv("Thanks!"), conv("Hello"), conv("你好")], s)
    assert crowd[1].text == alone
    n = engine.generate([conv("Hello")], s, n=3)  # seeds 7, 8, 9
    assert n[0].text == alone and len({c.text for c in n}) == 3


def test_logprobs_are_the_models_own(engine):
    """Each sampled token's log-probability and top-k equal log_softmax of HF's logits at that step (raw: the
    temperature and penalty change what is sampled, not what is reported), alone or sharing the batch."""
    s = Sampling(max_new_tokens=5, temperature=1.3, repetition_penalty=1.5, seed=3, logprobs=3)
    crowd = engine.generate([conv("Thanks!"), conv("Hello"), conv("你好")], s)
    for c, text in zip(crowd, ("Thanks!", "Hello", "你好")):
        prompt = engine.template.prompt_ids(conv(text))
        ids = [t.token for t in c.logprobs]
        assert len(ids) == c.completion_tokens == 5
        with torch.inference_mode():
            logits = engine.model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
        want = logits.float().log_softmax(-1)  # (5, V)
        for step, t in enumerate(c.logprobs):
            assert t.logprob == pytest.approx(want[step, t.token].item(), abs=1e-4)
            top = want[step].topk(3)
            assert [i for i, _ in t.top] == top.indices.tolist()
            assert [lp for _, lp in t.top] == pytest.approx(top.values.tolist(), abs=1e-4)
    plain = engine.generate([conv("Hello")], Sampling(max_new_tokens=5, temperature=1.3, seed=3))[0]
    assert plain.logprobs is None
    assert all(t.top == [] for t in engine.generate([conv("Hi")], Sampling(3, logprobs=0))[0].logprobs)
    greedy = engine.generate([conv("Hello")], Sampling(max_new_tokens=3, logprobs=1))[0]
    assert all([(t.token, t.logprob)] == t.top for t in greedy.logprobs)  # greedy takes the most likely token
    with pytest.raises(ValueError, match="logprobs"):
        Sampling(logprobs=21)


def test_stop_strings_cut_and_stream_concatenates(engine):
    full = engine.generate([conv("Hello")], Sampling(max_new_tokens=20))[0].text
    # a 3-character stop string that first occurs at i >= 6 (the random model's reply differs between CPUs)
    i = next(i for i in range(6, len(full) - 2) if full.find(full[i : i + 3]) == i)
    pieces = []
    stop = [full[i : i + 3]]
    request = engine.submit(conv("Hello"), Sampling(max_new_tokens=20), stop=stop, on_delta=pieces.append)
    text = "".join(d.text for d in request)
    assert text == full[:i] == "".join(d.text for d in pieces)
    assert request.finish_reason == "stop" and pieces[-1].finish_reason == "stop"
    assert "".join(engine.stream(conv("Hello"), Sampling(max_new_tokens=20))) == full


def test_cancel_frees_the_slot(lively_dir):
    with load_engine(str(lively_dir), dtype="fp32", max_batch=1) as eng:
        first_piece, cancelled = threading.Event(), threading.Event()

        def hold(delta):  # the engine thread waits here until the test has cancelled
            first_piece.set()
            cancelled.wait(10)

        long = eng.submit(conv("Hello"), Sampling(max_new_tokens=400), on_delta=hold)
        waiting = eng.submit(conv("Thanks!"), Sampling(max_new_tokens=4))
        assert first_piece.wait(10) and eng.running == 1 and eng.waiting == 1
        long.cancel()
        cancelled.set()
        deltas = list(long)
        assert deltas[-1].finish_reason == "cancelled" and long.completion_tokens < 400
        assert waiting.completion().finish_reason == "length"  # it got the freed slot
        assert idle(eng)


def test_context_error(engine):
    with pytest.raises(ContextError, match="context window of 512"):
        engine.submit("Hello " * 100, Sampling(max_new_tokens=500))
    assert isinstance(ContextError("x"), ValueError)


def test_text_stream_never_splits_a_character(tokenizer):
    text = "你好，世界。我是一个助手。"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text) // 2  # byte-level BPE: some characters span several tokens
    stream = TextStream(tokenizer, stop=[])
    pieces = [stream.add(i)[0] for i in ids] + [stream.finish()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


def test_token_bytes_join_into_the_text(tokenizer):
    """A token holding part of a character decodes alone to U+FFFD; its bytes (OpenAI's logprobs `bytes`) are
    the real ones, so joined they give the text back."""
    text = "你好，世界。Hello ünïcode <b>!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # the case this is for
    assert b"".join(token_bytes(tokenizer, i) for i in ids) == text.encode()
    assert token_bytes(tokenizer, tokenizer.eos_token_id) == b"<|im_end|>"


def test_text_logprobs_show_a_split_character_as_bytes(tokenizer):
    """Legacy completions logprobs, as OpenAI's: a token holding part of a character is `bytes:\\xNN...`, not
    U+FFFD, and text_offset points into the real text (a split character's pieces both start where it does)."""
    text = "你好，世界。Hello"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    sampled = [TokenLogprob(i, -1.0, [(i, -1.0)]) for i in ids]
    lp = TextLogprobs.of(sampled, lambda i: token_bytes(tokenizer, i), offset=3)
    assert not any("\ufffd" in t for t in lp.tokens)
    split = [t for t in lp.tokens if t.startswith("bytes:")]
    assert split and all(re.fullmatch(r"bytes:(\\x[0-9a-f]{2})+", t) for t in split)
    assert list(lp.top_logprobs[0]) == [lp.tokens[0]]
    offsets = [o - 3 for o in lp.text_offset]
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] < len(text)
    for token, start in zip(lp.tokens, offsets):
        if not token.startswith("bytes:"):
            assert text[start:].startswith(token)


def test_text_stream_holds_back_a_stop_string(tokenizer):
    stream = TextStream(tokenizer, stop=["lazy dog"])
    out, hit = [], False
    for i in tokenizer("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"]:
        piece, hit = stream.add(i)
        out.append(piece)
        if hit:
            break
    assert hit and "".join(out) == "The quick brown fox jumps over the "
    assert not any("lazy" in p for p in out)


def test_top_k_past_the_vocabulary_is_no_limit_and_spares_the_batch(engine):
    """Issue 14.2: top_k > vocabulary indexed past the sorted scores and failed every request in the batch."""
    huge = Sampling(max_new_tokens=6, temperature=1.0, top_k=49153, seed=5)
    with engine._wake:  # both in one batch
        bad = engine.submit(conv("Hello"), huge)
        other = engine.submit(conv("Thanks!"), Sampling(max_new_tokens=6))
    got, want = bad.completion(), engine.generate([conv("Hello")], Sampling(6, 1.0, top_k=0, seed=5))[0]
    assert got.finish_reason == "length" and got.text == want.text
    assert other.completion().finish_reason == "length"


def test_held_back_finds_the_longest_start_of_a_stop_string():
    assert held_back("abc", "cde") == 1 and held_back("xaab", "aaba") == 3 and held_back("aaab", "aab") == 0
    assert held_back("xx", "abc") == 0 and held_back("ab", "ab") == 0 and held_back("a", "ab") == 1


def test_long_stop_strings_cost_no_more_per_token(tokenizer):
    """Issue 14.4: 16 stop strings of 100 KB with 20 tokens took 60 s (each token tried every prefix length of
    every stop string). Only held text plus the new piece is searched now: well under a second here. The stops
    start like the text, so held-back prefixes and their checks are exercised."""
    text = "The quick brown fox jumps over the lazy dog. Hello world, hello there!"
    stops = [text[i : i + 3] + "#" * 100_000 for i in range(16)]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer, stop=stops)
    start = time.perf_counter()
    out = [stream.add(i) for i in ids[:20]]
    assert time.perf_counter() - start < 1.0
    assert not any(hit for _, hit in out)
    assert "".join(p for p, _ in out) + stream.finish() == tokenizer.decode(ids[:20])


@pytest.mark.slow
def test_smollm2_concurrent_greedy_equals_hf_generate():
    """Real weights, prompts of different lengths submitted at once, fewer slots than prompts."""
    questions = [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "Explain in detail how a bicycle works, step by step, for a child.",
        "2+2=?",
        "Name three colors.",
        "Why is the sky blue?",
    ]
    with load_engine("smollm2-135m", dtype="fp32", max_batch=4) as eng:
        requests = [eng.submit(conv(q), Sampling(max_new_tokens=24)) for q in questions]
        got = [token_ids(r) for r in requests]
        for request, ids in zip(requests, got):
            assert ids == hf_greedy(eng, request.prompt_ids, 24)
        assert "Paris" in eng.tokenizer.decode(got[0])
