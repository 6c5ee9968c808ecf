"""A teacher behind an endpoint: `pixiu serve`'s echo-only completions (max_tokens 0, echo, logprobs K) score a
prompt's own tokens; `pixiu train distill --distill.teacher=http://...` reads them into the stored top-k file.
The tiny teacher is served in-process; its endpoint answers equal the local teacher's, and so does the loss."""

import math

import httpx
import pytest
import torch
from live_server import serving
from test_distill import make_cfg, make_llama, metrics

from pixiu import config
from pixiu.config import ConfigError
from pixiu.engine import load_engine
from pixiu.model import io
from pixiu.serve import api
from pixiu.train import distill
from pixiu.train.sft import prepare

K = 5


@pytest.fixture(scope="module")
def engine(lively_dir):
    e = load_engine(str(lively_dir), name="teacher", dtype="fp32", max_batch=2)
    yield e
    e.close()


@pytest.fixture(scope="module")
def url(engine):
    with serving(api.create_app({"teacher": engine})) as base:
        yield f"{base}/v1"


def post(url, **body):
    return httpx.post(f"{url}/completions", json={"model": "teacher", **body}, timeout=60)


def test_echo_scores_the_prompt_as_a_forward_pass_does(url, engine):
    """token_logprobs[j] = log p(token j | tokens < j) from one forward over the prompt; the first is null; the
    top-K are the K largest, best first; usage counts the prompt only."""
    r = post(
        url, prompt="hello there world", echo=True, logprobs=K, max_tokens=0, return_tokens_as_token_ids=True
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    ids = engine.prompt_ids("hello there world")
    lp = choice["logprobs"]
    assert choice["text"] == "hello there world" and choice["finish_reason"] == "length"
    assert lp["tokens"] == [f"token_id:{i}" for i in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    with torch.no_grad():
        want = torch.log_softmax(engine.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    for j in range(1, len(ids)):
        assert math.isclose(lp["token_logprobs"][j], want[j - 1, ids[j]].item(), abs_tol=1e-6)
        top = want[j - 1].topk(K)
        assert [int(t.removeprefix("token_id:")) for t in lp["top_logprobs"][j]] == top.indices.tolist()
        assert list(lp["top_logprobs"][j].values()) == pytest.approx(top.values.tolist(), abs=1e-6)
    assert r.json()["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}
    plain = post(url, prompt="hi", echo=True, max_tokens=0, n=2).json()["choices"]
    assert [(c["text"], c["logprobs"]) for c in plain] == [("hi", None), ("hi", None)]
    sampled = post(
        url, prompt="hello", max_tokens=3, temperature=0, logprobs=2, return_tokens_as_token_ids=True
    )
    lp = sampled.json()["choices"][0]["logprobs"]  # sampled tokens name their ids too (vLLM's extension)
    assert all(t.startswith("token_id:") for t in lp["tokens"]) and len(lp["tokens"]) == 3
    assert all(k.startswith("token_id:") for top in lp["top_logprobs"] for k in top)
    card = httpx.get(f"{url}/models/teacher").json()
    assert card["vocab_size"] == engine.vocab


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"max_tokens": 0}, "needs echo"),
        ({"max_tokens": 2, "echo": True, "logprobs": 1}, "set max_tokens to 0"),
        ({"max_tokens": 0, "echo": True, "logprobs": 21}, "logprobs"),
        ({"max_tokens": 0, "echo": True, "logprobs": 1, "stream": True}, "not streamed"),
        ({"max_tokens": -1, "echo": True}, "max_tokens"),
    ],
)
def test_bad_echo_requests_are_openai_style_400s(url, body, why):
    r = post(url, prompt="x", **body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert why in r.json()["error"]["message"]


def rows_of(tmp_path, student_dir, lively_dir):
    cfg = make_cfg(tmp_path, student_dir, lively_dir)
    from pixiu.chat.messages import Conversation
    from pixiu.data import load_data

    data = load_data(cfg.data, want=Conversation)
    loaded = io.load(cfg.model, None, for_training=True)
    return prepare("sft", data.train, data.eval, loaded, cfg)[0][:6], loaded, cfg


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tokenizer):
    return make_llama(tmp_path_factory.mktemp("student"), tokenizer, vocab=len(tokenizer))


def test_endpoint_top_k_equals_the_local_teacher(tmp_path, url, student_dir, lively_dir):
    rows, loaded, cfg = rows_of(tmp_path, student_dir, lively_dir)
    d = config.load(None, [f"--distill.teacher={url}", f"--distill.top_k={K}"]).distill
    remote = distill.EndpointTeacher(d, loaded.tokenizer, distill.vocab_size(loaded.model))
    local = distill.load_teacher(cfg, torch.device("cpu"))
    (ri, rl), (li, ll) = remote.top_k(rows, K), local.top_k(rows, K)
    assert ri.shape == li.shape == (sum(sum(s.loss_mask[1:]) for r in rows for s in r), K)
    assert torch.equal(ri, li) and torch.allclose(rl, ll, atol=1e-5, rtol=0)


def test_distill_via_the_endpoint_equals_the_local_teacher(tmp_path, url, student_dir, lively_dir):
    """The first step's loss (and the step-0 eval divergence) with the served teacher equal those with the local
    teacher's stored top-K within 1e-4; a second run in the same output directory reads the file it wrote."""
    top = (f"--distill.top_k={K}",)
    path = tmp_path / "local.safetensors"
    distill.run(
        make_cfg(
            tmp_path,
            student_dir,
            lively_dir,
            *top,
            f"--distill.teacher_logprobs={path}",
            run="local",
            steps=1,
        )
    )
    distill.run(make_cfg(tmp_path, student_dir, url, *top, run="remote", steps=1))
    local, remote = metrics(tmp_path / "local"), metrics(tmp_path / "remote")
    assert (tmp_path / "remote" / "teacher_logprobs.safetensors").exists()
    assert abs(local[1]["loss"] - remote[1]["loss"]) < 1e-4 and remote[1]["loss"] > 0
    assert abs(local[0]["eval_forward_kl"] - remote[0]["eval_forward_kl"]) < 1e-4


def test_vocabulary_mismatch_through_the_endpoint_names_both_sizes(tmp_path, url, tokenizer):
    small = make_llama(tmp_path / "small", tokenizer, vocab=len(tokenizer) + 8)
    with pytest.raises(
        ConfigError,
        match=rf"teacher vocabulary has {len(tokenizer)} tokens, student vocabulary {len(tokenizer) + 8}",
    ):
        distill.run(make_cfg(tmp_path, small, url, f"--distill.top_k={K}", steps=1))


def test_other_tokens_from_the_endpoint_are_a_clear_error(tmp_path, url, engine, student_dir, monkeypatch):
    """A server that tokenizes the text differently (here: it puts an extra token first) cannot teach token by
    token."""
    real = engine.prompt_ids
    monkeypatch.setattr(engine, "prompt_ids", lambda prompt: [engine.tokenizer.eos_token_id, *real(prompt)])
    with pytest.raises(ConfigError, match="other tokens than the student: at token 0"):
        distill.run(make_cfg(tmp_path, student_dir, url, f"--distill.top_k={K}", steps=1))


@pytest.mark.parametrize(
    "extra",
    [["--distill.top_k=0"], ["--distill.top_k=21"], ["--distill.temperature=2"], ["--distill.lmbda=0.5"]],
)
def test_endpoint_settings_it_cannot_serve_are_refused(extra):
    with pytest.raises(ConfigError, match="endpoint"):
        config.load(None, ["--distill.teacher=http://127.0.0.1:1/v1", "--distill.top_k=5", *extra])
