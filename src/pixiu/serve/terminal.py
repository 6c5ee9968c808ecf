"""`pixiu chat MODEL`: multi-turn chat in the terminal, replies streamed as they are generated.

Lines are read from stdin, so a script of lines can be piped in (`pixiu chat m < script.txt`). A line that
starts with `/` is a command (see HELP); anything else is the next user turn. Ctrl-C stops a reply early
(the partial reply stays in the history); Ctrl-D or /quit leaves.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TextIO

from pixiu.chat.messages import Conversation, Message
from pixiu.engine import ContextError, Engine, Sampling, quant

HELP = """commands:
  /reset                 forget the conversation (the system prompt stays)
  /save FILE             write the conversation as JSON messages
  /load FILE             read a conversation of JSON messages (a list, or {"messages": [...]})
  /set NAME VALUE        sampling: temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed (or none)
  /system TEXT           replace the system prompt (empty: the template's default)
  /help                  this text
  /quit                  leave (Ctrl-D too)"""
CHAT_SAMPLING = Sampling(max_new_tokens=512, temperature=0.7, top_p=0.9)


@dataclass
class Chat:
    engine: Engine
    out: TextIO
    system: str = ""
    sampling: Sampling = field(default_factory=lambda: replace(CHAT_SAMPLING))
    history: list[Message] = field(default_factory=list)  # user and assistant turns

    def conversation(self) -> Conversation:
        system = [Message("system", self.system)] if self.system else []
        return Conversation(system + self.history)

    def say(self, text: str) -> None:
        """A user turn: stream the reply to the terminal and keep it in the history."""
        conv = self.conversation().add("user", text)
        pieces: list[str] = []
        try:
            for piece in self.engine.stream(conv, self.sampling):
                pieces.append(piece)
                self.out.write(piece)
                self.out.flush()
        except ContextError as e:
            self.out.write(f"[{e}; /reset or a lower max_new_tokens]\n")
            return
        except KeyboardInterrupt:
            self.out.write(" [stopped]")
        self.out.write("\n")
        self.history += [Message("user", text), Message("assistant", "".join(pieces))]

    def command(self, line: str) -> bool:
        """Run a /command; False when the chat should end."""
        name, _, arg = line.partition(" ")
        handler = COMMANDS.get(name)
        if handler is None:
            self.out.write(f"unknown command {name}; /help lists them\n")
            return True
        return handler(self, arg.strip()) is not False


def _reset(chat: Chat, arg: str) -> None:
    chat.history = []
    chat.out.write("[conversation cleared]\n")


def _save(chat: Chat, arg: str) -> None:
    if not arg:
        chat.out.write("usage: /save FILE\n")
        return
    Path(arg).write_text(json.dumps(chat.conversation().to_openai(), ensure_ascii=False, indent=2) + "\n")
    chat.out.write(f"[saved {len(chat.history)} turns to {arg}]\n")


def _load(chat: Chat, arg: str) -> None:
    try:
        data = json.loads(Path(arg).read_text())
        messages = data["messages"] if isinstance(data, dict) else data
        conv = Conversation.from_openai(messages)
    except (OSError, ValueError, KeyError, TypeError) as e:
        chat.out.write(f"[cannot load {arg!r}: {e}]\n")
        return
    msgs = list(conv.messages)
    if msgs and msgs[0].role == "system":
        chat.system = msgs.pop(0).content
    chat.history = msgs
    chat.out.write(f"[loaded {len(msgs)} turns from {arg}]\n")


SETTABLE = [f.name for f in fields(Sampling) if f.name != "logprobs"]  # the terminal shows text only


def _set(chat: Chat, arg: str) -> None:
    name, _, value = arg.partition(" ")
    if name not in SETTABLE or not value:
        chat.out.write(f"usage: /set NAME VALUE with NAME one of {SETTABLE}\n")
        return
    try:
        if name == "seed":
            parsed = _seed(value)
        else:
            parsed = (int if name in ("top_k", "max_new_tokens") else float)(value)
        chat.sampling = replace(chat.sampling, **{name: parsed})
    except ValueError as e:
        chat.out.write(f"[bad value for {name}: {e}]\n")
        return
    chat.out.write(f"[{name} = {parsed}]\n")


def _help(chat: Chat, arg: str) -> None:
    chat.out.write(HELP + "\n")


def _quit(chat: Chat, arg: str) -> bool:
    return False


def _system(chat: Chat, arg: str) -> None:
    chat.system = arg
    chat.out.write("[system prompt set]\n" if arg else "[system prompt: the template's default]\n")


COMMANDS: dict[str, Callable[[Chat, str], bool | None]] = {
    "/reset": _reset,
    "/save": _save,
    "/load": _load,
    "/set": _set,
    "/system": _system,
    "/help": _help,
    "/quit": _quit,
    "/exit": _quit,
}


def run(chat: Chat, lines: Iterable[str], prompt: str = "") -> None:
    """Read user turns and commands until /quit or the end of input."""
    for raw in _prompted(lines, prompt, chat.out):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not chat.command(line):
                return
        else:
            chat.say(line)


def _prompted(lines: Iterable[str], prompt: str, out: TextIO):
    it = iter(lines)
    while True:
        if prompt:
            out.write(prompt)
            out.flush()
        try:
            yield next(it)
        except StopIteration:
            return


def cli(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="pixiu chat", description=__doc__.split("\n")[0])
    p.add_argument("model", help="checkpoint dir, HF dir or hub name, .gguf file, or smollm2-135m")
    p.add_argument("--system", default="", help="system prompt (default: the template's own)")
    p.add_argument("--backend", default="auto", help="torch, llamacpp or auto")
    p.add_argument("--dtype", default="auto", help="auto, bf16 or fp32")
    p.add_argument("--template", default="default", help="chat template name (see `pixiu templates`)")
    p.add_argument("--quantize", default="none", choices=quant.QUANTIZE, help=quant.HELP)
    for name in SETTABLE:
        kind = _seed if name == "seed" else type(getattr(CHAT_SAMPLING, name))
        p.add_argument(f"--{name}", type=kind, default=getattr(CHAT_SAMPLING, name))
    a = p.parse_args(argv)
    from pixiu.engine import load_engine

    sampling = Sampling(**{name: getattr(a, name) for name in SETTABLE})
    opts = {"backend": a.backend, "dtype": a.dtype, "template": a.template, "quantize": a.quantize}
    with load_engine(a.model, max_batch=1, **opts) as engine:
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"pixiu chat: {engine.name} ({engine.context_len} tokens of context). /help for commands.")
        chat = Chat(engine, sys.stdout, a.system, sampling)
        run(chat, sys.stdin, prompt=">>> " if interactive else "")


def _seed(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)
