"""Encoder-decoder models (issue 18.3) on a tiny random T5 built here: `pixiu train sft` (full and LoRA) memorises
four answers, generation returns them through every engine path, save/reload keeps the logits, `pixiu eval` scores
them, and the stages that need a causal LM refuse a T5 before anything loads."""

import json

import pytest
import torch

from pixiu import cli, config
from pixiu.chat import Conversation
from pixiu.chat.messages import Message
from pixiu.config import ConfigError, ModelConfig
from pixiu.data.collate import Pair, collate_pairs
from pixiu.engine import Sampling, generate, load_engine
from pixiu.eval import run
from pixiu.model import io, seq2seq
from pixiu.train.stages import STAGES

QA = [
    ("What is the capital of France?", "Paris"),
    ("What is two plus two?", "four"),
    ("Say hello.", "hello world"),
    ("Name a lazy animal.", "the dog"),
]
CORPUS = [f"{q} {a}" for q, a in QA] + ["The quick brown fox jumps over the lazy dog.", "yes no maybe thanks"]


def make_t5_tokenizer():
    """A 300-token byte-level BPE with T5's specials (<pad> 0, </s> 1) that closes every text with </s>, as
    T5's SentencePiece tokenizer does; no chat template, so prompts are plain text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """A saved 2+2-layer T5 (d_model 64) and its tokenizer: a Hugging Face model directory."""
    from transformers import T5Config, T5ForConditionalGeneration

    tok = make_t5_tokenizer()
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-t5")
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_data(path):
    path.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in QA * 4))
    return path


def train_argv(tmp, model_dir, run, *extra):
    data = write_data(tmp / "qa.jsonl")
    return [
        "train",
        "sft",
        f"--model.name_or_path={model_dir}",
        "--model.dtype=fp32",
        f"--data.path={data}",
        "--data.eval_size=0",
        "--data.max_len=64",
        f"--train.output_dir={tmp / run}",
        "--train.batch_size=4",
        "--train.warmup_ratio=0",
        "--train.log_every=5",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, t5_dir):
    """`pixiu train sft` on the four questions: full fine-tuning (60 steps at 5e-3) and LoRA on T5's query and
    value projections (150 steps at 1e-2, merged copy too) -> {"full": run dir, "lora": run dir}."""
    tmp = tmp_path_factory.mktemp("t5-runs")
    cli.main(train_argv(tmp, t5_dir, "full", "--lora.r=0", "--train.lr=5e-3", "--train.max_steps=60"))
    lora = ("--lora.r=8", "--lora.alpha=16", "--lora.target_modules=q,v", "--train.merge_lora=true")
    cli.main(train_argv(tmp, t5_dir, "lora", *lora, "--train.lr=1e-2", "--train.max_steps=150"))
    return {"full": tmp / "full", "lora": tmp / "lora"}


def convs():
    return [Conversation([Message("user", q)]) for q, _ in QA]


def losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_sft_memorises_and_generates_the_answers(trained, kind):
    """Loss falls (first logged mean over 5 steps vs last) and greedy replies are the trained answers, through
    `generate` on the loaded model (the path of `pixiu generate`) and the served engine (`pixiu chat/serve`)."""
    run = trained[kind]
    rows = losses(run)
    assert rows[-1] < rows[0] / 5, rows
    loaded = io.load(ModelConfig(str(run / "final"), dtype="fp32"))
    assert seq2seq.is_encoder_decoder(loaded.model) and loaded.template.name == "plain"
    golden = [a for _, a in QA]
    assert generate(loaded, convs(), Sampling(8)) == golden
    with load_engine(str(run / "final"), dtype="fp32", max_batch=3) as engine:  # 4 prompts: two batches
        done = engine.generate(convs(), Sampling(8))
        assert [c.text for c in done] == golden
        assert all(c.finish_reason == "stop" for c in done)  # EOS ended each reply
        assert "".join(engine.stream(convs()[0], Sampling(8))) == "Paris"
        cut = engine.generate(convs()[2:3], Sampling(1))[0]
        assert (cut.finish_reason, cut.completion_tokens) == ("length", 1)
        seeded = Sampling(8, temperature=1.5, seed=3)  # each row draws from its own seeded generator
        assert [c.text for c in engine.generate(convs(), seeded)] == [
            c.text for c in engine.generate(convs(), seeded)
        ]
        scored = engine.generate(convs()[:1], Sampling(8, logprobs=2))[0]
        assert len(scored.logprobs) == scored.completion_tokens == 4  # "Pa", "r", "is", </s>
        assert all(t.top[0][0] == t.token and t.logprob <= 0 for t in scored.logprobs)  # greedy: the best


def test_the_server_answers_with_the_trained_reply(trained):
    """`pixiu serve`'s OpenAI routes over the T5 engine, whole and streamed, with the tokens counted."""
    from fastapi.testclient import TestClient

    from pixiu.serve import api

    with load_engine(str(trained["full"] / "final"), dtype="fp32", name="t5") as engine:
        tc = TestClient(api.create_app({"t5": engine}))
        body = {
            "model": "t5",
            "messages": [{"role": "user", "content": QA[0][0]}],
            "max_tokens": 8,
            "temperature": 0,
        }
        res = tc.post("/v1/chat/completions", json=body).json()
        assert res["choices"][0]["message"]["content"] == "Paris"
        assert res["usage"]["prompt_tokens"] == len(engine.prompt_ids(convs()[0]))
        with tc.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            chunks = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
        assert (
            "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Paris"
        )
        # scoring a prompt (echo + logprobs, max_tokens 0) needs a causal LM: a 400 that says so, not a 500
        echo = {"model": "t5", "prompt": QA[0][0], "echo": True, "logprobs": 2, "max_tokens": 0}
        res = tc.post("/v1/completions", json=echo)
        assert res.status_code == 400 and "encoder-decoder" in res.json()["error"]["message"]


def test_pixiu_generate_prints_the_answer(trained, capsys):
    cli.main(
        ["generate", str(trained["full"] / "final"), QA[1][0], "--dtype", "fp32", "--max_new_tokens", "8"]
    )
    assert capsys.readouterr().out.strip().endswith("four")


def logits(loaded, rows=QA):
    """(N, V) logits at every target token of the four trained pairs."""
    convs = [Conversation([Message("user", q), Message("assistant", a)]) for q, a in rows]
    batch = collate_pairs(
        [p for c in convs for p in seq2seq.pairs(loaded.template, c)], loaded.tokenizer.pad_token_id
    )
    with torch.no_grad():
        return seq2seq.Seq2SeqLM(loaded.model.eval())(batch)[0]


def test_save_reload_keeps_the_logits(trained, tmp_path):
    """The adapter reloads and saves again bit for bit; the merged copy written by train.merge_lora and a merge
    saved here give the adapter's logits; full weights reload bit for bit."""
    fp32 = lambda p: ModelConfig(str(p), dtype="fp32")  # noqa: E731
    adapter = io.load(fp32(trained["lora"] / "final"))
    assert io.read_meta(str(trained["lora"] / "final"))["adapter"]
    reference = logits(adapter)
    again = io.load(fp32(io.save(tmp_path / "adapter", adapter)))
    assert torch.equal(logits(again), reference)
    for merged in (trained["lora"] / "merged", io.save(tmp_path / "merged", again, merge=True)):
        assert (merged / "model.safetensors").is_file()
        torch.testing.assert_close(logits(io.load(fp32(merged))), reference, atol=1e-5, rtol=1e-5)
    full = io.load(fp32(trained["full"] / "final"))
    assert torch.equal(logits(io.load(fp32(io.save(tmp_path / "full", full)))), logits(full))


def test_pixiu_eval_scores_the_answers(trained, tmp_path):
    """`pixiu eval --tasks degeneration` with reference answers: every reply is exact."""
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "answer": a}) + "\n" for q, a in QA))
    out = tmp_path / "eval"
    argv = ["eval", str(trained["lora"] / "final"), "--tasks", "degeneration", "--data", str(data)]
    cli.main([*argv, "--out", str(out), "--dtype", "fp32", "--max_new_tokens", "8"])
    metrics = json.loads((out / "results.json").read_text())["tasks"]["degeneration"]["metrics"]
    assert metrics["exact_match"] == 1.0 and metrics["checked"] == 4 and metrics["token_limit"] == 0.0


def test_the_causal_scoring_forward_refuses_a_t5(t5_dir):
    from pixiu.model import TargetLM

    with pytest.raises(ValueError, match="encoder-decoder"):
        TargetLM(io.load(ModelConfig(str(t5_dir), dtype="fp32")).model)


def test_int8_serving_refuses_a_t5(t5_dir):
    with pytest.raises(ValueError, match="--quantize int8 is for causal LMs"):
        load_engine(str(t5_dir), dtype="fp32", quantize="int8")


def test_log_likelihood_tasks_refuse_a_t5(t5_dir, tmp_path):
    data = tmp_path / "text.jsonl"
    data.write_text(json.dumps({"text": "The quick brown fox."}) + "\n")
    argv = [str(t5_dir), "--tasks", "perplexity", "--data", str(data), "--out", str(tmp_path / "eval")]
    with pytest.raises(SystemExit, match=r"encoder-decoder \(t5\): log-likelihood scoring needs a causal LM"):
        run.cli(argv)


@pytest.mark.parametrize("stage", sorted(s for s, st in STAGES.items() if not st.encoder_decoder))
def test_causal_only_stages_refuse_a_t5_before_loading(tmp_path, t5_dir, stage):
    argv = train_argv(tmp_path, t5_dir, "run", "--ppo.reward_fn=arithmetic")  # PPO checks for a reward first
    with pytest.raises(ConfigError, match=rf"`pixiu train {stage}` needs a causal.*encoder-decoder \(t5\)"):
        STAGES[stage].run(config.load(None, argv[2:]))
    assert not (tmp_path / "run").exists()  # refused before the output directory (or the model) was made


def test_rendering_is_plain_text_with_eos_unless_a_template_is_named(t5_dir):
    """Plain: the question alone, closed by </s>; earlier turns one per line; the target is the reply and </s>.
    A named chat template renders the source with its markers."""
    tok = io.load_tokenizer(str(t5_dir))
    plain = seq2seq.template("default", tok)
    conv = Conversation([Message("user", "Say hello."), Message("assistant", "hello world")])
    ids = lambda text: tok(text)["input_ids"]  # noqa: E731
    assert seq2seq.pairs(plain, conv) == [Pair(ids("Say hello."), ids("hello world"))]
    assert ids("four")[-1] == tok.eos_token_id
    two = conv.add("user", "Name a lazy animal.").add("assistant", "the dog")
    assert seq2seq.pairs(plain, two, "last") == [
        Pair(ids("Say hello.\nhello world\nName a lazy animal."), ids("the dog"))
    ]
    assert len(seq2seq.pairs(plain, two)) == 2
    chatml = seq2seq.template("chatml", tok)
    assert seq2seq.pairs(chatml, conv)[0].source_ids == ids(
        "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_prompt_learning_methods_are_refused_on_t5(tmp_path, t5_dir):
    from pixiu.train import sft

    cfg = config.load(None, train_argv(tmp_path, t5_dir, "run", "--lora.r=8", "--lora.method=prefix")[2:])
    with pytest.raises(ConfigError, match="lora.method=prefix is not supported on encoder-decoder models"):
        sft.run(cfg)


def test_resume_matches_uninterrupted_run(tmp_path, t5_dir):
    """LoRA SFT with a held-out loss, killed after the step-4 checkpoint and resumed: the adapter and the loss
    curve equal those of the uninterrupted run, and the held-out loss falls."""
    from interrupt import killed_after
    from safetensors.torch import load_file

    from pixiu.train import sft

    def cfg(run, *extra):
        argv = train_argv(
            tmp_path, t5_dir, run, "--lora.r=4", "--train.lr=1e-2", "--train.max_steps=8", *extra
        )
        return config.load(
            None, [*argv[2:], "--data.eval_size=4", "--train.eval_every=4", "--train.log_every=1"]
        )

    full = sft.run(cfg("a"))
    with killed_after(4):
        sft.run(cfg("b", "--train.save_every=4"))
    resumed = sft.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]))
    a, b = load_file(full / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = {
        r: [json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()] for r in "ab"
    }
    curve = {r: [(x["step"], x.get("loss"), x.get("eval_loss")) for x in rows[r]] for r in "ab"}
    assert curve["a"] == curve["b"] and len([c for c in curve["a"] if c[1] is not None]) == 8
    held_out = [x["eval_loss"] for x in rows["a"] if "eval_loss" in x]  # steps 0, 4, 8
    assert len(held_out) == 3 and held_out[-1] < held_out[0]


def test_data_inspect_renders_plain_text_for_a_t5(t5_dir, tmp_path, capsys):
    """`pixiu data inspect --model T5` counts tokens and marks the trained reply in the plain format (it used to
    stop at "this tokenizer has no chat template")."""
    cli.main(["data", "inspect", str(write_data(tmp_path / "qa.jsonl")), "--model", str(t5_dir)])
    out = capsys.readouterr().out
    assert "first record, template 'plain'" in out
    assert f"{QA[0][0]}\n[[{QA[0][1]}" in out
