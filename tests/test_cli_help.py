"""The newcomer's first commands: help on stdout with exit 0 at every level, an unknown command on stderr with a
non-zero exit, third-party deprecation warnings off the screen but in the run's log, templates described."""

import subprocess
import sys

import pytest

from pixiu import cli


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"], ["help"]])
def test_top_level_help_lists_every_command_on_stdout(argv, capsys):
    cli.main(argv)  # returns: exit status 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: pixiu ") and "COMMAND" in out.splitlines()[0] and not err
    listed = [
        line.split()[0]
        for line in out.splitlines()
        if line.startswith("  ") and line.split()[0] in cli.COMMANDS
    ]
    assert listed == list(cli.COMMANDS)  # one line per command, in order


@pytest.mark.parametrize("argv", [["train"], ["train", "--help"], ["train", "-h"], ["help", "train"]])
def test_train_help_lists_the_stages(argv, capsys):
    from pixiu.cli import STAGE_HELP

    cli.main(argv)
    out, err = capsys.readouterr()
    assert not err and out.startswith("usage: pixiu train {")
    stages = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert set(stages) == set(STAGE_HELP)  # every stage, one described line each
    assert all(STAGE_HELP[s] in out for s in stages)


@pytest.mark.parametrize("argv", [["data"], ["data", "--help"], ["help", "data"]])
def test_data_help_lists_its_commands(argv, capsys):
    cli.main(argv)
    out, err = capsys.readouterr()
    from pixiu.cli import DATA_COMMANDS

    assert not err and out.startswith("usage: pixiu data COMMAND")
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == list(DATA_COMMANDS)  # every command, one described line each
    assert "format, counts, token lengths" in out


def _pixiu(*args: str, code: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "pixiu.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_streams_and_exit_codes_in_a_real_process():
    ok = _pixiu("--help")
    assert ok.returncode == 0 and ok.stdout.startswith("usage: pixiu ") and not ok.stderr
    bad = _pixiu("nope")
    assert bad.returncode == 1 and not bad.stdout
    assert bad.stderr.startswith("pixiu: unknown command 'nope'") and "usage: pixiu " in bad.stderr


def test_third_party_deprecations_leave_the_screen_but_stay_in_the_log(tmp_path):
    code = f"""
import warnings
from pixiu import cli
cli.quiet_warnings()
cli.log_warnings_to({str(tmp_path)!r})
warnings.warn_explicit("`is_gradient_checkpointing` is deprecated", FutureWarning,
                       "/venv/lib/site-packages/transformers/modeling_utils.py", 3314)
warnings.warn_explicit("old api", DeprecationWarning, "/venv/lib/site-packages/peft/tuners.py", 7,
                       module="peft.tuners")
warnings.warn("pixiu: 3 rows skipped", UserWarning)
"""
    run = _pixiu(code=code)
    assert run.returncode == 0, run.stderr
    assert "is_gradient_checkpointing" not in run.stderr and "old api" not in run.stderr
    assert "UserWarning: pixiu: 3 rows skipped" in run.stderr  # a warning of our own still shows
    log = (tmp_path / "warnings.log").read_text()
    assert "FutureWarning: `is_gradient_checkpointing` is deprecated" in log
    assert "DeprecationWarning: old api" in log and "3 rows skipped" in log


def test_templates_show_family_and_an_example_render(capsys):
    from pixiu.chat.templates import list_templates

    cli.main(["templates"])
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert [h.split()[0] for h in heads] == list_templates()
    assert all(len(h.split()) > 1 for h in heads)  # every name has its family
    assert (
        "smollm     SmolLM, SmolLM2\n    <|im_start|>system\n    Be brief.<|im_end|>\n    <|im_start|>user\n"
        in out
    )
    assert "llama3     Llama 3, 3.1, 3.2, 3.3\n    <|begin_of_text|><|start_header_id|>system" in out
    cli.main(["templates", "gemma"])
    assert capsys.readouterr().out.startswith(
        "gemma      Gemma, Gemma 2, Gemma 3\n    <bos><start_of_turn>user"
    )


def test_data_inspect_shows_tokens_and_a_render_for_every_format(tmp_path, tiny_model_dir, capsys):
    import json

    files = {
        "pairs": {"prompt": "say hi", "chosen": "hello there", "rejected": "go away"},
        "rankings": {"prompt": "say hi", "responses": ["hello there", "hi", "go away"]},
        "prompts": {"prompt": "say hi"},
    }
    out = {}
    for name, row in files.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(row) + "\n")
        cli.main(["data", "inspect", str(path), "--model", str(tiny_model_dir)])
        out[name] = capsys.readouterr().out
    for name, kinds in {
        "pairs": ["chosen", "rejected"],
        "rankings": ["response"],
        "prompts": ["prompt"],
    }.items():
        assert f"format: {name} (detected)" in out[name]
        for kind in kinds:
            stats = out[name].split(f"tokenizer), {kind} rows (")[1].split("\n")[0]
            assert stats.startswith(("1): mean", "3): mean")) and "p95" in stats and "max" in stats
            assert f"\n-- {kind}:\n" in out[name]
    assert "[[hello there<|im_end|>\n]]" in out["pairs"] and "[[go away<|im_end|>\n]]" in out["pairs"]
    assert out["rankings"].count("\n-- response:\n") == 3
    render = out["prompts"].split("\n-- prompt:\n")[1]
    assert (
        render.endswith("say hi<|im_end|>\n<|im_start|>assistant\n\n") and "[[" not in render
    )  # nothing trained


def test_feedback_store_defaults_to_a_data_directory_never_the_current_one(tmp_path, monkeypatch):
    from pixiu.config import ServeConfig
    from pixiu.feedback.store import default_path, open_store

    cwd = tmp_path / "repo"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("PIXIU_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "pixiu" / "feedback.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "pixiu" / "feedback.db"
    monkeypatch.setenv("PIXIU_HOME", str(tmp_path / "px"))
    assert default_path() == tmp_path / "px" / "feedback.db"
    assert ServeConfig().db == ""  # `pixiu serve` without --db: open_store("") -> default_path()
    with open_store(ServeConfig().db) as store:
        assert store.where == str(tmp_path / "px" / "feedback.db")
    assert (tmp_path / "px" / "feedback.db").is_file() and list(cwd.iterdir()) == []  # nothing in the cwd
