"""`pixiu chat`: a piped script of lines drives a multi-turn chat with commands."""

from __future__ import annotations

import io
import json

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import Sampling, load_engine
from pixiu.serve import terminal


def test_chat_script(tiny_model_dir, tmp_path, monkeypatch, capsys):
    saved, loaded_back = tmp_path / "chat.json", tmp_path / "back.json"
    script = [
        "/set max_new_tokens 6",
        "/set temperature 0",
        "Hello",
        "/save " + str(saved),
        "/reset",
        "/load " + str(saved),
        "Thanks!",
        "/save " + str(loaded_back),
        "/set temperature -1",
        "/set bogus 1",
        "/help",
        "/quit",
        "never read",
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(script) + "\n"))
    terminal.cli([str(tiny_model_dir), "--system", "Be brief.", "--dtype", "fp32"])
    out = capsys.readouterr().out

    with load_engine(str(tiny_model_dir), dtype="fp32") as engine:
        greedy = Sampling(max_new_tokens=6, temperature=0.0, top_p=0.9)
        system = [Message("system", "Be brief.")]
        first = engine.generate([Conversation([*system, Message("user", "Hello")])], greedy)[0].text
        turns = [*system, Message("user", "Hello"), Message("assistant", first), Message("user", "Thanks!")]
        second = engine.generate([Conversation(turns)], greedy)[0].text

    assert json.loads(saved.read_text()) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": first},
    ]
    # /load restored the history, so the second turn saw the first
    assert json.loads(loaded_back.read_text())[3:] == [
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": second},
    ]
    assert first + "\n" in out and second + "\n" in out
    assert "[max_new_tokens = 6]" in out and "[conversation cleared]" in out and "[loaded 2 turns" in out
    assert "[bad value for temperature: bad sampling settings: temperature must be >= 0]" in out
    assert "usage: /set NAME VALUE" in out and "/reset" in out  # the help text
    assert "never read" not in out


def test_load_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"role": "wizard", "content": "hi"}]')
    out = io.StringIO()
    chat = terminal.Chat(engine=None, out=out)
    chat.command(f"/load {bad}")
    chat.command("/nope")
    assert "cannot load" in out.getvalue() and "unknown role" in out.getvalue()
    assert "unknown command /nope" in out.getvalue() and chat.history == []
