"""GGUF -> safetensors conversion into the cache, raced by two real processes (issue 14.6).

The GGUF parse itself is faked (transformers' GGUF reader is replaced by loading the tiny test model, slowly),
so everything after it is the real path: fresh model from the config, save_pretrained, the rename into place.
Before the fix both processes converted into one shared `.tmp` dir: one failed and a `.tmp` was left behind.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from pixiu.model import io


def _fake_gguf_reader(monkeypatch, model_dir: Path, log: Path) -> None:
    """AutoTokenizer/AutoModelForCausalLM.from_pretrained(..., gguf_file=...) -> the tiny model, after 0.5 s."""
    import transformers

    real_tok, real_model = (
        transformers.AutoTokenizer.from_pretrained,
        transformers.AutoModelForCausalLM.from_pretrained,
    )

    def tokenizer(path, gguf_file=None, **kw):
        return real_tok(model_dir if gguf_file else path, **kw)

    def model(path, gguf_file=None, **kw):
        if gguf_file is None:
            return real_model(path, **kw)
        with log.open("a") as f:
            f.write("converted\n")
        time.sleep(0.5)  # long enough for the other process to arrive while this one converts
        loaded = real_model(model_dir, **kw)
        loaded.config.quantization_config = None  # what a GGUF-loaded model carries
        return loaded

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model)


def _convert(gguf: str, start, results) -> None:
    start.wait()
    try:
        results.put(str(io.gguf_to_dir(Path(gguf))))
    except BaseException as e:  # report, so the parent can show what failed
        results.put(f"error: {type(e).__name__}: {e}")


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch, tiny_model_dir) -> tuple[Path, Path]:
    monkeypatch.setenv("PIXIU_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "models" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF fake")
    log = tmp_path / "conversions.log"
    _fake_gguf_reader(monkeypatch, tiny_model_dir, log)
    return gguf, log


def test_two_processes_converting_at_once_both_succeed(tmp_path, fake_gguf):
    gguf, log = fake_gguf
    ctx = multiprocessing.get_context("fork")  # children inherit the faked reader
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_convert, args=(str(gguf), start, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    out = tmp_path / "cache" / "gguf"
    assert not got[0].startswith("error") and got[0] == got[1], got
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text().count("converted") == 1  # one converted, the other waited and reused it
    assert (Path(got[0]) / "model.safetensors").is_file()
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_a_stale_temp_dir_from_a_killed_run_is_removed(tmp_path, fake_gguf):
    gguf, log = fake_gguf
    first = io.gguf_to_dir(gguf)
    leftovers = [first.with_name(first.name + ".tmp"), first.with_name(first.name + ".tmp-999999-dead")]
    import shutil

    shutil.rmtree(first)  # as if the earlier run died before the rename
    for d in leftovers:
        (d / "sub").mkdir(parents=True)
    assert io.gguf_to_dir(gguf) == first and (first / "config.json").is_file()
    assert not any(d.exists() for d in leftovers)
    assert log.read_text().count("converted") == 2


def test_converting_leaves_the_global_random_state_alone(fake_gguf):
    """The conversion builds a fresh model (random init) to take the GGUF's weights. It must not draw from torch's
    global generator: a run that converts (a fresh cache) then initialised its LoRA matrices from another state
    than a run that found the cache, and the quickstart's numbers depended on whether the cache was warm."""
    import torch

    gguf, log = fake_gguf
    torch.manual_seed(0)
    state = torch.get_rng_state()
    io.gguf_to_dir(gguf)
    assert log.read_text().count("converted") == 1 and torch.equal(torch.get_rng_state(), state)


def test_timing_the_cpu_dtypes_leaves_the_global_random_state_alone():
    """`dtype: auto` times bf16 against fp32 once per process, on the first load, inside a seeded stage. It drew
    its test matrices from the global generator, so a pipeline re-run that skipped a finished SFT stage trained a
    reward model from another initial state than an uninterrupted run (held-out accuracy 0.906 against 0.896)."""
    import torch

    torch.manual_seed(0)
    state = torch.get_rng_state()
    io._faster_cpu_dtype.__wrapped__()
    assert torch.equal(torch.get_rng_state(), state)
