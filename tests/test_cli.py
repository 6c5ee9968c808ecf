import json

import pytest

from pixiu import cli


def test_bad_row_exits_with_file_and_line(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
        '{"messages": [{"role": "user", "content": "hi"}\n'
    )
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "sft", f"--data.path={data}", "--model.name_or_path=/nonexistent/model"])
    assert str(e.value).startswith(f"error: {data}:2")


def test_bad_override_is_a_clean_error():
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "sft", "--train.lr=fast"])
    assert str(e.value) == "error: train.lr must be float, got 'fast'"


def test_help_lists_fields(capsys):
    cli.main(["train", "sft", "--help"])
    out = capsys.readouterr().out
    assert "--lora.r=0" in out and "LoRA rank" in out


def test_data_inspect_marks_trained_tokens(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "say hi", "input": "", "output": "hello there"}) + "\n")
    cli.main(["data", "inspect", str(data), "--model", str(tiny_model_dir)])
    out = capsys.readouterr().out
    assert "format: alpaca (detected)" in out and "records: {'Conversation': 1}" in out
    assert "[[hello there<|im_end|>\n]]" in out


def test_data_inspect_p95_is_not_above_the_max(tmp_path, tiny_model_dir, capsys):
    """Issue 14.8: exclusive quantiles extrapolate past the largest value on small files (p95 > max)."""
    data = tmp_path / "d.jsonl"
    rows = [{"instruction": "say hi " * n, "input": "", "output": "ok"} for n in (1, 2, 30)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli.main(["data", "inspect", str(data), "--model", str(tiny_model_dir)])
    stats = capsys.readouterr().out.split("tokens (")[1].split("\n")[0]
    p95, top = (int(stats.split(f"{k} ")[1].split(",")[0]) for k in ("p95", "max"))
    assert p95 <= top


def test_data_inspect_skips_an_undecodable_first_row(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"instruction": "caf\xe9", "output": "x"}\n{"instruction": "a", "output": "b"}\n')
    cli.main(["data", "inspect", str(data), "--model", str(tiny_model_dir), "--skip_bad_rows"])
    out = capsys.readouterr().out
    assert "format: alpaca (detected)" in out and "skipped rows: 1" in out and "not valid UTF-8" in out
