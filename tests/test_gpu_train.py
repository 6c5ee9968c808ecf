"""Training that fills a GPU, checked on the CPU: token-budget batches, the chunked head of a trained LM head,
train.compile, the bf16 LoRA base, and bench/gpu_train.py's CPU smoke run."""

import functools
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from pixiu import config
from pixiu.chat import Conversation, get_template
from pixiu.config import LoraConfig, ModelConfig, TrainConfig
from pixiu.data.collate import collate, plan
from pixiu.model import TargetLM, io
from pixiu.model import forward as fwd
from pixiu.train import sft
from pixiu.train.loop import Rows, train

QA = [
    ("hi", "hello there"),
    ("what is two plus two", "two plus two is four, as everyone knows"),
    ("你好", "你好，我是一个助手。"),
    ("thanks", "you are welcome"),
    ("is it good", "yes it is good, very good indeed, thank you for asking"),
    ("help me please with this long question about foxes and dogs", "sure"),
]


def _rows(tokenizer, n=12):
    tpl = get_template("default", tokenizer)
    convs = [
        Conversation.from_openai([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
        for q, a in (QA * 3)[:n]
    ]
    return [[tpl.render(c)] for c in convs]


def _first_step(tiny_model_dir, tmp_path, rows: Rows, grad_accum: int) -> dict:
    """One optimizer step over every row of `rows` (fp32 full fine-tuning) -> its metrics row."""
    from accelerate import Accelerator

    torch.manual_seed(0)
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"), LoraConfig(r=0), for_training=True)
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(TargetLM(loaded.model))
    cfg = TrainConfig(max_steps=1, grad_accum=grad_accum, warmup_ratio=0.0, output_dir=str(tmp_path))
    (row,) = train(model, rows, sft.sft_loss, cfg, accelerator, tmp_path)
    return row


def test_token_budget_plan_fits_the_budget_and_keeps_its_count():
    lengths = [(i * 37) % 90 + 5 for i in range(101)] + [300]  # the last row is over the budget
    for world in (1, 2, 3):
        a = plan(lengths, 4, seed=1, epoch=0, group_by_length=True, tokens=256, world=world)
        assert sorted(i for b in a for i in b) == list(range(102))
        for b in a:
            shards = [b[r::world] for r in range(world)]
            padded = max(len(s) * max(lengths[i] for i in s) for s in shards if s)
            assert padded <= 256 or len(b) <= world  # only a lone over-long row may exceed it
        b = plan(lengths, 4, seed=1, epoch=1, group_by_length=True, tokens=256, world=world)
        assert len(a) == len(b) and a != b  # same count every epoch (the loop's steps), a new order
        assert a == plan(lengths, 4, seed=1, epoch=0, group_by_length=True, tokens=256, world=world)
    short = plan([10] * 40, 4, 0, 0, True, tokens=100)
    assert [len(b) for b in short] == [10] * 4  # 10 rows of 10 tokens instead of batch_size 4


def test_token_budget_batches_give_the_loss_and_gradients_of_fixed_batches(
    tmp_path, tokenizer, tiny_model_dir
):
    """The same 12 samples in one fixed batch of 12, or in micro-batches cut by a 300-token budget and accumulated
    into one step: the per-token loss and the gradient norm agree within 1e-5 (float summation order)."""
    rows = _rows(tokenizer)
    pad = tokenizer.pad_token_id
    fixed = _first_step(tiny_model_dir, tmp_path / "fixed", Rows(rows, pad, 12), grad_accum=1)
    budget = Rows(rows, pad, 12, tokens_per_batch=300)
    micro = budget.epoch(0, 1)
    assert len(micro) >= 3 and all(collate([rows[i] for i in b], pad).input_ids.numel() <= 300 for b in micro)
    tokens = _first_step(tiny_model_dir, tmp_path / "tokens", budget, grad_accum=len(micro))
    assert tokens["loss"] == pytest.approx(fixed["loss"], rel=1e-5, abs=1e-5)
    assert tokens["grad_norm"] == pytest.approx(fixed["grad_norm"], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("frozen", [False, True])
def test_chunked_head_equals_one_pass_for_a_trained_head(tokenizer, tiny_model_dir, frozen):
    """log p(target) in checkpointed chunks equals one plain cross-entropy pass, values and the gradients of the
    states and of the (tied, trained) head weight, within 1e-5 in fp32; a trained head chunks once N > 2H."""
    torch.manual_seed(0)
    model = TargetLM(io.load(ModelConfig(str(tiny_model_dir), dtype="fp32")).model)
    weight = model.lm.get_output_embeddings().weight
    weight.requires_grad_(not frozen)
    hidden = weight.shape[1]
    n = 2 * hidden + 77  # past 2H: the trained head chunks too
    targets = torch.randint(0, weight.shape[0], (n,))
    base = torch.randn(n, hidden)

    def run(chunk: int):
        states = base.clone().requires_grad_()
        logps = model.target_logps(states, targets, chunk=chunk)
        (logps * torch.linspace(-1, 2, n)).sum().backward()  # uneven upstream gradients, as in DPO or PPO
        grads = [states.grad] + ([] if frozen else [weight.grad.clone()])
        weight.grad = None
        return logps.detach(), grads

    plain = fwd.token_logps(model.head(base), targets).detach()
    one, one_grads = run(10_000)
    chunked, chunked_grads = run(64)
    torch.testing.assert_close(one, plain, atol=0, rtol=0)
    torch.testing.assert_close(chunked, plain, atol=1e-5, rtol=1e-5)
    for g, h in zip(one_grads, chunked_grads, strict=True):
        torch.testing.assert_close(h, g, atol=1e-5, rtol=1e-5)
    batch = collate(_rows(tokenizer, 4), tokenizer.pad_token_id)
    nll, logps = model(batch, nll=True)[0], model(batch, logps=True)[0]
    assert nll.item() == pytest.approx(-logps.sum().item(), rel=1e-6)  # the SFT loss of the same log-probs


def test_train_compile_gives_the_eager_losses(tmp_path, tiny_model_dir, monkeypatch):
    """train.compile=true compiles each decoder layer; two SFT steps give the eager run's losses. The backend
    here is aot_eager (dynamo + AOTAutograd, no C++ codegen), so the test stays fast on a busy 2-core CPU;
    inductor runs on the GPU (bench/gpu_train.py)."""
    compiled = []

    def compile_layers(model, backend="inductor"):
        compiled.append(len(list(fwd.base_lm(model).get_decoder().layers)))
        fwd.compile_layers(model, backend="aot_eager")

    monkeypatch.setattr(sft, "compile_layers", compile_layers)
    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
            + "\n"
            for q, a in QA * 4
        )
    )

    def losses(run: str, *extra: str) -> list[float]:
        args = ["--lora.r=0", "--train.max_steps=2", "--data.eval_size=0", "--train.batch_size=4", *extra]
        base = [f"--model.name_or_path={tiny_model_dir}", "--model.dtype=fp32", f"--data.path={data}"]
        sft.run(config.load(None, [*base, f"--train.output_dir={tmp_path / run}", *args]))
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    eager = losses("eager")
    comp = losses("compiled", "--train.compile=true")
    assert compiled == [2]
    assert len(eager) == 2 and comp == pytest.approx(eager, rel=1e-5, abs=1e-5)


def test_bf16_lora_base_has_no_fp32_copy(tiny_model_dir):
    """A bf16 LoRA run loads the frozen base in bf16 and keeps it so once prepared: only the adapters (peft's
    fp32 default, a few MB) are fp32. Full fine-tuning keeps fp32 master weights by design."""
    from accelerate import Accelerator

    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="bf16"), LoraConfig(r=4), for_training=True)
    model = Accelerator(cpu=True).prepare(TargetLM(loaded.model))
    frozen = [p.dtype for p in model.parameters() if not p.requires_grad]
    trained = [p.dtype for p in model.parameters() if p.requires_grad]
    assert frozen and set(frozen) == {torch.bfloat16}
    assert trained and set(trained) == {torch.float32}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < 0.2 * sum(
        p.numel() for p in model.parameters()
    )


@functools.cache
def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_train.py"
    spec = importlib.util.spec_from_file_location("gpu_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_train"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # five tiny training runs with a 49K-token head: ~1 min idle, several on a busy CPU
def test_gpu_train_bench_cpu_smoke(tmp_path):
    """bench/gpu_train.py --cpu-smoke runs every measurement on a tiny random model and returns numbers."""
    result = _bench().main(["--cpu-smoke", "--no-trl", "--out", str(tmp_path)])
    names = {r["name"] for r in result["rows"]}
    assert {"sft lora", "sft full", "sft packed", "dpo", "ppo"} <= names
    for r in result["rows"]:
        assert r["value"] > 0, r
    assert json.loads((tmp_path / "gpu_train.json").read_text())["rows"] == result["rows"]


@pytest.mark.slow  # two torchrun launches: ~15 s on an idle 2-core CPU, minutes on a busy one
def test_fsdp_on_two_cpu_processes_matches_one(tmp_path, tiny_model_dir):
    """accelerate routes FSDP to accelerator devices only (on a CPU `accelerate launch` with fsdp.yaml runs DDP), so
    this checks what FSDP changes for pixiu at the torch level: TargetLM and the SFT loss under FSDP2 (per-layer
    `fully_shard` units, as accelerate's fsdp_version 2 applies them) on 2 gloo CPU processes. The summed loss
    and the gathered gradients (trained, tied head on its chunked path) equal one process's within 1e-5, and the
    full state dict gathers to the original weights."""
    import os
    import subprocess

    from safetensors.torch import load_file

    worker = Path(__file__).with_name("fsdp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for n in (1, 2):  # --standalone: a rendezvous on a free local port (the default is a fixed 29500)
        run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
        args = [str(worker), str(tiny_model_dir), str(tmp_path / str(n))]
        done = subprocess.run([*run, *args], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    one, two = (load_file(tmp_path / str(n) / "grads.safetensors") for n in (1, 2))
    assert one.keys() == two.keys() and len(one) > 10
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=1e-5)
    saved = load_file(tiny_model_dir / "model.safetensors")
    gathered = load_file(tmp_path / "2" / "weights.safetensors")
    for k, v in saved.items():
        torch.testing.assert_close(gathered["lm." + k], v, atol=0, rtol=0)


@pytest.mark.parametrize("rank", [0, 1])
def test_sharded_final_save_gathers_on_every_process(tmp_path, tiny_model_dir, rank):
    """Under FSDP / ZeRO-3 the full weights must be gathered by every process (a collective): before, only the
    main process saved, so the others never joined and the run hung at its last step. Each rank gathers; the
    main one writes those gathered weights (here: doubled, to see they are the ones written); no out/merged."""
    from types import SimpleNamespace

    from safetensors.torch import load_file

    from pixiu.train import stages

    cfg = config.load(None, [f"--train.output_dir={tmp_path}", "--train.merge_lora", "--lora.r=0"])
    loaded = io.load(ModelConfig(str(tiny_model_dir), dtype="fp32"))
    calls = []

    def get_state_dict(model):
        calls.append(rank)
        return {k: v * 2 for k, v in model.state_dict().items()}

    acc = SimpleNamespace(
        distributed_type="DistributedType.FSDP", is_main_process=rank == 0, get_state_dict=get_state_dict,
        wait_for_everyone=lambda: None,
    )  # fmt: skip
    job = stages.Job(cfg, "sft", acc, tmp_path, 0.0)
    final = stages.finish(job, loaded, [])
    assert calls == [rank]
    if rank == 0:
        saved = load_file(final / "model.safetensors")
        name = "model.layers.0.mlp.up_proj.weight"
        torch.testing.assert_close(saved[name], 2 * loaded.model.state_dict()[name])
        assert not (tmp_path / "merged").exists()
    else:
        assert not final.exists()
