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
