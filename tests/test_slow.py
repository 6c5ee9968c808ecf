"""Slow tests: the real embedded SmolLM2, processes killed with SIGKILL, and two-process data parallel runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pixiu import config
from pixiu.chat import Conversation, get_template
from pixiu.config import ModelConfig
from pixiu.engine import Sampling, generate
from pixiu.model import io

pytestmark = pytest.mark.slow
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONV = [
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "2 + 2 = 4."},
    {"role": "user", "content": "用中文再说一遍。"},
    {"role": "assistant", "content": "二加二等于四。"},
]


@pytest.fixture(scope="module")
def smollm():
    return io.load(ModelConfig("smollm2-135m", dtype="fp32"))


def test_default_template_matches_smollm2_and_masks_assistant_tokens(smollm):
    tok = smollm.tokenizer
    rendered = get_template("default", tok).render(Conversation.from_openai(CONV))
    assert rendered.input_ids == list(tok.apply_chat_template(CONV, tokenize=True)["input_ids"])
    trained = tok.decode([i for i, m in zip(rendered.input_ids, rendered.loss_mask) if m])
    assert trained == "2 + 2 = 4.<|im_end|>\n二加二等于四。<|im_end|>\n"


def test_embedded_model_answers(smollm):
    conv = Conversation.from_openai([{"role": "user", "content": "What is the capital of France?"}])
    (reply,) = generate(smollm, [conv], Sampling(max_new_tokens=20))
    assert "Paris" in reply


def test_lora_sft_on_alpaca_lowers_heldout_loss_and_reloads(tmp_path):
    alpaca = SHARED / "alpaca" / "alpaca_data.json"
    if not alpaca.exists():
        pytest.skip("shared alpaca data absent")
    rows = json.loads(alpaca.read_text())[:96]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    cfg = config.load(
        None,
        [
            "--model.dtype=fp32",
            "--lora.r=16",
            f"--data.path={tmp_path / 'a.json'}",
            "--data.eval_size=32",
            "--data.max_len=128",
            f"--train.output_dir={tmp_path / 'run'}",
            "--train.lr=1e-3",
            "--train.batch_size=8",
            "--train.max_steps=8",
            "--train.warmup_ratio=0",
        ],
    )
    from pixiu.train import sft

    final = sft.run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"] - 0.05
    reloaded = io.load(ModelConfig(str(final), dtype="fp32"))
    (reply,) = generate(
        reloaded,
        [Conversation.from_openai([{"role": "user", "content": "Name a color."}])],
        Sampling(max_new_tokens=16),
    )
    assert reply.strip()


def _cli(tmp_path, model_dir, out, *extra):
    data = tmp_path / "sft.jsonl"
    if not data.exists():
        qa = [
            ("hi", "hello there"),
            ("what is two plus two", "four"),
            ("你好", "你好！"),
            ("thanks", "welcome"),
        ]
        data.write_text(
            "".join(
                json.dumps(
                    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                )
                + "\n"
                for q, a in qa * 16
            )
        )
    return [
        "train",
        "sft",
        f"--model.name_or_path={model_dir}",
        "--model.dtype=fp32",
        f"--data.path={data}",
        "--data.eval_size=8",
        "--lora.r=4",
        "--lora.dropout=0.1",
        f"--train.output_dir={out}",
        "--train.batch_size=4",
        "--train.lr=3e-3",
        *extra,
    ]


def _run(args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "pixiu.cli", *args], check=True, capture_output=True, text=True, **kw
    )


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, tiny_model_dir):
    steps = ["--train.max_steps=60", "--train.save_every=5"]
    _run(_cli(tmp_path, tiny_model_dir, tmp_path / "full", *steps))
    args = _cli(tmp_path, tiny_model_dir, tmp_path / "cut", *steps)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixiu.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = tmp_path / "cut" / "checkpoints"
    while proc.poll() is None and not any(ckpt.glob("step-*")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "final").exists(), "the run finished before it could be killed"
    resumed = _run([*args, "--train.resume=true"])
    assert "resume: continuing from" in resumed.stdout
    a = load_file(tmp_path / "full" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "cut" / "final" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [
        [
            json.loads(x)["loss"]
            for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)
        ]
        for d in ("full", "cut")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 60


def test_two_processes_match_one(tmp_path, tiny_model_dir):
    """Global batch 8: one process x 8 rows vs two processes x 4 rows. Same data order and loss normalisation,
    so the results differ only by float summation order (gloo all-reduce): tolerance 1e-5."""
    steps = ["--train.max_steps=6", "--lora.dropout=0"]
    _run(_cli(tmp_path, tiny_model_dir, tmp_path / "one", "--train.batch_size=8", *steps))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate needs mpirun for multi-CPU);
    # --multi_gpu goes through torchrun, and pixiu's Accelerator(cpu=True) then runs gloo DDP on the CPU.
    launch = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "-m",
        "pixiu.cli",
    ]
    subprocess.run(
        [*launch, *_cli(tmp_path, tiny_model_dir, tmp_path / "two", *steps)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    a = load_file(tmp_path / "one" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "two" / "final" / "adapter_model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    la = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la if "loss" in r] == pytest.approx(
        [r["loss"] for r in lb if "loss" in r], rel=1e-5
    )
    assert [r["eval_loss"] for r in la if "eval_loss" in r] == pytest.approx(
        [r["eval_loss"] for r in lb if "eval_loss" in r], rel=1e-5
    )
