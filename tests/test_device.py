"""One place decides where a model runs: `model.device` -> pixiu.device.pick, used by io.load (engine, generate,
score, eval) and never for a model being trained. CUDA is faked: these run on a CPU-only torch."""

from __future__ import annotations

import pytest
import torch

from pixiu import cli, config
from pixiu.device import DeviceError, pick
from pixiu.engine import load_engine
from pixiu.model import heads, io


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_auto_picks_the_first_gpu_and_cpu_forces_the_cpu(two_gpus, monkeypatch):
    assert pick("auto") == torch.device("cuda", 0)
    assert pick("cuda") == torch.device("cuda", 0)
    assert pick("cuda:1") == torch.device("cuda", 1)
    assert pick("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of `accelerate launch` uses the second GPU
    assert pick("auto") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="has 2 CUDA GPU"):
        pick("cuda:2")


def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="has 0 CUDA GPU"):
        pick("cuda")


def test_a_bad_name_lists_the_valid_ones():
    with pytest.raises(DeviceError, match=r"unknown device 'gpu'; valid: auto, cuda, cuda:N, mps, cpu"):
        pick("gpu")
    with pytest.raises(config.ConfigError, match=r"model.device: unknown device 'cuda:x'; valid: auto, cuda"):
        config.load(None, ["--model.device=cuda:x"])
    assert config.load(None, ["--model.device=cuda:1"]).model.device == "cuda:1"


@pytest.fixture
def spy(monkeypatch):
    """io.load's device choice, recorded; the model goes to the meta device (no GPU here to move it to)."""
    calls: list[str] = []
    monkeypatch.setattr(
        io, "pick", lambda name: calls.append(name) or torch.device("cpu" if name == "cpu" else "meta")
    )
    return calls


def test_entry_points_place_through_model_device(tiny_model_dir, spy):
    with load_engine(str(tiny_model_dir), dtype="fp32", device="cuda:1") as engine:
        assert engine.device.type == "meta" and engine.cache.pos.device.type == "meta"
    _, scorer = heads.load_scalar(config.ModelConfig(str(tiny_model_dir), dtype="fp32", device="cuda"))
    assert {p.device.type for p in scorer.parameters()} == {"meta"}  # the new head sits beside the body
    assert spy == ["cuda:1", "cuda"]
    with load_engine(str(tiny_model_dir), dtype="fp32", quantize="int8"):  # int8 is CPU-only: auto means cpu
        assert spy[-1] == "cpu"


def test_training_models_stay_for_accelerate(tiny_model_dir, spy):
    cfg = config.ModelConfig(str(tiny_model_dir), dtype="fp32", device="cuda")
    loaded = io.load(cfg, config.LoraConfig(r=0), for_training=True)
    assert spy == [] and next(loaded.model.parameters()).device.type == "cpu"


def test_generate_device_flag(tiny_model_dir, capsys, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(io, "pick", lambda name: calls.append(name) or torch.device("cpu"))
    cli.main(["generate", str(tiny_model_dir), "Hello", "--device", "cpu", "--max_new_tokens", "2"])
    assert calls == ["cpu"] and ">>> Hello" in capsys.readouterr().out


def test_auto_dtype_follows_the_device(two_gpus, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert io.compute_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    # `model.device=cpu` on a GPU host: the CPU's own measurement, not the GPU's bf16
    assert io.compute_dtype("auto", torch.device("cpu")) == io._faster_cpu_dtype()
