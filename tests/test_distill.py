"""`pixiu train distill` on tiny models: the student learns the teacher, the teacher stays frozen, stored teacher
log-probs give the live teacher's loss, a vocabulary mismatch is a clear error, resume is exact."""

import json

import pytest
import torch
from interrupt import killed_after
from safetensors.torch import load_file
from test_sft import write_data

from pixiu import config
from pixiu.config import ConfigError
from pixiu.train import distill


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tokenizer):
    """A 1-layer Llama with the tiny teacher's vocabulary, random weights of its own."""
    return make_llama(tmp_path_factory.mktemp("student"), tokenizer, vocab=len(tokenizer))


def make_llama(path, tokenizer, vocab):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_cfg(tmp_path, student, teacher, *extra, run="run", steps=10):
    data = write_data(tmp_path / "sft.jsonl", n=40)
    return config.load(
        None,
        [
            f"--model.name_or_path={student}",
            "--model.dtype=fp32",
            *([f"--distill.teacher={teacher}"] if teacher else []),
            f"--data.path={data}",
            "--data.eval_size=8",
            "--data.max_len=128",
            f"--train.output_dir={tmp_path / run}",
            "--train.lr=2e-2",
            "--train.batch_size=4",
            f"--train.max_steps={steps}",
            "--train.warmup_ratio=0",
            "--gen.max_new_tokens=6",
            *extra,
        ],
    )


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_distill_learns_the_teacher_which_stays_frozen(tmp_path, student_dir, lively_dir, monkeypatch):
    teachers = []
    real = distill.load_teacher
    monkeypatch.setattr(distill, "load_teacher", lambda *a: teachers.append(real(*a)) or teachers[-1])
    final = distill.run(make_cfg(tmp_path, student_dir, lively_dir))
    rows = metrics(tmp_path / "run")
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 10
    assert rows[-1]["eval_forward_kl"] < 0.9 * rows[0]["eval_forward_kl"]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert sum(losses[-3:]) < sum(losses[:3])
    before, after = load_file(student_dir / "model.safetensors"), load_file(final / "model.safetensors")
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every student tensor moved
    (teacher,) = teachers
    on_disk = load_file(lively_dir / "model.safetensors")
    params = dict(teacher.lm.lm.named_parameters())
    assert all(not p.requires_grad for p in params.values())
    assert all(torch.equal(params[k], on_disk[k]) for k in on_disk)


@pytest.mark.parametrize("loss", ["reverse_kl", "jsd"])
def test_reverse_kl_and_jsd_go_down(tmp_path, student_dir, lively_dir, loss):
    distill.run(make_cfg(tmp_path, student_dir, lively_dir, f"--distill.loss={loss}", steps=6))
    rows = metrics(tmp_path / "run")
    assert rows[-1][f"eval_{loss}"] < rows[0][f"eval_{loss}"]


def test_stored_logprobs_give_the_live_teachers_loss(tmp_path, student_dir, lively_dir):
    """top_k = 0 stores the whole vocabulary: the first step's loss and the step-0 eval equal the live teacher's
    within 1e-5. A second run reads the file without the teacher. top_k = 5 gives a lower bound (tail bucket)."""
    distill.run(make_cfg(tmp_path, student_dir, lively_dir, run="live", steps=2))
    path = tmp_path / "teacher.safetensors"
    stored = make_cfg(
        tmp_path, student_dir, lively_dir, f"--distill.teacher_logprobs={path}", run="st", steps=2
    )
    distill.run(stored)
    assert path.exists() and not (tmp_path / "teacher.safetensors.tmp").exists()
    reread = make_cfg(tmp_path, student_dir, "", f"--distill.teacher_logprobs={path}", run="re", steps=2)
    distill.run(reread)  # no teacher configured: it can only have read the file
    live, st, re = (metrics(tmp_path / r) for r in ("live", "st", "re"))
    for a in (st, re):
        assert abs(a[0]["eval_forward_kl"] - live[0]["eval_forward_kl"]) < 1e-5
        assert abs(a[1]["loss"] - live[1]["loss"]) < 1e-5
    top5 = tmp_path / "top5.safetensors"
    distill.run(
        make_cfg(
            tmp_path,
            student_dir,
            lively_dir,
            f"--distill.teacher_logprobs={top5}",
            "--distill.top_k=5",
            run="t5",
            steps=1,
        )
    )
    assert load_file(top5)["train.ids"].shape[1] == 5
    assert metrics(tmp_path / "t5")[0]["eval_forward_kl"] <= live[0]["eval_forward_kl"] + 1e-6


def test_stored_logprobs_of_other_rows_are_refused(tmp_path, student_dir, lively_dir):
    path = tmp_path / "teacher.safetensors"
    distill.run(make_cfg(tmp_path, student_dir, lively_dir, f"--distill.teacher_logprobs={path}", steps=1))
    other = make_cfg(
        tmp_path, student_dir, "", f"--distill.teacher_logprobs={path}", "--data.packing=true", run="b"
    )
    with pytest.raises(ConfigError, match="other train rows"):
        distill.run(other)


def test_vocabulary_mismatch_names_both_sizes(tmp_path, tokenizer, lively_dir):
    small = make_llama(tmp_path / "small", tokenizer, vocab=len(tokenizer) + 8)
    with pytest.raises(
        ConfigError,
        match=rf"teacher vocabulary has {len(tokenizer)} tokens, student vocabulary {len(tokenizer) + 8}",
    ):
        distill.run(make_cfg(tmp_path, small, lively_dir))


def test_on_policy_needs_a_live_teacher():
    with pytest.raises(ConfigError, match="live teacher"):
        config.load(None, ["--distill.lmbda=0.5", "--distill.teacher_logprobs=t.safetensors"])


def test_resume_with_on_policy_batches_matches_uninterrupted_run(tmp_path, student_dir, lively_dir):
    """lmbda = 0.5: some steps train on the student's own samples. Killed after the step-2 checkpoint and resumed,
    the run makes the same on/off-policy choices, samples the same replies and ends with the same weights."""
    extra = ("--distill.lmbda=0.5", "--distill.loss=jsd", "--gen.temperature=1.0")
    full = distill.run(make_cfg(tmp_path, student_dir, lively_dir, *extra, run="a", steps=4))
    cut = make_cfg(tmp_path, student_dir, lively_dir, *extra, "--train.save_every=2", run="b", steps=4)
    with killed_after(2):
        distill.run(cut)
    resumed = distill.run(config.load(tmp_path / "b" / "config.yaml", ["--train.resume"]))
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert [r["loss"] for r in ra if "loss" in r] == [r["loss"] for r in rb if "loss" in r]
    assert {r["on_policy"] for r in ra if "on_policy" in r} == {0.0, 1.0}


def test_stored_logprobs_follow_packed_rows(tmp_path, student_dir, lively_dir):
    """Packed rows (several samples per row, targets in TargetLM's row-major order): the stored file still gives
    the live teacher's first loss within 1e-5."""
    pack = ("--data.packing=true", "--distill.loss=jsd")
    distill.run(make_cfg(tmp_path, student_dir, lively_dir, *pack, run="live", steps=1))
    path = tmp_path / "packed.safetensors"
    distill.run(
        make_cfg(tmp_path, student_dir, lively_dir, *pack, f"--distill.teacher_logprobs={path}", steps=1)
    )
    live, stored = metrics(tmp_path / "live"), metrics(tmp_path / "run")
    assert abs(live[1]["loss"] - stored[1]["loss"]) < 1e-5 and live[1]["loss"] > 0
